//! A stateful ParDo's states per key and window with their timers: in memory, and beyond
//! a memory budget in a spill store on disk ([`super::state_spill`]), read back when used.
//!
//! A state and its timers are always together, in memory or spilled. Past the budget the
//! least recently used states are spilled (an approximate LRU: the oldest by a sample of
//! use stamps), down to 70% of it, so a spill is one write transaction for many states.

use super::op::{StateBudget, END_OF_TIME};
use super::pardo_codec::{decode_cells, encode_cells, state_key, Timers};
use super::state_spill::view::{ColdEntry, StateRows};
use super::state_spill::{lru_threshold, report_spill, Cold, ColdTimerRow, StateId};
use crate::checkpoint::StateOut;
use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::metrics::MetricsContainer;
use crate::state::{StateCell, StateKind, TimeDomain};
use crate::value::Value;
use crate::window::Window;
use rustc_hash::{FxHashMap, FxHashSet};
#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Timers in firing order: time, key, window, name.
type TimerIndex = BTreeSet<(i64, Vec<u8>, Window, String)>;

/// The state of one key and window.
pub(crate) struct KeyWindow {
    /// The key (`Null` until an element brings it, when the runner keeps the state).
    pub(crate) key: Value,
    /// Cells in declaration order.
    pub(crate) cells: Vec<StateCell>,
    /// Pending timers: name to (domain, fire time, output time).
    pub(crate) timers: Timers,
    /// When it was last used (a counter), for choosing what to spill.
    stamp: u64,
    /// Its estimated size in memory.
    bytes: usize,
}

/// What the states are of: declarations, key coder, and the transform (for errors).
pub(crate) struct Layout {
    pub(crate) decls: Vec<(String, StateKind)>,
    pub(crate) key_coder: Coder,
    pub(crate) name: String,
}

impl Layout {
    pub(crate) fn decode_key(&self, kb: &[u8]) -> Result<Value> {
        self.key_coder
            .decode(&mut &kb[..], false)
            .map_err(|source| EngineError::Coder {
                transform: self.name.clone(),
                source,
            })
    }
}

/// The memory budget and the spilled states.
struct Spill {
    budget: StateBudget,
    /// Estimated bytes of the states in memory.
    hot_bytes: usize,
    clock: u64,
    /// Opened at the first spill.
    cold: Option<Cold>,
    /// Earliest spilled timer per domain ([`END_OF_TIME`]: none), or less: reading
    /// states back may have taken it (see [`KeyedStates::refresh`]).
    cold_first: [i64; 2],
    /// `cold_first` may be less than the earliest spilled timer.
    cold_first_low: bool,
    spilled: i64,
    read_back: i64,
    /// Bytes written to spill stores since the last report.
    written: u64,
}

/// The states of a stateful ParDo, by key and window.
#[derive(Default)]
pub(crate) struct KeyedStates {
    hot: FxHashMap<StateId, KeyWindow>,
    /// How many states (in memory or spilled) each window has: expiry looks for a
    /// window's states only once it is due.
    windows: FxHashMap<Window, usize>,
    event: TimerIndex,
    processing: TimerIndex,
    /// States changed since the last checkpoint; `None` until checkpoints start.
    dirty: Option<FxHashSet<StateId>>,
    spill: Option<Spill>,
}

fn slot(d: TimeDomain) -> usize {
    match d {
        TimeDomain::Watermark => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

impl KeyedStates {
    /// Keeps at most about `budget.bytes` of states in memory, spilling the rest.
    pub(crate) fn limit(&mut self, budget: StateBudget) {
        self.spill = Some(Spill {
            budget,
            hot_bytes: self.hot.iter().map(|(id, e)| estimate(id, e)).sum(),
            clock: 0,
            cold: None,
            cold_first: [END_OF_TIME; 2],
            cold_first_low: false,
            spilled: 0,
            read_back: 0,
            written: 0,
        });
    }

    /// Records changes from now on, for incremental checkpoints.
    pub(crate) fn track_changes(&mut self) {
        self.dirty = Some(FxHashSet::default());
    }

    fn index(&mut self, d: TimeDomain) -> &mut TimerIndex {
        match d {
            TimeDomain::Watermark => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Puts a state into memory, its timers into the index.
    fn insert_hot(&mut self, id: StateId, key: Value, cells: Vec<StateCell>, timers: Timers) {
        for (name, &(d, fire, _)) in &timers {
            self.index(d)
                .insert((fire, id.0.clone(), id.1, name.clone()));
        }
        let mut e = KeyWindow {
            key,
            cells,
            timers,
            stamp: 0,
            bytes: 0,
        };
        if let Some(s) = &mut self.spill {
            // Newly in memory counts as used: what a due timer brings back must not be
            // the first to go again.
            s.clock += 1;
            e.stamp = s.clock;
            e.bytes = estimate(&id, &e);
            s.hot_bytes += e.bytes;
        }
        self.hot.insert(id, e);
    }

    /// Reads `id` back into memory if it is spilled; whether it is in memory now.
    fn read_back(&mut self, id: &StateId, lay: &Layout) -> Result<bool> {
        if self.hot.contains_key(id) {
            return Ok(true);
        }
        let Some(s) = &mut self.spill else {
            return Ok(false);
        };
        let Some(cold) = &mut s.cold else {
            return Ok(false);
        };
        let Some(bytes) = cold.get(id)? else {
            return Ok(false);
        };
        let (cells, timers) = decode_cells(&lay.decls, &bytes, &lay.name)?;
        cold.forget(
            id,
            timers
                .iter()
                .map(|(n, &(d, fire, _))| (d, fire, n.as_str())),
        );
        s.read_back += 1;
        // Its timers were spilled: the earliest spilled one may have been among them. The
        // bound stays (low) until a refresh, which reads once for many states read back.
        s.cold_first_low |= timers
            .values()
            .any(|&(d, fire, _)| fire <= s.cold_first[slot(d)]);
        let key = lay.decode_key(&id.0)?;
        self.insert_hot(id.clone(), key, cells, timers);
        Ok(true)
    }

    /// The state of `id` in memory: as it is, read back, or new from `fresh` (key, cells).
    ///
    /// # Errors
    /// The spill store cannot be read; what `fresh` returns.
    pub(crate) fn entry(
        &mut self,
        id: &StateId,
        lay: &Layout,
        fresh: impl FnOnce() -> Result<(Value, Vec<StateCell>)>,
    ) -> Result<&mut KeyWindow> {
        if let Some(d) = &mut self.dirty {
            if !d.contains(id) {
                d.insert(id.clone());
            }
        }
        if !self.read_back(id, lay)? {
            *self.windows.entry(id.1).or_insert(0) += 1;
            let (key, cells) = fresh()?;
            self.insert_hot(id.clone(), key, cells, Timers::default());
        }
        let e = self.hot.get_mut(id).expect("in memory");
        if let Some(s) = &mut self.spill {
            s.clock += 1;
            e.stamp = s.clock;
        }
        Ok(e)
    }

    /// Sets (`Some((domain, fire, output))`) or clears timer `name` of `id`, in memory.
    pub(crate) fn set_timer(
        &mut self,
        id: &StateId,
        name: String,
        to: Option<(TimeDomain, i64, i64)>,
    ) {
        let Some(e) = self.hot.get_mut(id) else {
            return;
        };
        let old = e.timers.remove(&name);
        if let Some(t) = to {
            e.timers.insert(name.clone(), t);
        }
        if let Some((d, fire, _)) = old {
            self.index(d)
                .remove(&(fire, id.0.clone(), id.1, name.clone()));
        }
        if let Some((d, fire, _)) = to {
            self.index(d).insert((fire, id.0.clone(), id.1, name));
        }
    }

    /// `id` was used: its size is estimated again, and states are spilled past the budget.
    ///
    /// # Errors
    /// The spill store cannot be written; a state that does not fit its declarations.
    pub(crate) fn used(&mut self, id: &StateId, lay: &Layout) -> Result<()> {
        let Some(s) = &mut self.spill else {
            return Ok(());
        };
        if let Some(e) = self.hot.get_mut(id) {
            let bytes = estimate(id, e);
            s.hot_bytes = s.hot_bytes + bytes - e.bytes;
            e.bytes = bytes;
        }
        if s.hot_bytes > s.budget.bytes {
            self.spill_some(lay)?;
        }
        Ok(())
    }

    /// Spills the least recently used states until those in memory are 70% of the budget.
    fn spill_some(&mut self, lay: &Layout) -> Result<()> {
        let s = self.spill.as_mut().expect("a budget");
        let target = s.budget.bytes / 10 * 7;
        let to_free = s.hot_bytes.saturating_sub(target);
        let sample = self.hot.values().take(1024).map(|e| (e.stamp, e.bytes));
        let threshold = lru_threshold(sample, to_free, s.hot_bytes);
        let mut freed = 0;
        let victims: Vec<(StateId, KeyWindow)> = self
            .hot
            .extract_if(|_, e| {
                if freed >= to_free || e.stamp > threshold {
                    return false;
                }
                freed += e.bytes;
                true
            })
            .collect();
        s.hot_bytes -= freed;
        s.spilled += victims.len() as i64;
        let mut rows = Vec::with_capacity(victims.len());
        for (id, e) in victims {
            let bytes = encode_cells(&lay.decls, &e.cells, &e.timers, &lay.name)?;
            let mut timers: Vec<ColdTimerRow> = Vec::with_capacity(e.timers.len());
            for (name, (d, fire, _)) in e.timers {
                let index = match d {
                    TimeDomain::Watermark => &mut self.event,
                    TimeDomain::ProcessingTime => &mut self.processing,
                };
                index.remove(&(fire, id.0.clone(), id.1, name.clone()));
                s.cold_first[slot(d)] = s.cold_first[slot(d)].min(fire);
                timers.push((d.into(), fire, name));
            }
            rows.push((id, bytes, timers));
        }
        let cold = match &mut s.cold {
            Some(c) => c,
            None => s.cold.insert(Cold::create(
                &s.budget.dir,
                &lay.name,
                s.budget.cache_bytes(),
            )?),
        };
        cold.put(rows)
    }

    /// Removes the due timer of `domain` that fires first, at or before `until`: the
    /// state it belongs to (read back into memory), its name and output time.
    ///
    /// # Errors
    /// The spill store cannot be read.
    pub(crate) fn pop_timer(
        &mut self,
        domain: TimeDomain,
        until: i64,
        lay: &Layout,
    ) -> Result<Option<(StateId, String, i64)>> {
        loop {
            let hot_first = self.index(domain).first().map_or(END_OF_TIME, |t| t.0);
            let cold_first = self
                .spill
                .as_ref()
                .map_or(END_OF_TIME, |s| s.cold_first[slot(domain)]);
            if cold_first < hot_first && cold_first <= until {
                // Bring the states of the earliest due timers back (with all their
                // timers), then take them from memory; a batch, so that the rows read
                // back (stale until the next write) are skipped once, not per timer.
                let s = self.spill.as_mut().expect("spilled timers");
                let cold = s.cold.as_mut().expect("spilled timers");
                if cold.stale_count() > READ_BACK_BATCH {
                    cold.flush()?;
                }
                let due = cold.first_timers(domain, until.min(hot_first), READ_BACK_BATCH)?;
                match due.first() {
                    None => {
                        s.cold_first[slot(domain)] =
                            cold.first_timer(domain)?.map_or(END_OF_TIME, |t| t.fire);
                        s.cold_first_low = true;
                    }
                    Some(t) if t.fire > cold_first => s.cold_first[slot(domain)] = t.fire,
                    Some(_) => {}
                }
                for t in &due {
                    self.read_back(&t.id, lay)?;
                }
                continue;
            }
            let index = self.index(domain);
            let Some(first) = index.first().cloned() else {
                return Ok(None);
            };
            if first.0 > until {
                return Ok(None);
            }
            index.remove(&first);
            let (_, kb, window, name) = first;
            let id = (kb, window);
            let Some(e) = self.hot.get_mut(&id) else {
                continue;
            };
            let Some((_, _, output)) = e.timers.remove(&name) else {
                continue;
            };
            if let Some(d) = &mut self.dirty {
                d.insert(id.clone());
            }
            return Ok(Some((id, name, output)));
        }
    }

    /// Makes the earliest spilled timers exact again after states were read back: one
    /// write (deleting the stale rows) and one read per domain. Called at the end of
    /// bundles and of watermark and processing-time advances.
    ///
    /// # Errors
    /// The spill store cannot be read or written.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let Some(s) = &mut self.spill else {
            return Ok(());
        };
        let Some(cold) = &mut s.cold else {
            return Ok(());
        };
        if s.cold_first_low {
            cold.flush()?;
            for d in [TimeDomain::Watermark, TimeDomain::ProcessingTime] {
                s.cold_first[slot(d)] = cold.first_timer(d)?.map_or(END_OF_TIME, |t| t.fire);
            }
            s.cold_first_low = false;
        }
        Ok(())
    }

    /// The earliest event-time timer, in memory or spilled ([`END_OF_TIME`]: none), or
    /// less until a [`KeyedStates::refresh`].
    pub(crate) fn first_event_timer(&self) -> i64 {
        let hot = self.event.first().map_or(END_OF_TIME, |t| t.0);
        let cold = self.spill.as_ref().map_or(END_OF_TIME, |s| s.cold_first[0]);
        hot.min(cold)
    }

    /// Up to `max` states of windows that are `due`, in memory or spilled.
    ///
    /// # Errors
    /// The spill store cannot be read or written.
    pub(crate) fn due(
        &mut self,
        due: impl Fn(&Window) -> bool,
        max: usize,
    ) -> Result<Vec<StateId>> {
        if !self.windows.keys().any(&due) {
            return Ok(Vec::new());
        }
        let mut ids: Vec<StateId> = self
            .hot
            .keys()
            .filter(|(_, w)| due(w))
            .take(max)
            .cloned()
            .collect();
        if let (true, Some(cold)) = (
            ids.is_empty(),
            self.spill.as_mut().and_then(|s| s.cold.as_mut()),
        ) {
            // Stale rows deleted first, so each call reads only live ones.
            cold.flush()?;
            for w in self.windows.keys().filter(|w| due(w)) {
                ids.extend(cold.ids_in(w, max - ids.len())?);
                if ids.len() >= max {
                    break;
                }
            }
        }
        if ids.is_empty() {
            // No state left in those windows (the counts say otherwise only for windows
            // whose states were all removed): forget them.
            self.windows.retain(|w, _| !due(w));
        }
        Ok(ids)
    }

    /// Drops every state at once when every window is `due` (the caller knows nothing
    /// needs to see them go: no expiry callback): the end of a job does not read every
    /// spilled state back to delete it. With checkpoints the next one then replaces the
    /// operator's saved states (see [`KeyedStates::needs_whole_snapshot`]) instead of
    /// listing every removal. Whether it did.
    pub(crate) fn drop_all_if_due(&mut self, due: impl Fn(&Window) -> bool) -> bool {
        if self.windows.is_empty() || !self.windows.keys().all(due) {
            return false;
        }
        if self.dirty.is_some() {
            self.dirty = None;
        }
        self.hot.clear();
        self.windows.clear();
        self.event.clear();
        self.processing.clear();
        if let Some(s) = &mut self.spill {
            s.hot_bytes = 0;
            s.cold_first = [END_OF_TIME; 2];
            s.cold_first_low = false;
            if let Some(c) = s.cold.take() {
                s.written += c.written;
            }
        }
        true
    }

    /// Removes the state of `id` and its timers, wherever it is.
    ///
    /// # Errors
    /// The spill store cannot be read.
    pub(crate) fn remove(&mut self, id: &StateId, lay: &Layout) -> Result<()> {
        if let Some(d) = &mut self.dirty {
            d.insert(id.clone());
        }
        if !self.read_back(id, lay)? {
            return Ok(());
        }
        let e = self.hot.remove(id).expect("in memory");
        if let Some(n) = self.windows.get_mut(&id.1) {
            *n -= 1;
            if *n == 0 {
                self.windows.remove(&id.1);
            }
        }
        if let Some(s) = &mut self.spill {
            s.hot_bytes -= e.bytes;
        }
        for (name, (d, fire, _)) in e.timers {
            self.index(d).remove(&(fire, id.0.clone(), id.1, name));
        }
        Ok(())
    }

    /// Every state in memory, taken out (a runner's state service keeps them between
    /// bundles).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (StateId, KeyWindow)> + '_ {
        self.windows.clear();
        self.hot.drain()
    }

    /// The next snapshot must save every state (changes since the last one were not
    /// tracked): the operator's part of the checkpoint replaces its earlier ones.
    pub(crate) fn needs_whole_snapshot(&self) -> bool {
        self.dirty.is_none()
    }

    /// Saves the states for a checkpoint: all when `out.full()` or changes were not
    /// tracked (then `out` must replace the operator's state), else those changed.
    ///
    /// # Errors
    /// A state that cannot be encoded; the spill store cannot be read.
    pub(crate) fn snapshot(&mut self, out: &mut StateOut, lay: &Layout) -> Result<()> {
        let cold = self.spill.as_ref().and_then(|s| s.cold.as_ref());
        // Spilled states are listed by the checkpoint's writer, from a view of the store
        // as it is now: the pipeline does not wait for them to be read.
        match self.dirty.take() {
            Some(changed) if !out.full() => {
                let mut spilled = StateRows::default();
                for id in changed {
                    if let Some(e) = self.hot.get(&id) {
                        out.put(
                            &state_key(&id.0, &id.1),
                            encode_cells(&lay.decls, &e.cells, &e.timers, &lay.name)?,
                        );
                    } else if cold.is_some_and(|c| c.may_hold(&id)) {
                        spilled.push(&id);
                    } else {
                        out.delete(&state_key(&id.0, &id.1));
                    }
                }
                if let (Some(cold), false) = (cold, spilled.is_empty()) {
                    out.put_later(Arc::new(cold.view(STATE_ENTRY, Some(spilled))?));
                }
            }
            _ => {
                for (id, e) in &self.hot {
                    out.put(
                        &state_key(&id.0, &id.1),
                        encode_cells(&lay.decls, &e.cells, &e.timers, &lay.name)?,
                    );
                }
                if let Some(cold) = cold {
                    out.put_later(Arc::new(cold.view(STATE_ENTRY, None)?));
                }
            }
        }
        self.dirty = Some(FxHashSet::default());
        Ok(())
    }

    /// Adds a state read from a checkpoint (before any element arrives).
    ///
    /// # Errors
    /// The spill store cannot be written.
    pub(crate) fn restore(
        &mut self,
        id: StateId,
        key: Value,
        cells: Vec<StateCell>,
        timers: Timers,
        lay: &Layout,
    ) -> Result<()> {
        *self.windows.entry(id.1).or_insert(0) += 1;
        self.insert_hot(id, key, cells, timers);
        if let Some(s) = &self.spill {
            if s.hot_bytes > s.budget.bytes {
                self.spill_some(lay)?;
            }
        }
        Ok(())
    }

    /// Reports how many states were spilled and read back, and the bytes written.
    pub(crate) fn report(&mut self, metrics: &mut MetricsContainer) {
        if let Some(s) = &mut self.spill {
            let written = std::mem::take(&mut s.written)
                + s.cold
                    .as_mut()
                    .map_or(0, |c| std::mem::take(&mut c.written));
            let (spilled, read_back) = (
                std::mem::take(&mut s.spilled),
                std::mem::take(&mut s.read_back),
            );
            report_spill(metrics, spilled, read_back, written);
        }
    }
}

/// Estimated bytes of state `id` in memory (see [`super::state_size`]).
fn estimate(id: &StateId, e: &KeyWindow) -> usize {
    super::state_size::estimate(
        std::mem::size_of::<(StateId, KeyWindow)>(),
        id,
        &e.key,
        &e.cells,
        e.timers.keys(),
    )
}

/// A spilled state's checkpoint entry: keyed as one in memory, its row as it is.
const STATE_ENTRY: ColdEntry = ColdEntry {
    key: |id| state_key(&id.0, &id.1),
    value: |row, _| Ok(row.to_vec()),
};

/// Most states a due spilled timer brings back at once.
const READ_BACK_BATCH: usize = 256;

#[cfg(test)]
mod tests;
