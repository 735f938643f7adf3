//! Beam Python's local job service as a child process this program owns: started on a
//! free port, stopped when dropped, and gone when this process dies (it watches its
//! stdin). What tests, benchmarks and a user without Flink run the portable runner on.
//!
//! The service's temporary files (Beam stages artifacts and job files in directories of
//! its own) go to a directory this handle owns, removed by whichever ends first: the
//! handle's drop, or the service once its owner is gone (a handle kept in a `static`
//! is never dropped).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Runs `local_job_service_main` and, as soon as stdin closes (our process ended, however
/// it ended), removes the service's directory and exits, so the service and its files
/// never outlive their owner.
const LAUNCHER: &str = r#"import os, shutil, sys, threading
from apache_beam.runners.portability import local_job_service_main
def watch():
    sys.stdin.read()
    shutil.rmtree(os.environ['BEAMLINE_SERVICE_DIR'], ignore_errors=True)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
local_job_service_main.run(sys.argv[1:])
"#;

/// A running Beam Python job service.
#[derive(Debug)]
pub struct LocalJobService {
    child: Child,
    stdin: Option<ChildStdin>,
    endpoint: String,
    dir: PathBuf,
}

/// The interpreter with apache-beam: `BEAMLINE_BEAM_PYTHON` when set, else `fallback`.
pub fn beam_python(fallback: impl Into<PathBuf>) -> PathBuf {
    std::env::var_os("BEAMLINE_BEAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| fallback.into())
}

impl LocalJobService {
    /// Starts the job service with `python` (an interpreter with `apache-beam` installed),
    /// waiting up to `timeout` for it to listen.
    ///
    /// # Errors
    /// The interpreter cannot run, Beam is not installed, or the service did not start
    /// in time (its output is in the message).
    pub fn start(python: &Path, timeout: Duration) -> Result<LocalJobService> {
        let dir = std::env::temp_dir().join(format!(
            "beamline-job-service-{}-{}",
            std::process::id(),
            rand_seed()
        ));
        // Beam's own temporary directories, inside ours.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::Connect(format!("job service: {}: {e}", tmp.display())))?;
        let port_file = dir.join("port");
        let log = dir.join("service.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| Error::Connect(format!("job service: {}: {e}", log.display())))?;
        let mut child = Command::new(python)
            .arg("-c")
            .arg(LAUNCHER)
            .arg("--job_port")
            .arg("0")
            .arg("--port_file")
            .arg(&port_file)
            .env("BEAMLINE_SERVICE_DIR", &dir)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(
                log_file
                    .try_clone()
                    .map_err(|e| Error::Connect(e.to_string()))?,
            )
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                Error::Connect(format!(
                    "Beam job service: cannot run {}: {e}",
                    python.display()
                ))
            })?;
        let stdin = child.stdin.take();
        let mut service = LocalJobService {
            child,
            stdin,
            endpoint: String::new(),
            dir,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                let port = port.trim();
                if !port.is_empty() {
                    service.endpoint = format!("localhost:{port}");
                    return Ok(service);
                }
            }
            let exited = service.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = output.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(Error::Connect(format!(
                    "Beam job service: {} ({}); its output:\n{}",
                    match exited {
                        Some(status) => format!("exited with {status}"),
                        None => format!("not listening after {timeout:?}"),
                    },
                    python.display(),
                    tail.join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the service listens (`localhost:PORT`), for `--job-endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The service's log file (its stdout and stderr).
    pub fn log(&self) -> PathBuf {
        self.dir.join("service.log")
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

impl Drop for LocalJobService {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
