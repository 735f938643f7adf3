//! Streaming GroupByKey / CombinePerKey: panes per key and window, fired by triggers.
//!
//! Follows Beam Python's `GeneralTriggerDriver`: elements of a bundle are added per key
//! and window, the trigger is asked once per bundle; watermark and processing-time timers
//! fire the trigger later. Pane index, timing and watermark holds are computed as Beam does.

use super::ops::{Op, OpCx};
use super::END_OF_TIME;
use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::error::{EngineError, Result};
use crate::exec::guarded;
use crate::graph::Windowing;
use crate::metrics::{MetricResults, MetricsContainer};
use crate::trigger::{self, Domain, TriggerContext, TriggerState, TriggerTimer};
use crate::value::Value;
use crate::window::{merge_intervals, PaneInfo, TimestampCombiner, Timing, Window, WindowedValue};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct WinState {
    values: Vec<Value>,
    /// Elements added since the last pane.
    pending: usize,
    trigger: TriggerState,
    timers: Vec<TriggerTimer>,
    hold: Option<i64>,
    index: i64,
    nonspeculative: i64,
    tombstone: bool,
}

/// A grouped value with its timestamp and window.
type Element = (Value, i64, Window);

struct KeyState {
    key: Value,
    windows: FxHashMap<Window, WinState>,
}

pub(super) struct GbkOp {
    key_coder: Coder,
    windowing: Windowing,
    /// The trigger, shared cheaply with the per-window calls.
    trigger: Arc<crate::trigger::Trigger>,
    combine: Option<Arc<dyn CombineFnInvoker>>,
    keys: FxHashMap<Vec<u8>, KeyState>,
    /// The current bundle: (key bytes, key, value, timestamp, window).
    pending: Vec<(Vec<u8>, Value, Value, i64, Window)>,
    timers: [BTreeSet<(i64, Vec<u8>, Window)>; 2],
    holds: BTreeMap<i64, usize>,
    /// Windows by the watermark past which they expire (end + allowed lateness), so
    /// garbage collection looks only at windows that are due.
    expiry: BTreeSet<(i64, Vec<u8>, Window)>,
    dropped: i64,
}

fn domain_slot(d: Domain) -> usize {
    match d {
        Domain::Watermark => 0,
        Domain::ProcessingTime => 1,
    }
}

/// Window end as Beam Python's triggers see it (exclusive end).
fn end_of(w: &Window) -> i64 {
    w.max_timestamp().saturating_add(1)
}

impl GbkOp {
    pub(super) fn new(
        key_coder: Coder,
        windowing: Windowing,
        combine: Option<Arc<dyn CombineFnInvoker>>,
    ) -> Self {
        GbkOp {
            key_coder,
            trigger: Arc::new(windowing.trigger.clone()),
            windowing,
            combine,
            keys: FxHashMap::default(),
            pending: Vec::new(),
            timers: [BTreeSet::new(), BTreeSet::new()],
            holds: BTreeMap::new(),
            expiry: BTreeSet::new(),
            dropped: 0,
        }
    }

    fn expires_at(&self, w: &Window) -> i64 {
        end_of(w).saturating_add(self.windowing.allowed_lateness)
    }

    fn add_hold(&mut self, t: i64) {
        *self.holds.entry(t).or_insert(0) += 1;
    }

    fn remove_hold(&mut self, t: i64) {
        if let Some(n) = self.holds.get_mut(&t) {
            *n -= 1;
            if *n == 0 {
                self.holds.remove(&t);
            }
        }
    }

    fn new_window(&self) -> WinState {
        WinState {
            values: Vec::new(),
            pending: 0,
            trigger: self.windowing.trigger.new_state(),
            timers: Vec::new(),
            hold: None,
            index: 0,
            nonspeculative: 0,
            tombstone: false,
        }
    }

    /// Indexes the timers a trigger call left on `(kb, w)`.
    fn index_timers(&mut self, kb: &[u8], w: Window) {
        if let Some(ws) = self.keys.get(kb).and_then(|k| k.windows.get(&w)) {
            for t in &ws.timers {
                self.timers[domain_slot(t.domain)].insert((t.timestamp, kb.to_vec(), w));
            }
        }
    }

    /// Emits a pane of `(kb, w)` (Beam's `_output`).
    fn output(
        &mut self,
        kb: &[u8],
        w: Window,
        finished: bool,
        output_watermark: i64,
        maybe_ontime: bool,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        let has_ontime = self.windowing.trigger.has_ontime_pane();
        let accumulating = self.windowing.accumulating;
        let ks = self.keys.get_mut(kb).expect("key state exists");
        let key = ks.key.clone();
        let ws = ks.windows.get_mut(&w).expect("window state exists");
        let index = ws.index;
        ws.index += 1;
        ws.pending = 0;
        let (timing, nonspeculative) = if output_watermark <= w.max_timestamp() {
            let ns = if ws.nonspeculative != 0 {
                ws.nonspeculative += 1;
                ws.nonspeculative - 1
            } else {
                -1
            };
            (Timing::Early, ns)
        } else {
            let ns = ws.nonspeculative;
            ws.nonspeculative += 1;
            let timing = if maybe_ontime && ns == 0 {
                Timing::OnTime
            } else {
                Timing::Late
            };
            (timing, ns)
        };
        let pane = PaneInfo {
            is_first: index == 0,
            is_last: finished,
            timing,
            index,
            nonspeculative_index: nonspeculative,
        };
        let values = if finished || !accumulating {
            std::mem::take(&mut ws.values)
        } else {
            ws.values.clone()
        };
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
        let cleared = old_hold.is_some() && ws.hold.is_none();
        if cleared {
            self.remove_hold(old_hold.expect("checked"));
        }
        let value = match &self.combine {
            None => Value::List(values),
            Some(f) => {
                let mut acc = guarded(cx.name, || Ok(f.create_accumulator()))?;
                for v in values {
                    guarded(cx.name, || f.add_input(&mut acc, v))?;
                }
                guarded(cx.name, || f.extract_output(acc))?
            }
        };
        cx.out.push((
            0,
            WindowedValue {
                value: Value::kv(key, value),
                timestamp,
                window: w,
                pane,
            },
        ));
        Ok(())
    }

    /// Merges the session windows of one key with the new windows; returns the mapping.
    fn merge_windows(&mut self, kb: &[u8], new: &[Window]) -> FxHashMap<Window, Window> {
        let ks = self.keys.get_mut(kb).expect("key exists");
        let mut all: Vec<Window> = ks.windows.keys().copied().collect();
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
        let mut released = Vec::new();
        for (to, mut ws) in moved {
            // Timers of merged-away windows are cleared (on_merge); the next element resets them.
            ws.timers.clear();
            match ks.windows.get_mut(&to) {
                Some(target) => {
                    target.values.append(&mut ws.values);
                    if let Some(h) = ws.hold {
                        released.push(h);
                        target.hold = Some(target.hold.map_or(h, |t| t.min(h)));
                        if let Some(t) = target.hold {
                            if t == h {
                                released.pop();
                            }
                        }
                    }
                    target.timers.clear();
                }
                None => {
                    ws.index = 0;
                    ws.nonspeculative = 0;
                    ks.windows.insert(to, ws);
                    let exp = end_of(&to).saturating_add(self.windowing.allowed_lateness);
                    self.expiry.insert((exp, kb.to_vec(), to));
                }
            }
        }
        for h in released {
            self.remove_hold(h);
        }
        mapping
    }

    fn process_key(
        &mut self,
        kb: Vec<u8>,
        key: Value,
        elements: Vec<Element>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        let input_wm = cx.input_watermark;
        let output_wm = cx.output_watermark;
        let lateness = self.windowing.allowed_lateness;
        let mut by_window: Vec<(Window, Vec<(Value, i64)>)> = Vec::new();
        for (v, ts, w) in elements {
            if input_wm > end_of(&w).saturating_add(lateness) {
                self.dropped += 1;
                continue;
            }
            match by_window.iter_mut().find(|(x, _)| *x == w) {
                Some((_, list)) => list.push((v, ts)),
                None => by_window.push((w, vec![(v, ts)])),
            }
        }
        if by_window.is_empty() {
            return Ok(());
        }
        self.keys.entry(kb.clone()).or_insert_with(|| KeyState {
            key,
            windows: FxHashMap::default(),
        });
        if self.windowing.window_fn.is_merging() {
            let new: Vec<Window> = by_window.iter().map(|(w, _)| *w).collect();
            let mapping = self.merge_windows(&kb, &new);
            let mut merged: Vec<(Window, Vec<(Value, i64)>)> = Vec::new();
            for (w, list) in by_window {
                let to = mapping.get(&w).copied().unwrap_or(w);
                match merged.iter_mut().find(|(x, _)| *x == to) {
                    Some((_, l)) => l.extend(list),
                    None => merged.push((to, list)),
                }
            }
            by_window = merged;
        }
        let tc = self.windowing.timestamp_combiner;
        for (w, list) in by_window {
            if !self.keys[&kb].windows.contains_key(&w) {
                let fresh = self.new_window();
                self.keys
                    .get_mut(&kb)
                    .expect("exists")
                    .windows
                    .insert(w, fresh);
                self.expiry.insert((self.expires_at(&w), kb.clone(), w));
            }
            if self.keys[&kb].windows[&w].tombstone {
                continue;
            }
            let mut output_time: Option<i64> = None;
            for (_, ts) in &list {
                let t = match tc {
                    TimestampCombiner::EndOfWindow => w.max_timestamp(),
                    _ => *ts,
                };
                if t >= output_wm {
                    output_time = Some(match (tc, output_time) {
                        (_, None) => t,
                        (TimestampCombiner::Latest, Some(o)) => o.max(t),
                        (_, Some(o)) => o.min(t),
                    });
                }
            }
            let trigger = self.trigger.clone();
            let ws = self
                .keys
                .get_mut(&kb)
                .expect("exists")
                .windows
                .get_mut(&w)
                .expect("exists");
            let mut new_hold = None;
            let mut old_hold = None;
            if let Some(t) = output_time {
                let combined = match (tc, ws.hold) {
                    (_, None) => t,
                    (TimestampCombiner::Latest, Some(h)) => h.max(t),
                    (_, Some(h)) => h.min(t),
                };
                if ws.hold != Some(combined) {
                    old_hold = ws.hold;
                    ws.hold = Some(combined);
                    new_hold = Some(combined);
                }
            }
            let timers_before = ws.timers.clone();
            let mut tcx = TriggerContext {
                timers: &mut ws.timers,
                now: cx.now,
            };
            for (v, _) in list {
                ws.values.push(v);
                ws.pending += 1;
                trigger::on_element(&trigger, &mut ws.trigger, &w, &mut tcx);
            }
            let fire = trigger::should_fire(
                &trigger,
                &mut ws.trigger,
                Domain::Watermark,
                input_wm,
                &w,
                &mut tcx,
            );
            let finished =
                fire && trigger::on_fire(&trigger, &mut ws.trigger, input_wm, &w, &mut tcx);
            let timers_changed = ws.timers != timers_before;
            if let Some(h) = old_hold {
                self.remove_hold(h);
            }
            if let Some(h) = new_hold {
                self.add_hold(h);
            }
            if timers_changed {
                self.index_timers(&kb, w);
            }
            if fire {
                self.output(&kb, w, finished, output_wm, false, cx)?;
            }
        }
        Ok(())
    }

    fn fire_timers(&mut self, domain: Domain, until: i64, cx: &mut OpCx<'_>) -> Result<()> {
        let slot = domain_slot(domain);
        let trigger = self.trigger.clone();
        while let Some(first) = self.timers[slot].first().cloned() {
            if first.0 > until {
                break;
            }
            self.timers[slot].remove(&first);
            let (ts, kb, w) = first;
            let Some(ws) = self.keys.get_mut(&kb).and_then(|k| k.windows.get_mut(&w)) else {
                continue;
            };
            let Some(pos) = ws
                .timers
                .iter()
                .position(|t| t.domain == domain && t.timestamp == ts)
            else {
                continue;
            };
            ws.timers.remove(pos);
            if ws.tombstone {
                continue;
            }
            let mut tcx = TriggerContext {
                timers: &mut ws.timers,
                now: cx.now,
            };
            let fire = trigger::should_fire(&trigger, &mut ws.trigger, domain, ts, &w, &mut tcx);
            let finished = fire && trigger::on_fire(&trigger, &mut ws.trigger, ts, &w, &mut tcx);
            self.index_timers(&kb, w);
            if fire {
                let (out_wm, ontime) = match domain {
                    Domain::Watermark => (ts, true),
                    Domain::ProcessingTime => (ts.min(cx.output_watermark), false),
                };
                self.output(&kb, w, finished, out_wm, ontime, cx)?;
            }
        }
        Ok(())
    }

    /// Expires windows whose allowed lateness has passed: a window holding elements that
    /// no pane emitted yet fires a final pane (Beam's closing behaviour), then its state is
    /// dropped (later data for it is dropped as too late).
    fn collect_garbage(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        let lateness = self.windowing.allowed_lateness;
        // Windows expire once the watermark passes end + allowed lateness.
        let mut due = Vec::new();
        while self
            .expiry
            .first()
            .is_some_and(|e| wm == END_OF_TIME || e.0 < wm)
        {
            due.extend(self.expiry.pop_first());
        }
        let mut recheck = Vec::new();
        for entry in due {
            let (_, kb, w) = &entry;
            let Some(ws) = self.keys.get(kb).and_then(|ks| ks.windows.get(w)) else {
                continue; // merged away or already collected
            };
            if ws.timers.iter().any(|t| t.domain == Domain::Watermark) {
                // A pending event-time timer keeps the window until it fires.
                recheck.push(entry);
                continue;
            }
            if !ws.tombstone && ws.pending > 0 {
                let out_wm = end_of(w).saturating_add(lateness).max(end_of(w));
                self.output(kb, *w, true, out_wm, true, cx)?;
            }
            let ks = self.keys.get_mut(kb).expect("checked above");
            let hold = ks.windows.remove(w).and_then(|ws| ws.hold);
            if ks.windows.is_empty() {
                self.keys.remove(kb);
            }
            if let Some(h) = hold {
                self.remove_hold(h);
            }
        }
        self.expiry.extend(recheck);
        Ok(())
    }
}

impl Op for GbkOp {
    fn process(&mut self, _slot: usize, wv: WindowedValue, cx: &mut OpCx<'_>) -> Result<()> {
        let (key, value) = match wv.value {
            Value::Kv(kv) => *kv,
            other => {
                return Err(EngineError::user(
                    cx.name,
                    format!("expected a key/value element, got a {} value", other.kind()),
                ))
            }
        };
        let kb = self
            .key_coder
            .encode_to_vec(&key)
            .map_err(|source| EngineError::Coder {
                transform: cx.name.to_string(),
                source,
            })?;
        self.pending.push((kb, key, value, wv.timestamp, wv.window));
        Ok(())
    }

    fn end_bundle(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut per_key: FxHashMap<Vec<u8>, (Value, Vec<Element>)> = FxHashMap::default();
        for (kb, key, value, ts, w) in std::mem::take(&mut self.pending) {
            match per_key.get_mut(&kb) {
                Some((_, list)) => list.push((value, ts, w)),
                None => {
                    order.push(kb.clone());
                    per_key.insert(kb, (key, vec![(value, ts, w)]));
                }
            }
        }
        for kb in order {
            let (key, elements) = per_key.remove(&kb).expect("present");
            self.process_key(kb, key, elements, cx)?;
        }
        Ok(())
    }

    fn advance(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        self.fire_timers(Domain::Watermark, wm, cx)?;
        self.collect_garbage(wm, cx)?;
        Ok(())
    }

    fn on_processing_time(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        let now = cx.now;
        self.fire_timers(Domain::ProcessingTime, now, cx)
    }

    fn hold(&self) -> i64 {
        self.holds.keys().next().copied().unwrap_or(END_OF_TIME)
    }

    fn finish(&mut self, name: &str, metrics: &mut MetricResults) -> Result<()> {
        if self.dropped > 0 {
            let mut c = MetricsContainer::default();
            c.inc_counter("beamline", "droppedDueToLateness", self.dropped);
            metrics.merge_container(name, &c);
        }
        Ok(())
    }
}
