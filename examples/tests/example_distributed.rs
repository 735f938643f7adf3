//! The examples on the distributed runner: the same output as the local runner on 2 and
//! on 3 processes x 2 threads; a failure's original error (transform name, message)
//! reported by the launcher; the streaming clickstream with the same panes as locally.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// The sorted lines of every file `dir/prefix-*`.
fn lines(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{prefix}-")) {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            out.extend(text.lines().map(String::from));
        }
    }
    out.sort();
    out
}

fn run(name: &str, args: &[String]) -> std::process::Output {
    Command::new(example(name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn wordcount_on_several_processes_matches_the_local_runner() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..30_000u64 {
        text.push_str(&format!("w{} x{} shared\n", i % 997, i % 13));
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let d = dir.path().display();
    let mut outputs = Vec::new();
    for (prefix, extra) in [
        ("local", vec!["--runner=local"]),
        ("two", vec!["--runner=distributed", "--processes=2"]),
        (
            "three",
            vec![
                "--runner=distributed",
                "--processes=3",
                "--threads-per-process=2",
            ],
        ),
    ] {
        let mut args = vec![
            format!("--input={d}/in.txt"),
            format!("--output={d}/{prefix}"),
        ];
        args.extend(extra.into_iter().map(String::from));
        let o = run("wordcount", &args);
        assert!(
            o.status.success(),
            "{prefix}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        outputs.push(lines(dir.path(), prefix));
    }
    assert_eq!(outputs[0].len(), 997 + 13 + 1);
    assert_eq!(outputs[1], outputs[0]);
    assert_eq!(outputs[2], outputs[0]);
    // Only the final shards are left: no temporary files of any process.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("beamline-temp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn clickstream_windows_triggers_and_state_match_the_local_runner() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let o = run(
        "clickstream",
        &[
            format!("--generate-csv={d}/clicks.csv"),
            "--count=20000".into(),
        ],
    );
    assert!(o.status.success());
    for (prefix, runner) in [
        ("local", "--runner=local"),
        ("dist", "--runner=distributed"),
    ] {
        let o = run(
            "clickstream",
            &[
                format!("--input={d}/clicks.csv"),
                format!("--panes={d}/{prefix}"),
                "--quiet".into(),
                runner.into(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let local = lines(dir.path(), "local");
    assert!(local.len() > 100, "{}", local.len());
    assert_eq!(lines(dir.path(), "dist"), local);
}

#[test]
fn a_failing_transform_fails_the_job_with_its_original_error() {
    let o = run(
        "clickstream",
        &[
            "--input=/nonexistent/clicks-*.csv".into(),
            "--runner=distributed".into(),
            "--processes=2".into(),
        ],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "process 0 failed: transform 'Read/ExpandGlob' failed: no files match '/nonexistent/clicks-*.csv'"
        ),
        "{stderr}"
    );
}

#[test]
fn streaming_clickstream_on_two_processes_matches_the_local_runner() {
    // The generator's events (event-time windows, early and late panes, map state):
    // every pane the same as on the local runner, the generator split over both processes.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut outputs = Vec::new();
    for (prefix, extra) in [
        ("local", vec!["--runner=local"]),
        ("two", vec!["--runner=distributed", "--processes=2"]),
    ] {
        let mut args = vec![
            "--streaming".to_string(),
            "--count=20000".to_string(),
            "--quiet".to_string(),
            format!("--panes={d}/{prefix}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = run("clickstream", &args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{prefix}: {stderr}");
        let panes = lines(dir.path(), prefix);
        assert!(
            stderr.contains(&format!("\n{} panes;", panes.len()))
                || stderr.starts_with(&format!("{} panes;", panes.len())),
            "{prefix}: {stderr}"
        );
        outputs.push(panes);
    }
    assert!(outputs[0].len() > 100, "{}", outputs[0].len());
    assert_eq!(outputs[0], outputs[1]);
}
