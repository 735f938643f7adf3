//! `beamline._native`: the pyo3 module behind the `beamline` Python package.
//!
//! Python builds pipelines through [`Pipeline`]: every transform becomes part of the same
//! portable pipeline proto the Rust SDK builds, executed by the Rust runners. Python
//! callables run in-process (no gRPC, no subprocess); Rust transforms (GroupByKey,
//! combiners, IO) never call into Python.

// The allocator is the `beamline` facade's (mimalloc, for Rust allocations only; Python
// keeps its own).

mod arrow;
mod combine_fn;
mod convert;
mod dofn;
mod job;
mod parquet;
mod py_thread;
mod transforms;
mod worker_stage;

use beamline::engine::Value;
use beamline::{DynValue, OptionKind, OptionSpec, PCollection, PipelineOptions};
use convert::{to_py, to_value};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A PCollection of Python values.
#[pyclass(module = "beamline._native", frozen)]
pub struct PColl {
    pub(crate) pc: PCollection<DynValue>,
}

#[pymethods]
impl PColl {
    /// The PCollection's id in the pipeline proto.
    #[getter]
    fn id(&self) -> String {
        self.pc.id().to_string()
    }

    /// True when it is in the global window with the default trigger (Beam's default
    /// windowing, where a grouping fires once, at the end).
    #[getter]
    fn default_windowing(&self) -> bool {
        let w = self.pc.windowing();
        w.window_fn == beamline::WindowFn::Global && w.trigger == beamline::Trigger::Default
    }
}

/// A pipeline under construction.
#[pyclass(module = "beamline._native", frozen)]
pub struct Pipeline {
    pub(crate) p: beamline::Pipeline,
}

fn wrap(pc: PCollection<DynValue>) -> PColl {
    PColl { pc }
}

fn err(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

#[pymethods]
impl Pipeline {
    /// A pipeline with options from command-line style arguments (`--runner=local`, ...)
    /// and the options the Python program declares, as `(name, kind, help)` with kind
    /// one of `flag`, `int`, `text`.
    #[new]
    #[pyo3(signature = (args, declared=Vec::new()))]
    fn new(args: Vec<String>, declared: Vec<(String, String, String)>) -> PyResult<Self> {
        let mut argv = vec!["python".to_string()];
        argv.extend(args);
        let mut options =
            PipelineOptions::from_args(argv).map_err(|e| PyValueError::new_err(e.to_string()))?;
        for (name, kind, help) in declared {
            let kind = match kind.as_str() {
                "flag" => OptionKind::Flag,
                "int" => OptionKind::Integer,
                _ => OptionKind::Text,
            };
            options = options.declare(OptionSpec::new(&name, kind, &help));
        }
        let p = beamline::Pipeline::new(options);
        // Python handles SIGINT itself (KeyboardInterrupt); the result cancels or drains.
        p.set_handle_signals(false);
        Ok(Pipeline { p })
    }

    /// Starts the pipeline on its runner; returns the running job.
    fn start(&self, py: Python<'_>) -> PyResult<job::Job> {
        let result = self.p.start().map_err(err)?;
        // A Ctrl-C or SIGTERM that arrived while the job was starting is raised here, when
        // the job would otherwise be lost to the caller: it cancels the job first.
        if let Err(e) = py.check_signals() {
            result.cancel();
            let _ = py.detach(|| result.wait_until_finish(None));
            return Err(e);
        }
        Ok(job::Job { result })
    }

    /// Help text listing the program's, the SDK's and the runner's options.
    fn help_text(&self, program: &str) -> PyResult<String> {
        self.p.help_text(program).map_err(err)
    }

    /// Raises ValueError for an option nobody declared or a malformed value.
    fn check_options(&self) -> PyResult<()> {
        self.p
            .check_options()
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The pipeline proto, serialized.
    fn proto_bytes(&self) -> Vec<u8> {
        use beamline::proto::prost::Message;
        self.p.to_proto().encode_to_vec()
    }

    /// `Create`: fixed values.
    fn create(&self, name: &str, values: Vec<Bound<'_, PyAny>>) -> PyResult<PColl> {
        let vals = values.iter().map(to_value).collect::<PyResult<Vec<_>>>()?;
        Ok(wrap(self.p.apply(
            name,
            beamline::Create::of(vals.into_iter().map(DynValue)),
        )))
    }

    /// TestStream: events are ("add", [(value, timestamp_ms)]), ("wm", ms) or ("pt", ms).
    fn test_stream(&self, name: &str, events: Vec<(String, Bound<'_, PyAny>)>) -> PyResult<PColl> {
        let mut ts = beamline::TestStream::<DynValue>::new();
        for (kind, arg) in events {
            ts = match kind.as_str() {
                "add" => {
                    let items: Vec<(Bound<'_, PyAny>, i64)> = arg.extract()?;
                    let items = items
                        .iter()
                        .map(|(v, t)| Ok((DynValue(to_value(v)?), *t)))
                        .collect::<PyResult<Vec<_>>>()?;
                    ts.add_elements(items)
                }
                "wm" => ts.advance_watermark_to(arg.extract()?),
                "pt" => ts.advance_processing_time(arg.extract()?),
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown TestStream event {other}"
                    )))
                }
            };
        }
        Ok(wrap(self.p.apply(name, ts)))
    }

    /// Map, FlatMap, Filter or ParDo with a Python callable or DoFn object.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (pcoll, name, kind, callable, sides, params, tags, state_specs, timer_specs, timer_methods))]
    fn pardo(
        &self,
        pcoll: &PColl,
        name: &str,
        kind: &str,
        callable: Py<PyAny>,
        sides: Vec<transforms::PySideSpec<'_>>,
        params: Vec<(String, String)>,
        tags: Vec<String>,
        state_specs: Vec<(String, String)>,
        timer_specs: Vec<(String, String)>,
        timer_methods: transforms::PyTimerMethods,
    ) -> PyResult<Vec<PColl>> {
        let stateful = transforms::Stateful {
            states: state_specs,
            timers: timer_specs,
            methods: timer_methods,
        };
        transforms::pardo(pcoll, name, kind, callable, sides, params, tags, stateful)
    }

    /// An element-wise stage run in worker processes (`--python-workers`).
    fn worker_stage(&self, pcoll: &PColl, name: &str, stage: i64) -> PColl {
        wrap(pcoll.pc.apply(
            name,
            beamline::ParDo::of(worker_stage::WorkerStage::new(stage)),
        ))
    }

    /// GroupByKey on `(key, value)` tuples.
    fn group_by_key(&self, pcoll: &PColl, name: &str) -> PColl {
        wrap(pcoll.pc.apply(name, transforms::GroupByKey))
    }

    /// Combine per key (`builtin` name, or a Python CombineFn object).
    #[pyo3(signature = (pcoll, name, builtin, config, combine_fn))]
    fn combine_per_key(
        &self,
        pcoll: &PColl,
        name: &str,
        builtin: Option<String>,
        config: String,
        combine_fn: Option<Py<PyAny>>,
    ) -> PyResult<PColl> {
        transforms::combine(pcoll, name, builtin, &config, combine_fn, true, false)
    }

    /// Combine globally (`builtin` name, or a Python CombineFn object); `defaults`: with
    /// Beam's default step (the empty result for an empty input; global window only).
    #[pyo3(signature = (pcoll, name, builtin, config, combine_fn, defaults))]
    fn combine_globally(
        &self,
        pcoll: &PColl,
        name: &str,
        builtin: Option<String>,
        config: String,
        combine_fn: Option<Py<PyAny>>,
        defaults: bool,
    ) -> PyResult<PColl> {
        transforms::combine(pcoll, name, builtin, &config, combine_fn, false, defaults)
    }

    /// Flatten.
    fn flatten(&self, pcolls: Vec<PyRef<'_, PColl>>, name: &str) -> PyResult<PColl> {
        if pcolls.is_empty() {
            return Err(PyValueError::new_err(
                "Flatten needs at least one PCollection",
            ));
        }
        let list: Vec<PCollection<DynValue>> = pcolls.iter().map(|p| p.pc.clone()).collect();
        Ok(wrap(beamline::PInput::apply(
            &list,
            name,
            beamline::Flatten,
        )))
    }

    /// Count of each distinct element, `(element, count)`, without entering Python.
    fn count_per_element(&self, pcoll: &PColl, name: &str) -> PColl {
        wrap(pcoll.pc.apply(name, transforms::CountPerElement))
    }

    /// Reshuffle.
    fn reshuffle(&self, pcoll: &PColl, name: &str) -> PColl {
        wrap(pcoll.pc.apply(name, beamline::Reshuffle::new()))
    }

    /// WindowInto: window fn spec, trigger spec, accumulation, lateness, timestamp combiner.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (pcoll, name, window_fn, trigger, accumulating, allowed_lateness_ms, timestamp_combiner))]
    fn window_into(
        &self,
        pcoll: &PColl,
        name: &str,
        window_fn: (String, i64, i64, i64),
        trigger: Bound<'_, PyAny>,
        accumulating: bool,
        allowed_lateness_ms: i64,
        timestamp_combiner: &str,
    ) -> PyResult<PColl> {
        transforms::window_into(
            pcoll,
            name,
            window_fn,
            &trigger,
            accumulating,
            allowed_lateness_ms,
            timestamp_combiner,
        )
    }

    /// ReadFromText.
    fn read_text(&self, name: &str, pattern: String) -> PColl {
        let lines = self.p.apply(name, beamline::ReadFromText::new(pattern));
        wrap(lines.map(&format!("{name}/AsPython"), |s: String| {
            DynValue(Value::Str(s))
        }))
    }

    /// WriteToText (non-string elements are written with `str()`).
    fn write_text(
        &self,
        pcoll: &PColl,
        name: &str,
        prefix: String,
        suffix: String,
        num_shards: usize,
    ) -> PColl {
        transforms::write_text(pcoll, name, prefix, suffix, num_shards)
    }

    /// ReadFromKafka from its configuration (JSON of the Rust `ReadFromKafka`): `(key,
    /// value)` pairs of bytes.
    fn read_kafka(&self, name: &str, config: String) -> PyResult<PColl> {
        let c: beamline::io::kafka::ReadFromKafka = serde_json::from_str(&config)
            .map_err(|e| PyValueError::new_err(format!("ReadFromKafka: {e}")))?;
        let records = self.p.apply(name, c);
        Ok(wrap(records.map(
            &format!("{name}/AsPython"),
            |(k, v): (beamline::Bytes, beamline::Bytes)| {
                DynValue(Value::kv(Value::Bytes(k.0), Value::Bytes(v.0)))
            },
        )))
    }

    /// WriteToKafka from its configuration (JSON of the Rust `WriteToKafka`); elements are
    /// `(key, value)` pairs of bytes or str (`None` key: none).
    fn write_kafka(&self, pcoll: &PColl, name: &str, config: String) -> PyResult<PColl> {
        let c: beamline::io::kafka::WriteToKafka = serde_json::from_str(&config)
            .map_err(|e| PyValueError::new_err(format!("WriteToKafka: {e}")))?;
        Ok(transforms::write_kafka(pcoll, name, c))
    }

    /// ReadFromParquet: pyarrow record batches of at most `batch_size` rows.
    #[pyo3(signature = (name, pattern, columns, batch_size))]
    fn read_parquet(
        &self,
        name: &str,
        pattern: String,
        columns: Option<Vec<String>>,
        batch_size: usize,
    ) -> PColl {
        parquet::read(&self.p, name, pattern, columns, batch_size)
    }

    /// WriteToParquet (`batch_size` rows per batch) or, with `batch_size` None,
    /// WriteToParquetBatched (elements are pyarrow record batches).
    #[pyo3(signature = (pcoll, name, prefix, suffix, num_shards, codec, schema, row_group_size, batch_size))]
    #[allow(clippy::too_many_arguments)]
    fn write_parquet(
        &self,
        pcoll: &PColl,
        name: &str,
        prefix: String,
        suffix: String,
        num_shards: usize,
        codec: String,
        schema: Option<Bound<'_, PyAny>>,
        row_group_size: Option<usize>,
        batch_size: Option<usize>,
    ) -> PyResult<PColl> {
        let schema = schema.map(|s| arrow::schema_from_pyarrow(&s)).transpose()?;
        let input = match batch_size {
            Some(n) => parquet::Input::Rows(n),
            None => parquet::Input::Batches,
        };
        parquet::write(
            pcoll,
            name,
            parquet::WriteConfig {
                prefix,
                suffix,
                num_shards,
                codec,
                row_group_size,
                schema,
                input,
            },
        )
    }

    /// A Rust DoFn registered by name in this package, with a JSON config.
    fn rust_dofn(
        &self,
        pcoll: &PColl,
        name: &str,
        function: String,
        config: String,
    ) -> PyResult<PColl> {
        let config: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(wrap(pcoll.pc.apply(
            name,
            beamline::transforms::NamedValueParDo::<DynValue>::new(function, config),
        )))
    }

    /// Asserts inside the pipeline that `pcoll` holds exactly `expected` (any order).
    fn assert_equal(&self, pcoll: &PColl, expected: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        let vals = expected
            .iter()
            .map(|e| to_value(e).map(DynValue))
            .collect::<PyResult<Vec<_>>>()?;
        beamline::testing::assert_that(&pcoll.pc).contains_in_any_order(vals);
        Ok(())
    }
}

/// Registers `f(key, value, record_seconds)` -> event time in seconds (or `None` for the
/// record's own) as the Kafka timestamp function `name`; the reader threads call it.
#[pyfunction]
fn register_kafka_timestamp(name: String, f: Py<PyAny>) {
    let f = std::sync::Arc::new(f);
    beamline::io::kafka::register_kafka_timestamp_fn(
        name,
        std::sync::Arc::new(move |key: &[u8], value: &[u8], record_ms: Option<i64>| {
            py_thread::attach(|py| {
                let record = record_ms.map(|ms| ms as f64 / 1000.0);
                let key = pyo3::types::PyBytes::new(py, key);
                let value = pyo3::types::PyBytes::new(py, value);
                let out = f
                    .call1(py, (key, value, record))
                    .map_err(|e| convert::traceback(py, &e))?;
                if out.is_none(py) {
                    return Ok(None);
                }
                let seconds: f64 = out.extract(py).map_err(|_| {
                    format!(
                        "returned {}, not a time in seconds or None",
                        out.bind(py)
                            .repr()
                            .map_or_else(|_| "?".into(), |r| r.to_string())
                    )
                })?;
                if !seconds.is_finite() {
                    return Err(format!("returned {seconds}, not a time in seconds").into());
                }
                Ok(Some((seconds * 1000.0).round() as i64))
            })
        }),
    );
}

/// Records a metric update from a Python DoFn (kind: 0 counter, 1 distribution, 2 gauge).
#[pyfunction]
fn record_metric(kind: u8, namespace: String, name: String, value: i64) {
    py_thread::record_metric(kind, namespace, name, value);
}

/// Takes the metric updates recorded on this thread (worker processes send them back).
#[pyfunction]
fn take_metrics() -> Vec<(u8, String, String, i64)> {
    py_thread::take_metrics()
}

/// Round-trips a Python value through the engine's representation (for tests).
#[pyfunction]
fn roundtrip(py: Python<'_>, obj: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    to_py(py, to_value(&obj)?)
}

/// Folds `inputs` with the Python CombineFn `combine_fn`, sends the accumulator through
/// its encoding (the dynamic coder: native values as such, other objects pickled) and
/// extracts it; returns the output and the encoded size (for tests).
#[pyfunction]
fn accumulator_roundtrip(
    py: Python<'_>,
    combine_fn: Bound<'_, PyAny>,
    inputs: Vec<Bound<'_, PyAny>>,
) -> PyResult<(Py<PyAny>, usize)> {
    use beamline::engine::combine::{decode_accumulator, encode_accumulator};
    let f = beamline::transforms::combine_invoker(combine_fn::PyCombineFn(combine_fn.unbind()));
    let input = beamline::engine::coder::Coder::Dynamic;
    let mut acc = f.create_accumulator();
    for x in &inputs {
        f.add_input(&mut acc, to_value(x)?).map_err(err)?;
    }
    let bytes = encode_accumulator(&*f, &input, &acc).map_err(err)?;
    let decoded = decode_accumulator(&*f, &input, &bytes).map_err(err)?;
    let out = f.extract_output(decoded).map_err(err)?;
    Ok((to_py(py, out)?, bytes.len()))
}

/// Imports a pyarrow record batch into Rust and returns the address of its first column's
/// first buffer (tests compare it with pyarrow's to show nothing was copied).
#[pyfunction]
fn arrow_import_address(batch: Bound<'_, PyAny>) -> PyResult<usize> {
    Ok(arrow::first_buffer_address(&arrow::from_pyarrow(&batch)?))
}

/// Builds an Int64 record batch `0..n` in Rust and hands it to pyarrow; returns the batch
/// and the address of its values buffer in Rust (tests compare it with pyarrow's).
#[pyfunction]
fn arrow_export_sample(py: Python<'_>, n: i64) -> PyResult<(Py<PyAny>, usize)> {
    use ::arrow_array::{ArrayRef, Int64Array, RecordBatch};
    let col: ArrayRef = std::sync::Arc::new(Int64Array::from_iter_values(0..n));
    let batch = RecordBatch::try_from_iter([("x", col)])
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let address = arrow::first_buffer_address(&batch);
    Ok((arrow::to_pyarrow(py, batch)?, address))
}

/// The runners linked into this package.
#[pyfunction]
fn runners() -> Vec<String> {
    beamline::engine::runner::available_runners()
        .iter()
        .map(|r| r.name.to_string())
        .collect()
}

/// The `beamline` command (`beamline run|runners|ui ...`): the console script's body.
/// Returns the exit code; runs with the GIL released.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(move || beamline_cli::run(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Pipeline>()?;
    m.add_class::<PColl>()?;
    m.add_class::<job::Job>()?;
    m.add_function(wrap_pyfunction!(record_metric, m)?)?;
    m.add_function(wrap_pyfunction!(register_kafka_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(accumulator_roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(take_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(runners, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(arrow_import_address, m)?)?;
    m.add_function(wrap_pyfunction!(arrow_export_sample, m)?)?;
    beamline::before_worker_exit(flush_python_output);
    Ok(())
}

/// Flushes Python's standard output and error: a distributed job's worker process ends
/// without returning to Python (see `beamline::before_worker_exit`).
fn flush_python_output() {
    Python::attach(|py| {
        if let Ok(sys) = py.import("sys") {
            for stream in ["stdout", "stderr"] {
                if let Ok(s) = sys.getattr(stream) {
                    let _ = s.call_method0("flush");
                }
            }
        }
    });
}
