//! A grouping's part in checkpoints: its keys' panes saved (all of them, or those changed
//! since the last checkpoint; spilled keys listed by the checkpoint's writer) and taken
//! back.

use super::{add_hold, end_of, GbkOp, KeyState};
use crate::checkpoint::{NodeState, StateOut};
use crate::error::{EngineError, Result};
use crate::operators::key_table::KeyBytes;
use crate::operators::pane::Windows;
use crate::operators::pane_codec::{decode_windows, encode_windows, spilled_windows};
use crate::operators::pane_spill::PaneSpill;
use crate::operators::state_spill::view::{ColdEntry, StateRows};
use std::sync::Arc;

/// A spilled key's checkpoint entry: the key's bytes, the windows of its row (as a key's
/// in memory is saved).
const PANE_ENTRY: ColdEntry = ColdEntry {
    key: |id| id.0.clone(),
    value: |row, name| Ok(spilled_windows(row, name)?.to_vec()),
};

impl GbkOp {
    /// Saves every key's panes for a checkpoint (all, or those changed since the last):
    /// one entry per key, its encoding, then every window of it.
    pub(super) fn save(&mut self, out: &mut StateOut, name: &str) -> Result<()> {
        let coder = GbkOp::value_coder(&self.value_coder, name)?;
        let panes = &mut self.panes;
        let combine = panes.combine.as_deref();
        // Spilled keys are listed by the checkpoint's writer, from a view of the store as
        // it is now: the pipeline does not wait for them to be read.
        match panes.dirty.take() {
            Some(mut dirty) if !out.full() => {
                let mut spilled = StateRows::default();
                for kb in dirty.drain() {
                    match (panes.keys.get(&kb), &panes.spill) {
                        (Some(ks), _) => out.put(
                            kb.bytes(),
                            encode_windows(&ks.windows, coder, combine, name)?,
                        ),
                        (None, Some(sp)) if sp.may_hold(kb.bytes()) => {
                            PaneSpill::add_key(&mut spilled, kb.bytes());
                        }
                        (None, _) => out.delete(kb.bytes()),
                    }
                }
                if let (Some(sp), false) = (&panes.spill, spilled.is_empty()) {
                    if let Some(view) = sp.view(PANE_ENTRY, Some(spilled))? {
                        out.put_later(Arc::new(view));
                    }
                }
                panes.dirty = Some(dirty);
            }
            _ => {
                for (kb, ks) in panes.keys.iter() {
                    out.put(
                        kb.bytes(),
                        encode_windows(&ks.windows, coder, combine, name)?,
                    );
                }
                if let Some(sp) = &panes.spill {
                    if let Some(view) = sp.view(PANE_ENTRY, None)? {
                        out.put_later(Arc::new(view));
                    }
                }
                panes.dirty = Some(Default::default());
            }
        }
        Ok(())
    }

    /// Takes back the panes a checkpoint saved (before any element arrives).
    pub(super) fn take_back(&mut self, state: &NodeState, name: &str) -> Result<()> {
        let coder = GbkOp::value_coder(&self.value_coder, name)?;
        let panes = &mut self.panes;
        state.for_each(|key_bytes, value| {
            let windows = decode_windows(
                value,
                &panes.windowing.trigger,
                panes.combine.as_deref(),
                panes.lifted,
                coder,
                name,
            )?;
            let key = self
                .key_coder
                .decode(&mut &key_bytes[..], false)
                .map_err(|source| EngineError::Coder {
                    transform: name.to_string(),
                    source,
                })?;
            let kb = KeyBytes::new(key_bytes);
            let lateness = panes.windowing.allowed_lateness;
            let mut all = Windows::default();
            let mut ws_list = Vec::with_capacity(windows.len());
            for (w, ws) in windows {
                if let Some(h) = ws.hold {
                    add_hold(&mut panes.holds, h);
                }
                panes
                    .expiry
                    .push(end_of(&w).saturating_add(lateness), kb.clone(), w);
                ws_list.push(w);
                all.insert(w, ws);
            }
            panes
                .keys
                .get_or_insert_with(&kb, || KeyState::new(key, all));
            for w in ws_list {
                panes.index_timers(&kb, w);
            }
            if panes.spill.is_some() {
                panes.used.push(kb);
                // Kept to the budget as it goes: a restored state may not fit in memory.
                if panes.used.len() >= 4096 {
                    panes.keep_to_budget(name)?;
                }
            }
            Ok(())
        })?;
        panes.dirty = Some(Default::default());
        // What does not fit the budget goes to the spill store at once.
        panes.keep_to_budget(name)
    }
}
