//! Runs the validates-runner suite on every runner and prints the capability matrix.
//!
//! ```text
//! cargo run -p beamline-validates-runner -- --matrix [--write]
//! ```
//! `--column TEXT` runs only the columns whose name contains TEXT, `--case TEXT` only the
//! cases whose name contains TEXT (neither with `--write`).
//! `--write` also stores the matrix in `validates-runner/MATRIX.md` and in the README
//! section between the `matrix:start` / `matrix:end` markers.

use anyhow::{bail, Context, Result};
use beamline_validates_runner::{cases, run_suite, serve_case, RUNNERS};
use std::path::Path;

fn main() -> Result<()> {
    serve_case(&cases::all(), RUNNERS);
    let _scratch = beamline_validates_runner::ScratchDir::enter()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--matrix") {
        bail!("usage: beamline-validates-runner --matrix [--write]");
    }
    let case_filter = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1));
    let all: Vec<_> = cases::all()
        .into_iter()
        .filter(|c| case_filter.is_none_or(|t| c.name.contains(t.as_str())))
        .collect();
    let only = args
        .iter()
        .position(|a| a == "--column")
        .and_then(|i| args.get(i + 1));
    let runners: Vec<_> = RUNNERS
        .iter()
        .filter(|r| only.is_none_or(|t| r.name.contains(t.as_str())))
        .copied()
        .collect();
    if (only.is_some() || case_filter.is_some()) && args.iter().any(|a| a == "--write") {
        bail!("--write stores the whole matrix: run it without --column or --case");
    }
    eprintln!(
        "running {} cases on {} runners...",
        all.len(),
        runners.len()
    );
    let m = run_suite(&all, &runners);
    let md = m.to_markdown();
    println!("{md}");
    for (case, runner, msg) in m.failures() {
        eprintln!("FAILED {case} on {runner}: {msg}");
    }
    if args.iter().any(|a| a == "--write") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::write(
            root.join("MATRIX.md"),
            format!("# Capability matrix\n\n{md}"),
        )?;
        let readme = root.join("../README.md");
        let text = std::fs::read_to_string(&readme).context("reading README.md")?;
        let (start, end) = ("<!-- matrix:start -->", "<!-- matrix:end -->");
        let (Some(a), Some(b)) = (text.find(start), text.find(end)) else {
            bail!("README.md has no {start} ... {end} section");
        };
        let updated = format!("{}{start}\n{md}{}", &text[..a], &text[b..]);
        std::fs::write(&readme, updated)?;
        eprintln!("wrote validates-runner/MATRIX.md and the README matrix");
    }
    if !m.failures().is_empty() {
        bail!("{} case runs failed", m.failures().len());
    }
    Ok(())
}
