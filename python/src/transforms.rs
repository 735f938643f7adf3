//! Transforms over dynamically typed (Python) PCollections.

use crate::combine_fn::PyCombineFn;
use crate::convert::to_value;
use crate::dofn::{KeyedPyDoFn, Kind, Param, PyDoFn, PySide};
use crate::PColl;
use beamline::engine::trigger::Trigger;
use beamline::engine::window::{TimestampCombiner, WindowFn};
use beamline::engine::{UserError, Value};
use beamline::transforms::combiners::Combiner;
use beamline::{
    CombineGlobally, CombinePerKey, DoFn, DynValue, NamedDoFn, PCollection, PTransform, ParDo,
    ProcessContext, TupleTag, WindowInto, WriteToText,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use serde::{Deserialize, Serialize};

fn wrap(pc: PCollection<DynValue>) -> PColl {
    PColl { pc }
}

/// State cells `(name, kind)`, timers `(name, domain)` and timer callbacks
/// `(timer, method, params)` of a stateful Python DoFn.
/// Timer callbacks as Python describes them: (timer, method, [(parameter, kind)]).
pub(crate) type PyTimerMethods = Vec<(String, String, Vec<(String, String)>)>;

pub(crate) struct Stateful {
    pub(crate) states: Vec<(String, String)>,
    pub(crate) timers: Vec<(String, String)>,
    pub(crate) methods: PyTimerMethods,
}

fn parse_param(p: &str) -> PyResult<Param> {
    Ok(match p {
        "timestamp" => Param::Timestamp,
        "window" => Param::Window,
        "pane" => Param::Pane,
        "key" => Param::Key,
        other => match other.split_once(':') {
            Some(("state", n)) => Param::State(n.to_string()),
            Some(("timer", n)) => Param::Timer(n.to_string()),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown DoFn parameter {other}"
                )))
            }
        },
    })
}

/// A side input as Python describes it: view, PCollection, keyword (None: positional),
/// whether a singleton has a default, and the default.
/// A constant argument has the view "const", no PCollection, and its value as the default.
pub(crate) type PySideSpec<'py> = (
    String,
    Option<PyRef<'py, PColl>>,
    Option<String>,
    bool,
    Py<PyAny>,
);

#[allow(clippy::too_many_arguments)]
pub(crate) fn pardo(
    pcoll: &PColl,
    name: &str,
    kind: &str,
    callable: Py<PyAny>,
    sides: Vec<PySideSpec<'_>>,
    params: Vec<(String, String)>,
    tags: Vec<String>,
    stateful: Stateful,
) -> PyResult<Vec<PColl>> {
    let kind = match kind {
        "map" => Kind::Map,
        "flat_map" => Kind::FlatMap,
        "filter" => Kind::Filter,
        "dofn" => Kind::DoFn,
        other => return Err(PyValueError::new_err(format!("unknown ParDo kind {other}"))),
    };
    let mut py_sides = Vec::new();
    let mut keywords = Vec::new();
    for (view, pc, keyword, has_default, default) in sides {
        keywords.push(keyword);
        let Some(pc) = pc else {
            py_sides.push(PySide::Const(std::sync::Arc::new(default)));
            continue;
        };
        py_sides.push(match view.as_str() {
            "singleton" if has_default => {
                let default = Python::attach(|py| to_value(default.bind(py)))?;
                PySide::Singleton(pc.pc.as_singleton_or(DynValue(default)))
            }
            "singleton" => PySide::Singleton(pc.pc.as_singleton()),
            "list" => PySide::List(pc.pc.as_iter()),
            "dict" | "multimap" => {
                let kvs = pc
                    .pc
                    .apply(&format!("{name}/SideAsKv{}", py_sides.len()), ToKv);
                if view.as_str() == "dict" {
                    PySide::Dict(kvs.as_map())
                } else {
                    PySide::MultiMap(kvs.as_multimap())
                }
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown side input view {other}"
                )))
            }
        });
    }
    let params = params
        .into_iter()
        .map(|(n, p)| Ok((n, parse_param(&p)?)))
        .collect::<PyResult<Vec<_>>>()?;
    let mut all_tags = vec![beamline::transforms::MAIN_TAG.to_string()];
    all_tags.extend(tags.iter().cloned());
    let window_fn = pcoll.pc.windowing().window_fn;
    let f = PyDoFn::new(kind, callable, py_sides.clone(), params, all_tags)
        .with_side_keywords(keywords)
        .with_window_fn(window_fn);
    if stateful.states.is_empty() && stateful.timers.is_empty() {
        return Ok(apply_pardo(&pcoll.pc, name, ParDo::of(f), &py_sides, &tags));
    }
    let mut methods = std::collections::HashMap::new();
    for (timer, method, ps) in stateful.methods {
        let ps = ps
            .into_iter()
            .map(|(n, p)| Ok((n, parse_param(&p)?)))
            .collect::<PyResult<Vec<_>>>()?;
        methods.insert(timer, (method, ps));
    }
    let kinds: std::collections::HashMap<String, String> =
        stateful.states.iter().cloned().collect();
    let mut pd = ParDo::of(KeyedPyDoFn(f.with_state(kinds, methods)));
    for (cell, kind) in &stateful.states {
        pd = pd.with_state(match kind.as_str() {
            "value" => beamline::StateSpec::value::<DynValue>(cell),
            "set" => beamline::StateSpec::set::<DynValue>(cell),
            "ordered" => beamline::StateSpec::ordered_list::<DynValue>(cell),
            _ => beamline::StateSpec::bag::<DynValue>(cell),
        });
    }
    for (timer, domain) in &stateful.timers {
        pd = pd.with_timer(if domain == "processing" {
            beamline::TimerSpec::processing_time(timer)
        } else {
            beamline::TimerSpec::event_time(timer)
        });
    }
    let keyed = pcoll.pc.apply(&format!("{name}/Keyed"), ToKv);
    Ok(apply_pardo(&keyed, name, pd, &py_sides, &tags))
}

/// Applies a Python ParDo with its side inputs and tagged outputs; main output first.
fn apply_pardo<F: DoFn<Out = DynValue>>(
    input: &PCollection<F::In>,
    name: &str,
    mut pd: ParDo<F>,
    sides: &[PySide],
    tags: &[String],
) -> Vec<PColl> {
    for s in sides {
        pd = match s {
            PySide::Singleton(v) => pd.with_side_input(v),
            PySide::List(v) => pd.with_side_input(v),
            PySide::Dict(v) => pd.with_side_input(v),
            PySide::MultiMap(v) => pd.with_side_input(v),
            PySide::Const(_) => pd,
        };
    }
    if tags.is_empty() {
        return vec![wrap(input.apply(name, pd))];
    }
    let erased = tags
        .iter()
        .map(|t| TupleTag::<DynValue>::new(t).erased())
        .collect();
    let outs = input.apply(name, pd.with_outputs(erased));
    let mut v = vec![wrap(outs.main())];
    for t in tags {
        v.push(wrap(
            outs.get(&TupleTag::<DynValue>::new(t)).expect("declared"),
        ));
    }
    v
}

/// Splits a Python `(key, value)` tuple into a typed pair.
#[derive(Clone)]
pub(crate) struct ToKvFn;

impl DoFn for ToKvFn {
    type In = DynValue;
    type Out = (DynValue, DynValue);
    fn process(
        &mut self,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, (DynValue, DynValue)>,
    ) -> Result<(), UserError> {
        match x.0.try_into_kv() {
            Ok((k, v)) => {
                ctx.output((DynValue(k), DynValue(v)));
                Ok(())
            }
            Err(other) => Err(format!(
                "expected a (key, value) tuple, got a {} value",
                other.kind()
            )
            .into()),
        }
    }
}

/// `(key, value)` tuples as typed pairs.
pub(crate) struct ToKv;

impl PTransform<PCollection<DynValue>> for ToKv {
    type Output = PCollection<(DynValue, DynValue)>;
    fn expand(self, input: &PCollection<DynValue>) -> Self::Output {
        input.apply("ToKv", ParDo::of(ToKvFn))
    }
}

fn from_kv<V: beamline::Element>(
    pc: &PCollection<(DynValue, V)>,
    name: &str,
) -> PCollection<DynValue> {
    pc.map(name, |(k, v): (DynValue, V)| {
        DynValue(Value::kv(k.0, v.into_value()))
    })
}

/// GroupByKey over Python tuples: `(key, [values])`.
pub(crate) struct GroupByKey;

impl PTransform<PCollection<DynValue>> for GroupByKey {
    type Output = PCollection<DynValue>;
    fn expand(self, input: &PCollection<DynValue>) -> Self::Output {
        let grouped = input.apply("Pairs", ToKv).group_by_key("GroupByKey");
        from_kv(&grouped, "FromKv")
    }
}

/// Beam's error for a CombineGlobally with defaults over windowed input (raised when the
/// pipeline is built, as Beam does).
const DEFAULTS_IN_WINDOWS: &str = "Default values are not supported in CombineGlobally() if \
the output PCollection is not windowed by GlobalWindows. Instead, use \
CombineGlobally().without_defaults() to output an empty PCollection if the input PCollection \
is empty, or CombineGlobally().as_singleton_view() to get the default output of the \
CombineFn if the input PCollection is empty.";

/// Combine per key or globally. `defaults` (globally): the default step of Beam's
/// CombineGlobally, which needs the global window.
pub(crate) fn combine(
    pcoll: &PColl,
    name: &str,
    builtin: Option<String>,
    config: &str,
    combine_fn: Option<Py<PyAny>>,
    per_key: bool,
    defaults: bool,
) -> PyResult<PColl> {
    let config: serde_json::Value =
        serde_json::from_str(config).map_err(|e| PyValueError::new_err(e.to_string()))?;
    if !per_key && defaults && pcoll.pc.windowing().window_fn != WindowFn::Global {
        return Err(PyValueError::new_err(DEFAULTS_IN_WINDOWS));
    }
    let named = |b: &str| -> PyResult<(&'static str, bool)> {
        Ok(match b {
            "count" => ("beamline.Count", true),
            "sum" => ("beamline.Sum", true),
            "mean" => ("beamline.Mean", true),
            "min" => ("beamline.Min", false),
            "max" => ("beamline.Max", false),
            "top" => ("beamline.Top", true),
            "sample" => ("beamline.Sample", true),
            other => return Err(PyValueError::new_err(format!("unknown combiner {other}"))),
        })
    };
    let globally = |c: CombineGlobally<DynValue, DynValue>| {
        let c = if defaults { c } else { c.without_defaults() };
        pcoll.pc.apply(name, c)
    };
    let out = match (builtin, combine_fn, per_key) {
        (Some(b), _, true) => {
            let (n, d) = named(&b)?;
            let c = Combiner::<DynValue, DynValue>::by_name(n, config, d).per_key::<DynValue>();
            combine_per_key(&pcoll.pc, name, c)
        }
        (Some(b), _, false) => {
            let (n, d) = named(&b)?;
            globally(Combiner::<DynValue, DynValue>::by_name(n, config, d).globally())
        }
        (None, Some(f), true) => {
            combine_per_key(&pcoll.pc, name, CombinePerKey::new(PyCombineFn(f)))
        }
        (None, Some(f), false) => globally(CombineGlobally::new(PyCombineFn(f))),
        (None, None, _) => {
            return Err(PyValueError::new_err(
                "a combine needs a CombineFn or a builtin",
            ))
        }
    };
    Ok(wrap(out))
}

/// Combine per key over Python tuples, as one composite.
struct PerKey(CombinePerKey<DynValue, DynValue, DynValue>);

impl PTransform<PCollection<DynValue>> for PerKey {
    type Output = PCollection<DynValue>;
    fn expand(self, input: &PCollection<DynValue>) -> Self::Output {
        let combined = input.apply("Pairs", ToKv).apply("CombinePerKey", self.0);
        from_kv(&combined, "FromKv")
    }
}

fn combine_per_key(
    pc: &PCollection<DynValue>,
    name: &str,
    c: CombinePerKey<DynValue, DynValue, DynValue>,
) -> PCollection<DynValue> {
    pc.apply(name, PerKey(c))
}

/// Count per element over Python values, entirely in Rust.
pub(crate) struct CountPerElement;

impl PTransform<PCollection<DynValue>> for CountPerElement {
    type Output = PCollection<DynValue>;
    fn expand(self, input: &PCollection<DynValue>) -> Self::Output {
        let counted = input
            .map("PairWithOne", |x: DynValue| (x, ()))
            .apply("Count", beamline::Count::per_key());
        counted.map("AsPython", |(k, n): (DynValue, i64)| {
            DynValue(Value::kv(k.0, Value::I64(n)))
        })
    }
}

/// Parses a trigger spec: nested tuples `("after_count", 2)`, `("repeatedly", spec)`, ...
fn trigger(spec: &Bound<'_, PyAny>) -> PyResult<Trigger> {
    if spec.is_none() {
        return Ok(Trigger::Default);
    }
    let t = spec
        .cast::<PyTuple>()
        .map_err(|_| PyValueError::new_err("trigger spec must be a tuple"))?;
    let kind: String = t.get_item(0)?.extract()?;
    let sub = |i: usize| -> PyResult<Trigger> { trigger(&t.get_item(i)?) };
    let list = |i: usize| -> PyResult<Vec<Trigger>> {
        let l = t.get_item(i)?;
        let l = l
            .cast::<PyList>()
            .map_err(|_| PyValueError::new_err("subtriggers must be a list"))?;
        l.iter().map(|x| trigger(&x)).collect()
    };
    Ok(match kind.as_str() {
        "default" => Trigger::Default,
        "always" => Trigger::Always,
        "never" => Trigger::Never,
        "after_count" => Trigger::AfterCount(t.get_item(1)?.extract()?),
        "after_processing_time" => Trigger::AfterProcessingTime(t.get_item(1)?.extract()?),
        "after_watermark" => {
            let early = t.get_item(1)?;
            let late = t.get_item(2)?;
            Trigger::after_watermark(
                if early.is_none() {
                    None
                } else {
                    Some(trigger(&early)?)
                },
                if late.is_none() {
                    None
                } else {
                    Some(trigger(&late)?)
                },
            )
        }
        "repeatedly" => Trigger::Repeatedly(Box::new(sub(1)?)),
        "after_any" => Trigger::AfterAny(list(1)?),
        "after_all" => Trigger::AfterAll(list(1)?),
        "after_each" => Trigger::AfterEach(list(1)?),
        "or_finally" => Trigger::OrFinally(Box::new(sub(1)?), Box::new(sub(2)?)),
        other => return Err(PyValueError::new_err(format!("unknown trigger {other}"))),
    })
}

pub(crate) fn window_into(
    pcoll: &PColl,
    name: &str,
    (kind, a, b, c): (String, i64, i64, i64),
    trigger_spec: &Bound<'_, PyAny>,
    accumulating: bool,
    allowed_lateness_ms: i64,
    timestamp_combiner: &str,
) -> PyResult<PColl> {
    let wf = match kind.as_str() {
        "global" => WindowFn::Global,
        "fixed" => WindowFn::Fixed { size: a, offset: b },
        "sliding" => WindowFn::Sliding {
            size: a,
            period: b,
            offset: c,
        },
        "sessions" => WindowFn::Sessions { gap: a },
        other => return Err(PyValueError::new_err(format!("unknown window fn {other}"))),
    };
    let tc = match timestamp_combiner {
        "end_of_window" => TimestampCombiner::EndOfWindow,
        "earliest" => TimestampCombiner::Earliest,
        "latest" => TimestampCombiner::Latest,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown timestamp combiner {other}"
            )))
        }
    };
    let mut w = WindowInto::<DynValue>::new(wf)
        .triggering(trigger(trigger_spec)?)
        .with_allowed_lateness(allowed_lateness_ms)
        .with_timestamp_combiner(tc);
    if accumulating {
        w = w.accumulating();
    }
    Ok(wrap(pcoll.pc.apply(name, w)))
}

/// Turns Python values into lines: strings as they are, others with `str()`.
#[derive(Clone)]
struct ToLine;

impl DoFn for ToLine {
    type In = DynValue;
    type Out = String;
    fn process(
        &mut self,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        match x.0 {
            Value::Str(s) => ctx.output(s),
            other => {
                let s = crate::py_thread::attach(|py| -> PyResult<String> {
                    crate::convert::to_py(py, other)?.bind(py).str()?.extract()
                })?;
                ctx.output(s);
            }
        }
        Ok(())
    }
}

pub(crate) fn write_text(
    pcoll: &PColl,
    name: &str,
    prefix: String,
    suffix: String,
    num_shards: usize,
) -> PColl {
    struct Write(String, String, usize);
    impl PTransform<PCollection<DynValue>> for Write {
        type Output = PCollection<DynValue>;
        fn expand(self, input: &PCollection<DynValue>) -> Self::Output {
            let files = input.apply("ToLine", ParDo::of(ToLine)).apply(
                "Write",
                WriteToText::new(self.0)
                    .with_suffix(self.1)
                    .with_num_shards(self.2),
            );
            files.map("AsPython", |f: String| DynValue(Value::Str(f)))
        }
    }
    wrap(pcoll.pc.apply(name, Write(prefix, suffix, num_shards)))
}

/// A Rust DoFn linked into the package, usable from Python by name: multiplies integers.
#[derive(Clone, Serialize, Deserialize)]
pub struct MultiplyBy {
    /// The factor.
    pub factor: i64,
}

impl DoFn for MultiplyBy {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        ctx.output(x * self.factor);
        Ok(())
    }
}

impl NamedDoFn for MultiplyBy {
    const NAME: &'static str = "beamline.python.MultiplyBy";
}
beamline::register_dofn!(MultiplyBy);

/// The bytes of a Kafka key or value: bytes, str, or nothing.
fn kafka_bytes(v: Value, what: &str) -> Result<Vec<u8>, UserError> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Str(s) => Ok(s.into_bytes()),
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "WriteToKafka: a record's {what} must be bytes or str, not {}",
            other.kind()
        )
        .into()),
    }
}

/// Turns `(key, value)` pairs into Kafka records and writes them (see
/// `beamline::io::kafka::WriteToKafka`).
pub(crate) fn write_kafka(
    pcoll: &PColl,
    name: &str,
    sink: beamline::io::kafka::WriteToKafka,
) -> PColl {
    let records = pcoll
        .pc
        .apply(&format!("{name}/Records"), beamline::ParDo::of(ToRecord));
    let done = records.apply(name, sink);
    wrap(done.map(&format!("{name}/AsPython"), |_: ()| DynValue(Value::Null)))
}

/// A `(key, value)` pair as a Kafka record.
#[derive(Clone)]
struct ToRecord;

impl DoFn for ToRecord {
    type In = DynValue;
    type Out = (beamline::Bytes, beamline::Bytes);
    fn process(
        &mut self,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError> {
        let kind = x.0.kind();
        let Some((k, v)) = x.0.into_kv() else {
            return Err(
                format!("WriteToKafka takes (key, value) pairs, not a {kind} value").into(),
            );
        };
        let (k, v) = (kafka_bytes(k, "key")?, kafka_bytes(v, "value")?);
        ctx.output((beamline::Bytes(k), beamline::Bytes(v)));
        Ok(())
    }
}
