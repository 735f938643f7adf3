//! The Beam Python job service the `portable` column runs on: started once per process,
//! on first use, with the interpreter the test script installed Beam 2.77 into.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use beamline_runner_portable::local_service::LocalJobService;

/// The interpreter with apache-beam 2.77: `BEAMLINE_BEAM_PYTHON`, else the workspace's
/// `.venv` (what `./scripts/test` makes).
pub fn beam_python() -> PathBuf {
    beamline_runner_portable::local_service::beam_python(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.venv/bin/python"
    ))
}

/// The endpoint of this process's job service, starting it on first use.
///
/// # Errors
/// Why the service could not start (no interpreter, no Beam, no port in time).
pub fn endpoint() -> Result<String, String> {
    static SERVICE: OnceLock<Result<LocalJobService, String>> = OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let python = beam_python();
            if !python.exists() {
                return Err(format!(
                    "no Python with apache-beam 2.77 at {} (./scripts/test installs it; or set BEAMLINE_BEAM_PYTHON)",
                    python.display()
                ));
            }
            LocalJobService::start(&python, Duration::from_secs(120)).map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|s| s.endpoint().to_owned())
        .map_err(Clone::clone)
}
