//! Python callables and DoFn objects running in-process as Beamline DoFns.

use crate::convert::{to_py, to_value, traceback};
use crate::py_thread::{attach, drain_metrics};
use beamline::engine::window::WindowFn;
use beamline::engine::{UserError, Value, Window};
use beamline::{BundleContext, DoFn, DynValue, ProcessContext, SideInput, TimerContext, TupleTag};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::collections::HashMap;
use std::sync::Arc;

/// How a Python callable is applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// `fn(x, *sides)` gives one output.
    Map,
    /// `fn(x, *sides)` gives an iterable of outputs.
    FlatMap,
    /// `fn(x, *sides)` keeps `x` when true.
    Filter,
    /// A DoFn object: `process(x, *sides, **params)` yields outputs; lifecycle methods.
    DoFn,
}

/// A side input of a Python ParDo and how it is presented.
#[derive(Clone)]
pub enum PySide {
    /// The single value.
    Singleton(SideInput<DynValue>),
    /// A list of all values.
    List(SideInput<Vec<DynValue>>),
    /// A dict from key to value.
    Dict(SideInput<HashMap<DynValue, DynValue>>),
    /// A dict from key to the list of its values.
    MultiMap(SideInput<HashMap<DynValue, Vec<DynValue>>>),
    /// A constant extra argument of a DoFn, passed in its place among the side inputs.
    Const(Arc<Py<PyAny>>),
}

/// What a DoFn method asks for by parameter default.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// Event timestamp in seconds.
    Timestamp,
    /// The window.
    Window,
    /// The pane.
    Pane,
    /// The key (stateful DoFns).
    Key,
    /// A state cell, by name.
    State(String),
    /// A timer, by name.
    Timer(String),
}

/// Timer name to (callback method name, its parameters).
pub type TimerMethods = HashMap<String, (String, Vec<(String, Param)>)>;

/// Element metadata for parameters.
struct Meta {
    timestamp: i64,
    window: Window,
    pane: beamline::PaneInfo,
}

/// A state or timer handle given to Python, written back after the call.
struct Pending {
    param: Param,
    handle: Py<PyAny>,
}

/// Types of the Python package used to recognise outputs.
pub(crate) struct Types {
    pub(crate) timestamped: Py<PyAny>,
    pub(crate) tagged: Py<PyAny>,
    pub(crate) interval_window: Py<PyAny>,
    pub(crate) global_window: Py<PyAny>,
    pub(crate) pane_info: Py<PyAny>,
    pub(crate) multimap_view: Py<PyAny>,
}

static TYPES: std::sync::OnceLock<Types> = std::sync::OnceLock::new();

pub(crate) fn types(py: Python<'_>) -> PyResult<&'static Types> {
    if let Some(t) = TYPES.get() {
        return Ok(t);
    }
    let window = py.import("beamline.window")?;
    let pvalue = py.import("beamline.pvalue")?;
    let t = Types {
        timestamped: window.getattr("TimestampedValue")?.unbind(),
        tagged: pvalue.getattr("TaggedOutput")?.unbind(),
        interval_window: window.getattr("IntervalWindow")?.unbind(),
        global_window: window.getattr("GlobalWindow")?.unbind(),
        pane_info: window.getattr("PaneInfo")?.unbind(),
        multimap_view: pvalue.getattr("_MultiMapView")?.unbind(),
    };
    let _ = TYPES.set(t);
    Ok(TYPES.get().expect("set above"))
}

/// A Python callable or DoFn object as a Beamline DoFn.
pub struct PyDoFn {
    /// Timer name to (method name, its parameters).
    timer_methods: Arc<TimerMethods>,
    /// State cell name to kind (bag, value, set, combining).
    state_kinds: Arc<HashMap<String, String>>,
    kind: Kind,
    callable: Arc<Py<PyAny>>,
    instance: Option<Py<PyAny>>,
    sides: Arc<Vec<PySide>>,
    /// The keyword each side input is passed as (None: positionally, in order).
    side_keywords: Arc<Vec<Option<String>>>,
    /// The input's window fn, when not global: a `TimestampedValue` output is re-windowed
    /// by its new timestamp with it, as Beam Python does.
    window_fn: Option<WindowFn>,
    params: Arc<Vec<(String, Param)>>,
    tags: Arc<Vec<String>>,
    /// Side-input values converted to Python, per side and window.
    side_cache: Vec<Option<(Window, Py<PyAny>)>>,
}

impl Clone for PyDoFn {
    fn clone(&self) -> Self {
        PyDoFn {
            timer_methods: self.timer_methods.clone(),
            state_kinds: self.state_kinds.clone(),
            kind: self.kind,
            callable: self.callable.clone(),
            instance: None,
            sides: self.sides.clone(),
            side_keywords: self.side_keywords.clone(),
            window_fn: self.window_fn,
            params: self.params.clone(),
            tags: self.tags.clone(),
            side_cache: (0..self.sides.len()).map(|_| None).collect(),
        }
    }
}

impl PyDoFn {
    /// A DoFn calling `callable` as `kind`.
    pub fn new(
        kind: Kind,
        callable: Py<PyAny>,
        sides: Vec<PySide>,
        params: Vec<(String, Param)>,
        tags: Vec<String>,
    ) -> Self {
        let n = sides.len();
        PyDoFn {
            timer_methods: Arc::new(HashMap::new()),
            state_kinds: Arc::new(HashMap::new()),
            kind,
            callable: Arc::new(callable),
            instance: None,
            sides: Arc::new(sides),
            side_keywords: Arc::new(vec![None; n]),
            window_fn: None,
            params: Arc::new(params),
            tags: Arc::new(tags),
            side_cache: (0..n).map(|_| None).collect(),
        }
    }

    /// Passes side input `i` as keyword `keywords[i]` (None: positionally).
    pub fn with_side_keywords(mut self, keywords: Vec<Option<String>>) -> Self {
        self.side_keywords = Arc::new(keywords);
        self
    }

    /// The input's window fn (re-windows `TimestampedValue` outputs).
    pub fn with_window_fn(mut self, window_fn: WindowFn) -> Self {
        self.window_fn = (window_fn != WindowFn::Global).then_some(window_fn);
        self
    }

    /// Declares the state cells (name, kind) and timer callbacks of a stateful DoFn.
    pub fn with_state(
        mut self,
        state_kinds: HashMap<String, String>,
        timer_methods: TimerMethods,
    ) -> Self {
        self.state_kinds = Arc::new(state_kinds);
        self.timer_methods = Arc::new(timer_methods);
        self
    }

    /// Keyword arguments for `params`; state and timer handles to write back afterwards.
    fn kwargs<'py>(
        &self,
        py: Python<'py>,
        params: &[(String, Param)],
        meta: &Meta,
        mut state: Option<beamline::State<'_, '_>>,
    ) -> Result<(Option<Bound<'py, PyDict>>, Vec<Pending>), UserError> {
        if params.is_empty() {
            return Ok((None, Vec::new()));
        }
        let t = types(py)?;
        let kw = PyDict::new(py);
        let mut pending = Vec::new();
        for (name, p) in params {
            let v: Py<PyAny> = match p {
                Param::Timestamp => (meta.timestamp as f64 / 1000.0)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
                Param::Window => match meta.window {
                    Window::Global => t.global_window.bind(py).call0()?.unbind(),
                    Window::Interval { start, end } => t
                        .interval_window
                        .bind(py)
                        .call1((start as f64 / 1000.0, end as f64 / 1000.0))?
                        .unbind(),
                },
                Param::Pane => {
                    let pn = meta.pane;
                    let timing = match pn.timing {
                        beamline::Timing::Early => 0,
                        beamline::Timing::OnTime => 1,
                        beamline::Timing::Late => 2,
                        beamline::Timing::Unknown => 3,
                    };
                    t.pane_info
                        .bind(py)
                        .call1((
                            pn.is_first,
                            pn.is_last,
                            timing,
                            pn.index,
                            pn.nonspeculative_index,
                        ))?
                        .unbind()
                }
                Param::Key => {
                    let st = state.as_mut().ok_or("KeyParam needs a stateful DoFn")?;
                    to_py(py, st.key::<DynValue>()?.0)?
                }
                Param::State(cell) => {
                    let st = state
                        .as_mut()
                        .ok_or("StateParam needs (key, value) input")?;
                    let kind = self.state_kinds.get(cell).cloned().unwrap_or_default();
                    let values: Vec<Value> = match kind.as_str() {
                        "value" => st
                            .read::<DynValue>(cell)?
                            .into_iter()
                            .map(|d| d.0)
                            .collect(),
                        "set" => st
                            .set_read::<DynValue>(cell)?
                            .into_iter()
                            .map(|d| d.0)
                            .collect(),
                        "ordered" => st
                            .ordered_range::<DynValue>(cell, i64::MIN, i64::MAX)?
                            .into_iter()
                            .map(|(t, d)| Value::kv(Value::F64(t as f64 / 1000.0), d.0))
                            .collect(),
                        _ => st
                            .read_bag::<DynValue>(cell)?
                            .into_iter()
                            .map(|d| d.0)
                            .collect(),
                    };
                    let spec = self
                        .target(py)
                        .getattr("_beamline_state_specs")
                        .and_then(|d| d.get_item(cell))
                        .map_err(|e| traceback(py, &e))?;
                    let handle = py
                        .import("beamline.userstate")?
                        .call_method1("_handle", (kind, to_py(py, Value::List(values))?, spec))
                        .map_err(|e| traceback(py, &e))?
                        .unbind();
                    pending.push(Pending {
                        param: p.clone(),
                        handle: handle.clone_ref(py),
                    });
                    handle
                }
                Param::Timer(_) => {
                    let handle = py
                        .import("beamline.userstate")?
                        .getattr("_Timer")?
                        .call0()?
                        .unbind();
                    pending.push(Pending {
                        param: p.clone(),
                        handle: handle.clone_ref(py),
                    });
                    handle
                }
            };
            kw.set_item(name, v)?;
        }
        Ok((Some(kw), pending))
    }

    /// Writes state handles back and applies timer changes.
    fn write_back(
        &self,
        py: Python<'_>,
        pending: Vec<Pending>,
        mut st: beamline::State<'_, '_>,
    ) -> Result<(), UserError> {
        for p in pending {
            let h = p.handle.bind(py);
            match &p.param {
                Param::State(cell) => {
                    if !h.getattr("_dirty")?.is_truthy()? {
                        continue;
                    }
                    let content: Vec<Bound<'_, PyAny>> = h.call_method0("_content")?.extract()?;
                    st.clear(cell)?;
                    let kind = self
                        .state_kinds
                        .get(cell)
                        .map(String::as_str)
                        .unwrap_or("bag");
                    if kind == "ordered" {
                        st.ordered_clear_range(cell, i64::MIN, i64::MAX)?;
                        for e in content {
                            let (ts, v): (f64, Bound<'_, PyAny>) = e.extract()?;
                            st.ordered_add(
                                cell,
                                (ts * 1000.0).round() as i64,
                                DynValue(to_value(&v)?),
                            )?;
                        }
                        continue;
                    }
                    for v in content {
                        let v = DynValue(to_value(&v)?);
                        match kind {
                            "value" => st.write(cell, v)?,
                            "set" => {
                                st.set_add(cell, v)?;
                            }
                            _ => st.add(cell, v)?,
                        }
                    }
                }
                Param::Timer(name) => {
                    let ops: Vec<(String, f64)> = h.getattr("_ops")?.extract()?;
                    for (op, ts) in ops {
                        if op == "set" {
                            st.set_timer(name, (ts * 1000.0).round() as i64)?;
                        } else {
                            st.clear_timer(name);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn target<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match &self.instance {
            Some(i) => i.bind(py).clone(),
            None => self.callable.bind(py).clone(),
        }
    }

    fn call_method(&self, py: Python<'_>, name: &str) -> Result<(), UserError> {
        if self.kind != Kind::DoFn {
            return Ok(());
        }
        let t = self.target(py);
        if t.hasattr(name).unwrap_or(false) {
            t.call_method0(name).map_err(|e| traceback(py, &e))?;
        }
        Ok(())
    }

    fn side_args(
        &mut self,
        py: Python<'_>,
        ctx: &ProcessContext<'_, '_, DynValue>,
    ) -> Result<Vec<Py<PyAny>>, UserError> {
        let window = ctx.window();
        let mut args = Vec::with_capacity(self.sides.len());
        for (i, side) in self.sides.iter().enumerate() {
            if let Some((w, obj)) = &self.side_cache[i] {
                if *w == window {
                    args.push(obj.clone_ref(py));
                    continue;
                }
            }
            let obj: Py<PyAny> = match side {
                PySide::Const(c) => {
                    args.push(c.clone_ref(py));
                    continue;
                }
                PySide::Singleton(s) => to_py(py, ctx.side_input(s)?.0.clone())?,
                PySide::List(s) => {
                    let v: Vec<Value> = ctx.side_input(s)?.iter().map(|d| d.0.clone()).collect();
                    to_py(py, Value::List(v))?
                }
                PySide::Dict(s) => {
                    let d = PyDict::new(py);
                    for (k, v) in ctx.side_input(s)? {
                        d.set_item(to_py(py, k.0.clone())?, to_py(py, v.0.clone())?)?;
                    }
                    d.into_any().unbind()
                }
                PySide::MultiMap(s) => {
                    let d = PyDict::new(py);
                    for (k, vs) in ctx.side_input(s)? {
                        let list =
                            to_py(py, Value::List(vs.iter().map(|x| x.0.clone()).collect()))?;
                        d.set_item(to_py(py, k.0.clone())?, list)?;
                    }
                    // Missing keys give [] (Beam's multimap view).
                    types(py)?.multimap_view.bind(py).call1((d,))?.unbind()
                }
            };
            self.side_cache[i] = Some((window, obj.clone_ref(py)));
            args.push(obj);
        }
        Ok(args)
    }

    fn emit(
        &self,
        py: Python<'_>,
        out: Bound<'_, PyAny>,
        ctx: &mut ProcessContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let t = types(py)?;
        if out.is_instance(t.tagged.bind(py))? {
            let tag: String = out.getattr("tag")?.extract()?;
            let value = to_value(&out.getattr("value")?)?;
            if !self.tags.contains(&tag) {
                return Err(
                    format!("output tag '{tag}' was not declared with with_outputs").into(),
                );
            }
            return ctx.output_to(&TupleTag::<DynValue>::new(&tag), DynValue(value));
        }
        if out.is_instance(t.timestamped.bind(py))? {
            let ts: f64 = out.getattr("timestamp")?.extract()?;
            let ts = (ts * 1000.0).round() as i64;
            let value = to_value(&out.getattr("value")?)?;
            match &self.window_fn {
                None => ctx.output_with_timestamp(DynValue(value), ts),
                Some(wf) => {
                    // Beam Python assigns the windows of the new timestamp with the input's
                    // window fn.
                    let windows = wf.assign(ts);
                    let last = windows.len().saturating_sub(1);
                    let mut value = Some(value);
                    for (i, w) in windows.into_iter().enumerate() {
                        let v = if i == last {
                            value.take().unwrap_or(Value::Null)
                        } else {
                            value.clone().unwrap_or(Value::Null)
                        };
                        ctx.output_at(DynValue(v), ts, w);
                    }
                }
            }
            return Ok(());
        }
        ctx.output(DynValue(to_value(&out)?));
        Ok(())
    }

    fn run(
        &mut self,
        py: Python<'_>,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let mut args: Vec<Py<PyAny>> = vec![to_py(py, x.0.clone())?];
        let mut keyword_sides = Vec::new();
        for (v, keyword) in self
            .side_args(py, ctx)?
            .into_iter()
            .zip(self.side_keywords.iter())
        {
            match keyword {
                None => args.push(v),
                Some(k) => keyword_sides.push((k, v)),
            }
        }
        let args = PyTuple::new(py, args)?;
        let meta = Meta {
            timestamp: ctx.timestamp(),
            window: ctx.window(),
            pane: ctx.pane(),
        };
        let stateful = !self.state_kinds.is_empty() || !self.timer_methods.is_empty();
        let state = if stateful { Some(ctx.state()?) } else { None };
        let params = self.params.clone();
        let (mut kwargs, pending) = self.kwargs(py, &params, &meta, state)?;
        if !keyword_sides.is_empty() {
            let kw = kwargs.get_or_insert_with(|| PyDict::new(py));
            for (k, v) in keyword_sides {
                kw.set_item(k, v)?;
            }
        }
        let target = self.target(py);
        let result = match self.kind {
            Kind::DoFn => target.call_method("process", args, kwargs.as_ref()),
            _ => target.call(args, kwargs.as_ref()),
        }
        .map_err(|e| traceback(py, &e))?;
        match self.kind {
            Kind::Map => self.emit(py, result, ctx)?,
            Kind::Filter => {
                if result.is_truthy()? {
                    ctx.output(x);
                }
            }
            Kind::FlatMap | Kind::DoFn => {
                if !result.is_none() {
                    for item in result.try_iter().map_err(|e| traceback(py, &e))? {
                        let item = item.map_err(|e| traceback(py, &e))?;
                        self.emit(py, item, ctx)?;
                    }
                }
            }
        }
        if !pending.is_empty() {
            self.write_back(py, pending, ctx.state()?)?;
        }
        Ok(())
    }

    fn run_timer(
        &mut self,
        py: Python<'_>,
        timer: &str,
        ctx: &mut TimerContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let (method, params) = self.timer_methods.get(timer).cloned().ok_or_else(|| {
            format!("timer '{timer}' fired but the DoFn has no @on_timer method for it")
        })?;
        let meta = Meta {
            timestamp: ctx.timestamp(),
            window: ctx.window(),
            pane: beamline::PaneInfo::NO_FIRING,
        };
        let (kwargs, pending) = self.kwargs(py, &params, &meta, Some(ctx.state()?))?;
        let result = self
            .target(py)
            .call_method(method.as_str(), (), kwargs.as_ref())
            .map_err(|e| traceback(py, &e))?;
        if !result.is_none() {
            let t = types(py)?;
            for item in result.try_iter().map_err(|e| traceback(py, &e))? {
                let item = item.map_err(|e| traceback(py, &e))?;
                if item.is_instance(t.tagged.bind(py))? {
                    let tag: String = item.getattr("tag")?.extract()?;
                    if !self.tags.contains(&tag) {
                        return Err(format!(
                            "output tag '{tag}' was not declared with with_outputs"
                        )
                        .into());
                    }
                    let value = to_value(&item.getattr("value")?)?;
                    ctx.output_to(&TupleTag::<DynValue>::new(&tag), DynValue(value))?;
                } else {
                    ctx.output(DynValue(to_value(&item)?));
                }
            }
        }
        self.write_back(py, pending, ctx.state()?)
    }
}

impl DoFn for PyDoFn {
    type In = DynValue;
    type Out = DynValue;

    fn setup(&mut self) -> Result<(), UserError> {
        if self.kind != Kind::DoFn {
            return Ok(());
        }
        attach(|py| {
            // Each worker gets its own copy of the DoFn object, as Beam does.
            let obj = self.callable.bind(py);
            let copy = py
                .import("copy")
                .and_then(|c| c.call_method1("deepcopy", (obj,)))
                .unwrap_or_else(|_| obj.clone());
            self.instance = Some(copy.unbind());
            self.call_method(py, "setup")
        })
    }

    fn start_bundle(&mut self, ctx: &mut BundleContext<'_, '_, DynValue>) -> Result<(), UserError> {
        // Updates made in setup (which has no context) count for this transform too.
        let r = attach(|py| self.call_method(py, "start_bundle"));
        drain_metrics(ctx);
        r
    }

    fn process(
        &mut self,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let r = attach(|py| self.run(py, x, ctx));
        drain_metrics(ctx);
        r
    }

    fn around_batch(
        &mut self,
        batch: &mut dyn FnMut(&mut Self) -> Result<(), UserError>,
    ) -> Result<(), UserError> {
        // Holding the interpreter lock for a batch makes the per-element `attach` a
        // counter increment, and stops worker threads handing the lock over per element.
        attach(|_| batch(self))
    }

    fn finish_bundle(
        &mut self,
        ctx: &mut BundleContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let r = attach(|py| self.call_method(py, "finish_bundle"));
        drain_metrics(ctx);
        r
    }

    fn teardown(&mut self) -> Result<(), UserError> {
        attach(|py| self.call_method(py, "teardown"))
    }

    fn on_timer(
        &mut self,
        timer: &str,
        ctx: &mut TimerContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let r = attach(|py| self.run_timer(py, timer, ctx));
        drain_metrics(ctx);
        r
    }
}

/// A stateful Python DoFn: its input is split into key and value for the runner.
#[derive(Clone)]
pub struct KeyedPyDoFn(pub PyDoFn);

impl DoFn for KeyedPyDoFn {
    type In = (DynValue, DynValue);
    type Out = DynValue;
    fn setup(&mut self) -> Result<(), UserError> {
        self.0.setup()
    }
    fn start_bundle(&mut self, ctx: &mut BundleContext<'_, '_, DynValue>) -> Result<(), UserError> {
        self.0.start_bundle(ctx)
    }
    fn process(
        &mut self,
        (k, v): (DynValue, DynValue),
        ctx: &mut ProcessContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        self.0.process(DynValue(Value::kv(k.0, v.0)), ctx)
    }
    fn around_batch(
        &mut self,
        batch: &mut dyn FnMut(&mut Self) -> Result<(), UserError>,
    ) -> Result<(), UserError> {
        attach(|_| batch(self))
    }
    fn finish_bundle(
        &mut self,
        ctx: &mut BundleContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        self.0.finish_bundle(ctx)
    }
    fn teardown(&mut self) -> Result<(), UserError> {
        self.0.teardown()
    }
    fn on_timer(
        &mut self,
        timer: &str,
        ctx: &mut TimerContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        self.0.on_timer(timer, ctx)
    }
}
