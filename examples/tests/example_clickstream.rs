//! The clickstream example gives the same final per-window counts in batch (CSV) and
//! streaming (generator) mode over the same events, and both equal an independent count.

use beamline_examples::clickstream::{self, WINDOW_MS};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

mod common;
use common::example;

/// Final count per (user, window start): the count of the pane with the highest index.
fn final_counts(dir: &Path, prefix: &str) -> (HashMap<(String, i64), i64>, HashMap<String, usize>) {
    let mut best: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    let mut timings: HashMap<String, usize> = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{prefix}-")) {
            continue;
        }
        for line in std::fs::read_to_string(dir.join(&name)).unwrap().lines() {
            let f: Vec<&str> = line.split(',').collect();
            let key = (f[0].to_string(), f[1].parse().unwrap());
            let (index, count): (i64, i64) = (f[2].parse().unwrap(), f[4].parse().unwrap());
            *timings.entry(f[3].to_string()).or_default() += 1;
            let e = best.entry(key).or_insert((-1, 0));
            if index > e.0 {
                *e = (index, count);
            }
        }
    }
    (
        best.into_iter().map(|(k, (_, c))| (k, c)).collect(),
        timings,
    )
}

fn run(args: &[String]) {
    let out = Command::new(example("clickstream"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn batch_and_streaming_agree_with_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let (n, seed) = (30_000u64, 11u64);
    run(&[
        format!("--generate-csv={d}/clicks.csv"),
        format!("--count={n}"),
        format!("--seed={seed}"),
    ]);
    run(&[
        format!("--input={d}/clicks.csv"),
        format!("--panes={d}/batch"),
        "--quiet".into(),
    ]);
    run(&[
        "--streaming".into(),
        // Several bundles, so that the watermark moves while clicks arrive and some
        // come late (one bundle of everything would have no late clicks).
        "--max-bundle-size=4096".into(),
        format!("--count={n}"),
        format!("--seed={seed}"),
        format!("--panes={d}/stream"),
        "--quiet".into(),
    ]);
    let (batch, _) = final_counts(dir.path(), "batch");
    let (stream, timings) = final_counts(dir.path(), "stream");

    let mut expected: HashMap<(String, i64), i64> = HashMap::new();
    for ((key, _), ts) in clickstream::generator(100, Some(n), 0, seed).events() {
        let start = ts - ts.rem_euclid(WINDOW_MS);
        *expected
            .entry((clickstream::user_of(key), start))
            .or_default() += 1;
    }
    assert_eq!(batch, expected);
    assert_eq!(stream, expected);
    // The stream had late clicks: late panes fired after the on-time ones.
    assert!(timings.get("LATE").copied().unwrap_or(0) > 0, "{timings:?}");
    assert!(
        timings.get("ON_TIME").copied().unwrap_or(0) > 0,
        "{timings:?}"
    );
}

#[test]
fn ctrl_c_drains_an_endless_stream() {
    drains_on("-INT");
}

/// Issue 21: SIGTERM (what a process manager or Kubernetes sends) drains as Ctrl-C does.
#[test]
fn sigterm_drains_an_endless_stream() {
    drains_on("-TERM");
}

fn drains_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(example("clickstream"))
        .args([
            "--streaming".to_string(),
            "--rate=5000".to_string(),
            format!("--panes={}/panes", dir.path().display()),
            "--quiet".to_string(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Draining fired the open windows and finalized the output files.
    let (counts, timings) = final_counts(dir.path(), "panes");
    assert!(!counts.is_empty(), "{stderr}");
    assert!(
        timings.get("ON_TIME").copied().unwrap_or(0) > 0,
        "{timings:?}"
    );
}

/// Issue 20: with a rate-limited generator, processing-time (early) timers fire at real
/// clock times before the windows close; they moved AfterWatermark past its on-time pane,
/// so no ON_TIME pane came at all. Each user's window [0, 60 s) now has exactly one.
#[test]
fn rate_limited_streaming_has_on_time_panes() {
    let dir = tempfile::tempdir().unwrap();
    let panes = format!("{}/panes", dir.path().display());
    // 6000 events at 2000/s: about 3 s of wall time, past the first 2 s early firing.
    run(&[
        "--streaming".into(),
        "--rate".into(),
        "2000".into(),
        "--count".into(),
        "6000".into(),
        "--users".into(),
        "20".into(),
        "--panes".into(),
        panes,
    ]);
    let mut on_time: HashMap<(String, i64), usize> = HashMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f[3] == "ON_TIME" {
                *on_time
                    .entry((f[0].to_string(), f[1].parse().unwrap()))
                    .or_default() += 1;
            }
        }
    }
    for u in 0..20 {
        let key = (clickstream::user_of(u), 0);
        assert_eq!(
            on_time.get(&key),
            Some(&1),
            "ON_TIME panes of {key:?}: {on_time:?}"
        );
    }
}
