//! A grouping's timers: firing panes when the watermark or processing time reaches
//! them, and expiring windows once their allowed lateness has passed.

use super::{before_first, domain_slot, end_of, remove_hold, time_domain, Panes};
use crate::error::Result;
use crate::operators::key_table::KeyBytes;
use crate::operators::op::{OpCx, END_OF_TIME};
use crate::operators::state_spill::Queue;
use crate::trigger::{self, Domain, TriggerContext};
use crate::window::Window;

/// Timers and expiry.
impl Panes {
    pub(super) fn fire_timers(
        &mut self,
        domain: Domain,
        until: i64,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        self.fire_timers_upto(domain, until, usize::MAX, cx)?;
        Ok(())
    }

    /// Fires the timers of `domain` due by `until`, stopping once output 0 holds `limit`
    /// elements; whether it fired them all.
    pub(super) fn fire_timers_upto(
        &mut self,
        domain: Domain,
        until: i64,
        limit: usize,
        cx: &mut OpCx<'_>,
    ) -> Result<bool> {
        let slot = domain_slot(domain);
        loop {
            // Spilled keys due before the first time in memory come back first (in
            // batches), so that timers fire in time order in memory or not.
            let before = before_first(self.timers[slot].first_time(), until);
            if self.read_back_due(time_domain(domain).into(), before, cx.name)? {
                continue;
            }
            let Some((ts, mut due)) = self.timers[slot].pop_due(|t| t <= until) else {
                break;
            };
            let mut entries = due.drain(..);
            while let Some((kb, w)) = entries.next() {
                self.fire_timer(domain, ts, &kb, w, cx)?;
                if self.spill.is_some() {
                    // Many windows may fall due at once (every key's, at a window's end):
                    // one that expires in this advance too goes now, while it is in
                    // memory, and what they read back must not pile up until the end.
                    let lateness = self.windowing.allowed_lateness;
                    let expires = end_of(&w).saturating_add(lateness);
                    if domain == Domain::Watermark && (until == END_OF_TIME || expires < until) {
                        self.expire(&kb, w, cx)?;
                    }
                    self.spill_if_over(cx.name)?;
                }
                if cx.out[0].len() >= limit {
                    // The rest of this time's entries wait for the next step.
                    for (kb, w) in entries {
                        self.timers[slot].push(ts, kb, w);
                    }
                    return Ok(false);
                }
            }
            drop(entries);
            self.timers[slot].recycle(due);
        }
        Ok(true)
    }

    /// Fires the `domain` timer at `ts` of `(kb, w)`, if it is still set.
    fn fire_timer(
        &mut self,
        domain: Domain,
        ts: i64,
        kb: &KeyBytes,
        w: Window,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        self.load(kb, cx.name)?;
        self.touch(kb);
        let Some(ws) = self.keys.get_mut(kb).and_then(|k| k.windows.get_mut(&w)) else {
            return Ok(());
        };
        // No longer in the index: the same timer set again must be indexed again.
        ws.trig
            .indexed
            .retain(|t| !(t.domain == domain && t.timestamp == ts));
        let Some(pos) = ws
            .trig
            .timers
            .iter()
            .position(|t| t.domain == domain && t.timestamp == ts)
        else {
            return Ok(());
        };
        ws.trig.timers.remove(pos);
        if ws.tombstone {
            return Ok(());
        }
        let trigger = &self.windowing.trigger;
        let mut tcx = TriggerContext {
            timers: &mut ws.trig.timers,
            now: cx.now,
        };
        let fire = trigger::should_fire(trigger, &mut ws.trig.state, domain, ts, &w, &mut tcx);
        // A processing-time timer's time is wall-clock time: the trigger learns the
        // watermark from the input (as Beam's), or a timer at a real clock time would
        // pass any window's end and move AfterWatermark past its on-time pane.
        let watermark = match domain {
            Domain::Watermark => ts,
            Domain::ProcessingTime => cx.input_watermark,
        };
        let mut finished =
            fire && trigger::on_fire(trigger, &mut ws.trig.state, watermark, &w, &mut tcx);
        // The global window's pane at its end, with no allowed lateness, is its last one:
        // nothing can follow (Beam gives is_last there too, as the batch executor does).
        finished |= fire
            && domain == Domain::Watermark
            && w == Window::Global
            && self.windowing.allowed_lateness == 0
            && ts >= w.max_timestamp();
        self.index_timers(kb, w);
        if fire {
            let (out_wm, ontime) = match domain {
                Domain::Watermark => (ts, true),
                Domain::ProcessingTime => (cx.output_watermark, false),
            };
            self.output(kb, w, finished, out_wm, ontime, cx)?;
        }
        Ok(())
    }

    /// Expires windows whose allowed lateness has passed: a window holding elements that
    /// no pane emitted yet fires a final pane (Beam's closing behaviour), then its state is
    /// dropped (later data for it is dropped as too late).
    pub(super) fn collect_garbage(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        self.collect_garbage_upto(wm, usize::MAX, cx)?;
        Ok(())
    }

    /// Expires windows as [`Panes::collect_garbage`], stopping once output 0 holds
    /// `limit` elements; whether it expired all that are due.
    pub(super) fn collect_garbage_upto(
        &mut self,
        wm: i64,
        limit: usize,
        cx: &mut OpCx<'_>,
    ) -> Result<bool> {
        // Windows expire once the watermark passes end + allowed lateness.
        let mut recheck = Vec::new();
        let until = if wm == END_OF_TIME {
            wm
        } else {
            wm.saturating_sub(1)
        };
        loop {
            let before = before_first(self.expiry.first_time(), until);
            if self.read_back_due(Queue::EXPIRY, before, cx.name)? {
                continue;
            }
            let Some((at, mut due)) = self.expiry.pop_due(|t| t <= until) else {
                break;
            };
            let mut done = true;
            while let Some((kb, w)) = due.pop() {
                if self.expire(&kb, w, cx)? {
                    recheck.push((at, kb, w));
                }
                self.spill_if_over(cx.name)?;
                if cx.out[0].len() >= limit {
                    done = false;
                    break;
                }
            }
            // What is left waits for the next step.
            for (kb, w) in due.drain(..) {
                recheck.push((at, kb, w));
            }
            self.expiry.recycle(due);
            if !done {
                for (at, kb, w) in recheck {
                    self.expiry.push(at, kb, w);
                }
                return Ok(false);
            }
        }
        for (at, kb, w) in recheck {
            self.expiry.push(at, kb, w);
        }
        Ok(true)
    }

    /// Expires window `w` of key `kb` (see [`Panes::collect_garbage`]) unless an
    /// event-time timer is pending; true when it is kept for that.
    pub(super) fn expire(&mut self, kb: &KeyBytes, w: Window, cx: &mut OpCx<'_>) -> Result<bool> {
        self.load(kb, cx.name)?;
        self.touch(kb);
        let Some(ws) = self.keys.get(kb).and_then(|ks| ks.windows.get(&w)) else {
            return Ok(false); // merged away or already collected
        };
        if ws.trig.timers.iter().any(|t| t.domain == Domain::Watermark) {
            // A pending event-time timer keeps the window until it fires.
            return Ok(true);
        }
        if !ws.tombstone && ws.pending > 0 {
            let lateness = self.windowing.allowed_lateness;
            let out_wm = end_of(&w).saturating_add(lateness).max(end_of(&w));
            self.output(kb, w, true, out_wm, true, cx)?;
        }
        let ks = self.keys.get_mut(kb).expect("checked above");
        let Some(ws) = ks.windows.remove(&w) else {
            return Ok(false);
        };
        if ks.windows.is_empty() {
            if let (Some(gone), Some(sp)) = (self.keys.remove(kb), &mut self.spill) {
                sp.hot_bytes = sp.hot_bytes.saturating_sub(gone.bytes);
            }
        }
        if let Some(h) = ws.hold {
            remove_hold(&mut self.holds, h);
        }
        // Its timers in the index will not apply.
        for t in &ws.trig.indexed {
            self.timers[domain_slot(t.domain)].forget(t.timestamp);
        }
        Ok(false)
    }
}
