//! The examples on the portable runner, on Beam Python 2.77's local job service: the word
//! count gives the local runner's exact output. (Not the clickstream: its early panes use a
//! processing-time trigger, which Beam Python's batch runner fails on: its trigger driver
//! has no clock.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use beamline_runner_portable::local_service::LocalJobService;

mod common;
use common::{example, lines};

/// The interpreter with apache-beam 2.77 (`BEAMLINE_BEAM_PYTHON`, else the workspace's
/// `.venv`, which `./scripts/test` makes).
fn beam_python() -> PathBuf {
    beamline_runner_portable::local_service::beam_python(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.venv/bin/python"
    ))
}

fn run(name: &str, args: &[String]) {
    let out = Command::new(example(name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wordcount_on_beams_job_service_matches_the_local_runner() {
    let service = LocalJobService::start(&beam_python(), Duration::from_secs(120)).unwrap();
    let portable = [
        "--runner=portable".to_string(),
        format!("--job-endpoint={}", service.endpoint()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut text = String::new();
    for i in 0..20_000u64 {
        text.push_str(&format!("w{} x{} shared\n", i % 997, i % 13));
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    for (prefix, extra) in [
        ("local", &["--runner=local".to_string()][..]),
        ("portable", &portable[..]),
    ] {
        let mut args = vec![
            format!("--input={d}/in.txt"),
            format!("--output={d}/wc-{prefix}"),
        ];
        args.extend(extra.iter().cloned());
        run("wordcount", &args);
    }
    let (local, remote) = (
        lines(dir.path(), "wc-local"),
        lines(dir.path(), "wc-portable"),
    );
    assert_eq!(local.len(), 997 + 13 + 1);
    assert_eq!(local, remote);
}
