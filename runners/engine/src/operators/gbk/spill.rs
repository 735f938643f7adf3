//! A grouping's memory budget: spilling its least recently used keys and reading them
//! back when an element, a timer or a window's expiry needs them.

use super::{domain_slot, end_of, time_domain, KeyState, Panes, READ_BACK_BATCH};
use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::operators::key_table::KeyBytes;
use crate::operators::op::StateBudget;
use crate::operators::pane::Windows;
use crate::operators::pane_codec::{decode_spilled, encode_spilled};
use crate::operators::pane_spill::PaneSpill;
use crate::operators::state_spill::{ColdTimerRow, Queue};
use crate::trigger::Domain;

/// Memory budget: spilling keys and reading them back.
impl Panes {
    /// Keeps the panes within `budget`, spilling what does not fit; keys are encoded
    /// with `key_coder`, values with `value_coder`.
    pub(super) fn limit(&mut self, budget: StateBudget, key_coder: Coder, value_coder: Coder) {
        let mut hot = 0;
        let mut used = Vec::new();
        for (kb, _) in self.keys.iter() {
            used.push(kb.clone());
        }
        for kb in &used {
            if let Some(ks) = self.keys.get_mut(kb) {
                ks.bytes = ks.estimate(kb);
                hot += ks.bytes;
            }
        }
        self.spill = Some(PaneSpill::new(budget, hot, key_coder, value_coder));
    }

    /// Reads key `kb` back into memory if it is spilled.
    ///
    /// # Errors
    /// The spill store cannot be read, or holds a row it did not write.
    pub(super) fn load(&mut self, kb: &KeyBytes, name: &str) -> Result<()> {
        let Some(sp) = &mut self.spill else {
            return Ok(());
        };
        if self.keys.get(kb).is_some() {
            return Ok(());
        }
        let Some(row) = sp.peek(kb.bytes())? else {
            return Ok(());
        };
        let windows = decode_spilled(
            &row,
            &self.windowing.trigger,
            self.combine.as_deref(),
            self.lifted,
            &sp.value_coder,
            name,
        )?;
        let key = sp
            .key_coder
            .decode(&mut kb.bytes(), false)
            .map_err(|source| EngineError::Coder {
                transform: name.to_string(),
                source,
            })?;
        let mut all = Windows::default();
        for (w, ws) in windows {
            all.insert(w, ws);
        }
        // Its times go back to the indexes in memory.
        let due = Panes::due_rows(&all, self.windowing.allowed_lateness);
        sp.forget(kb.bytes(), &due);
        for (w, ws) in all.iter() {
            for t in &ws.trig.indexed {
                self.timers[domain_slot(t.domain)].push(t.timestamp, kb.clone(), *w);
            }
            let exp = end_of(w).saturating_add(self.windowing.allowed_lateness);
            self.expiry.push(exp, kb.clone(), *w);
        }
        let mut ks = KeyState::new(key, all);
        ks.stamp = sp.tick();
        ks.bytes = ks.estimate(kb);
        sp.hot_bytes += ks.bytes;
        self.keys.get_or_insert_with(kb, || ks);
        Ok(())
    }

    /// Spills when the keys read back have taken the panes well past their budget (a
    /// quarter over it: each spill is a write, so not one per key).
    ///
    /// # Errors
    /// As [`Panes::keep_to_budget`].
    #[inline]
    pub(super) fn spill_if_over(&mut self, name: &str) -> Result<()> {
        match &self.spill {
            Some(sp) if sp.well_over() => self.keep_to_budget(name),
            _ => Ok(()),
        }
    }

    /// Estimates the keys used since the last call again and, past the budget, spills
    /// the least recently used ones (between bundles: nothing is staged or touched).
    ///
    /// # Errors
    /// The spill store cannot be written; a pane that cannot be encoded.
    pub(super) fn keep_to_budget(&mut self, name: &str) -> Result<()> {
        let Some(sp) = &mut self.spill else {
            return Ok(());
        };
        for kb in self.used.drain(..) {
            if let Some(ks) = self.keys.get_mut(&kb) {
                let bytes = ks.estimate(&kb);
                sp.hot_bytes = sp.hot_bytes + bytes - ks.bytes;
                ks.bytes = bytes;
                ks.stamp = sp.tick();
            }
        }
        let to_free = sp.to_free();
        if to_free == 0 {
            return Ok(());
        }
        let threshold = sp.threshold(self.keys.iter().take(1024).map(|(_, k)| (k.stamp, k.bytes)));
        let mut freed = 0;
        let victims = self.keys.extract_if(|_, ks| {
            if freed >= to_free || ks.stamp > threshold || !ks.staged.is_empty() {
                return false;
            }
            freed += ks.bytes;
            true
        });
        // A table mostly empty costs its capacity on every walk (the sample above).
        self.keys.shrink_if_sparse();
        let combine = self.combine.as_deref();
        let lateness = self.windowing.allowed_lateness;
        let mut rows = Vec::with_capacity(victims.len());
        for (kb, ks) in victims {
            let row = encode_spilled(&ks.windows, &sp.value_coder, combine, name)?;
            let due = Panes::due_rows(&ks.windows, lateness);
            // Their times move to the store with them.
            for (w, ws) in ks.windows.iter() {
                for t in &ws.trig.indexed {
                    self.timers[domain_slot(t.domain)].moved_out(t.timestamp);
                }
                self.expiry.moved_out(end_of(w).saturating_add(lateness));
            }
            rows.push((kb.bytes().to_vec(), row, due));
        }
        let keys = &self.keys;
        for index in self.timers.iter_mut().chain([&mut self.expiry]) {
            index.compact(|kb| keys.get(kb).is_some());
        }
        let sp = self.spill.as_mut().expect("spilling");
        sp.put(rows, freed, name)
    }

    /// The times a key with `windows` falls due: its indexed trigger timers, and each
    /// window's expiry (`lateness` after its end; an event-time row of its own).
    pub(super) fn due_rows(windows: &Windows, lateness: i64) -> Vec<ColdTimerRow> {
        let mut rows = Vec::new();
        for (w, ws) in windows.iter() {
            for t in &ws.trig.indexed {
                rows.push((time_domain(t.domain).into(), t.timestamp, "t".to_string()));
            }
            // A pending event-time timer keeps a window past its expiry (see
            // `Panes::expire`): the key comes back for that once the timer has fired.
            let last_timer = ws
                .trig
                .timers
                .iter()
                .filter(|t| t.domain == Domain::Watermark)
                .map(|t| t.timestamp)
                .max();
            let exp = end_of(w)
                .saturating_add(lateness)
                .max(last_timer.unwrap_or(i64::MIN));
            rows.push((Queue::EXPIRY, exp, "x".to_string()));
        }
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// Reads back a batch of the spilled keys that fall due in `queue` at or before
    /// `until`; whether there were any.
    ///
    /// # Errors
    /// The spill store cannot be read.
    pub(super) fn read_back_due(&mut self, queue: Queue, until: i64, name: &str) -> Result<bool> {
        let Some(sp) = &mut self.spill else {
            return Ok(false);
        };
        let keys = sp.due_keys(queue, until, READ_BACK_BATCH)?;
        if keys.is_empty() {
            return Ok(false);
        }
        let mut any = false;
        for kb in keys {
            let kb = KeyBytes::new(&kb);
            if self.keys.get(&kb).is_none() {
                self.load(&kb, name)?;
                any = true;
            }
            // No more than fits: keys read back past the budget would be spilled again
            // before their turn comes.
            if any && self.spill.as_ref().is_some_and(PaneSpill::well_over) {
                break;
            }
        }
        if !any {
            return Err(EngineError::Checkpoint(format!(
                "'{name}': the spill store lists due keys it cannot read back"
            )));
        }
        Ok(true)
    }
}
