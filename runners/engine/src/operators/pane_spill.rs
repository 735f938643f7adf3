//! A streaming grouping's keys beyond its memory budget: the budget's accounting and the
//! spill store ([`super::state_spill`]) with one row per key (every window of it) and a
//! row per time the key falls due (its trigger timers, its windows' expiry), so the
//! grouping reads a spilled key back when it is used again or falls due.
//!
//! What stays in memory for a spilled key: its windows' watermark holds (a count per
//! distinct time), so the output watermark is right without reading the store.

use super::op::StateBudget;
use super::state_spill::view::{ColdEntry, ColdView, StateRows};
use super::state_spill::{lru_threshold, report_spill, Cold, ColdTimerRow, Queue, StateId};
use crate::coder::Coder;
use crate::error::Result;
use crate::metrics::MetricsContainer;
use crate::window::Window;

/// The memory budget of a grouping's panes and the keys spilled past it.
#[derive(Debug)]
pub(crate) struct PaneSpill {
    budget: StateBudget,
    /// Estimated bytes of the keys in memory.
    pub(crate) hot_bytes: usize,
    clock: u64,
    /// Opened at the first spill.
    cold: Option<Cold>,
    spilled: i64,
    read_back: i64,
    /// Per queue (event-time timers, processing-time timers, expiry), at most the
    /// earliest time a spilled key falls due (`i64::MAX`: none); exact again when a read
    /// finds none due.
    first_due: std::collections::BTreeMap<Queue, i64>,
    /// What keys and values are encoded with.
    pub(crate) key_coder: Coder,
    pub(crate) value_coder: Coder,
}

/// The store's row id of a key: every window of it is in one row.
fn id(kb: &[u8]) -> StateId {
    (kb.to_vec(), Window::Global)
}

impl PaneSpill {
    /// Spills past `budget`, with `hot_bytes` of keys in memory already; keys and values
    /// are encoded with `key_coder` and `value_coder`.
    pub(crate) fn new(
        budget: StateBudget,
        hot_bytes: usize,
        key_coder: Coder,
        value_coder: Coder,
    ) -> Self {
        PaneSpill {
            budget,
            hot_bytes,
            clock: 0,
            cold: None,
            spilled: 0,
            read_back: 0,
            first_due: Default::default(),
            key_coder,
            value_coder,
        }
    }

    /// A new use stamp (later uses have larger ones).
    pub(crate) fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Bytes to spill now (down to 70% of the budget, so one write carries many keys),
    /// or 0 while the keys in memory fit the budget.
    pub(crate) fn to_free(&self) -> usize {
        if self.hot_bytes <= self.budget.bytes {
            return 0;
        }
        self.hot_bytes.saturating_sub(self.budget.bytes / 10 * 7)
    }

    /// The keys in memory take a quarter more than the budget, or 64 KiB more for a
    /// small one.
    pub(crate) fn well_over(&self) -> bool {
        let margin = (self.budget.bytes / 4).max(64 << 10);
        self.hot_bytes > self.budget.bytes.saturating_add(margin)
    }

    /// The stamp at or below which the keys to spill are, from a `sample` of the keys in
    /// memory (stamp, bytes).
    pub(crate) fn threshold(&self, sample: impl Iterator<Item = (u64, usize)>) -> u64 {
        lru_threshold(sample, self.to_free(), self.hot_bytes)
    }

    /// Writes the `rows` of keys taken out of memory (each with the times it falls due;
    /// `bytes`: their estimated size).
    ///
    /// # Errors
    /// The store cannot be created or written.
    pub(crate) fn put(
        &mut self,
        rows: Vec<(Vec<u8>, Vec<u8>, Vec<ColdTimerRow>)>,
        bytes: usize,
        name: &str,
    ) -> Result<()> {
        self.hot_bytes = self.hot_bytes.saturating_sub(bytes);
        self.spilled += rows.len() as i64;
        for (_, _, due) in &rows {
            for &(q, t, _) in due {
                let first = self.first_due.entry(q).or_insert(i64::MAX);
                *first = (*first).min(t);
            }
        }
        let cold = match &mut self.cold {
            Some(c) => c,
            None => self.cold.insert(Cold::create(
                &self.budget.dir,
                name,
                self.budget.cache_bytes(),
            )?),
        };
        cold.put(
            rows.into_iter()
                .map(|(kb, row, due)| (id(&kb), row, due))
                .collect(),
        )
    }

    /// Key `kb`'s rows (its windows, and the times `due` it falls due) are read back:
    /// the copy in memory is the live one from now on.
    pub(crate) fn forget(&mut self, kb: &[u8], due: &[ColdTimerRow]) {
        if let Some(cold) = &mut self.cold {
            cold.forget(&id(kb), due.iter().map(|(d, t, n)| (*d, *t, n.as_str())));
            self.read_back += 1;
        }
    }

    /// Up to `max` spilled keys that fall due in `queue` at or before `until`, earliest
    /// first.
    ///
    /// # Errors
    /// The store cannot be read or written.
    pub(crate) fn due_keys(
        &mut self,
        queue: Queue,
        until: i64,
        max: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let Some(first) = self.first_due.get_mut(&queue) else {
            return Ok(Vec::new());
        };
        let Some(cold) = &mut self.cold else {
            return Ok(Vec::new());
        };
        if *first > until {
            return Ok(Vec::new());
        }
        // Rows read back stay until the next write: readers skip them, so not too many.
        if cold.stale_count() > max {
            cold.flush()?;
        }
        // Nothing live is before `first`: the rows read back before it are not walked.
        let due = cold.first_timers_from(queue, *first, until, max)?;
        *first = match due.last() {
            // Every row up to the last one returned is read back now (stale), but for
            // rows at its very time beyond the batch.
            Some(t) => t.fire,
            None => cold
                .first_timer_from(queue, *first)?
                .map_or(i64::MAX, |t| t.fire),
        };
        Ok(due.into_iter().map(|t| t.id.0).collect())
    }

    /// The row of key `kb` if it is spilled, left there (read back with
    /// [`PaneSpill::forget`]).
    ///
    /// # Errors
    /// The store cannot be read.
    pub(crate) fn peek(&self, kb: &[u8]) -> Result<Option<Vec<u8>>> {
        match &self.cold {
            Some(cold) => cold.get(&id(kb)),
            None => Ok(None),
        }
    }

    /// The spilled keys as they are now (every one, or those of `only`), to be listed by
    /// a checkpoint's writer as entries made by `entry` (the key's bytes are the state
    /// id's); `None` when nothing was spilled.
    ///
    /// # Errors
    /// The store cannot be read.
    pub(crate) fn view(
        &self,
        entry: ColdEntry,
        only: Option<StateRows>,
    ) -> Result<Option<ColdView>> {
        self.cold
            .as_ref()
            .map(|cold| cold.view(entry, only))
            .transpose()
    }

    /// Whether key `kb` may have been spilled (false: certainly not).
    pub(crate) fn may_hold(&self, kb: &[u8]) -> bool {
        self.cold.as_ref().is_some_and(|c| c.may_hold(&id(kb)))
    }

    /// Adds key `kb` to `rows` (for [`PaneSpill::view`]).
    pub(crate) fn add_key(rows: &mut StateRows, kb: &[u8]) {
        rows.push(&id(kb));
    }

    /// Reports how many keys were spilled and read back, and the bytes written.
    pub(crate) fn report(&mut self, metrics: &mut MetricsContainer) {
        let written = self
            .cold
            .as_mut()
            .map_or(0, |c| std::mem::take(&mut c.written));
        let (spilled, read_back) = (
            std::mem::take(&mut self.spilled),
            std::mem::take(&mut self.read_back),
        );
        report_spill(metrics, spilled, read_back, written);
    }
}
