//! Python callables and DoFn objects running in-process as Beamline DoFns and CombineFns.

use crate::convert::{to_py, to_value, traceback};
use beamline::engine::{UserError, Value, Window};
use beamline::{BundleContext, CombineFn, DoFn, DynValue, ProcessContext, SideInput, TupleTag};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::cell::RefCell;
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
}

/// Element metadata a DoFn's `process` asks for by parameter default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param {
    /// Event timestamp in seconds.
    Timestamp,
    /// The window.
    Window,
    /// The pane.
    Pane,
}

thread_local! {
    /// Metric updates made by Python code during the current call.
    static METRICS: RefCell<Vec<(u8, String, String, i64)>> = const { RefCell::new(Vec::new()) };
}

/// Records a metric update from Python (drained into the engine after the call).
pub fn record_metric(kind: u8, namespace: String, name: String, value: i64) {
    METRICS.with(|m| m.borrow_mut().push((kind, namespace, name, value)));
}

fn drain_metrics(mut apply: impl FnMut(u8, &str, &str, i64)) {
    METRICS.with(|m| {
        for (k, ns, n, v) in m.borrow_mut().drain(..) {
            apply(k, &ns, &n, v);
        }
    });
}

thread_local! {
    static HAS_THREAD_STATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives a runner worker thread a Python thread state that lives as long as the thread.
///
/// Without it every `Python::attach` on a thread Python does not know creates and destroys
/// a thread state (and its frame stack), which dominated Python stages in profiles.
#[allow(unsafe_code)]
fn keep_thread_state() {
    if HAS_THREAD_STATE.with(|h| h.replace(true)) {
        return;
    }
    // SAFETY: the interpreter is initialized (we are called from a module it loaded).
    // PyGILState_Ensure creates this thread's state and takes the GIL; PyEval_SaveThread
    // releases the GIL while keeping the state, so later attaches on this thread reuse it.
    unsafe {
        let _ = pyo3::ffi::PyGILState_Ensure();
        let _ = pyo3::ffi::PyEval_SaveThread();
    }
}

/// `Python::attach` for runner worker threads.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    keep_thread_state();
    Python::attach(f)
}

/// Types of the Python package used to recognise outputs.
struct Types {
    timestamped: Py<PyAny>,
    tagged: Py<PyAny>,
    interval_window: Py<PyAny>,
    global_window: Py<PyAny>,
    pane_info: Py<PyAny>,
}

static TYPES: std::sync::OnceLock<Types> = std::sync::OnceLock::new();

fn types(py: Python<'_>) -> PyResult<&'static Types> {
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
    };
    let _ = TYPES.set(t);
    Ok(TYPES.get().expect("set above"))
}

/// A Python callable or DoFn object as a Beamline DoFn.
pub struct PyDoFn {
    kind: Kind,
    callable: Arc<Py<PyAny>>,
    instance: Option<Py<PyAny>>,
    sides: Arc<Vec<PySide>>,
    params: Arc<Vec<(String, Param)>>,
    tags: Arc<Vec<String>>,
    /// Side-input values converted to Python, per side and window.
    side_cache: Vec<Option<(Window, Py<PyAny>)>>,
}

impl Clone for PyDoFn {
    fn clone(&self) -> Self {
        PyDoFn {
            kind: self.kind,
            callable: self.callable.clone(),
            instance: None,
            sides: self.sides.clone(),
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
            kind,
            callable: Arc::new(callable),
            instance: None,
            sides: Arc::new(sides),
            params: Arc::new(params),
            tags: Arc::new(tags),
            side_cache: (0..n).map(|_| None).collect(),
        }
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
                    d.into_any().unbind()
                }
            };
            self.side_cache[i] = Some((window, obj.clone_ref(py)));
            args.push(obj);
        }
        Ok(args)
    }

    fn params<'py>(
        &self,
        py: Python<'py>,
        ctx: &ProcessContext<'_, '_, DynValue>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        if self.params.is_empty() {
            return Ok(None);
        }
        let t = types(py)?;
        let kw = PyDict::new(py);
        for (name, p) in self.params.iter() {
            let v: Py<PyAny> = match p {
                Param::Timestamp => (ctx.timestamp() as f64 / 1000.0)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
                Param::Window => match ctx.window() {
                    Window::Global => t.global_window.bind(py).call0()?.unbind(),
                    Window::Interval { start, end } => t
                        .interval_window
                        .bind(py)
                        .call1((start as f64 / 1000.0, end as f64 / 1000.0))?
                        .unbind(),
                },
                Param::Pane => {
                    let pn = ctx.pane();
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
            };
            kw.set_item(name, v)?;
        }
        Ok(Some(kw))
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
            let value = to_value(&out.getattr("value")?)?;
            ctx.output_with_timestamp(DynValue(value), (ts * 1000.0).round() as i64);
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
        args.extend(self.side_args(py, ctx)?);
        let args = PyTuple::new(py, args)?;
        let kwargs = self.params(py, ctx)?;
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
        Ok(())
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

    fn start_bundle(
        &mut self,
        _ctx: &mut BundleContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        attach(|py| self.call_method(py, "start_bundle"))
    }

    fn process(
        &mut self,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let r = attach(|py| self.run(py, x, ctx));
        drain_metrics(|k, ns, n, v| match k {
            0 => ctx.inc_counter(ns, n, v),
            1 => ctx.update_distribution(ns, n, v),
            _ => ctx.set_gauge(ns, n, v),
        });
        r
    }

    fn finish_bundle(
        &mut self,
        ctx: &mut BundleContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        let r = attach(|py| self.call_method(py, "finish_bundle"));
        drain_metrics(|k, ns, n, v| {
            if k == 0 {
                ctx.inc_counter(ns, n, v)
            }
        });
        r
    }

    fn teardown(&mut self) -> Result<(), UserError> {
        attach(|py| self.call_method(py, "teardown"))
    }
}

/// A Python CombineFn object (create_accumulator / add_input / merge_accumulators /
/// extract_output) as a Beamline CombineFn; accumulators stay Python objects.
pub struct PyCombineFn(pub Py<PyAny>);

fn fail(py: Python<'_>, e: PyErr) -> ! {
    // CombineFn methods cannot return errors through the typed trait; the engine turns
    // this panic into a job error naming the transform.
    panic!("{}", traceback(py, &e))
}

impl CombineFn for PyCombineFn {
    type In = DynValue;
    type Acc = Py<PyAny>;
    type Out = DynValue;

    fn create_accumulator(&self) -> Py<PyAny> {
        attach(
            |py| match self.0.bind(py).call_method0("create_accumulator") {
                Ok(a) => a.unbind(),
                Err(e) => fail(py, e),
            },
        )
    }

    fn add_input(&self, acc: &mut Py<PyAny>, x: DynValue) {
        attach(|py| {
            let r = to_py(py, x.0)
                .and_then(|x| self.0.bind(py).call_method1("add_input", (acc.bind(py), x)));
            match r {
                Ok(a) => *acc = a.unbind(),
                Err(e) => fail(py, e),
            }
        })
    }

    fn merge_accumulators(&self, accs: Vec<Py<PyAny>>) -> Py<PyAny> {
        attach(
            |py| match self.0.bind(py).call_method1("merge_accumulators", (accs,)) {
                Ok(a) => a.unbind(),
                Err(e) => fail(py, e),
            },
        )
    }

    fn extract_output(&self, acc: Py<PyAny>) -> DynValue {
        attach(|py| {
            let r = self
                .0
                .bind(py)
                .call_method1("extract_output", (acc,))
                .and_then(|o| to_value(&o));
            match r {
                Ok(v) => DynValue(v),
                Err(e) => fail(py, e),
            }
        })
    }
}
