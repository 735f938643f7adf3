//! Checkpoint options: malformed values, options without `--checkpoint-dir`, batch jobs
//! (local and distributed) and the portable runner, which does not take checkpoints, are
//! refused with one clear line each; a
//! generator job resumed from its checkpoints after ending normally has nothing left to
//! write.

use beamline::io::generator::Generator;
use beamline::{Count, Create, Pipeline, PipelineOptions, WriteToText};

fn error_of(options: PipelineOptions, streaming_source: bool) -> String {
    let p = Pipeline::new(options);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").to_string_lossy().into_owned();
    if streaming_source {
        p.apply("Events", Generator::new(3).with_count(10))
            .apply("Count", Count::per_key())
            .map("Line", |(k, n): (i64, i64)| format!("{k},{n}"))
            .apply("Write", WriteToText::new(out));
    } else {
        p.apply("Numbers", Create::of(vec![1i64, 2, 3]))
            .map("Line", |n: i64| n.to_string())
            .apply("Write", WriteToText::new(out));
    }
    match p.run() {
        Ok(_) => panic!("the job must be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_or_orphan_checkpoint_options_are_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().to_string_lossy().into_owned();
    let base = || PipelineOptions::default().set("streaming", "true");
    let cases = [
        (
            base()
                .set("checkpoint_dir", &ckpt)
                .set("checkpoint_interval", "soon"),
            "--checkpoint-interval",
        ),
        (
            base()
                .set("checkpoint_dir", &ckpt)
                .set("restore", "sometimes"),
            "--restore takes 'latest' or 'none'",
        ),
        (
            base().set("restore", "none"),
            "--restore: needs --checkpoint-dir",
        ),
        (
            base().set("checkpoint_interval", "1s"),
            "--checkpoint-interval: needs --checkpoint-dir",
        ),
    ];
    for (options, want) in cases {
        let err = error_of(options, true);
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn batch_jobs_and_other_runners_say_they_take_no_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().to_string_lossy().into_owned();
    let err = error_of(
        PipelineOptions::default().set("checkpoint_dir", &ckpt),
        false,
    );
    assert!(
        err.contains("checkpoints are taken of streaming jobs") && err.contains("--streaming"),
        "{err}"
    );
    // The distributed runner checkpoints streaming jobs only (refused before it starts
    // any process).
    let err = error_of(
        PipelineOptions::default()
            .set("runner", "distributed")
            .set("checkpoint_dir", &ckpt),
        false,
    );
    assert!(
        err.contains("checkpoints are taken of streaming jobs") && err.contains("--streaming"),
        "{err}"
    );
    // ... of jobs that read unbounded sources (a bounded one would not resume anywhere).
    let err = error_of(
        PipelineOptions::default()
            .set("runner", "distributed")
            .set("streaming", "true")
            .set("checkpoint_dir", &ckpt),
        false,
    );
    assert!(err.contains("reads none"), "{err}");
    let err = error_of(
        PipelineOptions::default()
            .set("runner", "portable")
            .set("streaming", "true")
            .set("checkpoint_dir", &ckpt),
        true,
    );
    assert!(err.contains("--checkpoint-dir"), "{err}");
}

#[test]
fn a_finished_job_restarted_from_its_checkpoints_writes_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt").to_string_lossy().into_owned();
    let run = |out: &str| {
        let p = Pipeline::new(
            PipelineOptions::default()
                .set("streaming", "true")
                .set("checkpoint_dir", &ckpt),
        );
        p.apply("Events", Generator::new(3).with_count(3_000).with_seed(1))
            .apply("Count", Count::per_key())
            .map("Line", |(k, n): (i64, i64)| format!("{k},{n}"))
            .apply("Write", WriteToText::new(out));
        p.run().unwrap();
    };
    let lines = |prefix: &str| -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && e.path().is_file() {
                out.extend(
                    std::fs::read_to_string(e.path())
                        .unwrap()
                        .lines()
                        .map(str::to_string),
                );
            }
        }
        out.sort();
        out
    };
    run(&dir.path().join("first").to_string_lossy());
    let first = lines("first-");
    assert_eq!(first.len(), 3, "{first:?}");
    run(&dir.path().join("second").to_string_lossy());
    assert!(
        lines("second-").is_empty(),
        "the job had ended: nothing to redo"
    );
}
