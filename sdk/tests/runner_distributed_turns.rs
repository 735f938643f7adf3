//! The distributed runner shares a worker thread fairly: a transform with much input to
//! work through, or a batch grouping with many groups to hand down, takes turns (about
//! 10 ms each) with the transforms downstream of it, which read what it made meanwhile,
//! instead of running until it is done (while what other processes send them waits in
//! the network's buffers).
//!
//! A plain `main` (no test harness): the distributed runner re-executes this binary as its
//! worker process, which rebuilds the same pipeline.

use beamline::{Pipeline, PipelineOptions, Reshuffle};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const ELEMENTS: u64 = 40;

/// Keys the grouping's output has.
const KEYS: u64 = 3000;

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
    let after = p
        .apply("Start", beamline::Impulse)
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
    // A batch grouping with many groups, each slow to handle, then a transform of its own.
    after
        .flat_map("Keys", |i: u64| {
            (0..KEYS / ELEMENTS).map(move |j| ((i * (KEYS / ELEMENTS) + j) as i64, 1i64))
        })
        .group_by_key("Group")
        .map("SlowGroups", |(k, _): (i64, Vec<i64>)| {
            std::thread::sleep(Duration::from_micros(50));
            note(format!("group {k}"));
            k
        })
        .apply("Apart2", Reshuffle::new())
        .map("Last", |k: i64| {
            note(format!("last {k}"));
            k
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
    let ahead = |first: &str, then: &str| {
        let last = lines.iter().rposition(|l| l.starts_with(first)).unwrap();
        let next = lines.iter().position(|l| l.starts_with(then)).unwrap();
        assert!(
            next < last,
            "'{then}' read nothing until '{first}' was done:\n{log}"
        );
        next
    };
    let after = ahead("slow ", "after ");
    assert_eq!(count("group "), KEYS, "{log}");
    assert_eq!(count("last "), KEYS, "{log}");
    let groups = lines.iter().position(|l| l.starts_with("group ")).unwrap();
    let last = ahead("group ", "last ") - groups;
    println!(
        "distributed turns: 'After' read its first element after {after} of 'Slow''s \
         {ELEMENTS}; 'Last' its first after {last} of the grouping's {KEYS} groups"
    );
}
