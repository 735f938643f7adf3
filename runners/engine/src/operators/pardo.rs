//! The streaming ParDo: batches through the DoFn, or element by element with per-key
//! state and timers (stateful DoFns) or side inputs that must be ready first.

mod timers;

use super::guard::guarded;
use super::keyed_states::{KeyedStates, Layout};
use super::op::{Op, OpCx, StateBudget, END_OF_TIME};
use super::pardo_codec::{decode_cells, decode_sides, decode_state_key, encode_sides, SIDES};
use super::state_backend::StateBackend;
use crate::checkpoint::{NodeState, StateOut};
use crate::coder::Coder;
use crate::dofn::{Context, DoFnInvoker, Emitter, SideInputData};
use crate::error::{EngineError, Result, UserError};
use crate::graph::{Graph, Node, PcId, StatefulSpec};
use crate::job::JobControl;
use crate::metrics::{MetricResults, MetricsContainer};
use crate::registry::DoFnFactory;
use crate::state::{KeyedState, TimeDomain, TimerRequest};
use crate::value::Value;
use crate::window::{Window, WindowedValue};
use std::sync::Arc;

/// Hands a DoFn's outputs to the op's output buffers.
struct BufEmitter<'a>(&'a mut [Vec<WindowedValue>]);

impl Emitter for BufEmitter<'_> {
    fn emit(&mut self, tag: usize, wv: WindowedValue) -> Result<()> {
        let n = self.0.len();
        let buf = self.0.get_mut(tag).ok_or_else(|| {
            EngineError::InvalidPipeline(format!(
                "output tag #{tag} used but the transform declares {n} output(s)"
            ))
        })?;
        buf.push(wv);
        Ok(())
    }

    fn buffer(&mut self, tag: usize) -> Result<Option<&mut Vec<WindowedValue>>> {
        // Unknown tags get their error from `emit`.
        Ok(self.0.get_mut(tag))
    }
}

struct Stateful {
    spec: Arc<StatefulSpec>,
    lay: Layout,
    allowed_lateness: i64,
    states: KeyedStates,
    dropped: i64,
}

impl Stateful {
    fn new(spec: Arc<StatefulSpec>, key_coder: Coder, allowed_lateness: i64, name: &str) -> Self {
        Stateful {
            lay: Layout {
                decls: spec
                    .states
                    .iter()
                    .map(|d| (d.name.clone(), d.kind.clone()))
                    .collect(),
                key_coder,
                name: name.to_string(),
            },
            spec,
            allowed_lateness,
            states: KeyedStates::default(),
            dropped: 0,
        }
    }
}

pub(crate) struct ParDoOp {
    factory: DoFnFactory,
    inst: Option<Box<dyn DoFnInvoker>>,
    in_bundle: bool,
    metrics: MetricsContainer,
    sides: Vec<SideInputData>,
    side_wms: Vec<i64>,
    pushback: Vec<WindowedValue>,
    stateful: Option<Stateful>,
    backend: Option<Box<dyn StateBackend>>,
    /// Coders of the main input and the side inputs (for checkpoints).
    coders: (Coder, Vec<Coder>),
    /// Side inputs or waiting elements changed since the last checkpoint.
    sides_changed: bool,
    /// The job takes checkpoints (the DoFn is told when it is created).
    commits: Option<usize>,
}

/// What a call into the DoFn is about.
enum Call<'v> {
    Element(WindowedValue),
    Timer {
        name: &'v str,
        window: Window,
        output_timestamp: i64,
    },
    Expire(Window),
}

impl ParDoOp {
    /// The ParDo of `node`, with its side inputs and (when stateful) its state.
    ///
    /// # Errors
    /// When a stateful ParDo's input is not key/value.
    pub(crate) fn new(
        graph: &Graph,
        node: &Node,
        dofn: &DoFnFactory,
        side_inputs: &[PcId],
        stateful: Option<&Arc<StatefulSpec>>,
    ) -> Result<Self> {
        let main = &graph.pcollections[node.inputs[0]];
        let stateful = match stateful {
            None => None,
            Some(spec) => {
                let Coder::Kv(key_coder, _) = &main.coder else {
                    return Err(EngineError::InvalidPipeline(format!(
                        "stateful ParDo '{}' needs key/value input, but '{}' has coder {}",
                        node.name, main.name, main.coder
                    )));
                };
                Some(Stateful::new(
                    spec.clone(),
                    (**key_coder).clone(),
                    main.windowing.allowed_lateness,
                    &node.name,
                ))
            }
        };
        Ok(ParDoOp {
            factory: dofn.clone(),
            inst: None,
            in_bundle: false,
            metrics: MetricsContainer::default(),
            sides: side_inputs
                .iter()
                .map(|&pc| {
                    SideInputData::new(graph.pcollections[pc].windowing.window_fn, Vec::new())
                })
                .collect(),
            side_wms: vec![i64::MIN; side_inputs.len()],
            pushback: Vec::new(),
            stateful,
            backend: None,
            coders: (
                main.coder.clone(),
                side_inputs
                    .iter()
                    .map(|&pc| graph.pcollections[pc].coder.clone())
                    .collect(),
            ),
            sides_changed: false,
            commits: None,
        })
    }
}

impl ParDoOp {
    /// Keeps state and timers in `backend` instead of in the operator.
    pub(crate) fn with_backend(mut self, backend: Box<dyn StateBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Stores and forgets every key and window loaded from the backend.
    fn store_loaded(&mut self) -> Result<()> {
        let (Some(st), Some(backend)) = (&mut self.stateful, &mut self.backend) else {
            return Ok(());
        };
        for ((kb, window), entry) in st.states.drain() {
            backend.store(&kb, &window, &st.lay.decls, &entry.cells)?;
        }
        Ok(())
    }

    /// Creates and sets up the DoFn if it does not exist yet.
    fn ensure_instance(&mut self, name: &str) -> Result<()> {
        if self.inst.is_none() {
            let f = self.factory.clone();
            let mut inv = guarded(name, || Ok(f()))?;
            guarded(name, || inv.setup())?;
            if let Some(instance) = self.commits {
                inv.commits_enabled(instance);
            }
            self.inst = Some(inv);
        }
        Ok(())
    }

    fn instance(&mut self, name: &str, cx_out: &mut [Vec<WindowedValue>]) -> Result<()> {
        self.ensure_instance(name)?;
        if !self.in_bundle {
            self.in_bundle = true;
            self.with_context(name, cx_out, |inv, ctx| inv.start_bundle(ctx))?;
        }
        Ok(())
    }

    /// Calls the DoFn (created) with a context in the global window whose outputs go to
    /// `out`; an error recorded by the context (from downstream) comes first.
    fn with_context(
        &mut self,
        name: &str,
        out: &mut [Vec<WindowedValue>],
        f: impl FnOnce(&mut dyn DoFnInvoker, &mut Context<'_>) -> std::result::Result<(), UserError>,
    ) -> Result<()> {
        let inv = self.inst.as_mut().expect("created");
        let mut em = BufEmitter(out);
        let mut ctx = Context::new(&mut em, &self.sides, &mut self.metrics, Window::Global);
        let r = guarded(name, || f(&mut **inv, &mut ctx));
        match ctx.take_error() {
            Some(e) => Err(e),
            None => r,
        }
    }

    fn sides_ready(&self, w: &Window) -> bool {
        self.sides
            .iter()
            .zip(&self.side_wms)
            .all(|(s, &wm)| wm == END_OF_TIME || wm > s.window_for(w).max_timestamp())
    }

    /// Runs one call of the DoFn, with the key's state when stateful.
    fn call(
        &mut self,
        call: Call<'_>,
        key_bytes: Option<Vec<u8>>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        self.instance(cx.name, cx.out)?;
        let name = cx.name;
        let inv = self.inst.as_mut().expect("created");
        let window = match &call {
            Call::Element(wv) => wv.window,
            Call::Timer { window, .. } | Call::Expire(window) => *window,
        };
        let mut em = BufEmitter(cx.out);
        let mut ctx = Context::new(&mut em, &self.sides, &mut self.metrics, window);
        let mut requests = Vec::new();
        let (r, err) = match (&mut self.stateful, key_bytes) {
            (Some(st), Some(kb)) => {
                let id = (kb, window);
                let backend = &mut self.backend;
                let lay = &st.lay;
                let entry = st.states.entry(&id, lay, || match backend {
                    None => Ok((Value::Null, Vec::new())),
                    Some(b) => Ok((lay.decode_key(&id.0)?, b.load(&id.0, &window, &lay.decls)?)),
                })?;
                if let Call::Element(wv) = &call {
                    if let Some((key, _)) = wv.value.as_kv() {
                        if entry.key == Value::Null {
                            entry.key = key.into_owned();
                        }
                    }
                }
                let ts = match &call {
                    Call::Element(wv) => wv.timestamp,
                    Call::Timer {
                        output_timestamp, ..
                    } => *output_timestamp,
                    Call::Expire(w) => w.max_timestamp(),
                };
                let keyed = KeyedState {
                    key: &entry.key,
                    decls: &lay.decls,
                    cells: &mut entry.cells,
                    timers: &mut requests,
                    timer_decls: &st.spec.timers,
                    now: cx.now,
                    watermark: cx.input_watermark,
                };
                let mut ctx = ctx.with_state(keyed, ts);
                let r = guarded(name, || match call {
                    Call::Element(wv) => inv.process(wv, &mut ctx),
                    Call::Timer { name, .. } => inv.on_timer(name, &mut ctx),
                    Call::Expire(_) => inv.on_window_expiration(&mut ctx),
                });
                let err = ctx.take_error();
                // Apply timer changes: the backend's, or ours to fire.
                if let Some(b) = &mut self.backend {
                    for req in requests {
                        let (name, change) = match req {
                            TimerRequest::Set {
                                name,
                                timestamp,
                                output_timestamp,
                            } => (name, Some((timestamp, output_timestamp))),
                            TimerRequest::Clear { name } => (name, None),
                        };
                        let domain = timer_domain(&st.spec, &name);
                        b.timer(&entry.key, &window, &name, domain, change)?;
                    }
                    return match err {
                        Some(e) => Err(e),
                        None => r,
                    };
                }
                for req in requests {
                    match req {
                        TimerRequest::Set {
                            name,
                            timestamp,
                            output_timestamp,
                        } => {
                            let domain = timer_domain(&st.spec, &name);
                            st.states.set_timer(
                                &id,
                                name,
                                Some((domain, timestamp, output_timestamp)),
                            );
                        }
                        TimerRequest::Clear { name } => st.states.set_timer(&id, name, None),
                    }
                }
                st.states.used(&id, &st.lay)?;
                (r, err)
            }
            _ => {
                let r = guarded(name, || match call {
                    Call::Element(wv) => inv.process(wv, &mut ctx),
                    Call::Timer { name, .. } => inv.on_timer(name, &mut ctx),
                    Call::Expire(_) => inv.on_window_expiration(&mut ctx),
                });
                (r, ctx.take_error())
            }
        };
        match err {
            Some(e) => Err(e),
            None => r,
        }
    }

    fn process_main(&mut self, wv: WindowedValue, cx: &mut OpCx<'_>) -> Result<()> {
        if let Some(st) = &mut self.stateful {
            // Lateness is judged on arrival: elements waiting for side inputs hold the
            // watermark and are not late when they are finally processed.
            if cx.input_watermark
                > wv.window
                    .max_timestamp()
                    .saturating_add(st.allowed_lateness)
            {
                st.dropped += 1;
                return Ok(());
            }
        }
        if !self.sides_ready(&wv.window) {
            self.sides_changed = true;
            self.pushback.push(wv);
            return Ok(());
        }
        self.process_ready(wv, cx)
    }

    fn process_ready(&mut self, wv: WindowedValue, cx: &mut OpCx<'_>) -> Result<()> {
        let key_bytes =
            match &mut self.stateful {
                None => None,
                Some(st) => {
                    let Some((key, _)) = wv.value.as_kv() else {
                        return Err(EngineError::user(
                            cx.name,
                            format!(
                                "stateful ParDo needs key/value elements, got a {} value",
                                wv.value.kind()
                            ),
                        ));
                    };
                    Some(st.lay.key_coder.encode_to_vec(&key).map_err(|source| {
                        EngineError::Coder {
                            transform: cx.name.to_string(),
                            source,
                        }
                    })?)
                }
            };
        self.call(Call::Element(wv), key_bytes, cx)
    }
}

/// The time domain of timer `name` (event time when undeclared).
fn timer_domain(spec: &StatefulSpec, name: &str) -> TimeDomain {
    spec.timers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| *d)
        .unwrap_or(TimeDomain::Watermark)
}

impl Op for ParDoOp {
    fn process(
        &mut self,
        slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        if slot > 0 {
            self.sides_changed = true;
            for wv in batch.drain(..) {
                self.sides[slot - 1].push(wv);
            }
            return Ok(());
        }
        if self.stateful.is_some() || !self.sides.is_empty() {
            // Per element: state lookups, side-input readiness.
            for wv in batch.drain(..) {
                self.process_main(wv, cx)?;
            }
            return Ok(());
        }
        self.instance(cx.name, cx.out)?;
        self.with_context(cx.name, cx.out, |inv, ctx| inv.process_batch(batch, ctx))
    }

    fn side_watermarks(&mut self, wms: &[i64]) {
        self.side_wms.copy_from_slice(wms);
    }

    fn end_bundle(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        if self.in_bundle {
            self.in_bundle = false;
            self.with_context(cx.name, cx.out, |inv, ctx| inv.finish_bundle(ctx))?;
        }
        if let Some(st) = &mut self.stateful {
            st.states.refresh()?;
        }
        self.store_loaded()
    }

    fn fire_timer(
        &mut self,
        key: &[u8],
        window: Window,
        name: &str,
        output_timestamp: i64,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        if self.stateful.is_none() {
            return Err(EngineError::Runner(format!(
                "timer '{name}' fired for '{}', which has no state or timers",
                cx.name
            )));
        }
        self.call(
            Call::Timer {
                name,
                window,
                output_timestamp,
            },
            Some(key.to_vec()),
            cx,
        )
    }

    fn advance(&mut self, wm: i64, cx: &mut OpCx<'_>) -> Result<()> {
        self.advance_to(wm, cx)?;
        self.refresh()
    }

    fn on_processing_time(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        let now = cx.now;
        self.fire_timers(TimeDomain::ProcessingTime, now, cx)?;
        self.refresh()
    }

    fn hold(&self) -> i64 {
        let timers = self
            .stateful
            .as_ref()
            .map_or(END_OF_TIME, |s| s.states.first_event_timer());
        let pushed = self
            .pushback
            .iter()
            .map(|wv| wv.timestamp)
            .min()
            .unwrap_or(END_OF_TIME);
        timers.min(pushed)
    }

    fn report(&mut self, name: &str, control: &JobControl) {
        if let Some(st) = &mut self.stateful {
            st.states.report(&mut self.metrics);
        }
        control.report(name, &mut self.metrics);
    }

    fn snapshot(&mut self, out: &mut StateOut, cx: &mut OpCx<'_>) -> Result<()> {
        let name = cx.name;
        if self.backend.is_some() {
            return Err(EngineError::Checkpoint(format!(
                "'{name}' keeps its state in the runner's state service, which checkpoints it"
            )));
        }
        // Every checkpoint asks the DoFn (created if it saw nothing yet) to prepare a
        // commit: a sink's record also says which checkpoint its visible output is as of.
        self.ensure_instance(name)?;
        let inv = self.inst.as_mut().expect("created");
        let (id, last) = (out.id(), out.last());
        if let Some(record) = guarded(name, || inv.prepare_commit(id, last))? {
            out.commit_record(record);
        }
        if self
            .stateful
            .as_ref()
            .is_some_and(|st| st.states.needs_whole_snapshot())
        {
            out.replace_all();
        }
        if out.full() || self.sides_changed {
            if self.sides.is_empty() && self.pushback.is_empty() {
                out.delete(SIDES);
            } else {
                let (main, side) = &self.coders;
                out.put(
                    SIDES,
                    encode_sides(&self.sides, side, &self.pushback, main, name)?,
                );
            }
            self.sides_changed = false;
        }
        let Some(st) = &mut self.stateful else {
            return Ok(());
        };
        st.states.snapshot(out, &st.lay)
    }

    fn restore(&mut self, state: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        let name = cx.name;
        state.for_each(|key, bytes| {
            if key == SIDES {
                let (main, side) = &self.coders;
                self.pushback = decode_sides(bytes, &mut self.sides, side, main, name)?;
                return Ok(());
            }
            let st = self.stateful.as_mut().ok_or_else(|| {
                EngineError::Checkpoint(format!("'{name}' has saved state but is not stateful"))
            })?;
            let (kb, window) = decode_state_key(key, name)?;
            let (cells, timers) = decode_cells(&st.lay.decls, bytes, name)?;
            let key = st.lay.decode_key(&kb)?;
            st.states.restore((kb, window), key, cells, timers, &st.lay)
        })?;
        if let Some(st) = &mut self.stateful {
            st.states.track_changes();
        }
        self.sides_changed = false;
        Ok(())
    }

    fn limit_state(&mut self, budget: StateBudget) -> bool {
        match &mut self.stateful {
            Some(st) if self.backend.is_none() => {
                st.states.limit(budget);
                true
            }
            _ => false,
        }
    }

    fn enable_commits(&mut self, instance: usize) {
        self.commits = Some(instance);
        if let Some(inv) = &mut self.inst {
            inv.commits_enabled(instance);
        }
    }

    fn commit(&mut self, records: &[Vec<u8>], cx: &mut OpCx<'_>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_instance(cx.name)?;
        let inv = self.inst.as_mut().expect("created");
        for r in records {
            guarded(cx.name, || inv.commit(r, &mut self.metrics))?;
        }
        Ok(())
    }

    fn finish(&mut self, name: &str, metrics: &mut MetricResults) -> Result<()> {
        if let Some(st) = &mut self.stateful {
            st.states.report(&mut self.metrics);
            if st.dropped > 0 {
                self.metrics
                    .inc_counter("beamline", "droppedDueToLateness", st.dropped);
            }
        }
        metrics.merge_container(name, &self.metrics);
        if let Some(mut inv) = self.inst.take() {
            guarded(name, || inv.teardown())?;
        }
        Ok(())
    }
}
