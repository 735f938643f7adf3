//! The job directory: jobs started with `--ui` publish their view there as JSON, so that
//! `beamline ui` (another process) lists them and can ask one to cancel.

use crate::view::JobView;
use std::path::{Path, PathBuf};

/// Environment variable naming the job directory (default `~/.beamline/jobs`).
pub const JOBS_DIR_ENV: &str = "BEAMLINE_JOBS_DIR";

/// Most finished jobs kept in the directory; older ones are removed.
const KEEP_FINISHED: usize = 50;

/// The job directory.
pub fn jobs_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(JOBS_DIR_ENV) {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME") {
        Some(h) => Path::new(&h).join(".beamline").join("jobs"),
        None => std::env::temp_dir().join("beamline-jobs"),
    }
}

/// Writes `view` as `DIR/ID.json` (through a temporary file, so readers never see half).
///
/// # Errors
/// When the directory or file cannot be written.
pub fn publish(dir: &Path, view: &JobView) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.json.tmp", view.id));
    let body = serde_json::to_vec(view).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, dir.join(format!("{}.json", view.id)))
}

/// Asks the job `id` to cancel (its process polls for the request).
///
/// # Errors
/// When the request cannot be written.
pub fn request_cancel(dir: &Path, id: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(format!("{id}.cancel")), b"")
}

/// True (once) when a cancel of job `id` was requested; the request is consumed.
pub fn cancel_requested(dir: &Path, id: &str) -> bool {
    std::fs::remove_file(dir.join(format!("{id}.cancel"))).is_ok()
}

/// Whether process `pid` still runs (on Linux; elsewhere assumed to).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Every job in the directory, newest first. A job still `RUNNING` whose process is gone
/// shows `LOST`. Unreadable files are skipped; finished jobs past the newest
/// 50 (`KEEP_FINISHED`) are removed.
pub fn list(dir: &Path) -> Vec<JobView> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut jobs: Vec<(PathBuf, JobView)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let text = std::fs::read(&p).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
            Some((p, view_from_json(&v)?))
        })
        .collect();
    for (_, v) in &mut jobs {
        if v.state == "RUNNING" && !alive(v.pid) {
            v.state = "LOST".into();
        }
    }
    jobs.sort_by_key(|(_, v)| std::cmp::Reverse(v.started_ms));
    let mut finished = 0;
    jobs.retain(|(path, v)| {
        if v.state == "RUNNING" {
            return true;
        }
        finished += 1;
        if finished > KEEP_FINISHED {
            let _ = std::fs::remove_file(path);
            return false;
        }
        true
    });
    jobs.into_iter().map(|(_, v)| v).collect()
}

/// The fields the list needs back from a published view; the rest is kept as JSON by
/// the server (see [`raw`]).
fn view_from_json(v: &serde_json::Value) -> Option<JobView> {
    Some(JobView {
        id: v.get("id")?.as_str()?.to_string(),
        name: v.get("name")?.as_str()?.to_string(),
        state: v.get("state")?.as_str()?.to_string(),
        started_ms: v.get("started_ms")?.as_i64()?,
        pid: v.get("pid")?.as_u64()? as u32,
        ..Default::default()
    })
}

/// The published JSON of job `id`, with its state corrected as [`list`] does.
pub fn raw(dir: &Path, id: &str) -> Option<serde_json::Value> {
    if id.contains('/') || id.contains("..") {
        return None;
    }
    let text = std::fs::read(dir.join(format!("{id}.json"))).ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let pid = v.get("pid")?.as_u64()? as u32;
    if v.get("state")?.as_str()? == "RUNNING" && !alive(pid) {
        v["state"] = "LOST".into();
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_jobs_are_listed_and_a_dead_process_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = JobView {
            id: "1-0".into(),
            name: "a".into(),
            state: "RUNNING".into(),
            started_ms: 5,
            pid: std::process::id(),
            ..Default::default()
        };
        publish(dir.path(), &v).unwrap();
        v.id = "2-0".into();
        v.pid = u32::MAX - 1;
        v.started_ms = 6;
        publish(dir.path(), &v).unwrap();
        let jobs = list(dir.path());
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].id.as_str(), jobs[0].state.as_str()),
            ("2-0", "LOST")
        );
        assert_eq!(jobs[1].state, "RUNNING");
        assert_eq!(raw(dir.path(), "2-0").unwrap()["state"], "LOST");
        assert!(raw(dir.path(), "../x").is_none());
        assert!(!cancel_requested(dir.path(), "1-0"));
        request_cancel(dir.path(), "1-0").unwrap();
        assert!(cancel_requested(dir.path(), "1-0"));
        assert!(!cancel_requested(dir.path(), "1-0"));
    }
}
