//! The checkpoint coordinator of one job: when a checkpoint is due, which kind it is, its
//! write on a thread of its own, its completion, and the removal of old ones.

use super::options::{incompatibility, CheckpointOptions, Restore};
use super::state::{Snapshot, StateOut};
use super::store::{Restored, Store};
use crate::error::{EngineError, Result};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the end of a job waits for a checkpoint being written.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);

/// A checkpoint being written.
struct InFlight {
    id: u64,
    base: u64,
    started: Instant,
    /// Per operator, the records to commit once the checkpoint is durable.
    commits: Vec<(String, Vec<Vec<u8>>)>,
    writer: JoinHandle<Result<u64>>,
}

/// A checkpoint that became durable.
#[derive(Debug)]
pub struct Completed {
    /// Its id.
    pub id: u64,
    /// Per operator (by transform name), the records to commit now.
    pub commits: Vec<(String, Vec<Vec<u8>>)>,
    /// Size of its file.
    pub bytes: u64,
    /// From the snapshot's start to durable.
    pub duration: Duration,
}

/// Takes a job's checkpoints (see [`super`]).
pub struct Coordinator {
    store: Store,
    interval: Duration,
    full_every: u64,
    fingerprint: String,
    next_id: u64,
    /// The last durable checkpoint and the base of its chain.
    last: Option<(u64, u64)>,
    /// Checkpoints since the last full one.
    since_full: u64,
    last_start: Instant,
    in_flight: Option<InFlight>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("dir", &self.store.dir())
            .field("next_id", &self.next_id)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Opens the job's checkpoint directory; with [`Restore::Latest`], also returns the
    /// newest whole checkpoint (checked against the pipeline's `fingerprint`).
    ///
    /// # Errors
    /// The directory cannot be used; the checkpoint is of another pipeline (saying what
    /// changed).
    pub fn start(
        opts: &CheckpointOptions,
        fingerprint: String,
    ) -> Result<(Self, Option<Restored>)> {
        let store = Store::open(&opts.dir)?;
        let restored = match opts.restore {
            Restore::None => {
                store.clear();
                None
            }
            Restore::Latest => store.latest()?,
        };
        let mut c = Coordinator {
            store,
            interval: opts.interval,
            full_every: opts.full_every.max(1),
            fingerprint,
            next_id: 1,
            last: None,
            since_full: 0,
            last_start: Instant::now(),
            in_flight: None,
        };
        if let Some(r) = &restored {
            if let Some(why) = incompatibility(&r.fingerprint, &c.fingerprint) {
                return Err(EngineError::Checkpoint(format!(
                    "the pipeline is not the one checkpoint {} in {} was taken of: {why}; \
                     run it with --restore=none (or another --checkpoint-dir) to start over",
                    r.id,
                    opts.dir.display()
                )));
            }
            // Newer checkpoints that cannot be read are of no use and would shadow ours.
            for (id, _) in &r.skipped {
                let _ = std::fs::remove_file(opts.dir.join(format!("chk-{id:012}.redb")));
            }
            let base = r.base;
            c.last = Some((r.id, base));
            // Past the ids of unusable checkpoints too: a sink may have committed output
            // under them, and another interval's output must not pass for it.
            let newest = r.skipped.iter().map(|&(id, _)| id).max().unwrap_or(r.id);
            c.next_id = newest.max(r.id) + 1;
            c.since_full = r.id - base;
        }
        Ok((c, restored))
    }

    /// A checkpoint should start now: the interval passed and none is being written.
    pub fn due(&self) -> bool {
        self.in_flight.is_none() && self.last_start.elapsed() >= self.interval
    }

    /// The next checkpoint's id and whether its operators save all their state (the
    /// first of a job; later ones save what changed).
    pub fn next(&self) -> (u64, bool) {
        (self.next_id, self.last.is_none())
    }

    /// Whether the next checkpoint is full all the same (every
    /// [`CheckpointOptions::full_every`]-th): its writer merges what changed into the
    /// state of the last one, off the pipeline's thread.
    pub fn compacts(&self) -> bool {
        self.last.is_some() && self.since_full + 1 >= self.full_every
    }

    /// Writes the snapshot of checkpoint [`Coordinator::next`] in the background: `job`
    /// is the scheduler's state, `nodes` what each operator saved.
    ///
    /// # Panics
    /// When a checkpoint is already being written.
    pub fn submit(&mut self, job: Vec<u8>, nodes: Vec<(String, StateOut)>) -> Result<()> {
        assert!(self.in_flight.is_none(), "one checkpoint at a time");
        let (id, full) = self.next();
        let compact = self.compacts();
        let (base, parent, compact_from) = match (full, self.last) {
            (false, Some((last, _))) if compact => (id, None, Some(last)),
            (false, Some((last, base))) => (base, Some(last), None),
            _ => (id, None, None),
        };
        let mut commits = Vec::new();
        let mut kept = Vec::with_capacity(nodes.len());
        for (name, out) in nodes {
            if !out.commits.is_empty() {
                commits.push((name.clone(), out.commits.clone()));
            }
            if full || !out.is_empty() {
                kept.push((name, out));
            }
        }
        let snap = Snapshot {
            id,
            base,
            parent,
            compact_from,
            fingerprint: self.fingerprint.clone(),
            job,
            nodes: kept,
        };
        let store = self.store.clone();
        let writer = std::thread::Builder::new()
            .name("beamline-checkpoint".into())
            .spawn(move || store.write(&snap))
            .map_err(|e| EngineError::Checkpoint(format!("cannot start its writer: {e}")))?;
        self.last_start = Instant::now();
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id,
            base,
            started: self.last_start,
            commits,
            writer,
        });
        Ok(())
    }

    /// The checkpoint being written, once it is durable (without waiting).
    ///
    /// # Errors
    /// When it could not be written (the job fails: its output could not be committed).
    pub fn poll(&mut self) -> Result<Option<Completed>> {
        match &self.in_flight {
            Some(f) if f.writer.is_finished() => self.complete(),
            _ => Ok(None),
        }
    }

    /// Waits for the checkpoint being written, if any.
    ///
    /// # Errors
    /// As [`Coordinator::poll`]; a write that takes longer than two minutes.
    pub fn wait(&mut self) -> Result<Option<Completed>> {
        let Some(f) = &self.in_flight else {
            return Ok(None);
        };
        let until = Instant::now() + FINISH_TIMEOUT;
        while !f.writer.is_finished() {
            if Instant::now() > until {
                return Err(EngineError::Checkpoint(format!(
                    "checkpoint {} was not written within {} s",
                    f.id,
                    FINISH_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.complete()
    }

    fn complete(&mut self) -> Result<Option<Completed>> {
        let f = self.in_flight.take().expect("checked by the caller");
        let bytes = f
            .writer
            .join()
            .map_err(|_| EngineError::Checkpoint("its writer panicked".into()))??;
        // Keep the chain of the previous checkpoint too: it is what a damaged newest
        // one falls back to.
        let keep_from = self
            .last
            .map_or(f.base, |(_, prev_base)| prev_base.min(f.base));
        self.since_full = if f.base == f.id {
            0
        } else {
            self.since_full + 1
        };
        self.last = Some((f.id, f.base));
        self.store.collect_garbage(keep_from);
        Ok(Some(Completed {
            id: f.id,
            commits: f.commits,
            bytes,
            duration: f.started.elapsed(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_save_everything_once_and_every_few_checkpoints_the_writer_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CheckpointOptions {
            dir: dir.path().to_path_buf(),
            interval: Duration::ZERO,
            restore: Restore::Latest,
            full_every: 3,
        };
        let (mut c, restored) = Coordinator::start(&opts, "f".into()).unwrap();
        assert!(restored.is_none());
        let mut kinds = Vec::new();
        for i in 1..=7u8 {
            let (id, full) = c.next();
            kinds.push((id, full, c.compacts()));
            // Each checkpoint changes one key: everything the first time.
            let mut out = StateOut::new(id, full);
            if full {
                out.put(b"k0", vec![0]);
            }
            out.put(&[b'k', i], vec![i]);
            c.submit(vec![i], vec![("Count".into(), out)]).unwrap();
            c.wait().unwrap().unwrap();
        }
        assert_eq!(
            kinds,
            vec![
                (1, true, false),
                (2, false, false),
                (3, false, false),
                (4, false, true),
                (5, false, false),
                (6, false, false),
                (7, false, true),
            ]
        );
        // Compacted checkpoints stand alone: older files are gone but the chain before
        // the newest (kept to fall back to).
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.ids().unwrap(), vec![4, 5, 6, 7]);
        let keys = |id: u64| {
            let r = store.read_checkpoint(id).unwrap();
            let mut keys = Vec::new();
            r.nodes["Count"]
                .for_each(|k, _| {
                    keys.push(k[1]);
                    Ok(())
                })
                .unwrap();
            (r.base, keys)
        };
        assert_eq!(keys(7), (7, vec![1, 2, 3, 4, 5, 6, 7, b'0']));
        assert_eq!(keys(6), (4, vec![1, 2, 3, 4, 5, 6, b'0']));
        // A job started again resumes from 7, on its own (compacted) chain.
        let (c, restored) = Coordinator::start(&opts, "f".into()).unwrap();
        let r = restored.unwrap();
        assert_eq!((r.id, r.base), (7, 7));
        assert_eq!(c.next(), (8, false));
        assert!(!c.compacts());
    }
}
