//! `--memory-budget` in streaming: stateful DoFns' states and timers, and the panes of
//! GroupByKey and CombinePerKey, beyond the budget spill to disk and are read back when
//! used. A windowed count with an end-of-window timer, a deduplication, a CombinePerKey
//! per fixed window and a GroupByKey in session windows (merging) over thousands of keys
//! give the exact results computed from the generator's events, on the local runner and on
//! 2 distributed processes (streaming, and batch too), while the metrics show states and
//! panes spilled and read back;
//! the spill files are gone afterwards; an unusable spill directory is a clear error.
//! With checkpoints as well, a run that fails once restarts from its newest checkpoint
//! (whose full snapshots list the spilled states and panes after the pipeline went on)
//! and gives the same exact results.
//!
//! A plain `main` (no test harness): the distributed runner re-executes this binary as its
//! worker processes, which rebuild the same pipeline.

use beamline::io::generator::Generator;
use beamline::{
    Count, Create, DoFn, GroupByKey, ParDo, Pipeline, PipelineOptions, ProcessContext, StateSpec,
    TimerContext, TimerSpec, UserError, Window, WindowInto, WithTimestamps, WriteToText,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const EVENTS: u64 = 60_000;
const KEYS: u64 = 4_000;
const WINDOW_MS: i64 = 10_000;
const SESSION_GAP_MS: i64 = 3_000;

/// Lines [`Flaky`] saw, and the one it fails at (0: none).
static SEEN: AtomicU64 = AtomicU64::new(0);
static FAIL_AT: AtomicU64 = AtomicU64::new(0);

/// Passes the windowed counts' lines on (they come as windows end, after the states were
/// spilled and read back); fails once, at line [`FAIL_AT`].
#[derive(Clone)]
struct Flaky;

impl DoFn for Flaky {
    type In = String;
    type Out = String;
    fn process(
        &mut self,
        line: String,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let n = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
        if n == FAIL_AT.load(Ordering::SeqCst) {
            FAIL_AT.store(0, Ordering::SeqCst);
            return Err(format!("a failure at line {n}").into());
        }
        ctx.output(line);
        Ok(())
    }
}

fn generator() -> Generator {
    Generator::new(KEYS).with_count(EVENTS).with_seed(11)
}

/// Counts and sums each key's events per window; outputs them when the window ends.
#[derive(Clone)]
struct PerWindow;

impl DoFn for PerWindow {
    type In = (i64, i64);
    type Out = String;
    fn process(
        &mut self,
        (_, seq): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let end = ctx.window().max_timestamp();
        let mut st = ctx.state()?;
        let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
        st.write("n", n)?;
        let sum = st.read::<i64>("sum")?.unwrap_or(0) + seq;
        st.write("sum", sum)?;
        if n == 1 {
            st.set_timer("end", end)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timer: &str,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("not in a fixed window".into());
        };
        let mut st = ctx.state()?;
        let key: i64 = st.key()?;
        let n: i64 = st.read("n")?.unwrap_or(0);
        let sum: i64 = st.read("sum")?.unwrap_or(0);
        ctx.output(format!("w,{key},{start},{n},{sum}"));
        Ok(())
    }
}

/// Outputs each key the first time it is seen.
#[derive(Clone)]
struct FirstSeen;

impl DoFn for FirstSeen {
    type In = (i64, i64);
    type Out = String;
    fn process(
        &mut self,
        (key, _): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        if st.read::<bool>("seen")?.is_none() {
            st.write("seen", true)?;
            ctx.output(format!("d,{key}"));
        }
        Ok(())
    }
}

/// A key's count in a fixed window (CombinePerKey's pane).
#[derive(Clone)]
struct CountLine;

impl DoFn for CountLine {
    type In = (i64, i64);
    type Out = String;
    fn process(
        &mut self,
        (key, n): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("not in a fixed window".into());
        };
        ctx.output(format!("c,{key},{start},{n}"));
        Ok(())
    }
}

/// A key's session: its window, how many events and their sum (GroupByKey's pane).
#[derive(Clone)]
struct SessionLine;

impl DoFn for SessionLine {
    type In = (i64, Vec<i64>);
    type Out = String;
    fn process(
        &mut self,
        (key, seqs): (i64, Vec<i64>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let Window::Interval { start, end } = ctx.window() else {
            return Err("not in a session window".into());
        };
        let sum: i64 = seqs.iter().sum();
        ctx.output(format!("s,{key},{start},{end},{},{sum}", seqs.len()));
        Ok(())
    }
}

/// The lines the job must write, from the generator's events.
fn expected() -> Vec<String> {
    let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    let mut by_key: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for ((key, seq), ts) in generator().events() {
        let w = windows
            .entry((key, ts.div_euclid(WINDOW_MS) * WINDOW_MS))
            .or_default();
        w.0 += 1;
        w.1 += seq;
        keys.insert(key);
        by_key.entry(key).or_default().push((ts, seq));
    }
    // Sessions: each event's window [ts, ts + gap), overlapping ones merged.
    let mut sessions = Vec::new();
    for (key, mut events) in by_key {
        events.sort_unstable();
        let mut current: Option<(i64, i64, usize, i64)> = None;
        for (ts, seq) in events {
            current = match current {
                Some((s, e, n, sum)) if ts < e => {
                    Some((s, e.max(ts + SESSION_GAP_MS), n + 1, sum + seq))
                }
                other => {
                    if let Some((s, e, n, sum)) = other {
                        sessions.push(format!("s,{key},{s},{e},{n},{sum}"));
                    }
                    Some((ts, ts + SESSION_GAP_MS, 1, seq))
                }
            };
        }
        if let Some((s, e, n, sum)) = current {
            sessions.push(format!("s,{key},{s},{e},{n},{sum}"));
        }
    }
    let mut lines: Vec<String> = windows
        .iter()
        .map(|((k, s), (n, sum))| format!("w,{k},{s},{n},{sum}"))
        .chain(
            windows
                .iter()
                .map(|((k, s), (n, _))| format!("c,{k},{s},{n}")),
        )
        .chain(keys.into_iter().map(|k| format!("d,{k}")))
        .chain(sessions)
        .collect();
    lines.sort();
    lines
}

/// Spilled and read-back counters: (states of stateful DoFns, panes of groupings), and
/// the keys the CombinePerKey alone spilled.
type Spills = ((i64, i64), (i64, i64), i64);

/// Runs the job with `options` (streaming unless they say otherwise), writing under
/// `out`: its sorted lines and its (spilled, read back) state counters. Workers return
/// nothing.
fn run(options: PipelineOptions, out: &Path) -> Result<(Vec<String>, Spills), String> {
    let streaming = options.get::<String>("streaming").ok().flatten().is_none();
    let p = Pipeline::new(if streaming {
        options.set("streaming", "true")
    } else {
        options
    });
    let events = if streaming {
        p.apply("Events", generator())
    } else {
        // Bounded (the job runs in batch): the generator's events, created and stamped.
        p.apply(
            "Created",
            Create::of(generator().events().collect::<Vec<_>>()),
        )
        .apply("Stamp", WithTimestamps::of(|e: &((i64, i64), i64)| e.1))
        .map("Events", |(e, _): ((i64, i64), i64)| e)
    };
    let fixed = events.apply("Fixed", WindowInto::fixed(WINDOW_MS));
    fixed
        .apply("CountPerKey", Count::per_key())
        .apply("CountLines", ParDo::of(CountLine))
        .apply(
            "WriteCounts",
            WriteToText::new(out.join("c").to_string_lossy()),
        );
    events
        .apply("Sessions", WindowInto::sessions(SESSION_GAP_MS))
        .apply("GroupSessions", GroupByKey::new())
        .apply("SessionLines", ParDo::of(SessionLine))
        .apply(
            "WriteSessions",
            WriteToText::new(out.join("s").to_string_lossy()),
        );
    let per_window = fixed.apply(
        "PerWindow",
        ParDo::of(PerWindow)
            .with_state(StateSpec::value::<i64>("n"))
            .with_state(StateSpec::value::<i64>("sum"))
            .with_timer(TimerSpec::event_time("end")),
    );
    let first = events.apply(
        "FirstSeen",
        ParDo::of(FirstSeen).with_state(StateSpec::value::<bool>("seen")),
    );
    per_window.apply("Flaky", ParDo::of(Flaky)).apply(
        "WriteWindows",
        WriteToText::new(out.join("w").to_string_lossy()),
    );
    first.apply(
        "WriteFirst",
        WriteToText::new(out.join("d").to_string_lossy()),
    );
    let result = p.run().map_err(|e| e.to_string())?;
    if beamline::worker::is_worker() {
        return Ok((Vec::new(), ((0, 0), (0, 0), 0)));
    }
    let m = result.metrics();
    if let Some(full) = m.counter("beamline.checkpoint", "full") {
        println!(
            "checkpoints: {full} full, {} incremental, {} restart(s); pauses {:?}, writes {:?}",
            m.counter("beamline.checkpoint", "incremental").unwrap_or(0),
            m.counter("beamline.checkpoint", "restarts").unwrap_or(0),
            m.distribution("beamline.checkpoint", "snapshotMicros"),
            m.distribution("beamline.checkpoint", "millis"),
        );
    }
    let counter = |name: &str, grouping: bool| -> i64 {
        m.counters
            .iter()
            .filter(|(k, _)| k.namespace == "beamline" && k.name == name)
            .filter(|(k, _)| {
                let g = k.step.starts_with("CountPerKey") || k.step.starts_with("GroupSessions");
                g == grouping
            })
            .map(|(_, v)| v)
            .sum()
    };
    let counters = (
        (
            counter("stateSpilled", false),
            counter("stateReadBack", false),
        ),
        (
            counter("stateSpilled", true),
            counter("stateReadBack", true),
        ),
        m.counters
            .iter()
            .filter(|(k, _)| k.namespace == "beamline" && k.name == "stateSpilled")
            .filter(|(k, _)| k.step.starts_with("CountPerKey"))
            .map(|(_, v)| v)
            .sum(),
    );
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    Ok((lines, counters))
}

/// A run under the budget: the exact output, many states and panes spilled and read
/// back, and no spill file left.
fn check_spilled(runner: &str, got: &[String], want: &[String], counters: Spills, spill: &Path) {
    assert_eq!(got, want, "{runner}, with a budget");
    let ((spilled, read_back), (panes_spilled, panes_read_back), combine_spilled) = counters;
    assert!(
        spilled > 10_000 && read_back > 10_000,
        "{runner}: {spilled} {read_back}"
    );
    assert!(
        panes_spilled > 5_000 && panes_read_back > 5_000,
        "{runner}: {panes_spilled} {panes_read_back}"
    );
    // The CombinePerKey's panes too (in batch, not only the session grouping's).
    assert!(combine_spilled > 1_000, "{runner}: {combine_spilled}");
    assert_eq!(
        std::fs::read_dir(spill).unwrap().count(),
        0,
        "{runner}: spill files left"
    );
    println!(
        "{runner}: {spilled} states spilled, {read_back} read back; keys of groupings \
         {panes_spilled} spilled ({combine_spilled} of them the CombinePerKey's), \
         {panes_read_back} read back"
    );
}

fn main() {
    // Every process runs this `main` (SPMD): a worker skips the runs before its job and
    // does its share of the distributed one; the launching process checks the results.
    let worker = beamline::worker::is_worker();
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    let budget = |o: PipelineOptions| {
        o.set("memory_budget", "1MB")
            .set("spill_dir", spill.to_string_lossy())
    };
    let outs: Vec<_> = ["none", "local", "distributed", "distributed-batch"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    if !worker {
        for o in &outs {
            std::fs::create_dir_all(o).unwrap();
        }
    }
    let want = if worker { Vec::new() } else { expected() };
    // A worker skips these two runs (but must see them: pipelines are matched by order).
    let (got, counters) = run(PipelineOptions::default(), &outs[0]).unwrap();
    let (got_budget, spills) = run(budget(PipelineOptions::default()), &outs[1]).unwrap();
    if !worker {
        assert_eq!(got, want, "without a budget");
        assert_eq!(
            counters,
            ((0, 0), (0, 0), 0),
            "nothing spills without a budget"
        );
        check_spilled("local", &got_budget, &want, spills, &spill);
    }
    // With checkpoints, failing once two thirds through the output: the restart restores
    // spilled states and panes from checkpoints taken while they were spilled.
    let ckpt = dir.path().join("checkpoints");
    let checkpointed = budget(PipelineOptions::default())
        .set("checkpoint_dir", ckpt.to_string_lossy())
        .set("checkpoint_interval", "10ms")
        .set("restarts", "1")
        .set("restart_delay", "10ms");
    SEEN.store(0, Ordering::SeqCst);
    // Two thirds of the windowed counts' lines (22,830).
    FAIL_AT.store(15_000, Ordering::SeqCst);
    let out = dir.path().join("local-restarted");
    std::fs::create_dir_all(&out).unwrap();
    let (got, spills) = run(checkpointed, &out).unwrap();
    if !worker {
        assert_eq!(FAIL_AT.load(Ordering::SeqCst), 0, "the failure happened");
        check_spilled(
            "local, restarted from checkpoints",
            &got,
            &want,
            spills,
            &spill,
        );
    }
    let distributed = || {
        budget(PipelineOptions::default())
            .set("runner", "distributed")
            .set("processes", "2")
    };
    let (got, spills) = run(distributed(), &outs[2]).unwrap();
    if !worker {
        check_spilled("distributed", &got, &want, spills, &spill);
    }
    // The same job in batch (its input created, so bounded): the budget bounds its
    // groupings and states there too (they spill, not the batch grouping's tables).
    let (got, spills) = run(distributed().set("streaming", "false"), &outs[3]).unwrap();
    if worker {
        return;
    }
    check_spilled("distributed batch", &got, &want, spills, &spill);

    // A spill directory that is a file: a clear error naming the transform and the path.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad = PipelineOptions::default()
        .set("memory_budget", "1KB")
        .set("spill_dir", file.join("spill").to_string_lossy());
    let err = run(bad, &dir.path().join("bad")).unwrap_err();
    assert!(
        err.contains("beyond its memory budget") && err.contains("a-file"),
        "{err}"
    );
    println!("unusable spill directory: {err}");
}
