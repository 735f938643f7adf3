//! Automatic restarts of the local runner (`--restarts=N`): a streaming job with
//! checkpoints whose transform fails now and then runs again in its process from the
//! newest checkpoint, and ends well, its committed output exactly the counts of its
//! input, no temporary file left; with fewer restarts allowed than failures it fails with
//! the last failure; without restarts with the failure itself. `--restarts` without
//! checkpoints, and `--restart-delay` without `--restarts`, are refused.

mod common;

use beamline::io::generator::Generator;
use beamline::{Pipeline, PipelineOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const EVENTS: u64 = 300_000;
const WINDOW_MS: i64 = 10_000;
/// Elements the flaky transform sees between two failures.
const FAIL_EVERY: u64 = 100_000;

/// Elements the flaky transform saw, over every run in this process.
static SEEN: AtomicU64 = AtomicU64::new(0);
/// Failures it may still cause.
static FAILS_LEFT: AtomicU64 = AtomicU64::new(0);

fn generator() -> Generator {
    Generator::new(50).with_count(EVENTS).with_seed(9)
}

/// `key,window start,count` per key and window, from the generator's own events.
fn expected() -> Vec<String> {
    common::window_counts(generator().events(), WINDOW_MS)
}

/// Passes events on; fails every [`FAIL_EVERY`] elements while failures are left.
#[derive(Clone)]
struct Flaky;

impl beamline::DoFn for Flaky {
    type In = (i64, i64);
    type Out = (i64, i64);
    fn process(
        &mut self,
        e: (i64, i64),
        ctx: &mut beamline::ProcessContext<'_, '_, (i64, i64)>,
    ) -> Result<(), beamline::UserError> {
        let n = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(FAIL_EVERY) && FAILS_LEFT.load(Ordering::SeqCst) > 0 {
            let left = FAILS_LEFT.fetch_sub(1, Ordering::SeqCst) - 1;
            return Err(format!("a flaky failure at element {n} ({left} left)").into());
        }
        if e.1 % 1_000 == 0 {
            // Paced: the job runs for seconds, taking many checkpoints.
            std::thread::sleep(Duration::from_millis(10));
        }
        ctx.output(e);
        Ok(())
    }
}

fn options(checkpoints: Option<&Path>) -> PipelineOptions {
    let mut o = PipelineOptions::default()
        .set("runner", "local")
        .set("streaming", "true")
        .set("max_bundle_size", "500");
    if let Some(dir) = checkpoints {
        o = o
            .set("checkpoint_dir", dir.to_string_lossy())
            .set("checkpoint_interval", "100ms");
    }
    o
}

/// Runs the job with `fails` failures to come, writing under `dir`; the number of
/// restarts the result counted.
fn job(dir: &Path, options: PipelineOptions, fails: u64) -> beamline::Result<i64> {
    SEEN.store(0, Ordering::SeqCst);
    FAILS_LEFT.store(fails, Ordering::SeqCst);
    let p = Pipeline::new(options);
    let events = p.apply("Events", generator()).par_do("Flaky", Flaky);
    common::write_window_counts(events, WINDOW_MS, &dir.join("out").join("counts"));
    let result = p.run()?;
    Ok(result
        .metrics()
        .counter("beamline.checkpoint", "restarts")
        .unwrap_or(0))
}

#[test]
fn a_failed_job_restarts_in_its_process_from_its_checkpoints() {
    // Refused: restarts without checkpoints, a delay without restarts.
    let dir = tempfile::tempdir().unwrap();
    let e = job(dir.path(), options(None).set("restarts", "2"), 0).unwrap_err();
    assert!(
        e.to_string().contains("--restarts") && e.to_string().contains("--checkpoint-dir"),
        "{e}"
    );
    let ckpt = dir.path().join("checkpoints");
    let e = job(
        dir.path(),
        options(Some(&ckpt)).set("restart_delay", "1s"),
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--restart-delay"), "{e}");

    // Two failures, three restarts allowed (starting over: a restart still resumes from
    // what the failed run checkpointed): the job gets through, every count once.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoints");
    let o = options(Some(&ckpt))
        .set("restarts", "3")
        .set("restart_delay", "50ms")
        .set("restore", "none");
    let restarts = job(dir.path(), o, 2).expect("the job gets past its failures");
    assert_eq!(restarts, 2);
    assert_eq!(
        FAILS_LEFT.load(Ordering::SeqCst),
        0,
        "both failures happened"
    );
    let checkpoints = std::fs::read_dir(&ckpt)
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("chk-"))
        .count();
    assert!(checkpoints > 0, "no checkpoint kept");
    common::assert_committed_exactly(&dir.path().join("out"), "counts", &expected());

    // Two failures, one restart allowed: the second fails the job, saying so.
    let dir = tempfile::tempdir().unwrap();
    let o = options(Some(&dir.path().join("checkpoints")))
        .set("restarts", "1")
        .set("restart_delay", "50ms");
    let e = job(dir.path(), o, 2).unwrap_err().to_string();
    assert!(
        e.contains("'Flaky'")
            && e.contains("a flaky failure at element 200000 (0 left)")
            && e.ends_with("(after 1 restart(s) from checkpoints)"),
        "{e}"
    );

    // No restarts: the first failure is the job's.
    let dir = tempfile::tempdir().unwrap();
    let e = job(
        dir.path(),
        options(Some(&dir.path().join("checkpoints"))),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a flaky failure at element 100000") && !e.contains("restart"),
        "{e}"
    );
}
