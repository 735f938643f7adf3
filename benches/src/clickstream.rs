//! The windowed clickstream workload: per-user counts in 1-minute windows over
//! out-of-order generated events; Beamline's streaming runner vs a hand-written program.

use anyhow::{Context, Result};
use beamline::{Pipeline, WriteToText};
use beamline_examples::clickstream::{self, DescribePane, WINDOW_MS};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Variants, reference first.
pub const VARIANTS: [&str; 6] = [
    "rust-single-thread",
    "beamline-streaming",
    "beamline-streaming-1-thread",
    "beamline-distributed",
    "beamline-streaming-checkpoints",
    "beamline-distributed-checkpoints",
];

/// The variants taking checkpoints (local, distributed), and how often.
pub const CHECKPOINTED: &str = "beamline-streaming-checkpoints";
pub const DISTRIBUTED_CHECKPOINTED: &str = "beamline-distributed-checkpoints";
const CHECKPOINT_INTERVAL: &str = "1s";

const USERS: u64 = 1000;
const SEED: u64 = 5;

/// Runs one variant over `events` generated events, writing `user,window,count` lines.
pub fn run(variant: &str, events: u64, threads: usize, output: &Path) -> Result<()> {
    match variant {
        "rust-single-thread" => {
            // The generator's events, counted per user and window in a hash map; the
            // late events of this generator are within the allowed lateness.
            let g = clickstream::generator(USERS, Some(events), 0, SEED);
            let mut counts: FxHashMap<(i64, i64), i64> = FxHashMap::default();
            for ((key, _), ts) in g.events() {
                *counts
                    .entry((key, ts - ts.rem_euclid(WINDOW_MS)))
                    .or_insert(0) += 1;
            }
            let mut w = BufWriter::new(std::fs::File::create(output)?);
            for ((key, start), n) in counts {
                writeln!(w, "{},{start},{n}", clickstream::user_of(key))?;
            }
            w.flush()?;
            Ok(())
        }
        "beamline-streaming"
        | "beamline-streaming-1-thread"
        | "beamline-distributed"
        | CHECKPOINTED
        | DISTRIBUTED_CHECKPOINTED => {
            // The streaming runner's default threads (0: per core) unless the variant
            // says otherwise.
            let threads = if variant == "beamline-streaming" || variant == CHECKPOINTED {
                0
            } else {
                threads
            };
            let mut options =
                crate::variants::beamline_options(variant, threads).set("streaming", true);
            let ckpt = output.with_extension("checkpoints");
            if variant == CHECKPOINTED || variant == DISTRIBUTED_CHECKPOINTED {
                options = options
                    .set("checkpoint_dir", ckpt.to_string_lossy())
                    .set("checkpoint_interval", CHECKPOINT_INTERVAL)
                    .set("restore", "none");
            }
            let p = Pipeline::new(options);
            // Counted per numeric user id, named once per pane: the reference does the same.
            let clicks = p
                .apply(
                    "Clicks",
                    clickstream::generator(USERS, Some(events), 0, SEED),
                )
                .map("User", |(key, _): (i64, i64)| key);
            clickstream::counts(&clicks)
                .map("Name", |(key, n): (i64, i64)| {
                    (clickstream::user_of(key), n)
                })
                .par_do("DescribePane", DescribePane)
                .apply("Write", WriteToText::new(output.to_string_lossy()));
            let result = p.run()?;
            if variant == CHECKPOINTED {
                checkpoint_note(&result.metrics(), &ckpt, "the pipeline")?;
            } else if variant == DISTRIBUTED_CHECKPOINTED {
                // Each worker has a store of its own: worker 0's is read back. Each
                // operator pauses on its own to save its state.
                checkpoint_note(&result.metrics(), &ckpt.join("worker-0"), "an operator")?;
            }
            Ok(())
        }
        other => anyhow::bail!("unknown variant {other}"),
    }
}

/// Prints (for the harness) what the job's checkpoints cost: how many, their size and
/// time, and the time to read back the newest chain of checkpoint files (a restore's
/// reading).
fn checkpoint_note(m: &beamline::MetricResults, dir: &Path, paused: &str) -> Result<()> {
    const NS: &str = "beamline.checkpoint";
    let completed = m.counter(NS, "completed").unwrap_or(0);
    let full = m.counter(NS, "full").unwrap_or(0);
    let mb = |b: f64| b / (1024.0 * 1024.0);
    let none = beamline::engine::metrics::DistributionData {
        count: 0,
        sum: 0,
        min: 0,
        max: 0,
    };
    let bytes = m.distribution(NS, "bytes").unwrap_or(none);
    let millis = m.distribution(NS, "millis").unwrap_or(none);
    let sync = m.distribution(NS, "snapshotMicros").unwrap_or(none);
    let mean =
        |d: &beamline::engine::metrics::DistributionData| d.sum as f64 / d.count.max(1) as f64;
    let store = beamline::engine::checkpoint::Store::open(dir)?;
    let files = store.ids()?.len();
    let started = std::time::Instant::now();
    let restored = store.latest()?.context("a checkpoint to read back")?;
    for state in restored.nodes.values() {
        state.for_each(|_, _| Ok(()))?;
    }
    let read_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "note=checkpoints every {CHECKPOINT_INTERVAL}: {completed} taken ({full} full), file size \
         mean {:.2} MB / largest {:.2} MB, written in {:.0} ms mean / {} ms at most (in the \
         background), {paused} paused {:.1} ms mean / {:.1} ms at most to snapshot; \
         reading back checkpoint {} ({files} files kept) took {read_ms:.0} ms",
        mb(mean(&bytes)),
        mb(bytes.max as f64),
        mean(&millis),
        millis.max,
        mean(&sync) / 1e3,
        sync.max as f64 / 1e3,
        restored.id,
    );
    Ok(())
}

/// Final count per (user, window): the reference's lines, or Beamline's last pane.
pub fn load_output(output: &Path) -> Result<HashMap<String, i64>> {
    let dir = output.parent().context("output has a directory")?;
    let stem = output
        .file_name()
        .context("output has a name")?
        .to_string_lossy()
        .into_owned();
    let mut best: HashMap<String, (i64, i64)> = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != stem && !name.starts_with(&format!("{stem}-")) {
            continue;
        }
        for line in std::fs::read_to_string(dir.join(&name))?.lines() {
            let f: Vec<&str> = line.split(',').collect();
            let key = format!("{},{}", f[0], f[1]);
            let (index, count) = match f.len() {
                3 => (0, f[2].parse()?),
                _ => (f[2].parse()?, f[4].parse()?),
            };
            let e = best.entry(key).or_insert((-1, 0));
            if index > e.0 {
                *e = (index, count);
            }
        }
    }
    Ok(best.into_iter().map(|(k, (_, c))| (k, c)).collect())
}
