//! Worker mode: executing a pipeline proto in a child process re-executed from this binary.
//!
//! The child rebuilds the same pipeline (so every closure is registered under the same
//! transform name) and then runs the proto it is given instead of its own, resolving
//! closures by name. This is how multi-process runners start workers.

use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, WORKER_PIPELINE_ENV};
use beamline_proto::prost::Message;
use std::path::Path;
use std::process::Command;

/// The program as it was started and its arguments (see the engine's `program` module).
pub use beamline_engine::program::as_started as program_as_started;

/// True when this process was started as a worker.
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_PIPELINE_ENV).is_some()
}

/// Writes the pipeline proto to `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_proto(p: &Pipeline, path: &Path) -> Result<()> {
    std::fs::write(path, p.to_proto().encode_to_vec()).map_err(|source| Error::Io {
        context: format!("writing pipeline proto {}", path.display()),
        source,
    })
}

/// Runs the pipeline proto at `proto` in a child process: this binary, re-executed with
/// `args` and [`WORKER_PIPELINE_ENV`] set. The child must build the same pipeline and
/// call [`Pipeline::run`].
///
/// # Errors
/// When the child cannot start or exits unsuccessfully (its stderr is in the message).
pub fn run_in_child_process(proto: &Path, args: &[String]) -> Result<()> {
    let (exe, _) = program_as_started().map_err(|source| Error::Io {
        context: "finding the current executable".into(),
        source,
    })?;
    let out = Command::new(&exe)
        .args(args)
        .env(WORKER_PIPELINE_ENV, proto)
        .output()
        .map_err(|source| Error::Io {
            context: format!("starting worker {}", exe.display()),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        Err(Error::Worker(format!(
            "{}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }
}
