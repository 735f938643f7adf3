//! A ParDo's timers and watermark: firing due timers, releasing what waited for side
//! inputs, and expiring windows past their allowed lateness.

use super::{Call, ParDoOp};
use crate::error::Result;
use crate::operators::op::{OpCx, END_OF_TIME};
use crate::state::TimeDomain;
use crate::window::Window;

impl ParDoOp {
    pub(super) fn fire_timers(
        &mut self,
        domain: TimeDomain,
        until: i64,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        loop {
            let Some(st) = &mut self.stateful else {
                return Ok(());
            };
            let Some(((kb, window), name, output_timestamp)) =
                st.states.pop_timer(domain, until, &st.lay)?
            else {
                return Ok(());
            };
            self.call(
                Call::Timer {
                    name: &name,
                    window,
                    output_timestamp,
                },
                Some(kb),
                cx,
            )?;
        }
    }

    /// Processes what waited for side inputs, fires event-time timers and expires windows
    /// once the input watermark is `wm`.
    pub(super) fn advance_to(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        // Main elements that waited for their side inputs.
        if !self.pushback.is_empty() {
            self.sides_changed = true;
            let waiting = std::mem::take(&mut self.pushback);
            for wv in waiting {
                if self.sides_ready(&wv.window) {
                    self.process_ready(wv, cx)?;
                } else {
                    self.pushback.push(wv);
                }
            }
        }
        self.fire_timers(TimeDomain::Watermark, wm, cx)?;
        // Expire windows past their allowed lateness: callback, then drop state and timers.
        let Some(st) = &mut self.stateful else {
            return Ok(());
        };
        let lateness = st.allowed_lateness;
        let due = |w: &Window| wm == END_OF_TIME || wm > w.max_timestamp().saturating_add(lateness);
        let on_expiry = st.spec.on_window_expiration;
        if !on_expiry && st.states.drop_all_if_due(due) {
            return Ok(());
        }
        loop {
            let st = self.stateful.as_mut().expect("stateful");
            let expired = st.states.due(due, 4096)?;
            if expired.is_empty() {
                return Ok(());
            }
            for (kb, w) in expired {
                if on_expiry {
                    self.call(Call::Expire(w), Some(kb.clone()), cx)?;
                }
                let st = self.stateful.as_mut().expect("stateful");
                st.states.remove(&(kb, w), &st.lay)?;
            }
        }
    }

    /// Makes the earliest spilled timer exact again (the operator's hold reads it).
    pub(super) fn refresh(&mut self) -> Result<()> {
        match &mut self.stateful {
            Some(st) => st.states.refresh(),
            None => Ok(()),
        }
    }
}
