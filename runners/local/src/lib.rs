//! The embedded local runner: decodes a portable pipeline proto and runs it on all cores.
//!
//! Selected with `--runner=local` (the default). It executes the *proto*, not SDK
//! objects: [`translate`] turns the pipeline into the engine's graph, resolving user
//! functions through the job's function registry and the `inventory` registrations.
//!
//! Options read: `--threads=N` (default: all cores).

pub mod translate;

use beamline_engine::exec::{execute, ExecOptions};
use beamline_engine::runner::{JobContext, JobResult, Runner, RunnerRegistration};
use beamline_engine::EngineError;
use beamline_proto::pipeline::Pipeline;
use beamline_proto::prost::Message;

/// The local runner.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRunner;

impl Runner for LocalRunner {
    fn run(&self, pipeline: &[u8], job: JobContext) -> Result<JobResult, EngineError> {
        let proto = Pipeline::decode(pipeline)
            .map_err(|e| EngineError::InvalidPipeline(format!("malformed pipeline proto: {e}")))?;
        let graph = translate::to_graph(&proto, &job.functions)?;
        let threads = match job.options.get("threads") {
            Some(t) => t.parse().map_err(|_| {
                EngineError::InvalidPipeline(format!("--threads must be a number, got '{t}'"))
            })?,
            None => 0,
        };
        let metrics = execute(&graph, &ExecOptions { threads })?;
        Ok(JobResult { metrics })
    }
}

inventory::submit! {
    RunnerRegistration {
        name: "local",
        description: "embedded multi-threaded runner in this process (default)",
        create: || Box::new(LocalRunner),
    }
}

/// Makes sure this crate (and its runner registration) is linked into the binary.
pub fn link() {}
