//! Exactly-once Parquet output in streaming: a job writing generated events as Parquet
//! rows with checkpoints is killed with SIGKILL five times and restarted from its
//! checkpoints each time; files appear as checkpoints complete (not only at the end), the
//! committed files hold every event exactly once and are all readable, and no temporary
//! directory is left (the killed runs' included).
//!
//! A plain `main` (no test harness): the job runs in child processes of this binary.

mod common;

use beamline::arrow::arrow_array::{Array, Int64Array, RecordBatch};
use beamline::arrow::arrow_schema::{DataType, Field, Schema};
use beamline::arrow::ArrowBatch;
use beamline::io::generator::Generator;
use beamline::io::parquet::WriteToParquet;
use beamline::{Pipeline, PipelineOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const CHILD: &str = "BEAMLINE_PARQUET_CHILD";
const EVENTS: u64 = 60_000;

fn job(out: &Path, ckpt: &Path) -> beamline::Result<()> {
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("streaming", "true")
            .set("max_bundle_size", "500")
            .set("checkpoint_dir", ckpt.to_string_lossy())
            .set("checkpoint_interval", "30ms"),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
    ]));
    let s = schema.clone();
    p.apply(
        "Events",
        Generator::new(10).with_count(EVENTS).with_rate(20_000),
    )
    .map("Row", move |(key, seq): (i64, i64)| {
        ArrowBatch(
            RecordBatch::try_new(
                s.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![key])),
                    Arc::new(Int64Array::from(vec![seq])),
                ],
            )
            .expect("a row"),
        )
    })
    .apply(
        "Write",
        WriteToParquet::new(out.join("rows").to_string_lossy())
            .with_suffix(".parquet")
            .with_schema(schema),
    );
    p.run()?;
    Ok(())
}

/// The `seq` column of every committed file (`rows-*.parquet`), and how many files.
fn committed(out: &Path) -> (Vec<i64>, usize) {
    let mut seqs = Vec::new();
    let mut files = 0;
    for e in std::fs::read_dir(out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("rows-") && name.ends_with(".parquet")) {
            continue;
        }
        files += 1;
        let f = std::fs::File::open(e.path()).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap_or_else(|err| panic!("{name} is not a whole Parquet file: {err}"))
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let col = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            seqs.extend(col.values().iter().copied());
            assert_eq!(col.null_count(), 0);
        }
    }
    seqs.sort_unstable();
    (seqs, files)
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        let f: Vec<PathBuf> = arg.split('|').map(PathBuf::from).collect();
        if let Err(e) = job(&f[0], &f[1]) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, ckpt) = (dir.path().join("out"), dir.path().join("ckpt"));
    std::fs::create_dir_all(&out).unwrap();
    let command = || {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.env(CHILD, format!("{}|{}", out.display(), ckpt.display()));
        c
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for kill in 0..5 {
        common::kill_after(
            command().spawn().unwrap(),
            rng.random_range(150..300),
            &format!("the job (kill {})", kill + 1),
        );
    }
    // The killed runs left their temporary directories.
    assert!(!common::temp_dirs(&out).is_empty());
    // Killed runs committed files of their checkpoints: output appears as the job runs.
    let (before, files_before) = committed(&out);
    assert!(
        files_before > 0 && !before.is_empty(),
        "no file committed by the killed runs"
    );
    let mut last = command();
    last.stderr(std::process::Stdio::piped());
    common::wait_for(last.spawn().unwrap(), Duration::from_secs(120))
        .unwrap_or_else(|err| panic!("the last run failed: {err}"));
    let (got, files) = committed(&out);
    // The successful end removed its own temporary directory and the killed runs'.
    assert_eq!(common::temp_dirs(&out), Vec::<String>::new());
    let mut seen = std::collections::BTreeSet::new();
    let repeated = got.iter().filter(|s| !seen.insert(**s)).count();
    assert_eq!(
        (got.len(), repeated),
        (EVENTS as usize, 0),
        "every event once (rows committed, repeats)"
    );
    assert!(
        got.iter().copied().eq(0..EVENTS as i64),
        "the rows committed are not the events"
    );
    println!(
        "parquet: 5 kills, {} rows committed exactly once in {files} files ({} rows in {files_before} files before the last run)",
        got.len(),
        before.len()
    );
}
