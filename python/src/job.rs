//! `beamline._native.Job`: a running pipeline seen from Python (state, wait, cancel, metrics).

use beamline::engine::metrics::MetricResults;
use beamline::{JobState, PipelineResult};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::time::Duration;

/// A started pipeline.
#[pyclass(module = "beamline._native", frozen)]
pub struct Job {
    pub(crate) result: PipelineResult,
}

#[pymethods]
impl Job {
    /// The state now: `RUNNING`, `DONE`, `FAILED` or `CANCELLED`.
    fn state(&self) -> &'static str {
        self.result.state().name()
    }

    /// Waits up to `timeout` seconds (None: no limit) with the GIL released; the state
    /// then. Raises RuntimeError with the job's error when it failed.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<&'static str> {
        let result = self.result.clone();
        let timeout = timeout.map(|s| Duration::from_secs_f64(s.max(0.0)));
        let state = py
            .detach(move || result.wait_until_finish(timeout))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok(state.name())
    }

    /// Asks the job to stop at the next bundle (nothing is committed).
    fn cancel(&self) {
        self.result.cancel();
    }

    /// Asks a streaming job to drain (sources stop, pending panes fire, output commits).
    fn drain(&self) {
        self.result.drain();
    }

    /// True once the job ended.
    fn is_terminal(&self) -> bool {
        self.result.state() != JobState::Running
    }

    /// The URL of the job UI's page, when the job runs with `--ui` (else None).
    #[getter]
    fn ui_url(&self) -> Option<String> {
        self.result.ui_url().map(String::from)
    }

    /// Metrics so far, as `{kind: {(step, namespace, name): value}}`.
    fn metrics(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        metrics_dict(py, &self.result.metrics())
    }
}

/// Metrics as `{"counters": {...}, "distributions": {...}, "gauges": {...}}`, keyed by
/// `(step, namespace, name)`.
///
/// # Errors
/// When a dict cannot be filled (out of memory).
pub(crate) fn metrics_dict(py: Python<'_>, m: &MetricResults) -> PyResult<Py<PyAny>> {
    let out = PyDict::new(py);
    let counters = PyDict::new(py);
    for (k, v) in &m.counters {
        counters.set_item((k.step.clone(), k.namespace.clone(), k.name.clone()), v)?;
    }
    let dists = PyDict::new(py);
    for (k, d) in &m.distributions {
        dists.set_item(
            (k.step.clone(), k.namespace.clone(), k.name.clone()),
            (d.count, d.sum, d.min, d.max),
        )?;
    }
    let gauges = PyDict::new(py);
    for (k, g) in &m.gauges {
        gauges.set_item(
            (k.step.clone(), k.namespace.clone(), k.name.clone()),
            (g.value, g.sequence),
        )?;
    }
    out.set_item("counters", counters)?;
    out.set_item("distributions", dists)?;
    out.set_item("gauges", gauges)?;
    Ok(out.into_any().unbind())
}
