//! The streaming ParDo: batches through the DoFn, or element by element with per-key
//! state and timers (stateful DoFns) or side inputs that must be ready first.

use super::guard::guarded;
use super::op::END_OF_TIME;
use super::op::{Op, OpCx};
use super::pardo_codec::{
    decode_cells, decode_sides, decode_state_key, encode_cells, encode_sides, state_key, SIDES,
};
use crate::checkpoint::{NodeState, StateOut};
use crate::coder::Coder;
use crate::dofn::{Context, DoFnInvoker, Emitter, SideInputData};
use crate::error::{EngineError, Result, UserError};
use crate::graph::{Graph, Node, PcId, StatefulSpec};
use crate::job::JobControl;
use crate::metrics::{MetricResults, MetricsContainer};
use crate::registry::DoFnFactory;
use crate::state::{KeyedState, StateCell, StateKind, TimeDomain, TimerRequest};
use crate::value::Value;
use crate::window::{Window, WindowedValue};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;
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

/// Per key and window state of a stateful ParDo.
struct KeyWindow {
    key: Value,
    /// Cells in declaration order.
    cells: Vec<StateCell>,
    /// Pending timers: name to (domain, fire time, output time).
    timers: super::pardo_codec::Timers,
}

type TimerIndex = BTreeSet<(i64, Vec<u8>, Window, String)>;

struct Stateful {
    spec: Arc<StatefulSpec>,
    decls: Vec<(String, StateKind)>,
    key_coder: Coder,
    allowed_lateness: i64,
    states: FxHashMap<(Vec<u8>, Window), KeyWindow>,
    /// How many states each window has: expiry scans the states only when a window is due.
    windows: FxHashMap<Window, usize>,
    event_timers: TimerIndex,
    processing_timers: TimerIndex,
    dropped: i64,
    /// Keys and windows changed since the last checkpoint; `None` until checkpoints start.
    dirty: Option<rustc_hash::FxHashSet<(Vec<u8>, Window)>>,
}

impl Stateful {
    fn new(spec: Arc<StatefulSpec>, key_coder: Coder, allowed_lateness: i64) -> Self {
        Stateful {
            decls: spec
                .states
                .iter()
                .map(|d| (d.name.clone(), d.kind.clone()))
                .collect(),
            spec,
            key_coder,
            allowed_lateness,
            states: FxHashMap::default(),
            windows: FxHashMap::default(),
            event_timers: BTreeSet::new(),
            processing_timers: BTreeSet::new(),
            dropped: 0,
            dirty: None,
        }
    }
}

/// Where a stateful ParDo's state and timers live when the engine does not keep them: a
/// runner that owns them (an SDK harness over Beam's Fn API reads and writes state through
/// the runner's state service and hands timers to it).
///
/// With a backend, a ParDo loads a key and window's cells on their first use in a bundle,
/// stores every cell it loaded when the bundle ends and forgets them, and reports timer
/// changes instead of firing timers itself; the runner fires them with
/// [`Op::fire_timer`](crate::operators::Op::fire_timer).
pub trait StateBackend: Send {
    /// The cells of `key` (its encoding with the key coder) in `window`, one per
    /// declaration, in declaration order ([`StateCell::Empty`] where nothing is stored).
    ///
    /// # Errors
    /// The runner's state cannot be read or decoded.
    fn load(
        &mut self,
        key: &[u8],
        window: &Window,
        decls: &[(String, StateKind)],
    ) -> Result<Vec<StateCell>>;
    /// Stores the cells of `key` in `window` (one per declaration).
    ///
    /// # Errors
    /// The runner's state cannot be written.
    fn store(
        &mut self,
        key: &[u8],
        window: &Window,
        decls: &[(String, StateKind)],
        cells: &[StateCell],
    ) -> Result<()>;
    /// Timer `name` of `key` in `window` was set to fire at `fire` (outputs at `output`),
    /// or cleared (`None`).
    ///
    /// # Errors
    /// The change cannot be sent.
    fn timer(
        &mut self,
        key: &Value,
        window: &Window,
        name: &str,
        domain: TimeDomain,
        change: Option<(i64, i64)>,
    ) -> Result<()>;
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
            backend.store(&kb, &window, &st.decls, &entry.cells)?;
        }
        st.windows.clear();
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
                let state_key = (kb, window);
                // Look up before inserting: the key bytes are cloned only for a new entry.
                if !st.states.contains_key(&state_key) {
                    *st.windows.entry(window).or_insert(0) += 1;
                    let (key, cells) = match &mut self.backend {
                        None => (Value::Null, Vec::new()),
                        Some(b) => {
                            let key = st
                                .key_coder
                                .decode(&mut state_key.0.as_slice(), false)
                                .map_err(|source| EngineError::Coder {
                                    transform: name.to_string(),
                                    source,
                                })?;
                            (key, b.load(&state_key.0, &window, &st.decls)?)
                        }
                    };
                    st.states.insert(
                        state_key.clone(),
                        KeyWindow {
                            key,
                            cells,
                            timers: FxHashMap::default(),
                        },
                    );
                }
                if let Some(d) = &mut st.dirty {
                    if !d.contains(&state_key) {
                        d.insert(state_key.clone());
                    }
                }
                let kb = &state_key.0;
                let entry = st.states.get_mut(&state_key).expect("inserted above");
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
                    decls: &st.decls,
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
                            if let Some((d, old, _)) = entry.timers.remove(&name) {
                                st_indexes(&mut st.event_timers, &mut st.processing_timers, d)
                                    .remove(&(old, kb.clone(), window, name.clone()));
                            }
                            st_indexes(&mut st.event_timers, &mut st.processing_timers, domain)
                                .insert((timestamp, kb.clone(), window, name.clone()));
                            entry
                                .timers
                                .insert(name, (domain, timestamp, output_timestamp));
                        }
                        TimerRequest::Clear { name } => {
                            if let Some((d, old, _)) = entry.timers.remove(&name) {
                                st_indexes(&mut st.event_timers, &mut st.processing_timers, d)
                                    .remove(&(old, kb.clone(), window, name));
                            }
                        }
                    }
                }
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
        let key_bytes = match &mut self.stateful {
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
                Some(
                    st.key_coder
                        .encode_to_vec(&key)
                        .map_err(|source| EngineError::Coder {
                            transform: cx.name.to_string(),
                            source,
                        })?,
                )
            }
        };
        self.call(Call::Element(wv), key_bytes, cx)
    }

    fn fire_timers(&mut self, domain: TimeDomain, until: i64, cx: &mut OpCx<'_>) -> Result<()> {
        loop {
            let Some(st) = &mut self.stateful else {
                return Ok(());
            };
            let index = st_indexes(&mut st.event_timers, &mut st.processing_timers, domain);
            let Some(first) = index.first().cloned() else {
                return Ok(());
            };
            if first.0 > until {
                return Ok(());
            }
            index.remove(&first);
            let (_, kb, window, name) = first;
            let Some(entry) = st.states.get_mut(&(kb.clone(), window)) else {
                continue;
            };
            let Some((_, _, output_timestamp)) = entry.timers.remove(&name) else {
                continue;
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
}

/// The time domain of timer `name` (event time when undeclared).
fn timer_domain(spec: &StatefulSpec, name: &str) -> TimeDomain {
    spec.timers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| *d)
        .unwrap_or(TimeDomain::Watermark)
}

fn st_indexes<'a>(
    event: &'a mut TimerIndex,
    processing: &'a mut TimerIndex,
    d: TimeDomain,
) -> &'a mut TimerIndex {
    match d {
        TimeDomain::Watermark => event,
        TimeDomain::ProcessingTime => processing,
    }
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
        if !st.windows.keys().any(due) {
            return Ok(());
        }
        let expired: Vec<(Vec<u8>, Window)> =
            st.states.keys().filter(|(_, w)| due(w)).cloned().collect();
        let on_expiry = st.spec.on_window_expiration;
        for (kb, w) in expired {
            if on_expiry {
                self.call(Call::Expire(w), Some(kb.clone()), cx)?;
            }
            let st = self.stateful.as_mut().expect("stateful");
            if let Some(d) = &mut st.dirty {
                d.insert((kb.clone(), w));
            }
            if let Some(entry) = st.states.remove(&(kb.clone(), w)) {
                if let Some(n) = st.windows.get_mut(&w) {
                    *n -= 1;
                    if *n == 0 {
                        st.windows.remove(&w);
                    }
                }
                for (name, (d, ts, _)) in entry.timers {
                    st_indexes(&mut st.event_timers, &mut st.processing_timers, d).remove(&(
                        ts,
                        kb.clone(),
                        w,
                        name,
                    ));
                }
            }
        }
        Ok(())
    }

    fn on_processing_time(&mut self, cx: &mut OpCx<'_>) -> Result<()> {
        let now = cx.now;
        self.fire_timers(TimeDomain::ProcessingTime, now, cx)
    }

    fn hold(&self) -> i64 {
        let timers = self
            .stateful
            .as_ref()
            .and_then(|s| s.event_timers.first().map(|t| t.0))
            .unwrap_or(END_OF_TIME);
        let pushed = self
            .pushback
            .iter()
            .map(|wv| wv.timestamp)
            .min()
            .unwrap_or(END_OF_TIME);
        timers.min(pushed)
    }

    fn report(&mut self, name: &str, control: &JobControl) {
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
        let id = out.id();
        if let Some(record) = guarded(name, || inv.prepare_commit(id))? {
            out.commit_record(record);
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
        let keys: Vec<(Vec<u8>, Window)> = match st.dirty.take() {
            Some(d) if !out.full() => d.into_iter().collect(),
            _ => st.states.keys().cloned().collect(),
        };
        for (kb, w) in keys {
            let key = state_key(&kb, &w);
            match st.states.get(&(kb, w)) {
                Some(e) => out.put(&key, encode_cells(&st.decls, &e.cells, &e.timers, name)?),
                None => out.delete(&key),
            }
        }
        st.dirty = Some(Default::default());
        Ok(())
    }

    fn restore(&mut self, state: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        let name = cx.name;
        for (key, bytes) in &state.entries {
            if key.as_slice() == SIDES {
                let (main, side) = &self.coders;
                self.pushback = decode_sides(bytes, &mut self.sides, side, main, name)?;
                continue;
            }
            let st = self.stateful.as_mut().ok_or_else(|| {
                EngineError::Checkpoint(format!("'{name}' has saved state but is not stateful"))
            })?;
            let (kb, window) = decode_state_key(key, name)?;
            let (cells, timers) = decode_cells(&st.decls, bytes, name)?;
            for (timer, &(domain, fire, _)) in &timers {
                st_indexes(&mut st.event_timers, &mut st.processing_timers, domain).insert((
                    fire,
                    kb.clone(),
                    window,
                    timer.clone(),
                ));
            }
            let key = st
                .key_coder
                .decode(&mut kb.as_slice(), false)
                .map_err(|source| EngineError::Coder {
                    transform: name.to_string(),
                    source,
                })?;
            *st.windows.entry(window).or_insert(0) += 1;
            st.states
                .insert((kb, window), KeyWindow { key, cells, timers });
        }
        if let Some(st) = &mut self.stateful {
            st.dirty = Some(Default::default());
        }
        self.sides_changed = false;
        Ok(())
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
            guarded(cx.name, || inv.commit(r))?;
        }
        Ok(())
    }

    fn finish(&mut self, name: &str, metrics: &mut MetricResults) -> Result<()> {
        if let Some(st) = &self.stateful {
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
