//! A ProcessBundleDescriptor as Beamline operators (its transforms translated once, when
//! registered), and one bundle run through them: elements decoded from the data stream,
//! pushed through the fused operators, encoded to the runner's sinks.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use beamline_engine::coder::{Coder, WindowCoder, WindowedValueCoder, WindowedValues};
use beamline_engine::graph::{Graph, NodeKind, PcId};
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::{self, call_bounded, Op};
use beamline_engine::registry::FnRegistry;
use beamline_engine::time::GLOBAL_WINDOW_MAX_TIMESTAMP;
use beamline_engine::window::{TimestampCombiner, Window, WindowedValue};
use beamline_engine::{EngineError, Result};
use beamline_proto::fn_execution as fe;
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;

use super::data::Inbound;
use super::phases::{IdentityOp, Phase, PhaseOp, SideDef, SideFetch, IDENTITY_DOFN};
use super::Worker;

/// `beam:runner:source:v1`: elements the engine sends into the stage.
pub const DATA_INPUT: &str = "beam:runner:source:v1";
/// `beam:runner:sink:v1`: elements the stage sends back to the engine.
pub const DATA_OUTPUT: &str = "beam:runner:sink:v1";

/// Encoded output is sent once a sink's buffer holds this much.
const FLUSH_BYTES: usize = 1 << 20;

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidPipeline(msg)
}

/// A data port: a runner source or sink transform, its endpoint and wire coder.
#[derive(Debug)]
struct Port {
    transform_id: String,
    /// The engine's id of the PCollection it carries.
    engine_pc: String,
    url: String,
    coder: WindowedValueCoder,
    pc: PcId,
    window_fn: beamline_engine::window::WindowFn,
}

/// A transform the harness runs with its own operators (not the engine graph's).
enum Custom {
    Phase(
        Phase,
        Arc<dyn beamline_engine::combine::CombineFnInvoker>,
        Coder,
        TimestampCombiner,
    ),
    Identity,
}

struct CustomDef {
    name: String,
    kind: Custom,
    input: PcId,
    output: PcId,
}

/// A registered descriptor, translated.
pub struct StageDef {
    graph: Graph,
    /// Indexes of the graph's nodes that run (not the combines translated for their fns).
    nodes: Vec<usize>,
    sources: Vec<Port>,
    sinks: Vec<Port>,
    custom: Vec<CustomDef>,
    /// Side inputs to fetch, by graph node index.
    sides: HashMap<usize, Vec<SideDef>>,
    /// Stateful ParDos, by graph node index.
    stateful: HashMap<usize, StatefulDef>,
    state_url: Option<String>,
    timer_url: Option<String>,
    /// Transform ids by unique name (metrics are kept by name, reported by id).
    ids: HashMap<String, String>,
    /// How the job's live progress shows it.
    shape: super::progress::StageShape,
}

/// A stateful ParDo: its state goes through the state API, its timers through the data
/// stream.
#[derive(Clone, Debug)]
struct StatefulDef {
    transform_id: String,
    /// Timer families (Beamline's timer names).
    families: Vec<String>,
    has_state: bool,
    key_coder: Coder,
    window_coder: WindowCoder,
    window_fn: beamline_engine::window::WindowFn,
}

impl std::fmt::Debug for StageDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageDef")
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|&i| {
                        let n = &self.graph.nodes[i];
                        (n.name.clone(), n.inputs.clone(), n.outputs.clone())
                    })
                    .collect::<Vec<_>>(),
            )
            .field("sources", &self.sources)
            .field("sinks", &self.sinks)
            .finish()
    }
}

/// The single value of a map (a transform's only input or output).
fn only<'a>(m: &'a HashMap<String, String>, what: &str, name: &str) -> Result<&'a String> {
    let mut values = m.values();
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(invalid(format!(
            "transform '{name}' needs one {what}, has {}",
            m.len()
        ))),
    }
}

/// `beam:coder:windowed_value:v1` with its element and window coders.
fn wire_coder(comps: &pb::Components, id: &str) -> Result<WindowedValueCoder> {
    let c = comps
        .coders
        .get(id)
        .ok_or_else(|| invalid(format!("unknown coder id '{id}'")))?;
    let urn = c.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("");
    if urn != urns::CODER_WINDOWED_VALUE || c.component_coder_ids.len() != 2 {
        return Err(invalid(format!(
            "data port coder '{id}' is '{urn}', not a windowed value coder"
        )));
    }
    let value = beamline_translate::coder(comps, &c.component_coder_ids[0])?;
    let wid = &c.component_coder_ids[1];
    let wurn = comps
        .coders
        .get(wid)
        .and_then(|w| w.spec.as_ref())
        .map(|s| s.urn.as_str())
        .unwrap_or("");
    let window = match wurn {
        urns::CODER_GLOBAL_WINDOW => WindowCoder::Global,
        urns::CODER_INTERVAL_WINDOW => WindowCoder::Interval,
        other => {
            return Err(invalid(format!(
                "window coder '{other}' of data port coder '{id}' is not supported"
            )))
        }
    };
    Ok(WindowedValueCoder { value, window })
}

fn port(comps: &pb::Components, t: &pb::PTransform, pcoll: &str) -> Result<(String, String)> {
    let payload = t.spec.as_ref().map(|s| s.payload.as_slice()).unwrap_or(&[]);
    let p = fe::RemoteGrpcPort::decode(payload)
        .map_err(|e| invalid(format!("'{}': bad RemoteGrpcPort: {e}", t.unique_name)))?;
    let url = p
        .api_service_descriptor
        .map(|d| d.url)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "'{}': data port without an endpoint",
                t.unique_name
            ))
        })?;
    let coder_id = if p.coder_id.is_empty() {
        comps
            .pcollections
            .get(pcoll)
            .map(|p| p.coder_id.clone())
            .unwrap_or_default()
    } else {
        p.coder_id
    };
    Ok((url, coder_id))
}

impl StageDef {
    /// Translates descriptor `d`, resolving functions in `fns`.
    ///
    /// # Errors
    /// Transforms, coders or functions Beamline cannot run (naming them).
    pub fn new(d: fe::ProcessBundleDescriptor, fns: &FnRegistry) -> Result<StageDef> {
        let mut comps = pb::Components {
            transforms: d.transforms,
            pcollections: d.pcollections,
            windowing_strategies: d.windowing_strategies,
            coders: d.coders,
            environments: d.environments,
        };
        let mut engine_ids = Vec::new();
        let mut extra = Vec::new();
        let mut ports = Vec::new();
        let mut customs = Vec::new();
        let mut synthetic = Vec::new();
        let mut ids: Vec<String> = comps.transforms.keys().cloned().collect();
        ids.sort();
        for id in &ids {
            let t = &comps.transforms[id];
            if !t.subtransforms.is_empty() {
                continue;
            }
            let urn = t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("");
            let name = t.unique_name.clone();
            match urn {
                DATA_INPUT | DATA_OUTPUT => {
                    let pcoll = if urn == DATA_INPUT {
                        only(&t.outputs, "output", &name)?
                    } else {
                        only(&t.inputs, "input", &name)?
                    };
                    let (url, coder_id) = port(&comps, t, pcoll)?;
                    let coder = wire_coder(&comps, &coder_id)?;
                    extra.push(pcoll.clone());
                    ports.push((urn == DATA_INPUT, id.clone(), url, coder, pcoll.clone()));
                }
                IDENTITY_DOFN => {
                    let (i, o) = (
                        only(&t.inputs, "input", &name)?,
                        only(&t.outputs, "output", &name)?,
                    );
                    extra.extend([i.clone(), o.clone()]);
                    customs.push((name, None, i.clone(), o.clone()));
                }
                _ => match Phase::of_urn(urn) {
                    Some(phase) => {
                        let (i, o) = (
                            only(&t.inputs, "input", &name)?,
                            only(&t.outputs, "output", &name)?,
                        );
                        extra.extend([i.clone(), o.clone()]);
                        // The CombineFn resolves as the CombinePerKey it came from would.
                        let mut as_combine = t.clone();
                        if let Some(spec) = as_combine.spec.as_mut() {
                            spec.urn = urns::COMBINE_PER_KEY.into();
                        }
                        let sid = format!("{id}#combine");
                        synthetic.push((sid.clone(), as_combine));
                        customs.push((name, Some((phase, sid)), i.clone(), o.clone()));
                    }
                    None => engine_ids.push(id.clone()),
                },
            }
        }
        let mut translated = engine_ids.clone();
        for (sid, t) in synthetic {
            translated.push(sid.clone());
            comps.transforms.insert(sid, t);
        }
        let (graph, pcs) = beamline_translate::to_fragment(&comps, &translated, &extra, fns)?;
        let pc = |id: &str| -> PcId { pcs[id] };
        let mut nodes = Vec::new();
        let mut stateful = HashMap::new();
        let mut combine_fns = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            match &node.kind {
                NodeKind::CombinePerKey { combine_fn, .. }
                    if customs.iter().any(|c| c.0 == node.name && c.1.is_some()) =>
                {
                    combine_fns.insert(node.name.clone(), combine_fn.clone());
                }
                NodeKind::ParDo {
                    stateful: Some(spec),
                    ..
                } => {
                    if spec.on_window_expiration {
                        return Err(invalid(format!(
                            "ParDo '{}' has an on-window-expiration callback, which the portable runner does not run yet",
                            node.name
                        )));
                    }
                    let transform_id = engine_ids
                        .iter()
                        .find(|id| comps.transforms[*id].unique_name == node.name)
                        .cloned()
                        .ok_or_else(|| invalid(format!("no transform for '{}'", node.name)))?;
                    let input = &graph.pcollections[node.inputs[0]];
                    let Coder::Kv(key_coder, _) = &input.coder else {
                        return Err(invalid(format!(
                            "stateful ParDo '{}' needs key/value input",
                            node.name
                        )));
                    };
                    let window_coder = match input.windowing.window_fn {
                        beamline_engine::window::WindowFn::Global => WindowCoder::Global,
                        _ => WindowCoder::Interval,
                    };
                    stateful.insert(
                        i,
                        StatefulDef {
                            transform_id,
                            families: spec.timers.iter().map(|(n, _)| n.clone()).collect(),
                            has_state: !spec.states.is_empty(),
                            key_coder: (**key_coder).clone(),
                            window_coder,
                            window_fn: input.windowing.window_fn,
                        },
                    );
                    nodes.push(i);
                }
                _ => nodes.push(i),
            }
        }
        let mut custom = Vec::new();
        for (name, phase, i, o) in customs {
            let kind = match phase {
                None => Custom::Identity,
                Some((phase, _)) => {
                    let combine = combine_fns.get(&name).cloned().ok_or_else(|| {
                        invalid(format!(
                            "combine phase '{name}' does not carry a Beamline CombineFn"
                        ))
                    })?;
                    let input = &graph.pcollections[pc(&i)];
                    let Coder::Kv(key_coder, _) = &input.coder else {
                        return Err(invalid(format!(
                            "combine phase '{name}' needs key/value input"
                        )));
                    };
                    Custom::Phase(
                        phase,
                        combine,
                        (**key_coder).clone(),
                        input.windowing.timestamp_combiner,
                    )
                }
            };
            custom.push(CustomDef {
                name,
                kind,
                input: pc(&i),
                output: pc(&o),
            });
        }
        let (mut sources, mut sinks) = (Vec::new(), Vec::new());
        for (is_source, transform_id, url, coder, pcoll) in ports {
            let p = Port {
                engine_pc: pcoll.clone(),
                transform_id,
                url,
                coder,
                pc: pc(&pcoll),
                window_fn: graph.pcollections[pc(&pcoll)].windowing.window_fn,
            };
            if is_source {
                sources.push(p);
            } else {
                sinks.push(p);
            }
        }
        let sides = side_defs(&comps, &engine_ids, &graph, &pcs)?;
        let shape = super::progress::StageShape {
            transforms: nodes
                .iter()
                .map(|&n| graph.nodes[n].name.clone())
                .chain(custom.iter().map(|c| c.name.clone()))
                .collect(),
            reads: sources.iter().map(|p| p.engine_pc.clone()).collect(),
            writes: sinks.iter().map(|p| p.engine_pc.clone()).collect(),
            // After the engine's grouping: a combine's merge or extraction.
            groups: custom
                .iter()
                .any(|c| c.name.ends_with("/Merge") || c.name.ends_with("/ExtractOutputs")),
        };
        Ok(StageDef {
            graph,
            nodes,
            sources,
            sinks,
            custom,
            sides,
            stateful,
            state_url: d
                .state_api_service_descriptor
                .map(|s| s.url)
                .filter(|u| !u.is_empty()),
            timer_url: d
                .timer_api_service_descriptor
                .map(|s| s.url)
                .filter(|u| !u.is_empty()),
            ids: comps
                .transforms
                .iter()
                .filter(|(id, _)| !id.ends_with("#combine"))
                .map(|(id, t)| (t.unique_name.clone(), id.clone()))
                .collect(),
            shape,
        })
    }
}

/// The side inputs of the stage's ParDos, as the state API addresses them.
fn side_defs(
    comps: &pb::Components,
    engine_ids: &[String],
    graph: &Graph,
    pcs: &HashMap<String, PcId>,
) -> Result<HashMap<usize, Vec<SideDef>>> {
    let mut out = HashMap::new();
    for id in engine_ids {
        let t = &comps.transforms[id];
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == urns::PAR_DO) else {
            continue;
        };
        let pd = pb::ParDoPayload::decode(spec.payload.as_slice())
            .map_err(|e| invalid(format!("'{}': bad ParDoPayload: {e}", t.unique_name)))?;
        if pd.side_inputs.is_empty() {
            continue;
        }
        let Some(ni) = graph.nodes.iter().position(|n| n.name == t.unique_name) else {
            continue;
        };
        let node = &graph.nodes[ni];
        let mut defs = Vec::new();
        let mut locals: Vec<&String> = pd.side_inputs.keys().collect();
        locals.sort();
        for local in locals {
            let si = &pd.side_inputs[local];
            let pcoll = t.inputs.get(local).ok_or_else(|| {
                invalid(format!(
                    "'{}': side input '{local}' has no input",
                    t.unique_name
                ))
            })?;
            let pc = pcs[pcoll];
            let slot = node
                .side_inputs()
                .iter()
                .position(|&s| s == pc)
                .map(|p| p + 1)
                .ok_or_else(|| {
                    invalid(format!("'{}': side input '{local}' unknown", t.unique_name))
                })?;
            let pattern = si
                .access_pattern
                .as_ref()
                .map(|a| a.urn.as_str())
                .unwrap_or("");
            let info = &graph.pcollections[pc];
            defs.push(SideDef {
                transform_id: id.clone(),
                side_input_id: local.clone(),
                slot,
                multimap: pattern == urns::SIDE_INPUT_MULTIMAP,
                window_fn: info.windowing.window_fn,
                coder: info.coder.clone(),
            });
        }
        out.insert(ni, defs);
    }
    Ok(out)
}

/// An operator of a bundle, with where its input and outputs are.
struct Member {
    name: String,
    op: Box<dyn Op>,
    outputs: Vec<PcId>,
}

/// Where a PCollection's elements go.
#[derive(Clone, Copy)]
enum Target {
    Member(usize, usize),
    Sink(usize),
}

struct Bundle<'a> {
    members: Vec<Member>,
    /// Members upstream first.
    order: Vec<usize>,
    consumers: HashMap<PcId, Vec<Target>>,
    sinks: &'a [Port],
    buffers: Vec<Vec<u8>>,
    channels: Vec<Arc<super::data::DataChannel>>,
    instruction_id: &'a str,
    control: &'a beamline_engine::job::JobControl,
    /// Elements read from and written to the engine in this bundle.
    counted: (usize, usize),
}

impl Bundle<'_> {
    fn push(&mut self, pc: PcId, batch: Vec<WindowedValue>) -> Result<()> {
        if self.control.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let mut work = vec![(pc, batch)];
        while let Some((pc, mut batch)) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            let targets = self.consumers.get(&pc).cloned().unwrap_or_default();
            for (n, target) in targets.iter().enumerate() {
                let mut b = if n + 1 == targets.len() {
                    std::mem::take(&mut batch)
                } else {
                    batch.clone()
                };
                match *target {
                    Target::Sink(s) => {
                        self.counted.1 += b.len();
                        self.write(s, b)?
                    }
                    Target::Member(m, slot) => {
                        let member = &mut self.members[m];
                        let mut outs = vec![Vec::new(); member.outputs.len()];
                        call_bounded(&mut outs, i64::MIN, &member.name, |cx| {
                            member.op.process(slot, &mut b, cx)
                        })?;
                        for (o, out) in member.outputs.iter().zip(outs) {
                            work.push((*o, out));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs a timer the engine fired, pushing what its callback outputs.
    fn fire(
        &mut self,
        member: usize,
        key: &[u8],
        window: Window,
        family: &str,
        hold: i64,
    ) -> Result<()> {
        let m = &mut self.members[member];
        let mut outs = vec![Vec::new(); m.outputs.len()];
        call_bounded(&mut outs, i64::MIN, &m.name, |cx| {
            m.op.fire_timer(key, window, family, hold, cx)
        })?;
        let outputs = m.outputs.clone();
        for (o, out) in outputs.into_iter().zip(outs) {
            self.push(o, out)?;
        }
        Ok(())
    }

    fn write(&mut self, sink: usize, batch: Vec<WindowedValue>) -> Result<()> {
        let port = &self.sinks[sink];
        let buf = &mut self.buffers[sink];
        for wv in batch {
            let wvs = WindowedValues {
                value: wv.value,
                timestamp: wv.timestamp,
                windows: vec![wv.window],
                pane: wv.pane,
            };
            port.coder.encode(&wvs, buf, true).map_err(|e| {
                EngineError::Runner(format!(
                    "encoding output for the engine ({}): {e}",
                    port.transform_id
                ))
            })?;
        }
        if buf.len() >= FLUSH_BYTES {
            self.flush(sink, false)?;
        }
        Ok(())
    }

    fn flush(&mut self, sink: usize, is_last: bool) -> Result<()> {
        let data = std::mem::take(&mut self.buffers[sink]);
        let entry = |data: Vec<u8>, is_last: bool| fe::elements::Data {
            instruction_id: self.instruction_id.into(),
            transform_id: self.sinks[sink].transform_id.clone(),
            data,
            is_last,
        };
        // Beam ignores the data of an `is_last` entry: the end goes on its own.
        let mut entries = Vec::new();
        if !data.is_empty() {
            entries.push(entry(data, false));
        }
        if is_last {
            entries.push(entry(Vec::new(), true));
        }
        if entries.is_empty() {
            return Ok(());
        }
        let elements = fe::Elements {
            data: entries,
            timers: Vec::new(),
        };
        self.channels[sink]
            .send(elements)
            .map_err(EngineError::from)
    }
}

/// Decodes the complete elements at the start of `buf`, leaving a partial one there.
fn decode(
    coder: &WindowedValueCoder,
    buf: &mut Vec<u8>,
    is_last: bool,
    transform: &str,
) -> Result<Vec<WindowedValue>> {
    let mut out = Vec::new();
    let mut rest = buf.as_slice();
    while !rest.is_empty() {
        let before = rest;
        match coder.decode(&mut rest, true) {
            Ok(wvs) => {
                let (n, mut value) = (wvs.windows.len(), Some(wvs.value));
                for (i, window) in wvs.windows.into_iter().enumerate() {
                    let value = if i + 1 == n {
                        value.take().expect("moved once")
                    } else {
                        value.clone().expect("still here")
                    };
                    out.push(WindowedValue {
                        value,
                        timestamp: end_of_window(wvs.timestamp, &window),
                        window,
                        pane: wvs.pane,
                    });
                }
            }
            // An element may continue in the next chunk; at the end it may not.
            Err(e) if is_last => {
                return Err(EngineError::Runner(format!(
                    "undecodable input from the engine for '{transform}': {e}"
                )))
            }
            Err(_) => {
                rest = before;
                break;
            }
        }
    }
    let used = buf.len() - rest.len();
    buf.drain(..used);
    Ok(out)
}

/// Beam Python's windows end 1 µs before their end (ours 1 ms): its end-of-window
/// timestamps, in milliseconds, are 1 ms early in the global window (its maximum rounds
/// down) and 1 ms late in a window ending at or before 0 (truncated towards 0). Both are
/// read as the end of the window they belong to.
fn end_of_window(timestamp: i64, window: &Window) -> i64 {
    /// Beam Python's `GlobalWindow().max_timestamp()` in milliseconds.
    const PYTHON_GLOBAL_MAX: i64 = GLOBAL_WINDOW_MAX_TIMESTAMP - 1;
    match window {
        Window::Global if timestamp == PYTHON_GLOBAL_MAX => GLOBAL_WINDOW_MAX_TIMESTAMP,
        Window::Interval { .. } if timestamp > window.max_timestamp() => window.max_timestamp(),
        _ => timestamp,
    }
}

/// A window as Beamline made it. Beam Python keeps time in microseconds within an i64: a
/// window starting before its earliest time (one of an element at Beamline's minimum
/// timestamp) comes back with its start clamped, or its span overflowed; fixed and sliding
/// windows are known by their end.
fn restore_window(window: Window, window_fn: &beamline_engine::window::WindowFn) -> Window {
    use beamline_engine::window::WindowFn;
    /// Beam Python's earliest time, in milliseconds.
    const PYTHON_MIN: i64 = i64::MIN / 1000;
    match (window, window_fn) {
        (Window::Interval { start, end }, WindowFn::Fixed { size, .. })
        | (Window::Interval { start, end }, WindowFn::Sliding { size, .. })
            if start <= PYTHON_MIN || start >= end =>
        {
            Window::Interval {
                start: end.saturating_sub(*size),
                end,
            }
        }
        _ => window,
    }
}

/// Runs one bundle of `def` for `instruction_id`.
///
/// # Errors
/// User code failures (naming the transform), undecodable input, lost streams.
pub(crate) fn run_bundle(
    worker: &Worker,
    def: &StageDef,
    instruction_id: &str,
    request: &fe::ProcessBundleRequest,
) -> Result<fe::ProcessBundleResponse> {
    let stream_id = request.data_stream_id.as_str();
    let needs_state = !def.sides.is_empty() || def.stateful.values().any(|s| s.has_state);
    let state = match &def.state_url {
        Some(url) if needs_state => Some(worker.state.channel(url)?),
        _ => None,
    };
    let timer_buffers: super::user_state::TimerBuffers = Default::default();
    let mut timer_targets: HashMap<String, (usize, StatefulDef)> = HashMap::new();
    // Operators, in the engine graph's order, then the harness's own.
    let mut members = Vec::new();
    let mut consumers: HashMap<PcId, Vec<Target>> = HashMap::new();
    for &ni in &def.nodes {
        let node = &def.graph.nodes[ni];
        let mut op = match def.stateful.get(&ni) {
            None => operators::build(&def.graph, node)?,
            Some(sd) => {
                timer_targets.insert(sd.transform_id.clone(), (members.len(), sd.clone()));
                operators::build_with_backend(
                    &def.graph,
                    node,
                    Box::new(super::user_state::FnApiState {
                        channel: state.clone(),
                        instruction_id: instruction_id.into(),
                        transform_id: sd.transform_id.clone(),
                        key_coder: sd.key_coder.clone(),
                        timers: timer_buffers.clone(),
                    }),
                )?
            }
        };
        if let Some(sides) = def.sides.get(&ni) {
            let channel = state.clone().ok_or_else(|| {
                invalid(format!(
                    "'{}' reads side inputs, but the engine gave no state endpoint",
                    node.name
                ))
            })?;
            op = Box::new(SideFetch::new(
                op,
                sides.clone(),
                channel,
                instruction_id.into(),
            ));
        }
        for (slot, &pc) in node.inputs.iter().enumerate() {
            consumers
                .entry(pc)
                .or_default()
                .push(Target::Member(members.len(), slot));
        }
        members.push(Member {
            name: node.name.clone(),
            op,
            outputs: node.outputs.clone(),
        });
    }
    for c in &def.custom {
        let op: Box<dyn Op> = match &c.kind {
            Custom::Identity => Box::new(IdentityOp),
            Custom::Phase(phase, combine, key_coder, timestamps) => Box::new(PhaseOp::new(
                *phase,
                combine.clone(),
                key_coder.clone(),
                *timestamps,
            )),
        };
        consumers
            .entry(c.input)
            .or_default()
            .push(Target::Member(members.len(), 0));
        // User code errors name the combine, as on the local runner.
        let name = c
            .name
            .strip_suffix("/Precombine")
            .or_else(|| c.name.strip_suffix("/Merge"))
            .or_else(|| c.name.strip_suffix("/ExtractOutputs"))
            .unwrap_or(&c.name)
            .to_owned();
        members.push(Member {
            name,
            op,
            outputs: vec![c.output],
        });
    }
    for (s, sink) in def.sinks.iter().enumerate() {
        consumers.entry(sink.pc).or_default().push(Target::Sink(s));
    }
    let channels = def
        .sinks
        .iter()
        .map(|s| worker.data.channel(&s.url, stream_id))
        .collect::<crate::Result<Vec<_>>>()?;
    let order = upstream_first(&members, &consumers);
    let mut bundle = Bundle {
        order,
        members,
        consumers,
        sinks: &def.sinks,
        buffers: vec![Vec::new(); def.sinks.len()],
        channels,
        instruction_id,
        control: &worker.context.control,
        counted: (0, 0),
    };
    let result = feed(
        worker,
        def,
        &mut bundle,
        &timer_targets,
        instruction_id,
        stream_id,
    )
    .and_then(|()| finish_bundle(worker, &mut bundle));
    for url in def
        .sources
        .iter()
        .map(|s| &s.url)
        .chain(def.timer_url.iter())
    {
        if let Ok(c) = worker.data.channel(url, stream_id) {
            c.unregister(instruction_id);
        }
    }
    let metrics = result?;
    for s in 0..def.sinks.len() {
        bundle.flush(s, true)?;
    }
    worker
        .context
        .live
        .add(&def.shape, bundle.counted.0, bundle.counted.1);
    send_timers(
        worker,
        def,
        &timer_targets,
        &timer_buffers,
        instruction_id,
        stream_id,
    )?;
    Ok(fe::ProcessBundleResponse {
        monitoring_infos: super::monitoring::monitoring_infos(&metrics, &def.ids),
        ..Default::default()
    })
}

/// Sends the bundle's timer changes of every family, then its end.
fn send_timers(
    worker: &Worker,
    def: &StageDef,
    targets: &HashMap<String, (usize, StatefulDef)>,
    buffers: &super::user_state::TimerBuffers,
    instruction_id: &str,
    stream_id: &str,
) -> Result<()> {
    if targets.values().all(|(_, sd)| sd.families.is_empty()) {
        return Ok(());
    }
    let url = def.timer_url.as_ref().ok_or_else(|| {
        EngineError::Runner("a stage with timers, but the engine gave no timer endpoint".into())
    })?;
    let channel = worker.data.channel(url, stream_id)?;
    let mut buffers = buffers.lock().expect("timers");
    let mut timers = Vec::new();
    for (transform_id, (_, sd)) in targets {
        for family in &sd.families {
            let entry = |timers: Vec<u8>, is_last: bool| fe::elements::Timers {
                instruction_id: instruction_id.into(),
                transform_id: transform_id.clone(),
                timer_family_id: family.clone(),
                timers,
                is_last,
            };
            if let Some(data) = buffers.remove(family).filter(|d| !d.is_empty()) {
                timers.push(entry(data, false));
            }
            timers.push(entry(Vec::new(), true));
        }
    }
    channel
        .send(fe::Elements {
            data: Vec::new(),
            timers,
        })
        .map_err(EngineError::from)
}

/// The members in an order where each comes after those feeding it.
fn upstream_first(members: &[Member], consumers: &HashMap<PcId, Vec<Target>>) -> Vec<usize> {
    fn visit(
        m: usize,
        members: &[Member],
        consumers: &HashMap<PcId, Vec<Target>>,
        seen: &mut [bool],
        post: &mut Vec<usize>,
    ) {
        if std::mem::replace(&mut seen[m], true) {
            return;
        }
        for pc in &members[m].outputs {
            for t in consumers.get(pc).into_iter().flatten() {
                if let Target::Member(next, _) = *t {
                    visit(next, members, consumers, seen, post);
                }
            }
        }
        post.push(m);
    }
    let mut seen = vec![false; members.len()];
    let mut post = Vec::new();
    for m in 0..members.len() {
        visit(m, members, consumers, &mut seen, &mut post);
    }
    post.reverse();
    post
}

/// Reads the bundle's input until every source said `is_last`, pushing it through.
fn feed(
    worker: &Worker,
    def: &StageDef,
    bundle: &mut Bundle<'_>,
    timer_targets: &HashMap<String, (usize, StatefulDef)>,
    instruction_id: &str,
    stream_id: &str,
) -> Result<()> {
    let mut urls: Vec<&str> = def.sources.iter().map(|s| s.url.as_str()).collect();
    // Timers fired by the engine arrive, family by family, with an end each.
    let mut open_timers: HashSet<(String, String)> = HashSet::new();
    if let Some(url) = &def.timer_url {
        for (transform_id, (_, sd)) in timer_targets {
            for family in &sd.families {
                open_timers.insert((transform_id.clone(), family.clone()));
            }
        }
        if !open_timers.is_empty() {
            urls.push(url.as_str());
        }
    }
    urls.sort_unstable();
    urls.dedup();
    let (tx, rx) = std::sync::mpsc::channel::<Inbound>();
    let mut receivers = Vec::new();
    for url in urls {
        receivers.push(
            worker
                .data
                .channel(url, stream_id)?
                .register(instruction_id),
        );
    }
    // One stream in practice; more are merged by forwarding threads.
    let rx = if receivers.len() == 1 {
        drop(tx);
        receivers.pop().expect("one")
    } else {
        for r in receivers {
            let tx = tx.clone();
            std::thread::spawn(move || {
                while let Ok(item) = r.recv() {
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            });
        }
        rx
    };
    let mut pending: HashMap<&str, (usize, Vec<u8>)> = def
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.transform_id.as_str(), (i, Vec::new())))
        .collect();
    let mut open: HashSet<&str> = pending.keys().copied().collect();
    while !open.is_empty() || !open_timers.is_empty() {
        let item = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                if worker.context.control.is_cancelled() {
                    return Err(EngineError::Cancelled);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(EngineError::Runner(
                    "the data stream ended in the middle of a bundle".into(),
                ))
            }
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!("[harness] {instruction_id}: got {item:?}");
        }
        match item {
            Inbound::Data {
                transform_id,
                data,
                is_last,
            } => {
                let Some((i, buf)) = pending.get_mut(transform_id.as_str()) else {
                    return Err(EngineError::Runner(format!(
                        "the engine sent data for '{transform_id}', which is no input of this stage"
                    )));
                };
                let source = &def.sources[*i];
                buf.extend_from_slice(&data);
                let mut batch = decode(&source.coder, buf, is_last, &transform_id)?;
                for wv in &mut batch {
                    wv.window = restore_window(wv.window, &source.window_fn);
                }
                bundle.counted.0 += batch.len();
                bundle.push(source.pc, batch)?;
                if is_last {
                    open.remove(source.transform_id.as_str());
                }
            }
            Inbound::Timers {
                transform_id,
                family,
                data,
                is_last,
            } => {
                let Some((member, sd)) = timer_targets.get(&transform_id) else {
                    return Err(EngineError::Runner(format!(
                        "the engine sent timers ({family}) for '{transform_id}', which has none in this stage"
                    )));
                };
                let mut rest = data.as_slice();
                while !rest.is_empty() {
                    let timer = super::user_state::decode_timer(&sd.window_coder, &mut rest)
                        .map_err(|e| {
                            EngineError::Runner(format!(
                                "undecodable timer from the engine for '{transform_id}': {e}"
                            ))
                        })?;
                    if timer.cleared {
                        continue;
                    }
                    for window in timer.windows {
                        let window = restore_window(window, &sd.window_fn);
                        bundle.fire(*member, &timer.key, window, &family, timer.hold)?;
                    }
                }
                if is_last {
                    open_timers.remove(&(transform_id, family));
                }
            }
            Inbound::Closed(why) => return Err(EngineError::Runner(why)),
        }
    }
    Ok(())
}

/// Ends the bundle in every operator (upstream first) and tears them down; returns the
/// bundle's user metrics (also reported to the job's handle).
fn finish_bundle(worker: &Worker, bundle: &mut Bundle<'_>) -> Result<MetricResults> {
    for i in 0..bundle.order.len() {
        let member = &mut bundle.members[bundle.order[i]];
        let mut outs = vec![Vec::new(); member.outputs.len()];
        call_bounded(&mut outs, i64::MIN, &member.name, |cx| {
            member.op.end_bundle(cx)
        })?;
        let outputs = member.outputs.clone();
        for (o, out) in outputs.into_iter().zip(outs) {
            bundle.push(o, out)?;
        }
    }
    let mut metrics = MetricResults::default();
    for member in &mut bundle.members {
        member.op.finish(&member.name, &mut metrics)?;
    }
    worker.context.control.report_results(metrics.clone());
    Ok(metrics)
}
