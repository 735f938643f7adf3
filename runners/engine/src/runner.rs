//! The runner interface and the registry through which `--runner=NAME` finds runners.

use crate::error::EngineError;
use crate::metrics::MetricResults;
use crate::registry::FnRegistry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything a runner gets besides the pipeline itself.
#[derive(Clone, Debug, Default)]
pub struct JobContext {
    /// Closures of the pipeline binary.
    pub functions: Arc<FnRegistry>,
    /// Pipeline options (`--name=value` flags), by name without dashes.
    pub options: BTreeMap<String, String>,
}

/// What a finished job reports.
#[derive(Clone, Debug, Default)]
pub struct JobResult {
    /// User metrics.
    pub metrics: MetricResults,
}

/// Executes portable pipelines.
pub trait Runner: Send + Sync {
    /// Runs the pipeline given as an encoded `org.apache.beam.model.pipeline.v1.Pipeline`
    /// until it finishes.
    ///
    /// # Errors
    /// Any failure of the job: invalid proto, unknown URNs, unresolved functions, user
    /// code errors and panics (naming the transform), I/O errors.
    fn run(&self, pipeline: &[u8], job: JobContext) -> Result<JobResult, EngineError>;
}

/// A runner linked into this binary, selectable with `--runner=NAME`.
pub struct RunnerRegistration {
    /// The name users pass to `--runner`.
    pub name: &'static str,
    /// One line for help and error messages.
    pub description: &'static str,
    /// Creates the runner.
    pub create: fn() -> Box<dyn Runner>,
}
inventory::collect!(RunnerRegistration);

/// Every runner linked into this binary, sorted by name.
pub fn available_runners() -> Vec<&'static RunnerRegistration> {
    let mut v: Vec<_> = inventory::iter::<RunnerRegistration>.into_iter().collect();
    v.sort_by_key(|r| r.name);
    v
}

/// The runner registered under `name`.
pub fn find_runner(name: &str) -> Option<&'static RunnerRegistration> {
    inventory::iter::<RunnerRegistration>
        .into_iter()
        .find(|r| r.name == name)
}
