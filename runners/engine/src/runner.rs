//! The runner interface and the registry through which `--runner=NAME` finds runners.

use crate::error::EngineError;
use crate::job::{JobHandle, JobState};
use crate::metrics::MetricResults;
use crate::options::OptionSpec;
use crate::registry::FnRegistry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Environment variable that puts a re-executed pipeline program in worker mode: its value
/// is the path of a pipeline proto to execute instead of the one the program builds (how
/// multi-process runners give every process the same pipeline).
pub const WORKER_PIPELINE_ENV: &str = "BEAMLINE_WORKER_PIPELINE";

/// Environment variable beside [`WORKER_PIPELINE_ENV`]: which of the program's pipeline
/// runs (from 0, in the order the program starts them; [`JobContext::job_index`]) the
/// worker pipeline is. A worker skips the runs before it, so a program that runs several
/// pipelines runs each in the workers of its own job.
pub const WORKER_JOB_ENV: &str = "BEAMLINE_WORKER_JOB";

/// Everything a runner gets besides the pipeline itself.
#[derive(Clone, Debug, Default)]
pub struct JobContext {
    /// Closures of the pipeline binary.
    pub functions: Arc<FnRegistry>,
    /// Pipeline options (`--name=value` flags), by name without dashes.
    pub options: BTreeMap<String, String>,
    /// Temporary output directories to remove when the job fails or is cancelled.
    pub cleanup: Vec<PathBuf>,
    /// The runner may handle SIGINT and SIGTERM (drain a streaming job, cancel a batch
    /// one). False where the host program handles them itself (the Python package).
    pub handle_signals: bool,
    /// The pipeline's place among those the program started, from 0 (see
    /// [`WORKER_JOB_ENV`]).
    pub job_index: usize,
}

/// What a finished job reports.
#[derive(Clone, Debug, Default)]
pub struct JobResult {
    /// User metrics.
    pub metrics: MetricResults,
}

/// Executes portable pipelines.
pub trait Runner: Send + Sync {
    /// The options this runner reads (name, type, default, help): `--help` lists them,
    /// and an option that neither the runner, the SDK nor the program declares is an error.
    fn options(&self) -> Vec<OptionSpec>;

    /// Starts the pipeline given as an encoded `org.apache.beam.model.pipeline.v1.Pipeline`
    /// and returns a handle on the running job.
    ///
    /// # Errors
    /// What stops the job from starting: an invalid proto, unknown URNs, unresolved
    /// functions, bad option values. Failures while it runs come from the handle.
    fn start(&self, pipeline: &[u8], job: JobContext) -> Result<Box<dyn JobHandle>, EngineError>;

    /// Runs the pipeline until it finishes.
    ///
    /// # Errors
    /// Any failure of the job: invalid proto, unknown URNs, unresolved functions, user
    /// code errors and panics (naming the transform), I/O errors.
    fn run(&self, pipeline: &[u8], job: JobContext) -> Result<JobResult, EngineError> {
        let handle = self.start(pipeline, job)?;
        match handle.wait_until_finish(None)? {
            JobState::Cancelled => Err(EngineError::Cancelled),
            _ => Ok(JobResult {
                metrics: handle.metrics(),
            }),
        }
    }
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
