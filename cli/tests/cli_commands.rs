//! The `beamline` command end to end: help, runners, running protos (and refusing those
//! with closures), the matrix, and `beamline ui` over a job directory.

use anyhow::{Context, Result};
use beamline::worker::write_proto;
use beamline::{Pipeline, PipelineOptions, ReadFromText, WriteToText};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[path = "../../sdk/tests/common/http.rs"]
mod http;

fn beamline(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_beamline"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .context("running beamline")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn every_subcommand_has_help() -> Result<()> {
    let (code, out, _) = beamline(&["--help"])?;
    assert_eq!(code, 0);
    for c in ["run", "runners", "matrix", "ui"] {
        assert!(out.contains(c), "{out}");
        let (code, out, err) = beamline(&[c, "--help"])?;
        assert_eq!(code, 0, "{c}: {err}");
        assert!(out.contains(&format!("Usage: beamline {c}")), "{c}: {out}");
    }
    Ok(())
}

#[test]
fn runners_lists_each_runner_with_options_and_capabilities() -> Result<()> {
    let (code, out, _) = beamline(&["runners"])?;
    assert_eq!(code, 0);
    for r in [
        "local —",
        "distributed —",
        "portable —",
        "--memory-budget",
        "--job-endpoint",
        "--ui=VALUE",
        "TestStream: Beam Python's local job service",
    ] {
        assert!(out.contains(r), "missing {r}: {out}");
    }
    Ok(())
}

#[test]
fn run_executes_a_proto_of_named_functions_and_summarizes_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("in.txt"), "one\ntwo\nthree\n")?;
    let input = dir.path().join("in.txt").to_string_lossy().into_owned();
    let output = dir.path().join("copy").to_string_lossy().into_owned();
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Read", ReadFromText::new(&input))
        .apply("Write", WriteToText::new(&output));
    let proto = dir.path().join("copy.pb");
    write_proto(&p, &proto)?;
    let (code, _, err) = beamline(&["run", proto.to_str().unwrap(), "--runner=local"])?;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("beamline: job 'copy' DONE"), "{err}");
    assert!(
        err.contains("read    Read: 3 elements (14 B) from"),
        "{err}"
    );
    assert!(
        err.contains("wrote   Write: 3 elements into 1 file(s)"),
        "{err}"
    );
    let mut lines: Vec<String> = Vec::new();
    for f in std::fs::read_dir(dir.path())? {
        let path = f?.path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("copy-")
        {
            lines.extend(std::fs::read_to_string(path)?.lines().map(String::from));
        }
    }
    lines.sort();
    assert_eq!(lines, ["one", "three", "two"]);
    Ok(())
}

#[test]
fn a_progress_bar_shows_on_a_terminal_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Enough input for the bar to draw a few frames (in a debug build).
    let line = "the quick brown fox jumps over the lazy dog\n".repeat(100_000);
    std::fs::write(dir.path().join("in.txt"), line)?;
    let p = Pipeline::new(PipelineOptions::default());
    p.apply(
        "Read",
        ReadFromText::new(dir.path().join("in.txt").to_string_lossy()),
    )
    .apply(
        "Write",
        WriteToText::new(dir.path().join("out").to_string_lossy()),
    );
    let proto = dir.path().join("big.pb");
    write_proto(&p, &proto)?;
    // Not a terminal: no bar, the summary only.
    let (code, _, err) = beamline(&["run", proto.to_str().unwrap()])?;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\r') && !err.contains("MiB"), "{err}");
    // A terminal (util-linux `script` gives the command one): the bar shows bytes read.
    let Ok(script) = which("script") else {
        eprintln!("no `script` command: the terminal half is not checked");
        return Ok(());
    };
    let cmd = format!(
        "{} run {} --job-name=tty",
        env!("CARGO_BIN_EXE_beamline"),
        proto.display()
    );
    let typescript = dir.path().join("typescript");
    let out = Command::new(script)
        .args(["-qec", &cmd])
        .arg(&typescript)
        .stdin(Stdio::null())
        .output()?;
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&std::fs::read(&typescript)?).into_owned();
    // The first frame shows the stages; once the input's size is known (if the job is
    // still running), the bar shows bytes read of it.
    assert!(shown.contains("stages done"), "{shown}");
    if shown.contains(" B/") || shown.contains("iB/") {
        assert!(shown.contains("/4.20 MiB"), "{shown}");
    }
    assert!(shown.contains("beamline: job 'tty' DONE"), "{shown}");
    // --quiet: neither bar nor summary.
    let (code, _, err) = beamline(&["run", proto.to_str().unwrap(), "--quiet"])?;
    assert_eq!(code, 0);
    assert!(err.is_empty(), "{err}");
    Ok(())
}

fn which(name: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("{name} not found"))
}

#[test]
fn run_refuses_a_proto_with_closures_naming_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Numbers", beamline::Create::of(vec![1i64, 2]))
        .map("Double", |x: i64| x * 2);
    let proto = dir.path().join("closures.pb");
    write_proto(&p, &proto)?;
    let (code, _, err) = beamline(&["run", proto.to_str().unwrap()])?;
    assert_eq!(code, 1);
    assert!(
        err.contains("needs closures of the program that built it ('Double')"),
        "{err}"
    );
    assert!(err.contains("run that program instead"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
    Ok(())
}

#[test]
fn usage_errors_are_one_line_without_a_backtrace() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let junk = dir.path().join("junk.pb");
    std::fs::write(&junk, b"\xff\xff\xff not a proto")?;
    let (code, _, err) = beamline(&["run", junk.to_str().unwrap()])?;
    assert_eq!(code, 1);
    assert!(
        err.contains("is not an encoded Beam Pipeline proto"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let (code, _, err) = beamline(&["run", "/nonexistent/x.pb"])?;
    assert_eq!(code, 1);
    assert!(err.starts_with("error: reading /nonexistent/x.pb"), "{err}");

    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Impulse", beamline::Impulse);
    let proto = dir.path().join("impulse.pb");
    write_proto(&p, &proto)?;
    let (code, _, err) = beamline(&["run", proto.to_str().unwrap(), "--runer=local"])?;
    assert_eq!(code, 1);
    assert!(err.contains("unknown option --runer"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let (code, _, err) = beamline(&["frobnicate"])?;
    assert_eq!(code, 2);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    Ok(())
}

#[test]
fn matrix_runs_the_suite_and_prints_the_table() -> Result<()> {
    let (code, out, err) = beamline(&[
        "matrix",
        "--column",
        "local (1 thread)",
        "--case",
        "sum_per_key",
    ])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("| category | local (1 thread) |"), "{out}");
    // A distributed column runs each case in a process of its own (this command again),
    // whose runner starts worker processes (this command again).
    let (code, out, err) = beamline(&[
        "matrix",
        "--column",
        "distributed (2 processes)",
        "--case",
        "sum_per_key",
    ])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("| category | distributed (2 processes) |") && out.contains("passed 1"),
        "{out}"
    );
    let (code, _, err) = beamline(&["matrix", "--case", "no-such-case"])?;
    assert_eq!(code, 1);
    assert!(err.contains("no case or no runner column matches"), "{err}");
    Ok(())
}

#[test]
fn ui_serves_the_jobs_of_a_job_directory_and_forwards_cancels() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let job = serde_json::json!({
        "id": "77-0", "name": "published", "runner": "local", "state": "RUNNING",
        "streaming": true, "started_ms": 1, "elapsed_sec": 2.0, "pid": std::process::id(),
        "ui": null, "runner_stages": false, "stages": [], "sources": [], "sinks": [],
        "metrics": [], "error": null, "error_transform": null
    });
    std::fs::write(dir.path().join("77-0.json"), job.to_string())?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_beamline"))
        .args([
            "ui",
            "--addr",
            "127.0.0.1:0",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut first)?;
    let r = (|| -> Result<()> {
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .with_context(|| format!("no address in {first:?}"))?
            .to_string();
        let url = format!("http://{addr}/");
        let call = |method: &str, path: &str| http::call(&url, method, path);
        let (status, list) = call("GET", "/api/jobs")?;
        assert_eq!(status, 200);
        assert!(list.contains("\"name\":\"published\""), "{list}");
        let (status, body) = call("POST", "/api/jobs/77-0/cancel")?;
        assert_eq!(status, 202, "{body}");
        assert!(dir.path().join("77-0.cancel").exists());
        assert_eq!(call("GET", "/api/jobs/88-0")?.0, 404);
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    r
}
