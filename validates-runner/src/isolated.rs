//! Running a case in a process of its own, for runners that re-execute the program (the
//! distributed runner starts this same binary once per worker process).
//!
//! The suite re-runs its own command line with `--validates-case NAME --validates-column
//! COLUMN` added; a program that runs the suite calls [`serve_case`] first thing in `main`, which
//! runs that one case (as the launcher, or as one of its workers) and prints the outcome.

use crate::{Case, Outcome, RunnerEntry};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CASE_ARG: &str = "--validates-case";
const COLUMN_ARG: &str = "--validates-column";
const OUTCOME: &str = "validates-outcome:";

/// How long one case may take in its own process before it is killed and failed.
const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// If this program was started to run one case, runs it and exits; otherwise returns.
///
/// `cases` and `runners` must be what the suite that started it runs. The process that
/// runs the case prints its outcome on standard output; worker processes started by the
/// runner run the case too and print nothing.
pub fn serve_case(cases: &[Case], runners: &[RunnerEntry]) {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(case), Some(column)) = (value(CASE_ARG), value(COLUMN_ARG)) else {
        return;
    };
    let outcome = match (
        cases.iter().find(|c| c.name == case),
        runners.iter().find(|r| r.name == column),
    ) {
        (Some(c), Some(r)) => crate::matrix::run_case_here(c, r),
        _ => Outcome::Failed(format!("no case '{case}' on a column '{column}'")),
    };
    if std::env::var_os("BEAMLINE_PROCESS_ID").is_none() {
        let line = match outcome {
            Outcome::Passed => "passed".to_string(),
            Outcome::Failed(m) => format!("failed {}", m.replace('\n', "\\n")),
            Outcome::Unsupported(m) => format!("unsupported {}", m.replace('\n', "\\n")),
        };
        println!("{OUTCOME} {line}");
    }
    std::process::exit(0);
}

/// Runs `case` on `runner` in a new process of this program (see [`serve_case`]).
pub(crate) fn run_case_in_own_process(case: &Case, runner: &RunnerEntry) -> Outcome {
    // The command line this process was started with, and the case: a Python console
    // script (`python .../beamline matrix`) is run again through its interpreter.
    let (program, args) = match beamline::worker::program_as_started() {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("cannot find this program: {e}")),
    };
    let child = Command::new(program)
        .args(args)
        .args([CASE_ARG, case.name, COLUMN_ARG, runner.name])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start the case's process: {e}")),
    };
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + CASE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Its workers are its children: they end when their launcher dies (their
                // connections close), so killing the launcher is enough.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        return Outcome::Failed(format!("no outcome within {} s", CASE_TIMEOUT.as_secs()));
    };
    let reported = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(OUTCOME))
        .map(str::trim);
    match reported {
        Some("passed") => Outcome::Passed,
        Some(o) if o.starts_with("failed ") => Outcome::Failed(o[7..].replace("\\n", "\n")),
        Some(o) if o.starts_with("unsupported ") => {
            Outcome::Unsupported(o[12..].replace("\\n", "\n"))
        }
        _ => {
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            Outcome::Failed(format!(
                "the case's process ended with {status} and no outcome; its last words: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}
/// The suite's scratch directory: where this program's temporary files go, and those of
/// every process it starts (cases in processes of their own, the workers of distributed
/// runs), so that the inputs cases write are removed with it when it drops.
#[derive(Debug)]
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// Makes the directory and points `TMPDIR` at it. Call it before any case runs.
    ///
    /// # Errors
    /// The directory cannot be made.
    pub fn enter() -> std::io::Result<ScratchDir> {
        let dir = std::env::temp_dir().join(format!("beamline-vr-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::env::set_var("TMPDIR", &dir);
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
