//! Checkpoints end to end: a streaming job (windowed counts per key with early, on-time
//! and late panes, written to files) is killed with SIGKILL at 20 random moments and
//! restarted each time from its checkpoints; the files it committed equal, line for
//! line, those of a run without faults. Then its newest checkpoint is damaged: the job
//! falls back to the one before and still commits exactly that output. A changed pipeline
//! is refused with a clear error. Session windows with a mean per key, and a stateful
//! DoFn with timers, are killed 5 times each, with their state in memory and spilled past
//! a 1 MB memory budget.
//!
//! A plain `main` (no test harness): the job runs in child processes of this binary
//! (`BEAMLINE_FAULT_CHILD=OUT_DIR[,CHECKPOINT_DIR]`), which this test kills.

mod common;

use beamline::io::generator::Generator;
use beamline::{
    Count, DoFn, Mean, ParDo, Pipeline, PipelineOptions, ProcessContext, StateSpec, TimerContext,
    TimerSpec, Trigger, UserError, WindowInto, WriteToText,
};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const EVENTS: u64 = 3_000_000;
const CHILD: &str = "BEAMLINE_FAULT_CHILD";
/// How long a run may take before the test fails as hung.
const LIMIT: Duration = Duration::from_secs(120);

/// `key,window start,pane index,timing,count` of each pane.
#[derive(Clone)]
struct Describe;

impl DoFn for Describe {
    type In = (i64, i64);
    type Out = String;
    fn process(
        &mut self,
        (key, n): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let start = match ctx.window() {
            beamline::Window::Interval { start, .. } => start,
            beamline::Window::Global => -1,
        };
        let pane = ctx.pane();
        ctx.output(format!(
            "{key},{start},{},{:?},{n}",
            pane.index, pane.timing
        ));
        Ok(())
    }
}

/// The job: `extra` adds a transform (a changed pipeline).
fn job(shape: &str, out: &Path, checkpoints: Option<&Path>, extra: bool) -> beamline::Result<()> {
    let mut options = PipelineOptions::default()
        .set("streaming", "true")
        .set("max_bundle_size", "4096");
    if let Some(dir) = checkpoints {
        options = options
            .set("checkpoint_dir", dir.to_string_lossy())
            .set("checkpoint_interval", "40ms");
    }
    if shape.ends_with("-spill") {
        // The job with its state (a stateful DoFn's, or a grouping's panes) beyond a
        // small memory budget: what is spilled must be in the checkpoints too.
        let spill = out.parent().expect("a parent").join("spill");
        options = options
            .set("memory_budget", "1MB")
            .set("spill_dir", spill.to_string_lossy());
    }
    let p = Pipeline::new(options);
    match shape {
        "sessions" | "sessions-spill" => {
            // Spilled, a tenth of the events: under a 1 MB budget every key is spilled and
            // read back at every bundle, which takes minutes in a debug build.
            let events = if shape == "sessions" {
                EVENTS / 2
            } else {
                EVENTS / 20
            };
            sessions(&p, out, events);
            p.run()?;
            return Ok(());
        }
        "stateful" | "stateful-spill" => {
            stateful(&p, out);
            p.run()?;
            return Ok(());
        }

        _ => {}
    }
    let mut events = p
        .apply(
            "Events",
            Generator::new(300)
                .with_count(EVENTS)
                .with_seed(11)
                .with_late_events(0.02, 20_000),
        )
        // Slow enough to be killed in the middle: a pause every 50,000 events.
        .map("Pace", |e: (i64, i64)| {
            if e.1 % 50_000 == 0 {
                std::thread::sleep(Duration::from_millis(15));
            }
            e
        });
    if extra {
        events = events.map("Extra", |e: (i64, i64)| e);
    }
    events
        .map("Key", |(k, _): (i64, i64)| (k, 1i64))
        .apply(
            "Minutes",
            WindowInto::fixed(60_000)
                .triggering(Trigger::after_watermark(
                    Some(Trigger::AfterCount(50)),
                    Some(Trigger::AfterCount(1)),
                ))
                .accumulating()
                .with_allowed_lateness(10_000),
        )
        .apply("Count", Count::per_key())
        .par_do("Describe", Describe)
        .apply(
            "Write",
            WriteToText::new(out.join("counts").to_string_lossy()),
        );
    p.run()?;
    Ok(())
}

/// The second shape: mean sequence number per key in session windows (merging windows,
/// a lifted combine's accumulators), early and late panes.
fn sessions(p: &Pipeline, out: &Path, events: u64) {
    p.apply(
        "Events",
        Generator::new(3_000)
            .with_count(events)
            .with_seed(13)
            .with_late_events(0.02, 4_000),
    )
    .map("Pace", |e: (i64, i64)| {
        if e.1 % 50_000 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        e
    })
    .map("Key", |(k, seq): (i64, i64)| (k, seq % 1_000))
    .apply(
        "Sessions",
        WindowInto::sessions(2_000)
            .triggering(Trigger::after_watermark(
                Some(Trigger::AfterCount(2)),
                Some(Trigger::AfterCount(1)),
            ))
            .accumulating()
            .with_allowed_lateness(5_000),
    )
    .apply("Mean", Mean::per_key())
    .par_do("Describe", DescribeMean)
    .apply(
        "Write",
        WriteToText::new(out.join("counts").to_string_lossy()),
    );
}

/// The third shape: a stateful DoFn per key and 10-second window (value and set state,
/// an event-time timer at the window's end).
fn stateful(p: &Pipeline, out: &Path) {
    p.apply(
        "Events",
        Generator::new(500).with_count(EVENTS / 2).with_seed(17),
    )
    .map("Pace", |e: (i64, i64)| {
        if e.1 % 50_000 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        e
    })
    .apply("Windows", WindowInto::fixed(10_000))
    .apply(
        "Tally",
        ParDo::of(Tally)
            .with_state(StateSpec::value::<i64>("n"))
            .with_state(StateSpec::set::<i64>("mods"))
            .with_timer(TimerSpec::event_time("flush")),
    )
    .apply(
        "Write",
        WriteToText::new(out.join("counts").to_string_lossy()),
    );
}

/// Counts a key's events in a window (a line every 20th) and says at the window's end how
/// many there were and how many distinct sequence numbers mod 7.
#[derive(Clone)]
struct Tally;

fn start_of(w: beamline::Window) -> i64 {
    match w {
        beamline::Window::Interval { start, .. } => start,
        beamline::Window::Global => -1,
    }
}

impl DoFn for Tally {
    type In = (i64, i64);
    type Out = String;
    fn process(
        &mut self,
        (key, seq): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let w = ctx.window();
        let mut st = ctx.state()?;
        let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
        st.write("n", n)?;
        st.set_add("mods", seq % 7)?;
        if n == 1 {
            st.set_timer("flush", w.max_timestamp())?;
        }
        if n % 20 == 0 {
            ctx.output(format!("{key},{},{n}", start_of(w)));
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timer: &str,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let w = ctx.window();
        let mut st = ctx.state()?;
        let key: i64 = st.key()?;
        let n = st.read::<i64>("n")?.unwrap_or(0);
        let mods = st.set_read::<i64>("mods")?.len();
        ctx.output(format!("{key},{},final {n},{mods} distinct", start_of(w)));
        Ok(())
    }
}

/// `key,window start,window end,pane index,timing,mean` of each pane.
#[derive(Clone)]
struct DescribeMean;

impl DoFn for DescribeMean {
    type In = (i64, f64);
    type Out = String;
    fn process(
        &mut self,
        (key, mean): (i64, f64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let (start, end) = match ctx.window() {
            beamline::Window::Interval { start, end } => (start, end),
            beamline::Window::Global => (-1, -1),
        };
        let pane = ctx.pane();
        ctx.output(format!(
            "{key},{start},{end},{},{:?},{mean:.6}",
            pane.index, pane.timing
        ));
        Ok(())
    }
}

fn spawn(shape: &str, out: &Path, checkpoints: Option<&Path>, extra: bool) -> Child {
    let mut arg = format!("{shape},{}", out.to_string_lossy());
    if let Some(c) = checkpoints {
        arg = format!("{arg},{}", c.display());
    }
    if extra {
        arg.push_str(",extra");
    }
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD, arg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "redb"))
        .collect();
    files.sort();
    files
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        let mut parts = arg.split(',');
        let shape = parts.next().unwrap();
        let out = PathBuf::from(parts.next().unwrap());
        let ckpt = parts.next().filter(|s| *s != "extra").map(PathBuf::from);
        let extra = arg.ends_with(",extra");
        if let Err(e) = job(shape, &out, ckpt.as_deref(), extra) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (reference, faulty, ckpt) = (
        dir.path().join("reference"),
        dir.path().join("faulty"),
        dir.path().join("checkpoints"),
    );
    for d in [&reference, &faulty] {
        std::fs::create_dir_all(d).unwrap();
    }

    // A run without faults or checkpoints.
    let started = Instant::now();
    common::wait_for(spawn("fixed", &reference, None, false), LIMIT).unwrap();
    let took = started.elapsed();
    let want = common::committed_lines(&reference, "counts");
    assert!(want.len() > 1000, "{} panes", want.len());
    for timing in ["Early", "OnTime", "Late"] {
        assert!(
            want.iter().any(|l| l.contains(timing)),
            "the job has {timing} panes"
        );
    }

    // 20 kills at random moments, each run restarted from the checkpoints.
    let mut rng = common::fault_rng(7);
    let mut kills = 0;
    let mut visible_while_running = 0;
    while kills < 20 {
        let wait = rng.random_range(30..(took.as_millis() as u64 / 16).max(60));
        common::kill_after(
            spawn("fixed", &faulty, Some(&ckpt), false),
            wait,
            &format!("the job (kill {})", kills + 1),
        );
        kills += 1;
        visible_while_running =
            visible_while_running.max(common::committed_lines(&faulty, "counts").len());
    }
    assert!(
        visible_while_running > 0,
        "checkpoints commit output while the job runs"
    );
    assert!(!checkpoint_files(&ckpt).is_empty());

    // A changed pipeline does not resume from these checkpoints.
    let err = common::wait_for(spawn("fixed", &faulty, Some(&ckpt), true), LIMIT).unwrap_err();
    assert!(
        err.contains("transform 'Extra' is new") && err.contains("--restore=none"),
        "{err}"
    );

    // The newest checkpoint damaged: the one before it is used.
    let files = checkpoint_files(&ckpt);
    if files.len() >= 2 {
        let newest = files.last().unwrap();
        let len = std::fs::metadata(newest).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(newest)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    }
    common::wait_for(spawn("fixed", &faulty, Some(&ckpt), false), LIMIT).unwrap();
    let got = common::committed_lines(&faulty, "counts");
    assert_eq!(got.len(), want.len(), "as many panes as without faults");
    assert!(
        got == want,
        "the committed output differs from a run without faults"
    );

    // A finished job started again has nothing left to do.
    common::wait_for(spawn("fixed", &faulty, Some(&ckpt), false), LIMIT).unwrap();
    assert!(common::committed_lines(&faulty, "counts") == want);
    assert_eq!(
        common::temp_dirs(&faulty),
        Vec::<String>::new(),
        "temporary directories left"
    );
    println!(
        "checkpoint fault test: {kills} kills, {} panes committed exactly once (reference run {} ms)",
        want.len(),
        took.as_millis()
    );

    // Session windows and a mean per key (its panes in memory, and spilled past a memory
    // budget, over fewer events), and a stateful DoFn with timers (its state in memory,
    // and spilled): 5 kills each, the same output as without faults.
    let mut outputs: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for shape in ["sessions", "sessions-spill", "stateful", "stateful-spill"] {
        let (reference, faulty, ckpt) = (
            dir.path().join(format!("{shape}-reference")),
            dir.path().join(format!("{shape}-faulty")),
            dir.path().join(format!("{shape}-checkpoints")),
        );
        for d in [&reference, &faulty] {
            std::fs::create_dir_all(d).unwrap();
        }
        let started = Instant::now();
        common::wait_for(spawn(shape, &reference, None, false), LIMIT).unwrap();
        let took = started.elapsed();
        let want = common::committed_lines(&reference, "counts");
        let base = shape.trim_end_matches("-spill");
        if base == "sessions" {
            assert!(
                want.iter().any(|l| l.contains("Early")) && want.iter().any(|l| l.contains("Late"))
            );
        } else {
            assert!(want.iter().any(|l| l.contains("final")), "the timers fired");
        }
        // Spilling changes nothing in the output (the spilled sessions job reads fewer
        // events: it has its own).
        let same_input = if shape == "sessions-spill" {
            shape
        } else {
            base
        };
        let first = outputs.entry(same_input).or_insert_with(|| want.clone());
        assert!(*first == want, "{shape} differs from the {base} job");
        for kill in 0..5 {
            let wait = rng.random_range(30..(took.as_millis() as u64 / 6).max(60));
            common::kill_after(
                spawn(shape, &faulty, Some(&ckpt), false),
                wait,
                &format!("the {shape} job (kill {})", kill + 1),
            );
        }
        common::wait_for(spawn(shape, &faulty, Some(&ckpt), false), LIMIT).unwrap();
        let got = common::committed_lines(&faulty, "counts");
        assert_eq!(
            got.len(),
            want.len(),
            "{shape}: as many lines as without faults"
        );
        assert!(
            got == want,
            "{shape}: the output differs from a run without faults"
        );
        if shape.ends_with("-spill") {
            // It spilled (the directory exists), and the files of the killed runs went
            // with the next run's start, the last run's with its end.
            let spill = dir.path().join("spill");
            let left: Vec<_> = std::fs::read_dir(&spill).unwrap().flatten().collect();
            assert!(left.is_empty(), "spill files left: {left:?}");
        }
        println!(
            "checkpoint fault test, {shape}: 5 kills, {} lines committed exactly once",
            want.len()
        );
    }
}
