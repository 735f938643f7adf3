//! Operators the Fn API adds to Beamline's: the phases of a combine the engine lifted
//! (precombine, merge accumulators, extract outputs, and combining grouped values when it
//! did not), side inputs fetched through the state API per window, and Beam's identity DoFn.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use beamline_engine::coder::Coder;
use beamline_engine::combine::{Accumulator, CombineFnInvoker};
use beamline_engine::operators::guard::guarded;
use beamline_engine::operators::{forward, Op, OpCx};
use beamline_engine::value::Value;
use beamline_engine::window::{PaneInfo, TimestampCombiner, Window, WindowFn, WindowedValue};
use beamline_engine::windowed_coder::WindowCoder;
use beamline_engine::{EngineError, Result};
use beamline_proto::fn_execution as fe;
use beamline_proto::urns;

use super::state::StateChannel;

/// `beam:transform:combine_per_key_precombine:v1`.
pub const PRECOMBINE: &str = "beam:transform:combine_per_key_precombine:v1";
/// `beam:transform:combine_per_key_merge_accumulators:v1`.
pub const MERGE_ACCUMULATORS: &str = "beam:transform:combine_per_key_merge_accumulators:v1";
/// `beam:transform:combine_per_key_extract_outputs:v1`.
pub const EXTRACT_OUTPUTS: &str = "beam:transform:combine_per_key_extract_outputs:v1";
/// Beam's identity DoFn (a runner inserts it to change a PCollection's coder).
pub const IDENTITY_DOFN: &str = "beam:dofn:identity:0.1";

/// Which part of a combine a transform runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Inputs folded into accumulators per key and window, within a bundle.
    Precombine,
    /// Grouped accumulators merged into one.
    Merge,
    /// The output of a merged accumulator.
    Extract,
    /// Grouped inputs combined in one go (a combine the engine did not lift).
    GroupedValues,
}

impl Phase {
    /// The phase of a transform URN, if it is one.
    pub fn of_urn(urn: &str) -> Option<Phase> {
        match urn {
            PRECOMBINE => Some(Phase::Precombine),
            MERGE_ACCUMULATORS => Some(Phase::Merge),
            EXTRACT_OUTPUTS => Some(Phase::Extract),
            urns::COMBINE_GROUPED_VALUES => Some(Phase::GroupedValues),
            _ => None,
        }
    }
}

/// A combine phase over `KV` elements.
pub struct PhaseOp {
    phase: Phase,
    combine: Arc<dyn CombineFnInvoker>,
    key_coder: Coder,
    timestamps: TimestampCombiner,
    /// Precombine: accumulators (and their inputs' combined timestamp) by encoded key and
    /// window.
    table: HashMap<(Vec<u8>, Window), (Value, Accumulator, i64)>,
}

impl PhaseOp {
    /// A phase of `combine`, whose keys encode with `key_coder`; a precombine's outputs
    /// carry their inputs' timestamps combined with `timestamps` (the grouping after it
    /// combines them again, so the combine's output timestamp is the one Beam defines).
    pub fn new(
        phase: Phase,
        combine: Arc<dyn CombineFnInvoker>,
        key_coder: Coder,
        timestamps: TimestampCombiner,
    ) -> Self {
        PhaseOp {
            phase,
            combine,
            key_coder,
            timestamps,
            table: HashMap::new(),
        }
    }

    fn values(v: Value, name: &str) -> Result<Vec<Value>> {
        match v {
            Value::List(items) => Ok(items),
            other => Err(EngineError::user(
                name,
                format!("expected grouped values, got {}", other.kind()),
            )),
        }
    }
}

fn split_kv(wv: &mut WindowedValue, name: &str) -> Result<(Value, Value)> {
    std::mem::replace(&mut wv.value, Value::Null)
        .into_kv()
        .ok_or_else(|| EngineError::user(name, "a combine's input is not key/value"))
}

impl Op for PhaseOp {
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        let name = cx.name;
        let c = &*self.combine;
        for mut wv in batch.drain(..) {
            let (key, value) = split_kv(&mut wv, name)?;
            match self.phase {
                Phase::Precombine => {
                    let key_bytes = self
                        .key_coder
                        .encode_to_vec(&key)
                        .map_err(|e| EngineError::user(name, format!("key: {e}")))?;
                    let slot = self
                        .table
                        .entry((key_bytes, wv.window))
                        .or_insert_with(|| (key, c.create_accumulator(), wv.timestamp));
                    slot.2 = self.timestamps.combine(Some(slot.2), wv.timestamp);
                    guarded(name, || c.add_input(&mut slot.1, value))?;
                }
                Phase::Merge => {
                    let accs = Self::values(value, name)?
                        .into_iter()
                        .map(|v| guarded(name, || c.accumulator_from_value(v)))
                        .collect::<Result<Vec<_>>>()?;
                    let merged = guarded(name, || c.merge_accumulators(accs))?;
                    let out = guarded(name, || c.accumulator_to_value(&merged))?;
                    cx.out[0].push(wv.with_value(Value::kv(key, out)));
                }
                Phase::Extract => {
                    let acc = guarded(name, || c.accumulator_from_value(value))?;
                    let out = guarded(name, || c.extract_output(acc))?;
                    cx.out[0].push(wv.with_value(Value::kv(key, out)));
                }
                Phase::GroupedValues => {
                    let mut acc = c.create_accumulator();
                    for v in Self::values(value, name)? {
                        guarded(name, || c.add_input(&mut acc, v))?;
                    }
                    let out = guarded(name, || c.extract_output(acc))?;
                    cx.out[0].push(wv.with_value(Value::kv(key, out)));
                }
            }
        }
        Ok(())
    }

    fn end_bundle(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        let name = cx.name;
        for ((_, window), (key, acc, timestamp)) in self.table.drain() {
            let value = guarded(name, || self.combine.accumulator_to_value(&acc))?;
            cx.out[0].push(WindowedValue {
                value: Value::kv(key, value),
                timestamp: self.timestamps.output(&window, timestamp),
                window,
                pane: PaneInfo::NO_FIRING,
            });
        }
        Ok(())
    }
}

/// Beam's identity DoFn: elements pass unchanged (their coder changes on the wire).
#[derive(Debug, Default)]
pub struct IdentityOp;

impl Op for IdentityOp {
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        forward(batch, &mut cx.out[0]);
        Ok(())
    }
}

/// How one side input of a ParDo is read through the state API.
#[derive(Clone, Debug)]
pub struct SideDef {
    /// The ParDo's transform id.
    pub transform_id: String,
    /// The side input's local name.
    pub side_input_id: String,
    /// The ParDo's input slot that receives it.
    pub slot: usize,
    /// Iterable or multimap access.
    pub multimap: bool,
    /// The side input PCollection's window function (main windows map through it).
    pub window_fn: WindowFn,
    /// The side input's element coder (`KV` for multimap access).
    pub coder: Coder,
}

/// A ParDo whose side inputs are fetched through the state API, per side-input window,
/// before the first main element of a window that maps to it.
pub struct SideFetch {
    inner: Box<dyn Op>,
    sides: Vec<SideDef>,
    fetched: Vec<HashSet<Window>>,
    channel: Arc<StateChannel>,
    instruction_id: String,
}

impl SideFetch {
    /// `inner` reading `sides` over `channel` for bundle `instruction_id`.
    pub fn new(
        mut inner: Box<dyn Op>,
        sides: Vec<SideDef>,
        channel: Arc<StateChannel>,
        instruction_id: String,
    ) -> Self {
        // Everything a side input holds for a window is fetched before the main input
        // reads it: the side inputs are complete, as the engine guarantees.
        let max_slot = sides.iter().map(|s| s.slot).max().unwrap_or(0);
        inner.side_watermarks(&vec![beamline_engine::operators::END_OF_TIME; max_slot]);
        SideFetch {
            inner,
            fetched: vec![HashSet::new(); sides.len()],
            sides,
            channel,
            instruction_id,
        }
    }

    fn fetch(&mut self, i: usize, window: Window, cx: &mut OpCx<'_>) -> Result<()> {
        let side = &self.sides[i];
        let mut window_bytes = Vec::new();
        let window_coder = match window {
            Window::Global => WindowCoder::Global,
            _ => WindowCoder::Interval,
        };
        window_coder
            .encode(&window, &mut window_bytes)
            .map_err(|e| side_error(side, cx.name, e.to_string()))?;
        let key = |t| fe::StateKey { r#type: Some(t) };
        use fe::state_key::Type;
        let mut values = Vec::new();
        if side.multimap {
            let Coder::Kv(key_coder, value_coder) = &side.coder else {
                return Err(side_error(
                    side,
                    cx.name,
                    "multimap side input is not key/value".into(),
                ));
            };
            let keys = self
                .channel
                .get_all(
                    &self.instruction_id,
                    &key(Type::MultimapKeysSideInput(
                        fe::state_key::MultimapKeysSideInput {
                            transform_id: side.transform_id.clone(),
                            side_input_id: side.side_input_id.clone(),
                            window: window_bytes.clone(),
                        },
                    )),
                )
                .map_err(|e| side_error(side, cx.name, e.to_string()))?;
            let mut rest = keys.as_slice();
            while !rest.is_empty() {
                let start = rest;
                let k = key_coder
                    .decode(&mut rest, true)
                    .map_err(|e| side_error(side, cx.name, format!("key: {e}")))?;
                let encoded_key = start[..start.len() - rest.len()].to_vec();
                let data = self
                    .channel
                    .get_all(
                        &self.instruction_id,
                        &key(Type::MultimapSideInput(fe::state_key::MultimapSideInput {
                            transform_id: side.transform_id.clone(),
                            side_input_id: side.side_input_id.clone(),
                            window: window_bytes.clone(),
                            key: encoded_key,
                        })),
                    )
                    .map_err(|e| side_error(side, cx.name, e.to_string()))?;
                let mut vs = data.as_slice();
                while !vs.is_empty() {
                    let v = value_coder
                        .decode(&mut vs, true)
                        .map_err(|e| side_error(side, cx.name, format!("value: {e}")))?;
                    values.push(Value::kv(k.clone(), v));
                }
            }
        } else {
            let data = self
                .channel
                .get_all(
                    &self.instruction_id,
                    &key(Type::IterableSideInput(fe::state_key::IterableSideInput {
                        transform_id: side.transform_id.clone(),
                        side_input_id: side.side_input_id.clone(),
                        window: window_bytes,
                    })),
                )
                .map_err(|e| side_error(side, cx.name, e.to_string()))?;
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                values.push(
                    side.coder
                        .decode(&mut rest, true)
                        .map_err(|e| side_error(side, cx.name, e.to_string()))?,
                );
            }
        }
        let mut batch: Vec<WindowedValue> = values
            .into_iter()
            .map(|value| WindowedValue {
                value,
                timestamp: window.max_timestamp(),
                window,
                pane: PaneInfo::NO_FIRING,
            })
            .collect();
        let slot = side.slot;
        self.inner.process(slot, &mut batch, cx)
    }
}

fn side_error(side: &SideDef, name: &str, why: String) -> EngineError {
    EngineError::Runner(format!(
        "transform '{name}': side input '{}': {why}",
        side.side_input_id
    ))
}

impl Op for SideFetch {
    fn process(
        &mut self,
        slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        if slot == 0 {
            for wv in batch.iter() {
                for i in 0..self.sides.len() {
                    let w = self.sides[i].window_fn.side_input_window(&wv.window);
                    if self.fetched[i].insert(w) {
                        self.fetch(i, w, cx)?;
                    }
                }
            }
        }
        self.inner.process(slot, batch, cx)
    }
    fn end_bundle(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        self.inner.end_bundle(cx)
    }
    fn fire_timer(
        &mut self,
        key: &[u8],
        window: Window,
        name: &str,
        output_timestamp: i64,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        // A timer's callback reads the side inputs of its window too.
        for i in 0..self.sides.len() {
            let w = self.sides[i].window_fn.side_input_window(&window);
            if self.fetched[i].insert(w) {
                self.fetch(i, w, cx)?;
            }
        }
        self.inner
            .fire_timer(key, window, name, output_timestamp, cx)
    }
    fn advance(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        self.inner.advance(wm, cx)
    }
    fn hold(&self) -> i64 {
        self.inner.hold()
    }
    fn report(&mut self, name: &str, control: &beamline_engine::job::JobControl) {
        self.inner.report(name, control);
    }
    fn finish(
        &mut self,
        name: &str,
        metrics: &mut beamline_engine::metrics::MetricResults,
    ) -> Result<()> {
        self.inner.finish(name, metrics)
    }
}
