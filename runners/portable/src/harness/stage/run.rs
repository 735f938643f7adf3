//! One bundle run through a stage's operators: elements decoded from the data stream,
//! pushed through the fused operators in order, timers sent and fired, outputs encoded
//! to the runner's sinks.

use super::{invalid, Custom, Port, StageDef, StatefulDef, FLUSH_BYTES};
use crate::harness::data::Inbound;
use crate::harness::phases::{IdentityOp, PhaseOp, SideFetch};
use crate::harness::Worker;
use beamline_engine::graph::PcId;
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::{self, call_bounded, Op};
use beamline_engine::time::GLOBAL_WINDOW_MAX_TIMESTAMP;
use beamline_engine::window::{Window, WindowedValue};
use beamline_engine::windowed_coder::{WindowedValueCoder, WindowedValues};
use beamline_engine::{EngineError, Result};
use beamline_proto::fn_execution as fe;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

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
    channels: Vec<Arc<crate::harness::data::DataChannel>>,
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
    let timer_buffers: crate::harness::user_state::TimerBuffers = Default::default();
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
                    Box::new(crate::harness::user_state::FnApiState {
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
        monitoring_infos: crate::harness::monitoring::monitoring_infos(&metrics, &def.ids),
        ..Default::default()
    })
}

/// Sends the bundle's timer changes of every family, then its end.
fn send_timers(
    worker: &Worker,
    def: &StageDef,
    targets: &HashMap<String, (usize, StatefulDef)>,
    buffers: &crate::harness::user_state::TimerBuffers,
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
                    let timer =
                        crate::harness::user_state::decode_timer(&sd.window_coder, &mut rest)
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
