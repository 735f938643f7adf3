//! The portable runner: submits a pipeline to an Apache Beam job service (Beam Python's
//! local service, Flink's, Spark's, Dataflow's) over the Job API, and serves as that
//! engine's SDK harness over the Fn API, running Beamline's own operators in this process.
//!
//! Selected with `--runner=portable --job-endpoint=HOST:PORT`. The engine on the other side
//! orchestrates (fusion, shuffles, watermarks); the transforms whose environment is
//! Beamline's run here: the submitted pipeline names `beam:env:external:v1` with the
//! address of a worker pool this process serves ([`worker_pool`]), and each worker the
//! engine starts is a [`harness`] connected to its control, data, state and logging
//! services.
//!
//! - [`job`]: the Job API client (prepare, artifact staging, run, state and message streams,
//!   cancel) behind the shared runner layer's [`JobHandle`].
//! - [`submit`]: the pipeline proto as submitted (environment, requirements, capabilities).
//! - [`harness`]: the SDK harness (control, data, state, logging; bundles of fused stages).
//! - [`local_service`]: Beam Python's local job service as an owned child process.
//!
//! `RUST_LOG=debug` (or `--log-level=debug`) logs what the harness receives (instructions,
//! the stages it runs, data and state requests) on standard error.

pub mod grpc;
pub mod harness;
pub mod job;
pub mod local_service;
pub mod submit;
pub mod worker_pool;

use std::time::Duration;

use beamline_engine::job::JobHandle;
use beamline_engine::options::{parse_duration_ms, OptionKind, OptionSpec};
use beamline_engine::runner::{JobContext, Runner, RunnerRegistration};
use beamline_engine::EngineError;

/// What goes wrong talking to a Beam service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A service could not be reached.
    #[error("cannot connect to the {0}")]
    Connect(String),
    /// A call failed (the service's status text).
    #[error("{0}")]
    Call(String),
    /// The job failed on the service.
    #[error("the job failed on the Beam job service: {0}")]
    JobFailed(String),
    /// A message was not what the protocol says.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for EngineError {
    fn from(e: Error) -> Self {
        EngineError::Runner(e.to_string())
    }
}

/// The runner's settings, from the job's options.
#[derive(Clone, Debug)]
pub struct PortableOptions {
    /// The Beam job service (`--job-endpoint`).
    pub job_endpoint: String,
    /// Where this process serves its worker pool (`--sdk-worker-address`); port 0 picks one.
    pub worker_address: String,
    /// How long connecting to a service may take (`--connect-timeout`).
    pub connect_timeout: Duration,
}

impl PortableOptions {
    /// Reads the runner's options.
    ///
    /// # Errors
    /// A missing `--job-endpoint`, a malformed duration.
    pub fn from_job(job: &JobContext) -> Result<Self, EngineError> {
        let bad = |name: &str, why: String| EngineError::Runner(format!("--{name}: {why}"));
        let job_endpoint = job
            .options
            .get("job_endpoint")
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or_else(|| {
                EngineError::Runner(
                    "--runner=portable needs --job-endpoint=HOST:PORT (the address of a Beam job service)"
                        .into(),
                )
            })?;
        let connect_timeout = match job.options.get("connect_timeout") {
            Some(v) => parse_duration_ms(v).map_err(|why| bad("connect-timeout", why))?,
            None => 30_000,
        };
        Ok(PortableOptions {
            job_endpoint,
            worker_address: job
                .options
                .get("sdk_worker_address")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1:0".into()),
            connect_timeout: Duration::from_millis(connect_timeout),
        })
    }
}

/// The portable runner.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortableRunner;

impl Runner for PortableRunner {
    fn options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new(
                "job-endpoint",
                OptionKind::Text,
                "portable: the Beam job service to submit to (HOST:PORT)",
            ),
            OptionSpec::new(
                "sdk-worker-address",
                OptionKind::Text,
                "portable: where this process serves its SDK workers to the Beam engine (HOST:PORT; port 0 picks one)",
            )
            .default_value("127.0.0.1:0"),
            OptionSpec::new(
                "connect-timeout",
                OptionKind::Duration,
                "how long connecting to a service or peer may take",
            )
            .default_value("30s"),
        ]
    }

    fn start(&self, pipeline: &[u8], job: JobContext) -> Result<Box<dyn JobHandle>, EngineError> {
        let options = PortableOptions::from_job(&job)?;
        // What the harness will run must resolve here first: an unknown function is a
        // usage error now, not a remote failure later.
        beamline_translate::prepare(pipeline, &job)?.refuse_checkpoints("portable")?;
        Ok(Box::new(job::start(pipeline, job, options)?))
    }
}

inventory::submit! {
    RunnerRegistration {
        name: "portable",
        description: "an Apache Beam job service (Flink, Spark, Dataflow, Beam Python's), with Beamline as its SDK harness",
        create: || Box::new(PortableRunner),
    }
}

/// Makes sure this crate (and its runner registration) is linked into the binary.
pub fn link() {}
