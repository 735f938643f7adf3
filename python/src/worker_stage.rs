//! An element-wise Python stage run in forked worker processes (`--python-workers`).

use crate::convert::{to_py, to_value, traceback};
use crate::dofn::types;
use crate::py_thread::{attach, drain_metrics};
use beamline::engine::{UserError, Window};
use beamline::{BundleContext, DoFn, DynValue, ProcessContext};
use pyo3::prelude::*;

/// An element-wise Python stage run in worker processes (`--python-workers`): each bundle's
/// elements go to a worker in one call; outputs keep their input's timestamp and window.
#[derive(Clone)]
pub struct WorkerStage {
    stage: i64,
    buffer: Vec<(DynValue, i64, Window)>,
}

impl WorkerStage {
    /// The stage registered under `stage` in `beamline._workers`.
    pub fn new(stage: i64) -> Self {
        WorkerStage {
            stage,
            buffer: Vec::new(),
        }
    }
}

impl DoFn for WorkerStage {
    type In = DynValue;
    type Out = DynValue;

    fn process(
        &mut self,
        x: DynValue,
        ctx: &mut ProcessContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        self.buffer.push((x, ctx.timestamp(), ctx.window()));
        Ok(())
    }

    fn finish_bundle(
        &mut self,
        ctx: &mut BundleContext<'_, '_, DynValue>,
    ) -> Result<(), UserError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buffer);
        attach(|py| -> Result<(), UserError> {
            let elements = batch
                .iter()
                .map(|(x, _, _)| to_py(py, x.0.clone()))
                .collect::<PyResult<Vec<_>>>()?;
            let results = py
                .import("beamline._workers")?
                .call_method1("run_batch", (self.stage, elements))
                .map_err(|e| traceback(py, &e))?;
            let t = types(py)?;
            for ((_, ts, window), outs) in batch.iter().zip(results.try_iter()?) {
                for out in outs?.try_iter()? {
                    let out = out?;
                    if out.is_instance(t.timestamped.bind(py))? {
                        let new_ts: f64 = out.getattr("timestamp")?.extract()?;
                        let value = to_value(&out.getattr("value")?)?;
                        ctx.output_at(DynValue(value), (new_ts * 1000.0).round() as i64, *window);
                    } else {
                        ctx.output_at(DynValue(to_value(&out)?), *ts, *window);
                    }
                }
            }
            Ok(())
        })?;
        // The workers' metric updates, re-recorded on this thread by `run_batch`.
        drain_metrics(ctx);
        Ok(())
    }
}
