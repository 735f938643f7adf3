//! What the portable runner's tests share: Beam Python's job service (one per test binary)
//! and pipeline options that submit to it.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use beamline::PipelineOptions;
use beamline_runner_portable::local_service::LocalJobService;

/// The interpreter with apache-beam 2.77 (`BEAMLINE_BEAM_PYTHON`, else the workspace's
/// `.venv`, which `./scripts/test` makes).
pub fn beam_python() -> PathBuf {
    beamline_runner_portable::local_service::beam_python(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ))
}

/// This test binary's job service.
pub fn endpoint() -> String {
    static SERVICE: OnceLock<LocalJobService> = OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let python = beam_python();
            assert!(
                python.exists(),
                "no Python with apache-beam 2.77 at {} (./scripts/test installs it; or set BEAMLINE_BEAM_PYTHON)",
                python.display()
            );
            LocalJobService::start(&python, Duration::from_secs(120)).expect("job service starts")
        })
        .endpoint()
        .to_owned()
}

/// Options running on the portable runner against this binary's job service.
pub fn portable() -> PipelineOptions {
    PipelineOptions::default()
        .set("runner", "portable")
        .set("job_endpoint", endpoint())
}
