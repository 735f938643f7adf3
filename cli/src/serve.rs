//! `beamline ui`: the job UI over the job directory.

use beamline::monitor::directory::jobs_dir;
use beamline::monitor::ui::{DirectoryJobs, UiServer};
use std::sync::Arc;

/// Serves the UI at `addr` until the process is stopped.
pub(crate) fn ui(addr: &str, dir: Option<std::path::PathBuf>) -> anyhow::Result<u8> {
    let dir = dir.unwrap_or_else(jobs_dir);
    let server = UiServer::start(addr, Arc::new(DirectoryJobs::new(dir.clone())))?;
    eprintln!(
        "beamline: job UI at {} (jobs from {}; Ctrl-C stops)",
        server.url(),
        dir.display()
    );
    server.join();
    Ok(0)
}
