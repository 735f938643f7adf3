//! Streaming GroupByKey / CombinePerKey: panes per key and window, fired by triggers.
//!
//! Follows Beam Python's `GeneralTriggerDriver`: elements of a bundle are added per key
//! and window, the trigger is asked once per bundle and window; watermark and
//! processing-time timers fire the trigger later. Pane index, timing and watermark holds
//! are computed as Beam does. Combines keep one accumulator per pane (lifted) unless
//! accumulating panes would need to copy an accumulator that cannot be copied.

use super::due::DueIndex;
use super::guard::panics_guarded;
use super::key_table::{KeyBytes, KeyTable};
use super::op::END_OF_TIME;
use super::op::{Op, OpCx, StateBudget};
use super::pane::{AddCx, WinState, Windows};
use super::pane_spill::PaneSpill;
use super::precombine::{Mailbox, Partial};
use crate::checkpoint::{NodeState, StateOut};
use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::error::{EngineError, Result};
use crate::graph::Windowing;
use crate::job::JobControl;
use crate::metrics::{MetricResults, MetricsContainer};
use crate::state::TimeDomain;
use crate::trigger::{self, Domain, TriggerContext};
use crate::value::Value;
use crate::window::{TimestampCombiner, Window, WindowedValue};
use std::collections::BTreeMap;
use std::sync::Arc;

mod checkpoint;
mod merge;
mod spill;
mod timers;

struct KeyState {
    key: Value,
    windows: Windows,
    /// Elements of the current batch (bundle, for merging windows): (value, timestamp,
    /// window). Adding a key's elements together keeps its windows in cache.
    staged: Vec<(Value, i64, Window)>,
    /// With a memory budget: when it was last used (a counter), and its estimated size.
    stamp: u64,
    bytes: usize,
}

impl KeyState {
    fn new(key: Value, windows: Windows) -> Self {
        KeyState {
            key,
            windows,
            staged: Vec::new(),
            stamp: 0,
            bytes: 0,
        }
    }

    /// Estimated bytes in memory (see [`super::state_size`]).
    fn estimate(&self, kb: &KeyBytes) -> usize {
        super::state_size::panes_estimate(
            std::mem::size_of::<(KeyBytes, KeyState)>(),
            kb.bytes().len(),
            &self.key,
            &self.windows,
        )
    }
}

/// GroupByKey and CombinePerKey in streaming: panes per key and window, fired by their
/// triggers as elements (or a lifted combine's partial results) arrive and the watermark
/// moves.
pub struct GbkOp {
    /// Partial results of a lifted combine, from a source's worker threads.
    mailbox: Option<Mailbox>,
    key_coder: Coder,
    /// The values' coder, for checkpoints (see [`GbkOp::with_value_coder`]).
    value_coder: Option<Coder>,
    /// Scratch space for encoding keys.
    key_buf: Vec<u8>,
    panes: Panes,
}

/// The panes of every key and window, with their timers, holds and expiry.
struct Panes {
    windowing: Windowing,
    combine: Option<Arc<dyn CombineFnInvoker>>,
    /// Panes hold an accumulator rather than values.
    lifted: bool,
    keys: KeyTable<KeyState>,
    /// Keys with staged elements, in order of first arrival.
    staged_keys: Vec<KeyBytes>,
    /// Windows that received elements in the current bundle, in order of first arrival.
    touched: Vec<(KeyBytes, Window)>,
    /// Windows with trigger timers, per domain. Cleared timers stay; firing skips them.
    timers: [DueIndex; 2],
    holds: BTreeMap<i64, usize>,
    /// Windows by the watermark past which they expire (end + allowed lateness), so
    /// garbage collection looks only at windows that are due.
    expiry: DueIndex,
    dropped: i64,
    /// Keys changed since the last checkpoint; `None` until checkpoints start.
    dirty: Option<rustc_hash::FxHashSet<KeyBytes>>,
    /// With a memory budget: the keys spilled past it, and the keys used since the
    /// budget was last checked (their sizes are estimated again then).
    spill: Option<PaneSpill>,
    used: Vec<KeyBytes>,
}

fn domain_slot(d: Domain) -> usize {
    match d {
        Domain::Watermark => 0,
        Domain::ProcessingTime => 1,
    }
}

/// The spill store's time domain of a trigger's.
fn time_domain(d: Domain) -> TimeDomain {
    match d {
        Domain::Watermark => TimeDomain::Watermark,
        Domain::ProcessingTime => TimeDomain::ProcessingTime,
    }
}

/// The last time before `first` (the first in memory, if any) and at or before `until`.
fn before_first(first: Option<i64>, until: i64) -> i64 {
    first.map_or(until, |f| until.min(f.saturating_sub(1)))
}

/// Most spilled keys a due time brings back at once.
const READ_BACK_BATCH: usize = 256;

/// Window end as Beam Python's triggers see it (exclusive end).
fn end_of(w: &Window) -> i64 {
    w.max_timestamp().saturating_add(1)
}

/// The state of a new window `w` of key `kb`, indexed for expiry (at its end plus the
/// allowed lateness).
fn open_window(
    windowing: &Windowing,
    combine: Option<&dyn CombineFnInvoker>,
    lifted: bool,
    expiry: &mut DueIndex,
    kb: &KeyBytes,
    w: Window,
) -> WinState {
    let expires = end_of(&w).saturating_add(windowing.allowed_lateness);
    expiry.push(expires, kb.clone(), w);
    WinState::new(&windowing.trigger, combine, lifted)
}

fn add_hold(holds: &mut BTreeMap<i64, usize>, t: i64) {
    *holds.entry(t).or_insert(0) += 1;
}

/// The hold of window `to` made of two windows' holds (merging windows).
fn merged_hold(tc: TimestampCombiner, to: &Window, a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (None, None) => None,
        _ if tc == TimestampCombiner::EndOfWindow => Some(to.max_timestamp()),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (Some(x), Some(y)) if tc == TimestampCombiner::Latest => Some(x.max(y)),
        (Some(x), Some(y)) => Some(x.min(y)),
    }
}

/// Sets a window's hold, keeping the registry of holds in step: a window being added to
/// in this bundle registers its hold when the bundle ends (`bundle_hold` has the old one).
fn set_hold(holds: &mut BTreeMap<i64, usize>, ws: &mut WinState, hold: Option<i64>) {
    if ws.bundle_hold.is_none() && ws.hold != hold {
        if let Some(h) = ws.hold {
            remove_hold(holds, h);
        }
        if let Some(h) = hold {
            add_hold(holds, h);
        }
    }
    ws.hold = hold;
}

fn remove_hold(holds: &mut BTreeMap<i64, usize>, t: i64) {
    if let Some(n) = holds.get_mut(&t) {
        *n -= 1;
        if *n == 0 {
            holds.remove(&t);
        }
    }
}

impl std::fmt::Debug for GbkOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbkOp")
            .field("key_coder", &self.key_coder)
            .field("lifted", &self.mailbox.is_some())
            .finish_non_exhaustive()
    }
}

impl GbkOp {
    /// Groups keys encoded with `key_coder` under `windowing`; with `combine`, combines
    /// each pane's values.
    pub fn new(
        key_coder: Coder,
        windowing: Windowing,
        combine: Option<Arc<dyn CombineFnInvoker>>,
    ) -> Self {
        // Accumulating panes fire a copy of the accumulator and keep it.
        let lifted = combine.as_ref().is_some_and(|f| {
            !windowing.accumulating || f.create_accumulator().try_clone().is_some()
        });
        GbkOp {
            mailbox: None,
            key_coder,
            value_coder: None,
            key_buf: Vec::new(),
            panes: Panes {
                windowing,
                combine,
                lifted,
                keys: KeyTable::default(),
                staged_keys: Vec::new(),
                touched: Vec::new(),
                timers: Default::default(),
                holds: BTreeMap::new(),
                expiry: DueIndex::default(),
                dropped: 0,
                dirty: None,
                spill: None,
                used: Vec::new(),
            },
        }
    }
}

impl GbkOp {
    /// The coder of the values (what checkpoints encode pane contents and accumulators
    /// with; without it the operator cannot be checkpointed).
    pub fn with_value_coder(mut self, coder: Coder) -> Self {
        self.value_coder = Some(coder);
        self
    }

    fn value_coder<'c>(coder: &'c Option<Coder>, name: &str) -> Result<&'c Coder> {
        coder.as_ref().ok_or_else(|| {
            EngineError::Checkpoint(format!(
                "transform '{name}' was built without its value coder: it cannot be checkpointed"
            ))
        })
    }

    /// Also takes partial results from `mailbox` (see [`super::precombine`]).
    pub fn with_mailbox(mut self, mailbox: Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }
}

impl Panes {
    /// Notes that key `kb`'s state changed (for incremental checkpoints).
    #[inline]
    fn touch(&mut self, kb: &KeyBytes) {
        if let Some(d) = &mut self.dirty {
            d.insert(kb.clone());
        }
        if self.spill.is_some() {
            self.used.push(kb.clone());
        }
    }

    /// Stages an element for key `kb` (created with `key` if new).
    fn stage(&mut self, kb: &KeyBytes, key: Value, value: Value, ts: i64, w: Window) {
        let (kb, ks) = self
            .keys
            .get_or_insert_with(kb, || KeyState::new(key, Windows::default()));
        if ks.staged.is_empty() {
            self.staged_keys.push(kb.clone());
        }
        ks.staged.push((value, ts, w));
    }

    /// Adds one element of key `kb` (created with `key` if new) to the pane of window `w`
    /// (non-merging windows: no staging needed); elements of a closed window are ignored.
    ///
    /// # Errors
    /// When the combine fails.
    fn add_one(
        &mut self,
        kb: &KeyBytes,
        key: Value,
        value: Value,
        ts: i64,
        w: Window,
        output_watermark: i64,
    ) -> std::result::Result<(), crate::error::UserError> {
        self.add_to_pane(kb, key, w, output_watermark, |ws, acx| {
            ws.add(value, ts, &w, acx)
        })
    }

    /// Adds what `add` adds to the pane of key `kb` (created with `key` if new) and
    /// window `w`, creating the window as needed; a closed window's pane is left alone.
    fn add_to_pane(
        &mut self,
        kb: &KeyBytes,
        key: Value,
        w: Window,
        output_watermark: i64,
        add: impl FnOnce(
            &mut WinState,
            &AddCx<'_>,
        ) -> std::result::Result<bool, crate::error::UserError>,
    ) -> std::result::Result<(), crate::error::UserError> {
        let Panes {
            windowing,
            combine,
            lifted,
            keys,
            touched,
            expiry,
            ..
        } = self;
        let combine = combine.as_deref();
        let (kb, ks) = keys.get_or_insert_with(kb, || KeyState::new(key, Windows::default()));
        let ws = ks.windows.get_or_insert_with(w, || {
            open_window(windowing, combine, *lifted, expiry, kb, w)
        });
        if ws.tombstone {
            return Ok(());
        }
        let acx = AddCx {
            combine,
            timestamp_combiner: windowing.timestamp_combiner,
            output_watermark,
        };
        if add(ws, &acx)? {
            touched.push((kb.clone(), w));
        }
        Ok(())
    }

    /// Adds the partial results of a bundle (lifted combine), dropping those of windows
    /// past their allowed lateness.
    ///
    /// # Errors
    /// When merging into a pane fails.
    fn add_partials(&mut self, parts: &mut Vec<Partial>, cx: &OpCx<'_>) -> Result<()> {
        let lateness = self.windowing.allowed_lateness;
        for p in parts.drain(..) {
            let Partial {
                kb,
                key,
                window,
                acc,
                count,
                latest,
            } = p;
            if cx.input_watermark > end_of(&window).saturating_add(lateness) {
                self.dropped += count as i64;
                continue;
            }
            self.load(&kb, cx.name)?;
            self.add_to_pane(&kb, key, window, cx.output_watermark, |ws, acx| {
                ws.add_partial(acc, count, latest, &window, acx)
            })
            .map_err(|e| EngineError::user(cx.name, e))?;
        }
        Ok(())
    }

    /// Adds the staged elements to their panes, a key at a time; merging window functions
    /// first merge each key's windows with the new ones.
    ///
    /// # Errors
    /// When the combine fails.
    fn add_staged(&mut self, cx: &OpCx<'_>) -> Result<()> {
        let merging = self.windowing.window_fn.is_merging();
        let mut staged_keys = std::mem::take(&mut self.staged_keys);
        let mut r = Ok(());
        for kb in staged_keys.drain(..) {
            if r.is_err() {
                // Drop what the failed bundle staged.
                if let Some(ks) = self.keys.get_mut(&kb) {
                    ks.staged.clear();
                }
                continue;
            }
            if merging {
                r = self.merge_staged(&kb, cx.name);
                if r.is_err() {
                    continue;
                }
            }
            r = self.add_key(&kb, cx);
        }
        self.staged_keys = staged_keys;
        r
    }

    /// Adds the staged elements of key `kb` to the panes of their windows, creating
    /// windows as needed; elements of a closed window are ignored.
    fn add_key(&mut self, kb: &KeyBytes, cx: &OpCx<'_>) -> Result<()> {
        let Some(ks) = self.keys.get_mut(kb) else {
            return Ok(());
        };
        let n = ks.staged.len();
        let mut staged = std::mem::take(&mut ks.staged);
        for (value, ts, w) in staged.drain(..) {
            // The key exists: the placeholder key is never stored.
            self.add_to_pane(kb, Value::Null, w, cx.output_watermark, |ws, acx| {
                ws.add(value, ts, &w, acx)
            })
            .map_err(|e| EngineError::user(cx.name, e))?;
        }
        // Keys that repeat keep their buffer; single-element keys (many keys, each
        // rare) do not hold memory between stages.
        if n > 1 {
            if let Some(ks) = self.keys.get_mut(kb) {
                ks.staged = staged;
            }
        }
        Ok(())
    }

    /// Ends the bundle for every touched window: updates its hold, asks its trigger,
    /// fires a pane if it says so.
    fn finish_bundle(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        let input_wm = cx.input_watermark;
        let mut touched = std::mem::take(&mut self.touched);
        for (kb, w) in touched.drain(..) {
            self.touch(&kb);
            let Some(ws) = self.keys.get_mut(&kb).and_then(|k| k.windows.get_mut(&w)) else {
                continue;
            };
            let before = ws.bundle_hold.take().flatten();
            if ws.hold != before {
                if let Some(h) = before {
                    remove_hold(&mut self.holds, h);
                }
                if let Some(h) = ws.hold {
                    add_hold(&mut self.holds, h);
                }
            }
            let trigger = &self.windowing.trigger;
            let mut tcx = TriggerContext {
                timers: &mut ws.trig.timers,
                now: cx.now,
            };
            let added = std::mem::take(&mut ws.bundle_added);
            trigger::on_elements(trigger, &mut ws.trig.state, &w, added, &mut tcx);
            let fire = trigger::should_fire(
                trigger,
                &mut ws.trig.state,
                Domain::Watermark,
                input_wm,
                &w,
                &mut tcx,
            );
            let finished =
                fire && trigger::on_fire(trigger, &mut ws.trig.state, input_wm, &w, &mut tcx);
            self.index_timers(&kb, w);
            if fire {
                self.output(&kb, w, finished, cx.output_watermark, false, cx)?;
            }
        }
        // Keep the buffer's capacity for the next bundle.
        self.touched = touched;
        Ok(())
    }

    /// Indexes the timers of `(kb, w)` set since the last call. Cleared timers stay in
    /// the index; firing skips them.
    fn index_timers(&mut self, kb: &KeyBytes, w: Window) {
        if let Some(ws) = self.keys.get_mut(kb).and_then(|k| k.windows.get_mut(&w)) {
            if ws.trig.timers == ws.trig.indexed {
                return;
            }
            for t in &ws.trig.timers {
                if !ws.trig.indexed.contains(t) {
                    self.timers[domain_slot(t.domain)].push(t.timestamp, kb.clone(), w);
                }
            }
            ws.trig.indexed.clone_from(&ws.trig.timers);
        }
    }

    /// Emits a pane of `(kb, w)` (Beam's `_output`).
    fn output(
        &mut self,
        kb: &KeyBytes,
        w: Window,
        finished: bool,
        output_watermark: i64,
        maybe_ontime: bool,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        self.touch(kb);
        let has_ontime = self.windowing.trigger.has_ontime_pane();
        let keep = self.windowing.accumulating && !finished;
        let combine = self.combine.as_deref();
        let ks = self.keys.get_mut(kb).expect("key state exists");
        let ws = ks.windows.get_mut(&w).expect("window state exists");
        let pane = ws.next_pane(&w, finished, output_watermark, maybe_ontime);
        if finished {
            ws.tombstone = true;
        }
        let old_hold = ws.hold;
        let timestamp = match ws.hold {
            None => w.max_timestamp(),
            Some(h) => {
                if !(output_watermark < end_of(&w) && has_ontime) {
                    ws.hold = None;
                }
                h
            }
        };
        let name = cx.name;
        let value = panics_guarded(name, || ws.pane_value(keep, combine, name))?;
        let key = ks.key.clone();
        if let (Some(h), None) = (old_hold, ws.hold) {
            remove_hold(&mut self.holds, h);
        }
        cx.out[0].push(WindowedValue {
            value: Value::kv(key, value),
            timestamp,
            window: w,
            pane,
        });
        Ok(())
    }
}

impl Op for GbkOp {
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        let lateness = self.panes.windowing.allowed_lateness;
        let input_wm = cx.input_watermark;
        // Merging windows are merged once per bundle, at its end, so their elements are
        // staged; otherwise each element goes straight to its pane.
        let merging = self.panes.windowing.window_fn.is_merging();
        let output_wm = cx.output_watermark;
        let name = cx.name;
        // One guard for the batch: combines run user code per element.
        panics_guarded(name, || {
            for wv in batch.drain(..) {
                let (key, value) = match wv.value.try_into_kv() {
                    Ok(kv) => kv,
                    Err(other) => {
                        return Err(EngineError::user(
                            name,
                            format!("expected a key/value element, got a {} value", other.kind()),
                        ))
                    }
                };
                // The watermark does not move within a bundle: lateness is judged here.
                if input_wm > end_of(&wv.window).saturating_add(lateness) {
                    self.panes.dropped += 1;
                    continue;
                }
                self.key_buf.clear();
                self.key_coder
                    .encode(&key, &mut self.key_buf, false)
                    .map_err(|source| EngineError::Coder {
                        transform: name.to_string(),
                        source,
                    })?;
                let kb = KeyBytes::new(&self.key_buf);
                self.panes.load(&kb, name)?;
                if merging {
                    self.panes.stage(&kb, key, value, wv.timestamp, wv.window);
                } else {
                    self.panes
                        .add_one(&kb, key, value, wv.timestamp, wv.window, output_wm)
                        .map_err(|e| EngineError::user(name, e))?;
                }
            }
            Ok(())
        })
    }

    fn end_bundle(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        if let Some(mailbox) = &self.mailbox {
            let mut parts = std::mem::take(&mut mailbox.lock().parts);
            if !parts.is_empty() {
                // One guard for the bundle: merging accumulators runs user code.
                let r = panics_guarded(cx.name, || self.panes.add_partials(&mut parts, cx));
                mailbox.lock().give_back(parts);
                r?;
            }
        }
        if !self.panes.staged_keys.is_empty() {
            // One guard for the bundle: combines run user code per element.
            panics_guarded(cx.name, || self.panes.add_staged(cx))?;
        }
        if !self.panes.touched.is_empty() {
            self.panes.finish_bundle(cx)?;
        }
        self.panes.keep_to_budget(cx.name)
    }

    fn advance(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        self.panes.fire_timers(Domain::Watermark, wm, cx)?;
        self.panes.collect_garbage(wm, cx)?;
        self.panes.keep_to_budget(cx.name)
    }

    fn advance_some(&mut self, wm: i64, cx: &mut OpCx<'_>, max_out: usize) -> Result<bool> {
        if self.panes.spill.is_none() {
            // In memory, what fires is in memory already.
            self.advance(wm, cx)?;
            return Ok(true);
        }
        let limit = cx.out[0].len().saturating_add(max_out);
        let done = self
            .panes
            .fire_timers_upto(Domain::Watermark, wm, limit, cx)?
            && self.panes.collect_garbage_upto(wm, limit, cx)?;
        self.panes.keep_to_budget(cx.name)?;
        Ok(done)
    }

    fn on_processing_time(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        let now = cx.now;
        self.panes.fire_timers(Domain::ProcessingTime, now, cx)?;
        self.panes.keep_to_budget(cx.name)
    }

    fn hold(&self) -> i64 {
        self.panes
            .holds
            .keys()
            .next()
            .copied()
            .unwrap_or(END_OF_TIME)
    }

    fn snapshot(&mut self, out: &mut StateOut, cx: &mut OpCx<'_>) -> Result<()> {
        self.save(out, cx.name)
    }

    fn restore(&mut self, state: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        self.take_back(state, cx.name)
    }

    fn limit_state(&mut self, budget: StateBudget) -> bool {
        let Some(value_coder) = self.value_coder.clone() else {
            return false;
        };
        self.panes
            .limit(budget, self.key_coder.clone(), value_coder);
        true
    }

    fn report(&mut self, name: &str, control: &JobControl) {
        if let Some(sp) = &mut self.panes.spill {
            let mut c = MetricsContainer::default();
            sp.report(&mut c);
            control.report(name, &mut c);
        }
    }

    fn finish(&mut self, name: &str, metrics: &mut MetricResults) -> Result<()> {
        let mut c = MetricsContainer::default();
        if self.panes.dropped > 0 {
            c.inc_counter("beamline", "droppedDueToLateness", self.panes.dropped);
        }
        if let Some(sp) = &mut self.panes.spill {
            sp.report(&mut c);
        }
        metrics.merge_container(name, &c);
        // The spill store's file goes with it.
        self.panes.spill = None;
        Ok(())
    }
}
