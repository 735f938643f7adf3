//! Live progress of a distributed job: the launcher sums what its worker processes report
//! into stages the job UI shows while the job runs, and a cancel from the UI stops them.
//! Also: workers end when their launcher's process ends without waiting for its job.
//! (`harness = false`: the worker processes run this program's `main` too.)

use anyhow::{anyhow, ensure, Result};
use beamline::io::generator::Generator;
use beamline::{Count, JobState, Pipeline, PipelineOptions, WindowInto};
use serde_json::Value;

#[path = "common/http.rs"]
mod http;
use http::call;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let p = Pipeline::new(PipelineOptions::from_args([
        "test",
        "--runner=distributed",
        "--processes=2",
        "--ui=127.0.0.1:0",
        "--quiet",
        "--job-name=clicks-distributed",
    ])?);
    p.apply("Clicks", Generator::new(50).with_rate(20_000))
        .map("Key", |(k, _): (i64, i64)| k)
        .apply("Window", WindowInto::fixed(1000))
        .apply("Count", Count::per_element());
    let job = p.start()?;
    if beamline::worker::is_worker() {
        // A worker runs its share until the launcher stops it.
        job.wait_until_finish(None)?;
        return Ok(());
    }
    if std::env::var_os(ORPHAN_TOKEN).is_some() {
        // The launcher's program ends while its job runs, without cancelling it.
        std::thread::sleep(Duration::from_secs(3));
        std::process::exit(0);
    }
    let url = job.ui_url().ok_or_else(|| anyhow!("no UI"))?.to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let view: Value = loop {
        let (_, body) = call(&url, "GET", "/api/jobs")?;
        let jobs: Value = serde_json::from_str(&body)?;
        let view = jobs["jobs"][0].clone();
        let stages = view["stages"].as_array().cloned().unwrap_or_default();
        let source = stages.iter().find(|s| s["kind"] == "source");
        let grouping = stages.iter().find(|s| s["kind"] == "grouping");
        let moving =
            |s: Option<&Value>| s.and_then(|s| s["elements_in"].as_u64()).unwrap_or(0) > 1000;
        if view["runner_stages"] == true
            && moving(source)
            && moving(grouping)
            && grouping.is_some_and(|g| {
                g["elements_out"].as_u64() > Some(0) && g["input_watermark"].is_i64()
            })
        {
            break view;
        }
        ensure!(
            Instant::now() < deadline,
            "no live progress from the workers: {view}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(view["runner"], "distributed");
    assert_eq!(view["state"], "RUNNING");
    let id = view["id"].as_str().unwrap();
    let (status, body) = call(&url, "POST", &format!("/api/jobs/{id}/cancel"))?;
    assert_eq!(status, 202, "{body}");
    let state = job.wait_until_finish(Some(Duration::from_secs(60)))?;
    assert_eq!(state, JobState::Cancelled);
    eprintln!(
        "distributed live progress: {} stages, source read {}; cancelled from the UI",
        view["stages"].as_array().map_or(0, Vec::len),
        view["stages"][0]["elements_in"]
    );
    no_orphans()
}

/// Marks the processes of the run that checks for orphans.
const ORPHAN_TOKEN: &str = "BEAMLINE_TEST_ORPHAN_TOKEN";

/// Runs this program as a launcher that exits while its workers run; then no process
/// carrying its token may be left.
fn no_orphans() -> Result<()> {
    let token = format!("{}-{}", std::process::id(), line!());
    let status = std::process::Command::new(std::env::current_exe()?)
        .env(ORPHAN_TOKEN, &token)
        .stderr(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "the launcher run failed: {status}");
    let needle = format!("{ORPHAN_TOKEN}={token}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
                left.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if left.is_empty() {
            eprintln!("no worker outlived its launcher");
            return Ok(());
        }
        if Instant::now() > deadline {
            for pid in &left {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
            anyhow::bail!("worker processes {left:?} outlived their launcher");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
