//! The distributed runner shares a worker thread fairly: a transform with much input to
//! work through takes turns (about 10 ms each) with the transforms downstream of it, which
//! read what it made meanwhile, instead of running until its input is done (while what
//! other processes send it waits in the network's buffers).
//!
//! A plain `main` (no test harness): the distributed runner re-executes this binary as its
//! worker process, which rebuilds the same pipeline.

use beamline::{Pipeline, PipelineOptions, Reshuffle};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const ELEMENTS: u64 = 40;

/// The log both transforms append to: named after the launching process (a worker's
/// parent).
fn log_path() -> PathBuf {
    let launcher = if beamline::worker::is_worker() {
        std::os::unix::process::parent_id()
    } else {
        std::process::id()
    };
    std::env::temp_dir().join(format!("beamline-turns-{launcher}.log"))
}

fn note(line: String) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path())
        .expect("the log opens");
    writeln!(f, "{line}").expect("the log takes a line");
}

fn main() {
    let worker = beamline::worker::is_worker();
    if !worker {
        let _ = std::fs::remove_file(log_path());
    }
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("runner", "distributed")
            .set("processes", "1"),
    );
    p.apply("Start", beamline::Impulse)
        .flat_map("Fan", |_: ()| (0..ELEMENTS).collect::<Vec<u64>>())
        .apply("Spread", Reshuffle::new())
        .map("Slow", |i: u64| {
            std::thread::sleep(Duration::from_millis(2));
            note(format!("slow {i}"));
            i
        })
        .apply("Apart", Reshuffle::new())
        .map("After", |i: u64| {
            note(format!("after {i}"));
            i
        });
    p.run().expect("the job runs");
    if worker {
        return;
    }
    let log = std::fs::read_to_string(log_path()).expect("the log");
    let _ = std::fs::remove_file(log_path());
    let lines: Vec<&str> = log.lines().collect();
    let count = |kind: &str| lines.iter().filter(|l| l.starts_with(kind)).count() as u64;
    assert_eq!(count("slow "), ELEMENTS, "{log}");
    assert_eq!(count("after "), ELEMENTS, "{log}");
    let last_slow = lines.iter().rposition(|l| l.starts_with("slow ")).unwrap();
    let first_after = lines.iter().position(|l| l.starts_with("after ")).unwrap();
    assert!(
        first_after < last_slow,
        "'After' read nothing until 'Slow' had worked through its whole input:\n{log}"
    );
    println!(
        "distributed turns: 'After' read its first element after {first_after} of 'Slow''s \
         {ELEMENTS}"
    );
}
