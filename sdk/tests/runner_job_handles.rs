//! Job handles (Beam's PipelineResult): state, waits with timeouts, cancel in batch and in
//! streaming, drain, metrics read while the job runs, failures seen by every waiter.

use beamline::io::generator::Generator;
use beamline::{
    Create, DoFn, JobState, ParDo, Pipeline, PipelineOptions, ProcessContext, UserError,
    WriteToText,
};
use std::time::{Duration, Instant};

/// Counts every element in a metric, sleeping a little on each (a long batch job).
#[derive(Clone)]
struct Slow;

impl DoFn for Slow {
    type In = i64;
    type Out = String;
    fn process(
        &mut self,
        x: i64,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        std::thread::sleep(Duration::from_micros(200));
        ctx.inc_counter("test", "seen", 1);
        ctx.output(x.to_string());
        Ok(())
    }
}

/// Waits until `f` holds, failing the test after `limit`.
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn seen(job: &beamline::PipelineResult) -> i64 {
    job.metrics().counter("test", "seen").unwrap_or(0)
}

#[test]
fn cancelling_a_batch_job_stops_it_promptly_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out").to_string_lossy().into_owned();
    let p = Pipeline::new(PipelineOptions::default().set("threads", 2));
    // 200k elements at 200 µs each: over 20 s of work on two threads.
    p.apply("Numbers", Create::of(0i64..200_000))
        .apply("Slow", ParDo::of(Slow))
        .apply("Write", WriteToText::new(&prefix));
    let job = p.start().unwrap();
    assert_eq!(job.state(), JobState::Running);
    // Metrics are readable while the job runs.
    eventually(Duration::from_secs(20), "metrics while running", || {
        seen(&job) > 0
    });
    assert_eq!(
        job.wait_until_finish(Some(Duration::from_millis(50)))
            .unwrap(),
        JobState::Running
    );
    let asked = Instant::now();
    job.cancel();
    let state = job
        .wait_until_finish(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(state, JobState::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(job.state(), JobState::Cancelled);
    assert!(seen(&job) < 200_000, "the job ran to its end");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn cancelling_a_spilling_batch_job_leaves_no_spill_files() {
    let spill = tempfile::tempdir().unwrap();
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("threads", 2)
            .set("memory_budget", "1B")
            .set("spill_dir", spill.path().display()),
    );
    p.apply("Numbers", Create::of(0i64..200_000))
        .apply("Slow", ParDo::of(Slow))
        .map("Pair", |s: String| (s, 1i64))
        .apply("Group", beamline::GroupByKey::new());
    let job = p.start().unwrap();
    eventually(Duration::from_secs(20), "metrics while running", || {
        seen(&job) > 0
    });
    job.cancel();
    let state = job
        .wait_until_finish(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(state, JobState::Cancelled);
    let left: Vec<_> = std::fs::read_dir(spill.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
}

#[test]
fn run_of_a_cancelled_job_is_an_error_and_a_finished_job_is_done() {
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Numbers", Create::of(0i64..10))
        .apply("Slow", ParDo::of(Slow));
    let job = p.start().unwrap();
    assert_eq!(job.wait_until_finish(None).unwrap(), JobState::Done);
    assert_eq!(seen(&job), 10);
    // Cancelling a finished job changes nothing.
    job.cancel();
    assert_eq!(job.state(), JobState::Done);
}

#[test]
fn a_failed_job_reports_its_error_to_every_waiter() {
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Numbers", Create::of(vec![1i64, 2, 3]))
        .map("Explode", |x: i64| -> i64 {
            if x == 2 {
                panic!("two is not allowed")
            }
            x
        });
    let job = p.start().unwrap();
    for _ in 0..2 {
        let err = job.wait_until_finish(None).unwrap_err().to_string();
        assert!(
            err.contains("Explode") && err.contains("two is not allowed"),
            "{err}"
        );
    }
    assert_eq!(job.state(), JobState::Failed);
}

fn unbounded_counting_pipeline() -> Pipeline {
    let p = Pipeline::new(PipelineOptions::default().set("streaming", true));
    p.apply("Gen", Generator::new(10).with_rate(20_000))
        .map("Value", |(_, v): (i64, i64)| v)
        .apply("Slow", ParDo::of(Slow));
    p
}

#[test]
fn cancelling_a_streaming_job_stops_it_without_draining() {
    let job = unbounded_counting_pipeline().start().unwrap();
    eventually(Duration::from_secs(20), "streaming metrics", || {
        seen(&job) > 0
    });
    job.cancel();
    let state = job
        .wait_until_finish(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(state, JobState::Cancelled);
}

#[test]
fn draining_a_streaming_job_finishes_it() {
    let job = unbounded_counting_pipeline().start().unwrap();
    eventually(Duration::from_secs(20), "streaming metrics", || {
        seen(&job) > 0
    });
    job.drain();
    let state = job
        .wait_until_finish(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(state, JobState::Done);
    assert!(seen(&job) > 0);
}
