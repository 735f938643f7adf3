//! The job UI's JSON API on the local runner: a streaming job's live stages, cancelling it
//! from the API, a batch job's sources, sinks and metrics, and a failed job's error.

use anyhow::{anyhow, Result};
use beamline::io::generator::Generator;
use beamline::{Count, JobState, Pipeline, PipelineOptions, ReadFromText, WindowInto, WriteToText};
use serde_json::Value;

#[path = "common/http.rs"]
mod http;
use std::time::{Duration, Instant};

fn json(url: &str, path: &str) -> Result<Value> {
    let (status, body) = http::call(url, "GET", path)?;
    anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

fn options(extra: &[&str]) -> Result<PipelineOptions> {
    let mut args = vec!["test", "--ui=127.0.0.1:0", "--quiet"];
    args.extend_from_slice(extra);
    Ok(PipelineOptions::from_args(args)?)
}

#[test]
fn a_streaming_job_shows_live_stages_and_is_cancelled_from_the_api() -> Result<()> {
    let p = Pipeline::new(options(&["--job-name=clicks"])?);
    p.apply("Clicks", Generator::new(50).with_rate(20_000))
        .map("Key", |(k, _): (i64, i64)| k)
        .apply("Window", WindowInto::fixed(1000))
        .apply("Count", Count::per_element());
    let job = p.start()?;
    let url = job
        .ui_url()
        .ok_or_else(|| anyhow!("no UI URL"))?
        .to_string();

    let page = http::call(&url, "GET", "/")?;
    assert_eq!(page.0, 200);
    assert!(
        page.1.contains("<title>Beamline jobs</title>"),
        "{}",
        page.1
    );
    assert_eq!(http::call(&url, "GET", "/app.js")?.0, 200);

    // Counts move while it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let jobs = json(&url, "/api/jobs")?;
        let view = jobs["jobs"]
            .as_array()
            .and_then(|a| a.iter().find(|j| j["name"] == "clicks"))
            .cloned()
            .ok_or_else(|| anyhow!("the job is not listed: {jobs}"))?;
        let source = view["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["kind"] == "source"))
            .cloned()
            .unwrap_or_default();
        // Read (into the source's stage) and folded into the grouping's pre-combiner.
        let source_in = source["elements_in"].as_u64().unwrap_or(0);
        let source_out = source["elements_out"].as_u64().unwrap_or(0);
        let grouping = view["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["kind"] == "grouping"))
            .cloned();
        if source_in > 1000
            && source_out > 1000
            && source["out_per_sec"].as_f64() > Some(0.0)
            && grouping.is_some_and(|g| {
                g["input_watermark"].is_i64()
                    && g["elements_in"].as_u64() > Some(1000)
                    && g["elements_out"].as_u64() > Some(0)
            })
        {
            break view;
        }
        anyhow::ensure!(Instant::now() < deadline, "no progress: {view}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(view["state"], "RUNNING");
    assert_eq!(view["streaming"], true);
    assert_eq!(view["runner"], "local");
    assert_eq!(view["runner_stages"], true);
    let id = view["id"].as_str().unwrap().to_string();
    // Every stage but the first reads from another.
    let stages = view["stages"].as_array().unwrap();
    assert!(stages.len() >= 2, "{view}");
    assert!(stages
        .iter()
        .any(|s| !s["inputs"].as_array().unwrap().is_empty()));
    assert!(stages
        .iter()
        .flat_map(|s| s["transforms"].as_array().unwrap())
        .any(|t| t == "Count/CombinePerKey" || t.as_str().unwrap().starts_with("Count")));
    assert_eq!(json(&url, &format!("/api/jobs/{id}"))?["id"], id.as_str());
    assert_eq!(http::call(&url, "GET", "/api/jobs/nope")?.0, 404);

    let (status, body) = http::call(&url, "POST", &format!("/api/jobs/{id}/cancel"))?;
    assert_eq!(status, 202, "{body}");
    let state = job.wait_until_finish(Some(Duration::from_secs(30)))?;
    assert_eq!(state, JobState::Cancelled);
    assert_eq!(
        json(&url, &format!("/api/jobs/{id}"))?["state"],
        "CANCELLED"
    );
    assert_eq!(
        http::call(&url, "POST", &format!("/api/jobs/{id}/cancel"))?.0,
        409
    );
    Ok(())
}

#[test]
fn a_batch_job_reports_what_it_read_and_wrote_and_its_metrics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\nb c\nc\n")?;
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let p = Pipeline::new(options(&["--job-name=words"])?);
    p.apply("Read", ReadFromText::new(input.to_string_lossy()))
        .flat_map("Split", |l: String| {
            l.split_whitespace().map(String::from).collect::<Vec<_>>()
        })
        .apply("Count", Count::per_element())
        .map("Format", |(w, n): (String, i64)| format!("{w}: {n}"))
        .apply("Write", WriteToText::new(&out).with_num_shards(2));
    let job = p.run()?;
    let url = job.ui_url().unwrap().to_string();
    let jobs = json(&url, "/api/jobs")?;
    let view = jobs["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["name"] == "words"))
        .cloned()
        .ok_or_else(|| anyhow!("not listed: {jobs}"))?;
    assert_eq!(view["state"], "DONE");
    assert_eq!(view["streaming"], false);
    let src = &view["sources"][0];
    assert_eq!(
        (src["transform"].as_str(), src["elements"].as_i64()),
        (Some("Read"), Some(3))
    );
    assert_eq!(
        (src["bytes"].as_i64(), src["bytes_total"].as_i64()),
        (Some(10), Some(10))
    );
    let sink = &view["sinks"][0];
    assert_eq!(sink["what"], format!("{out}-SSSSS-of-00002"));
    assert_eq!(
        (sink["elements"].as_i64(), sink["files"].as_i64()),
        (Some(3), Some(2))
    );
    // The stages counted what went through them: three lines in, five words to the
    // grouping, three counts out of it.
    let stages = view["stages"].as_array().unwrap();
    assert!(stages.iter().all(|s| s["done"] == true), "{view}");
    assert!(
        stages
            .iter()
            .any(|s| s["kind"] == "grouping" && s["elements_in"] == 5 && s["elements_out"] == 3),
        "{view}"
    );
    Ok(())
}

/// With checkpoints a streaming job's files are committed by checkpoints, under names of
/// their own; the summary's count is of those.
#[test]
fn a_checkpointed_streaming_job_counts_the_files_its_checkpoints_committed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let ckpt = dir.path().join("ckpt").to_string_lossy().into_owned();
    let p = Pipeline::new(options(&[
        "--job-name=committed",
        "--streaming",
        &format!("--checkpoint-dir={ckpt}"),
        "--checkpoint-interval=20ms",
    ])?);
    p.apply(
        "Events",
        Generator::new(10).with_count(20_000).with_rate(200_000),
    )
    .map("Format", |(k, v): (i64, i64)| format!("{k},{v}"))
    .apply("Write", WriteToText::new(&out));
    let job = p.run()?;
    let url = job.ui_url().unwrap().to_string();
    let jobs = json(&url, "/api/jobs")?;
    let view = jobs["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["name"] == "committed"))
        .cloned()
        .ok_or_else(|| anyhow!("not listed: {jobs}"))?;
    let files = std::fs::read_dir(dir.path())?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("out-c"))
        .count();
    assert!(files > 1, "several checkpoints committed files: {files}");
    let sink = &view["sinks"][0];
    assert_eq!(sink["what"], format!("{out}-cNNNNNN-*"));
    assert_eq!(
        (sink["elements"].as_i64(), sink["files"].as_i64()),
        (Some(20_000), Some(files as i64)),
        "{view}"
    );
    Ok(())
}

#[test]
fn a_failed_job_shows_its_error_and_the_transform() -> Result<()> {
    let p = Pipeline::new(options(&["--job-name=broken"])?);
    p.apply("Numbers", beamline::Create::of(vec![1i64, 2, 3]))
        .map("Explode", |x: i64| -> i64 {
            if x == 2 {
                panic!("two is not allowed")
            }
            x
        });
    let job = p.start()?;
    let url = job.ui_url().unwrap().to_string();
    assert!(job
        .wait_until_finish(Some(Duration::from_secs(30)))
        .is_err());
    let jobs = json(&url, "/api/jobs")?;
    let view = jobs["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["name"] == "broken"))
        .cloned()
        .ok_or_else(|| anyhow!("not listed: {jobs}"))?;
    assert_eq!(view["state"], "FAILED");
    assert!(
        view["error"]
            .as_str()
            .unwrap()
            .contains("two is not allowed"),
        "{view}"
    );
    assert_eq!(view["error_transform"], "Explode");
    Ok(())
}

#[test]
fn a_ui_address_that_cannot_be_served_is_a_usage_error() -> Result<()> {
    let p = Pipeline::new(PipelineOptions::from_args(["test", "--ui=not-an-address"])?);
    p.apply("Numbers", beamline::Create::of(vec![1i64]));
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("'not-an-address' is not an address"), "{err}");
    Ok(())
}
