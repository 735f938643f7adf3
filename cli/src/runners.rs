//! `beamline runners` and `beamline matrix`: the runners, their options and capabilities.

use std::fmt::Write;

/// Prints every linked runner with its options and what it supports.
pub(crate) fn list() -> anyhow::Result<u8> {
    let mut out = String::new();
    let groups = vec![beamline::engine::options::OptionGroup {
        title: "Options of every runner".into(),
        options: beamline::sdk_options(),
    }];
    let common = beamline::engine::options::help_text("PROGRAM --runner=NAME [OPTIONS]", &groups);
    out.push_str(&common);
    for r in beamline::runners() {
        let runner = (r.create)();
        let _ = writeln!(out, "\n{} — {}", r.name, r.description);
        let options = runner.options();
        if options.is_empty() {
            let _ = writeln!(out, "  (no options of its own)");
        }
        for o in options {
            let default = o
                .default
                .as_ref()
                .map(|d| format!(" [default: {d}]"))
                .unwrap_or_default();
            let flag = format!("--{}{}", o.name, o.kind.placeholder());
            let _ = writeln!(out, "  {flag:<28} {}{default}", o.help);
        }
        capabilities(&mut out, r.name);
    }
    print!("{out}");
    Ok(0)
}

/// What the conformance matrix declares of `runner`: the categories its columns skip.
#[cfg(feature = "matrix")]
fn capabilities(out: &mut String, runner: &str) {
    use beamline_validates_runner::RUNNERS;
    let columns: Vec<_> = RUNNERS.iter().filter(|c| c.runner == runner).collect();
    if columns.is_empty() {
        let _ = writeln!(out, "  capabilities: not in the conformance matrix");
        return;
    }
    for c in columns {
        if c.skips.is_empty() {
            let _ = writeln!(
                out,
                "  capabilities (matrix column '{}'): every category of the suite",
                c.name
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  capabilities (matrix column '{}'): every category but",
            c.name
        );
        for (cat, why) in c.skips {
            let _ = writeln!(out, "    - {cat:?}: {why}");
        }
    }
}

#[cfg(not(feature = "matrix"))]
fn capabilities(out: &mut String, _runner: &str) {
    let _ = writeln!(
        out,
        "  capabilities: see the README's capability matrix (this build has no suite)"
    );
}

/// Answers a request to run one case in this process (the suite's own-process columns
/// re-execute the program that runs the suite: this one).
#[cfg(feature = "matrix")]
pub(crate) fn serve_matrix_case() {
    use beamline_validates_runner::{cases, serve_case, RUNNERS};
    serve_case(&cases::all(), RUNNERS);
}

/// Runs the suite (optionally some columns or cases) and prints the matrix.
#[cfg(feature = "matrix")]
pub(crate) fn matrix(column: Option<String>, case: Option<String>) -> anyhow::Result<u8> {
    use beamline_validates_runner::{cases, run_suite, RUNNERS};
    let all: Vec<_> = cases::all()
        .into_iter()
        .filter(|c| case.as_ref().is_none_or(|t| c.name.contains(t.as_str())))
        .collect();
    let runners: Vec<_> = RUNNERS
        .iter()
        .filter(|r| column.as_ref().is_none_or(|t| r.name.contains(t.as_str())))
        .copied()
        .collect();
    if all.is_empty() || runners.is_empty() {
        anyhow::bail!("no case or no runner column matches the filters");
    }
    eprintln!(
        "beamline: running {} cases on {} runner columns...",
        all.len(),
        runners.len()
    );
    let m = run_suite(&all, &runners);
    println!("{}", m.to_markdown());
    let failures = m.failures();
    for (case, runner, msg) in &failures {
        eprintln!("FAILED {case} on {runner}: {msg}");
    }
    Ok(if failures.is_empty() {
        0
    } else {
        eprintln!("beamline: {} case run(s) failed", failures.len());
        1
    })
}

#[cfg(not(feature = "matrix"))]
pub(crate) fn matrix(_column: Option<String>, _case: Option<String>) -> anyhow::Result<u8> {
    anyhow::bail!(
        "this build of `beamline` has no conformance suite: run `cargo run -p beamline-cli -- matrix` in the Beamline workspace"
    )
}
