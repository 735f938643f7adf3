//! The spill store of a stateful ParDo's states beyond its memory budget: one temporary
//! redb file with a row per key and window (its cells and timers, encoded as in
//! checkpoints) and a row per timer, ordered by domain and time, so the earliest timer of
//! everything spilled is one range read away.
//!
//! Reading a row back does not delete it at once: its rows become *stale* (the copy in
//! memory is the live one) and are deleted with the next write, so a state read back
//! costs one read, not a write transaction. A Bloom filter of the states ever written
//! answers most lookups of states never spilled (new keys) without reading the file.

use crate::element_codec::{decode_window, encode_window};
use crate::error::{EngineError, Result};
use crate::state::TimeDomain;
use crate::window::Window;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use rustc_hash::FxHashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) mod view;

use super::bloom::Bloom;

/// A key (its encoding with the key coder) and window.
pub(crate) type StateId = (Vec<u8>, Window);

/// Rows of states: the window's encoding, then the key's; value: cells and timers.
const STATES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("states");
/// Rows of timers: domain, time (order-preserving), then the length-prefixed key bytes of
/// the state row, then the timer's name.
const TIMERS: TableDefinition<'_, &[u8], ()> = TableDefinition::new("timers");

/// Non-durable commits between two durable ones: redb reuses the pages a commit frees
/// only after a durable one, so without them the file would only grow.
const DURABLE_EVERY: u64 = 16;

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// One spilled timer: when, of which state, and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColdTimer {
    pub(crate) fire: i64,
    pub(crate) id: StateId,
    pub(crate) name: String,
}

/// The spilled states of one operator; the file is deleted when this is dropped.
pub(crate) struct Cold {
    /// Shared with the views taken of it: dropping the database ends its read
    /// transactions ("Database has been closed"), so it stays open while one is listed.
    db: Arc<Database>,
    path: PathBuf,
    /// The transform, for errors.
    name: String,
    /// Rows to delete with the next write, and the states they belong to (whose rows
    /// readers skip meanwhile).
    stale_states: Vec<Vec<u8>>,
    stale_timers: Vec<Vec<u8>>,
    stale: FxHashSet<StateId>,
    commits: u64,
    /// Bytes of rows written so far.
    pub(crate) written: u64,
    /// The states table as of the last write (reopened after each).
    reader: std::cell::RefCell<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>>,
    /// The states ever written (deleted ones too).
    written_ids: Bloom,
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold").field("path", &self.path).finish()
    }
}

/// The state a row of the states table is of (the inverse of [`state_row`]).
fn state_of_row(mut row: &[u8]) -> std::result::Result<StateId, crate::coder::CoderError> {
    let window = decode_window(&mut row)?;
    Ok((row.to_vec(), window))
}

fn state_row(id: &StateId) -> Vec<u8> {
    let mut row = Vec::with_capacity(id.0.len() + 17);
    encode_window(&id.1, &mut row);
    row.extend_from_slice(&id.0);
    row
}

/// Which ordered set of due times a timer row is in: a time domain's timers, or the
/// expiry of a grouping's windows (event time, apart from its timers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Queue(u8);

impl Queue {
    /// Windows' expiry.
    pub(crate) const EXPIRY: Queue = Queue(2);
}

impl From<TimeDomain> for Queue {
    fn from(d: TimeDomain) -> Queue {
        Queue(match d {
            TimeDomain::Watermark => 0,
            TimeDomain::ProcessingTime => 1,
        })
    }
}

/// Where the rows of queue `q` at or after time `from` begin.
fn queue_start(q: u8, from: i64) -> Vec<u8> {
    let mut start = vec![q];
    if from != i64::MIN {
        start.extend_from_slice(&((from as u64) ^ (1 << 63)).to_be_bytes());
    }
    start
}

fn timer_row(queue: Queue, fire: i64, id: &StateId, name: &str) -> Vec<u8> {
    let state = state_row(id);
    let mut row = Vec::with_capacity(state.len() + name.len() + 14);
    row.push(queue.0);
    // Flipping the sign bit makes the big-endian bytes sort as the signed numbers do.
    row.extend_from_slice(&((fire as u64) ^ (1 << 63)).to_be_bytes());
    crate::coder::write_varint(state.len() as u64, &mut row);
    row.extend_from_slice(&state);
    row.extend_from_slice(name.as_bytes());
    row
}

impl Cold {
    /// A new, empty store in `dir` for transform `name`, caching up to `cache` bytes.
    ///
    /// # Errors
    /// The directory or the file cannot be created.
    pub(crate) fn create(dir: &Path, name: &str, cache: usize) -> Result<Cold> {
        std::fs::create_dir_all(dir).map_err(|e| spill_err(name, dir, e))?;
        // Spill files of killed processes (one that ends deletes its own).
        crate::orphans::remove_orphans(dir, "beamline-state-", "");
        let path = dir.join(format!(
            "beamline-state-{}-{}.redb",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let db = redb::Builder::new()
            .set_cache_size(cache)
            .create(&path)
            .map_err(|e| spill_err(name, &path, e))?;
        let cold = Cold {
            db: Arc::new(db),
            path,
            name: name.to_string(),
            stale_states: Vec::new(),
            stale_timers: Vec::new(),
            stale: FxHashSet::default(),
            commits: 0,
            written: 0,
            reader: std::cell::RefCell::new(None),
            written_ids: Bloom::default(),
        };
        cold.write(|_, _| Ok(()), Durability::Immediate)?;
        Ok(cold)
    }

    fn err(&self, e: impl std::fmt::Display) -> EngineError {
        spill_err(&self.name, &self.path, e)
    }

    /// Runs `f` on both tables in one write transaction.
    fn write(
        &self,
        f: impl FnOnce(
            &mut redb::Table<'_, &[u8], &[u8]>,
            &mut redb::Table<'_, &[u8], ()>,
        ) -> std::result::Result<(), redb::StorageError>,
        durability: Durability,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(durability).map_err(|e| self.err(e))?;
        {
            let mut states = tx.open_table(STATES).map_err(|e| self.err(e))?;
            let mut timers = tx.open_table(TIMERS).map_err(|e| self.err(e))?;
            f(&mut states, &mut timers).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The encoded cells and timers of `id`, unless it is not here (or stale).
    ///
    /// # Errors
    /// The store cannot be read.
    pub(crate) fn get(&self, id: &StateId) -> Result<Option<Vec<u8>>> {
        let row = state_row(id);
        if self.stale.contains(id) || !self.written_ids.may_contain(&row) {
            return Ok(None);
        }
        let mut reader = self.reader.borrow_mut();
        let states = match &mut *reader {
            Some(t) => t,
            None => {
                let tx = self.db.begin_read().map_err(|e| self.err(e))?;
                reader.insert(tx.open_table(STATES).map_err(|e| self.err(e))?)
            }
        };
        let got = states.get(row.as_slice()).map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.value().to_vec()))
    }

    /// `id`'s rows (its state and the timers `timers` lists) are stale: read back into
    /// memory or removed. They are deleted with the next write.
    pub(crate) fn forget<'a, Q: Into<Queue>>(
        &mut self,
        id: &StateId,
        timers: impl Iterator<Item = (Q, i64, &'a str)>,
    ) {
        self.stale_states.push(state_row(id));
        for (queue, fire, name) in timers {
            self.stale_timers
                .push(timer_row(queue.into(), fire, id, name));
        }
        self.stale.insert(id.clone());
    }

    /// Deletes the stale rows.
    ///
    /// # Errors
    /// The store cannot be written.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.stale.is_empty() {
            return Ok(());
        }
        self.put(Vec::new())
    }

    /// Writes the rows of `states` (each with its encoding and its timers) after
    /// deleting the stale rows, in one transaction.
    ///
    /// # Errors
    /// The store cannot be written.
    pub(crate) fn put(&mut self, states: Vec<(StateId, Vec<u8>, Vec<ColdTimerRow>)>) -> Result<()> {
        // In key order, each page of the tree is changed by a run of rows, not again and
        // again (the rows come in hash order).
        let mut stale_states = std::mem::take(&mut self.stale_states);
        let mut stale_timers = std::mem::take(&mut self.stale_timers);
        stale_states.sort_unstable();
        stale_timers.sort_unstable();
        let mut states: Vec<_> = states
            .iter()
            .map(|(id, bytes, timers)| (state_row(id), id, bytes.as_slice(), timers.as_slice()))
            .collect();
        states.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.stale.clear();
        self.commits += 1;
        let durability = if self.commits.is_multiple_of(DURABLE_EVERY) {
            Durability::Immediate
        } else {
            Durability::None
        };
        // The reader's snapshot would not see this write, and would keep its pages.
        self.reader.get_mut().take();
        for (row, ..) in &states {
            self.written_ids.insert(row);
        }
        let mut written = 0;
        self.write(
            |rows, timer_rows| {
                for row in &stale_states {
                    rows.remove(row.as_slice())?;
                }
                for row in &stale_timers {
                    timer_rows.remove(row.as_slice())?;
                }
                let mut timers = Vec::new();
                for (key, id, bytes, its) in &states {
                    written += (key.len() + bytes.len()) as u64;
                    rows.insert(key.as_slice(), *bytes)?;
                    for (queue, fire, name) in *its {
                        timers.push(timer_row(*queue, *fire, id, name));
                    }
                }
                timers.sort_unstable();
                for row in &timers {
                    written += row.len() as u64;
                    timer_rows.insert(row.as_slice(), ())?;
                }
                Ok(())
            },
            durability,
        )?;
        self.written += written;
        Ok(())
    }

    /// The earliest spilled timer of `domain` that is not stale.
    ///
    /// # Errors
    /// The store cannot be read, or holds a row it did not write.
    pub(crate) fn first_timer(&self, queue: impl Into<Queue>) -> Result<Option<ColdTimer>> {
        self.first_timer_from(queue, i64::MIN)
    }

    /// The earliest spilled timer of `queue` at or after `from` that is not stale.
    ///
    /// # Errors
    /// The store cannot be read, or holds a row it did not write.
    pub(crate) fn first_timer_from(
        &self,
        queue: impl Into<Queue>,
        from: i64,
    ) -> Result<Option<ColdTimer>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let timers = tx.open_table(TIMERS).map_err(|e| self.err(e))?;
        let q = queue.into().0;
        let (start, end) = (queue_start(q, from), [q + 1]);
        for row in timers
            .range(start.as_slice()..end.as_slice())
            .map_err(|e| self.err(e))?
        {
            let (row, _) = row.map_err(|e| self.err(e))?;
            let t = self.parse_timer(row.value())?;
            if !self.stale.contains(&t.id) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Up to `max` of the earliest spilled timers of `domain` at or before `until` that are
    /// not stale, one per state.
    ///
    /// # Errors
    /// The store cannot be read, or holds a row it did not write.
    pub(crate) fn first_timers(
        &self,
        queue: impl Into<Queue>,
        until: i64,
        max: usize,
    ) -> Result<Vec<ColdTimer>> {
        self.first_timers_from(queue, i64::MIN, until, max)
    }

    /// As [`Cold::first_timers`], of the timers at or after `from` (rows before it are
    /// not read: a caller that knows none is live there skips the stale ones).
    ///
    /// # Errors
    /// The store cannot be read, or holds a row it did not write.
    pub(crate) fn first_timers_from(
        &self,
        queue: impl Into<Queue>,
        from: i64,
        until: i64,
        max: usize,
    ) -> Result<Vec<ColdTimer>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let timers = tx.open_table(TIMERS).map_err(|e| self.err(e))?;
        let q = queue.into().0;
        let (start, end) = (queue_start(q, from), [q + 1]);
        let mut found: Vec<ColdTimer> = Vec::new();
        let mut ids = FxHashSet::default();
        for row in timers
            .range(start.as_slice()..end.as_slice())
            .map_err(|e| self.err(e))?
        {
            let (row, _) = row.map_err(|e| self.err(e))?;
            let t = self.parse_timer(row.value())?;
            if t.fire > until || found.len() >= max {
                break;
            }
            if !self.stale.contains(&t.id) && ids.insert(t.id.clone()) {
                found.push(t);
            }
        }
        Ok(found)
    }

    /// States whose rows are stale.
    pub(crate) fn stale_count(&self) -> usize {
        self.stale.len()
    }

    fn parse_timer(&self, row: &[u8]) -> Result<ColdTimer> {
        let bad = || self.err("a timer row it did not write");
        let fire = row.get(1..9).ok_or_else(bad)?;
        let fire = (u64::from_be_bytes(fire.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
        let mut rest = &row[9..];
        let len = crate::coder::read_varint(&mut rest).map_err(|_| bad())? as usize;
        let state = rest.get(..len).ok_or_else(bad)?;
        let name = std::str::from_utf8(&rest[len..]).map_err(|_| bad())?;
        Ok(ColdTimer {
            fire,
            id: self.parse_state(state)?,
            name: name.to_string(),
        })
    }

    fn parse_state(&self, row: &[u8]) -> Result<StateId> {
        state_of_row(row).map_err(|e| self.err(e))
    }

    /// Up to `max` states of window `w` that are not stale, in row order.
    ///
    /// # Errors
    /// The store cannot be read.
    pub(crate) fn ids_in(&self, w: &Window, max: usize) -> Result<Vec<StateId>> {
        let mut prefix = Vec::new();
        encode_window(w, &mut prefix);
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let states = tx.open_table(STATES).map_err(|e| self.err(e))?;
        let mut ids = Vec::new();
        for row in states.range(prefix.as_slice()..).map_err(|e| self.err(e))? {
            let (row, _) = row.map_err(|e| self.err(e))?;
            if !row.value().starts_with(&prefix) || ids.len() >= max {
                break;
            }
            let id = self.parse_state(row.value())?;
            if !self.stale.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Whether `id` may have been spilled (false: certainly not).
    pub(crate) fn may_hold(&self, id: &StateId) -> bool {
        self.written_ids.may_contain(&state_row(id))
    }
}

/// Adds a spilling operator's counters since its last report: states (or keys) spilled
/// and read back, and bytes written to its store.
pub(crate) fn report_spill(
    metrics: &mut crate::metrics::MetricsContainer,
    spilled: i64,
    read_back: i64,
    written: u64,
) {
    for (name, v) in [
        ("stateSpilled", spilled),
        ("stateReadBack", read_back),
        ("stateSpilledBytes", written as i64),
    ] {
        if v > 0 {
            metrics.inc_counter("beamline", name, v);
        }
    }
}

/// The use stamp at or below which about `to_free` of `total` bytes in memory are, judged
/// from a `sample` of (stamp, bytes): what an approximate LRU spills (oldest first).
pub(crate) fn lru_threshold(
    sample: impl Iterator<Item = (u64, usize)>,
    to_free: usize,
    total: usize,
) -> u64 {
    let mut sample: Vec<(u64, usize)> = sample.collect();
    sample.sort_unstable();
    let sampled: usize = sample.iter().map(|x| x.1).sum();
    let want = (sampled as f64 * to_free as f64 / total.max(1) as f64).ceil() as usize;
    let mut acc = 0;
    for &(stamp, bytes) in &sample {
        acc += bytes;
        if acc >= want {
            return stamp;
        }
    }
    u64::MAX
}

/// A spilled state's timer: domain, fire time, name.
pub(crate) type ColdTimerRow = (Queue, i64, String);

impl Drop for Cold {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn spill_err(name: &str, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Runner(format!(
        "transform '{name}': the store of state spilled beyond its memory budget ({}): {e}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(k: &[u8], w: Window) -> StateId {
        (k.to_vec(), w)
    }

    #[test]
    fn rows_read_back_stale_rows_are_skipped_and_timers_come_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut cold = Cold::create(dir.path(), "Dedup", 1 << 20).unwrap();
        let w = Window::Interval { start: -10, end: 5 };
        let a = id(b"a", w);
        let b = id(b"bb", Window::Global);
        let c = id(b"c", w);
        cold.put(vec![
            (
                a.clone(),
                b"A".to_vec(),
                vec![(TimeDomain::Watermark.into(), 7, "t".into())],
            ),
            (
                b.clone(),
                b"B".to_vec(),
                vec![(TimeDomain::Watermark.into(), -3, "u".into())],
            ),
            (
                c.clone(),
                b"C".to_vec(),
                vec![(TimeDomain::ProcessingTime.into(), 1, "p".into())],
            ),
        ])
        .unwrap();
        assert_eq!(cold.get(&a).unwrap(), Some(b"A".to_vec()));
        assert_eq!(cold.get(&id(b"z", w)).unwrap(), None);
        let first = cold.first_timer(TimeDomain::Watermark).unwrap().unwrap();
        assert_eq!((first.fire, &first.id, first.name.as_str()), (-3, &b, "u"));
        assert_eq!(
            cold.first_timer(TimeDomain::ProcessingTime)
                .unwrap()
                .unwrap()
                .id,
            c
        );
        let mut in_w = cold.ids_in(&w, 10).unwrap();
        in_w.sort();
        assert_eq!(in_w, vec![a.clone(), c.clone()]);
        assert_eq!(cold.ids_in(&Window::Global, 10).unwrap(), vec![b.clone()]);
        // Read back: stale until the next write deletes its rows.
        cold.forget(&b, [(TimeDomain::Watermark, -3, "u")].into_iter());
        assert_eq!(cold.get(&b).unwrap(), None);
        assert_eq!(
            cold.first_timer(TimeDomain::Watermark).unwrap().unwrap().id,
            a
        );
        assert!(cold.ids_in(&Window::Global, 10).unwrap().is_empty());
        cold.flush().unwrap();
        let mut all = Vec::new();
        cold.for_each(|id, v| {
            all.push((id, v.to_vec()));
            Ok(())
        })
        .unwrap();
        all.sort();
        assert_eq!(all, vec![(a, b"A".to_vec()), (c, b"C".to_vec())]);
        // Spilled again after being read back: the new rows replace the old.
        cold.put(vec![(b.clone(), b"B2".to_vec(), vec![])]).unwrap();
        assert_eq!(cold.get(&b).unwrap(), Some(b"B2".to_vec()));
        let path = cold.path.clone();
        drop(cold);
        assert!(!path.exists(), "the file is deleted with the store");
    }

    #[test]
    fn files_of_processes_that_ended_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A process id above the kernel's maximum never runs.
        let orphan = dir.path().join("beamline-state-4194305-0.redb");
        let other = dir.path().join("something-else.redb");
        std::fs::write(&orphan, "x").unwrap();
        std::fs::write(&other, "x").unwrap();
        let cold = Cold::create(dir.path(), "Dedup", 1 << 20).unwrap();
        assert!(!orphan.exists());
        assert!(other.exists(), "only spill files are removed");
        assert!(cold.path.exists(), "not its own");
    }

    #[test]
    fn timer_rows_sort_by_signed_time() {
        let id = id(b"k", Window::Global);
        let rows: Vec<Vec<u8>> = [i64::MIN, -1, 0, 1, i64::MAX]
            .iter()
            .map(|&t| timer_row(TimeDomain::Watermark.into(), t, &id, "x"))
            .collect();
        assert!(rows.windows(2).all(|p| p[0] < p[1]));
    }
}
