//! Checkpoints of a directory-watching source: a streaming job reading text files as they
//! appear (a few hundred lines per bundle, so files are read in pieces) and writing every
//! line to files is killed with SIGKILL five times; restarted each time from its
//! checkpoints (the files read, the file being read and its byte offset), it commits
//! every line exactly once.
//!
//! A plain `main` (no test harness): the job runs in child processes of this binary.

mod common;

use beamline::io::watch_text::WatchText;
use beamline::{Pipeline, PipelineOptions, WriteToText};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CHILD: &str = "BEAMLINE_WATCH_CHILD";
const FILES: usize = 20;
const LINES: usize = 3_000;

fn job(input: &Path, out: &Path, ckpt: &Path) -> beamline::Result<()> {
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("streaming", "true")
            .set("max_bundle_size", "500")
            .set("checkpoint_dir", ckpt.to_string_lossy())
            .set("checkpoint_interval", "30ms"),
    );
    p.apply(
        "Watch",
        WatchText::new(input.join("*.txt").to_string_lossy())
            .with_poll_interval(10)
            .stop_after_idle(500),
    )
    // Slow enough to be killed in the middle of a file.
    .map("Pace", |l: String| {
        if l.ends_with("00") {
            std::thread::sleep(Duration::from_millis(5));
        }
        l
    })
    .apply(
        "Write",
        WriteToText::new(out.join("lines").to_string_lossy()),
    );
    p.run()?;
    Ok(())
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        let f: Vec<PathBuf> = arg.split('|').map(PathBuf::from).collect();
        if let Err(e) = job(&f[0], &f[1], &f[2]) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (input, out, ckpt) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("ckpt"),
    );
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let mut want = Vec::new();
    for f in 0..FILES {
        let lines: Vec<String> = (0..LINES).map(|l| format!("f{f:02}-{l:05}")).collect();
        std::fs::write(input.join(format!("{f:02}.txt")), lines.join("\n") + "\n").unwrap();
        want.extend(lines);
    }
    want.sort();
    let command = || {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.env(
            CHILD,
            format!("{}|{}|{}", input.display(), out.display(), ckpt.display()),
        );
        c
    };
    let spawn = || command().spawn().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for kill in 0..5 {
        common::kill_after(
            spawn(),
            rng.random_range(150..400),
            &format!("the job (kill {})", kill + 1),
        );
    }
    let mut last = command();
    last.stderr(std::process::Stdio::piped());
    common::wait_for(last.spawn().unwrap(), Duration::from_secs(120))
        .unwrap_or_else(|err| panic!("the last run failed: {err}"));
    let got = common::committed_lines(&out, "lines");
    assert_eq!(
        common::temp_dirs(&out),
        Vec::<String>::new(),
        "temporary directories left"
    );
    let mut seen = std::collections::BTreeSet::new();
    let repeated = got.iter().filter(|l| !seen.insert(*l)).count();
    assert_eq!(
        (got.len(), repeated),
        (want.len(), 0),
        "every line once (lines committed, repeats)"
    );
    assert!(got == want, "the lines committed differ from the files'");
    println!(
        "watch text: 5 kills, {} lines committed exactly once",
        got.len()
    );
}
