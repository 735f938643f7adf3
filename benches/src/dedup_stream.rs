//! The streaming keyed-state workloads over a 10M-key space, on the streaming runner (in
//! memory, and under a memory budget whose state spills to disk) vs a hand-written hash
//! table: `dedup-streaming`, the first event of each key (a stateful DoFn), and
//! `count-streaming`, events per key (CombinePerKey: a grouping's panes, fired at the end).

use anyhow::Result;
use beamline::io::generator::Generator;
use beamline::{Count, DoFn, ParDo, Pipeline, ProcessContext, StateSpec, UserError, WriteToText};
use rustc_hash::{FxHashMap, FxHashSet};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Variants, reference first.
pub const VARIANTS: [&str; 4] = [
    "rust-hash-table",
    "beamline-streaming",
    BUDGETED,
    BUDGETED_CHECKPOINTED,
];

/// The variant run under a memory budget.
pub const BUDGETED: &str = "beamline-streaming-budget";

/// The same taking checkpoints (every [`CHECKPOINT_INTERVAL`]).
pub const BUDGETED_CHECKPOINTED: &str = "beamline-streaming-budget-checkpoints";

/// How often [`BUDGETED_CHECKPOINTED`] takes a checkpoint.
const CHECKPOINT_INTERVAL: &str = "2s";

/// Its budget unless `--memory-budget` says otherwise.
pub const DEFAULT_BUDGET: &str = "512MB";

/// The key space at size 1, and events per key.
const KEYS: f64 = 10_000_000.0;
const EVENTS_PER_KEY: f64 = 2.0;

/// Keys and events at `size`.
pub fn shape(size: f64) -> (u64, u64) {
    ((KEYS * size) as u64, (KEYS * EVENTS_PER_KEY * size) as u64)
}

fn generator(size: f64) -> Generator {
    let (keys, events) = shape(size);
    // Dense event time (so windows and watermarks move as for a real stream), a small
    // out-of-orderness bound.
    Generator::new(keys)
        .with_count(events)
        .with_seed(17)
        .with_events_per_second(100_000)
        .with_out_of_orderness(100)
}

/// Passes on each key the first time it is seen.
#[derive(Clone)]
struct FirstSeen;

impl DoFn for FirstSeen {
    type In = (i64, i64);
    type Out = i64;
    fn process(
        &mut self,
        (key, _): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, i64>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        if st.read::<bool>("seen")?.is_none() {
            st.write("seen", true)?;
            ctx.output(key);
        }
        Ok(())
    }
}

/// The hand-written reference of `workload`: one line per distinct key.
fn reference(workload: &str, size: f64, output: &Path) -> Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(output)?);
    if workload == "count-streaming" {
        let mut counts: FxHashMap<i64, i64> = FxHashMap::default();
        for ((key, _), _) in generator(size).events() {
            *counts.entry(key).or_insert(0) += 1;
        }
        for (key, n) in counts {
            writeln!(w, "{key},{n}")?;
        }
    } else {
        let mut seen = FxHashSet::default();
        for ((key, _), _) in generator(size).events() {
            if seen.insert(key) {
                writeln!(w, "{key}")?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

/// Runs one variant of `workload`, writing one line per distinct key.
pub fn run(
    workload: &str,
    variant: &str,
    size: f64,
    budget: Option<&str>,
    output: &Path,
) -> Result<()> {
    if variant == VARIANTS[0] {
        return reference(workload, size, output);
    }
    let mut options = crate::variants::beamline_options(variant, 0).set("streaming", true);
    if variant.starts_with(BUDGETED) {
        options = options.set("memory_budget", budget.unwrap_or(DEFAULT_BUDGET));
    }
    let checkpoints = output.with_extension("checkpoints");
    if variant == BUDGETED_CHECKPOINTED {
        // `BEAMLINE_BENCH_RESUME=1` restores a killed run's checkpoints (restore's cost).
        if std::env::var_os("BEAMLINE_BENCH_RESUME").is_none() {
            let _ = std::fs::remove_dir_all(&checkpoints);
        }
        options = options
            .set("checkpoint_dir", checkpoints.to_string_lossy())
            .set("checkpoint_interval", CHECKPOINT_INTERVAL);
    }
    let p = Pipeline::new(options);
    let events = p.apply("Events", generator(size));
    let lines = if workload == "count-streaming" {
        events
            .apply("CountPerKey", Count::per_key())
            .map("Format", |(k, n): (i64, i64)| format!("{k},{n}"))
    } else {
        events
            .apply(
                "FirstSeen",
                ParDo::of(FirstSeen).with_state(StateSpec::value::<bool>("seen")),
            )
            .map("Format", |k: i64| k.to_string())
    };
    lines.apply("Write", WriteToText::new(output.to_string_lossy()));
    let result = p.run()?;
    let m = result.metrics();
    if let (Some(spilled), Some(back)) = (
        m.counter("beamline", "stateSpilled"),
        m.counter("beamline", "stateReadBack"),
    ) {
        let bytes = m.counter("beamline", "stateSpilledBytes").unwrap_or(0);
        println!(
            "note=spilled {spilled} states ({:.0} MB written), read back {back}",
            bytes as f64 / 1e6
        );
    }
    if variant == BUDGETED_CHECKPOINTED {
        let ns = "beamline.checkpoint";
        let full = m.counter(ns, "full").unwrap_or(0);
        let incremental = m.counter(ns, "incremental").unwrap_or(0);
        // Files, not `stateBytes`: spilled states are listed by the writer, not counted
        // while the pipeline pauses.
        let largest = m.distribution(ns, "bytes").map_or(0, |d| d.max);
        let pause = m.distribution(ns, "snapshotMicros");
        let pause_ms = |f: fn(&beamline::engine::metrics::DistributionData) -> f64| {
            pause.as_ref().map_or(0.0, f)
        };
        let restored = match m.gauge(ns, "restoredFrom") {
            Some(id) => format!(
                "; restored checkpoint {id} in {} ms",
                m.gauge(ns, "restoreMillis").unwrap_or(0)
            ),
            None => String::new(),
        };
        println!(
            "note=checkpoints every {CHECKPOINT_INTERVAL}: {full} full, {incremental} \
             incremental, the largest file {:.0} MB; the pipeline paused {:.1} ms mean, \
             {:.1} ms at most{restored}",
            largest as f64 / 1e6,
            pause_ms(|d| d.sum as f64 / d.count.max(1) as f64 / 1e3),
            pause_ms(|d| d.max as f64 / 1e3),
        );
        let _ = std::fs::remove_dir_all(&checkpoints);
    }
    Ok(())
}
