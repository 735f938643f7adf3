//! A grouping's merging windows (sessions): a key's windows merged with new ones, their
//! panes, holds and timers moved into the window they merge into.

use super::{end_of, merged_hold, remove_hold, set_hold, Panes};
use crate::error::{EngineError, Result};
use crate::operators::guard::panics_guarded;
use crate::operators::key_table::KeyBytes;
use crate::operators::pane::{Contents, WinState};
use crate::window::{merge_intervals, Window};
use rustc_hash::FxHashMap;

/// Merging windows.
impl Panes {
    /// Maps the windows of key `kb`'s staged elements to their merged windows.
    pub(super) fn merge_staged(&mut self, kb: &KeyBytes, name: &str) -> Result<()> {
        let Some(ks) = self.keys.get(kb) else {
            return Ok(());
        };
        let mut new: Vec<Window> = Vec::new();
        for (_, _, w) in &ks.staged {
            if !new.contains(w) {
                new.push(*w);
            }
        }
        let mapping = self.merge_windows(kb, &new, name)?;
        if let Some(ks) = self.keys.get_mut(kb) {
            for (_, _, w) in &mut ks.staged {
                *w = mapping.get(w).copied().unwrap_or(*w);
            }
        }
        Ok(())
    }

    /// Merges the session windows of one key with the new windows; returns the mapping.
    fn merge_windows(
        &mut self,
        kb: &KeyBytes,
        new: &[Window],
        name: &str,
    ) -> Result<FxHashMap<Window, Window>> {
        self.touch(kb);
        let combine = self.combine.as_deref();
        let ks = self.keys.get_mut(kb).expect("key exists");
        let mut all: Vec<Window> = ks.windows.windows().collect();
        for w in new {
            if !all.contains(w) {
                all.push(*w);
            }
        }
        let merged = merge_intervals(&all);
        let mapping: FxHashMap<Window, Window> = all.iter().copied().zip(merged).collect();
        // Fold the state of windows merged away into their result.
        let mut moved: Vec<(Window, WinState)> = Vec::new();
        for (from, to) in &mapping {
            if from != to {
                if let Some(ws) = ks.windows.remove(from) {
                    moved.push((*to, ws));
                }
            }
        }
        let tc = self.windowing.timestamp_combiner;
        for (to, mut ws) in moved {
            // Timers of merged-away windows are cleared (on_merge); the next element resets them.
            // Their index entries name the old window: the new one indexes afresh.
            ws.trig.timers.clear();
            ws.trig.indexed.clear();
            // The hold a window has registered: its hold when the bundle started, while it
            // is being added to (the bundle's end registers the new one).
            let registered = ws.bundle_hold.unwrap_or(ws.hold);
            match ks.windows.get_mut(&to) {
                Some(target) => {
                    let contents =
                        std::mem::replace(&mut ws.contents, Contents::Values(Vec::new()));
                    panics_guarded(name, || {
                        target
                            .absorb(contents, combine)
                            .map_err(|e| EngineError::user(name, e))
                    })?;
                    if let Some(h) = registered {
                        remove_hold(&mut self.holds, h);
                    }
                    let merged = merged_hold(tc, &to, target.hold, ws.hold);
                    set_hold(&mut self.holds, target, merged);
                    target.trig.timers.clear();
                }
                None => {
                    ws.index = 0;
                    ws.nonspeculative = 0;
                    // The merged window's output timestamp, not the old window's end.
                    let merged = merged_hold(tc, &to, None, ws.hold);
                    set_hold(&mut self.holds, &mut ws, merged);
                    if ws.bundle_hold.is_some() {
                        // Its hold is registered when the bundle ends, under its new window.
                        self.touched.push((kb.clone(), to));
                    }
                    ks.windows.insert(to, ws);
                    let exp = end_of(&to).saturating_add(self.windowing.allowed_lateness);
                    self.expiry.push(exp, kb.clone(), to);
                }
            }
        }
        Ok(mapping)
    }
}
