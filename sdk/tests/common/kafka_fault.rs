//! The fault tests' job with Kafka in and out (run by the local and the distributed
//! fault tests): it reads events from a Kafka topic (3 partitions), counts them per key in
//! event-time windows with early, on-time and late panes, and writes every pane to a
//! Kafka topic (transactions) and to files (committed by checkpoints); and the check that
//! the committed panes hold every event exactly once.
//!
//! Panes are compared by these invariants, not line for line with a run without faults:
//! reading from Kafka, bundles (so early and late panes) depend on when records arrive.
//!
//! tansu, the broker here, hands records of aborted transactions to read-committed
//! consumers (Kafka does not); a kill during a sink's commit leaves one, written again by
//! the restarted job. [`kafka`] reads each record's `beamline-commit` header and drops
//! repeats of a commit's record, reporting how many; that the sink never commits a
//! checkpoint's records twice is checked by `io_kafka` (its commit marker).
//!
//! Looking into a failure: `FAULT_KILLS=N` kills fewer times, `FAULT_SEED` picks other
//! moments, `FAULT_INTERVAL` another checkpoint interval, and `FAULT_DEBUG=1` shows the
//! runs' standard error and what differs.

use super::Broker;
use beamline::io::kafka::{ReadFromKafka, WriteToKafka};
use beamline::{
    Bytes, Count, DoFn, Pipeline, PipelineOptions, ProcessContext, Trigger, UserError, Window,
    WindowInto, WriteToText,
};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

pub const EVENTS: usize = 300_000;
pub const KEYS: usize = 40;
pub const CHILD: &str = "BEAMLINE_KAFKA_FAULT_CHILD";
/// How long a run may take before the test fails as hung.
pub const LIMIT: Duration = Duration::from_secs(180);

/// `key,window start,pane index,timing,count` of each pane.
#[derive(Clone)]
pub struct Describe;

impl DoFn for Describe {
    type In = (String, i64);
    type Out = String;
    fn process(
        &mut self,
        (key, n): (String, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("not in a fixed window".into());
        };
        let pane = ctx.pane();
        ctx.output(format!(
            "{key},{start},{},{:?},{n}",
            pane.index, pane.timing
        ));
        Ok(())
    }
}

/// The events: key, timestamp (out of order by up to 3 s, 1% up to 40 s late).
pub fn events() -> Vec<(String, String, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    (0..EVENTS)
        .map(|i| {
            let key = format!("k{}", i % KEYS);
            let mut ts = 1_000_000 + i as i64 * 10 - rng.random_range(0..3_000);
            if rng.random_range(0..100) == 0 {
                ts -= rng.random_range(5_000..40_000);
            }
            (key.clone(), key, ts)
        })
        .collect()
}

/// Where a run of the job goes: the local runner, or the distributed one on 2 processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Local,
    Distributed,
}

/// Runs the job on `runner`: events from `broker`, panes to files in `out` and to Kafka
/// topic `topic`, with checkpoints in `checkpoints`, if any.
pub fn job(
    runner: Runner,
    broker: &str,
    out: &Path,
    topic: &str,
    checkpoints: Option<&Path>,
) -> beamline::Result<()> {
    let mut options = PipelineOptions::default().set("streaming", "true");
    if runner == Runner::Distributed {
        // Small bundles: a source ends an epoch (a checkpoint) between two.
        options = options
            .set("runner", "distributed")
            .set("processes", "2")
            .set("max_bundle_size", "500");
    }
    if let Some(dir) = checkpoints {
        options = options.set("checkpoint_dir", dir.to_string_lossy()).set(
            "checkpoint_interval",
            std::env::var("FAULT_INTERVAL").unwrap_or("50ms".into()),
        );
    }
    let p = Pipeline::new(options);
    let panes = p
        .apply(
            "Events",
            ReadFromKafka::new(broker, ["events"])
                .with_group(format!("fault-{topic}"))
                .with_max_out_of_orderness(3_000)
                .until_end(),
        )
        .map("Key", |(_, v): (Bytes, Bytes)| {
            (String::from_utf8(v.0).unwrap_or_default(), 1i64)
        })
        // Slow enough to be killed in the middle: a pause every 5,000 events (every 300
        // in each process of a distributed job, which starts slower and restores more).
        .map("Pace", {
            let every = if runner == Runner::Local { 5_000 } else { 300 };
            let seen = std::sync::atomic::AtomicU64::new(0);
            move |e: (String, i64)| {
                if seen
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(every)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                e
            }
        })
        .apply(
            "Windows",
            WindowInto::fixed(10_000)
                .triggering(Trigger::after_watermark(
                    Some(Trigger::AfterCount(10)),
                    Some(Trigger::AfterCount(1)),
                ))
                .accumulating()
                .with_allowed_lateness(3_600_000),
        )
        .apply("Count", Count::per_key())
        .par_do("Describe", Describe);
    panes.apply(
        "Files",
        WriteToText::new(out.join("panes").to_string_lossy()),
    );
    panes
        .map("Record", |l: String| {
            (Bytes(Vec::new()), Bytes(l.into_bytes()))
        })
        .apply(
            "Kafka",
            WriteToKafka::new(broker, topic).with_transactional_id(format!("fault-{topic}")),
        );
    p.run()?;
    Ok(())
}

/// Starts this test binary as a run of the job (see [`child_main`]).
pub fn spawn(
    runner: Runner,
    broker: &str,
    out: &Path,
    topic: &str,
    checkpoints: Option<&Path>,
) -> Child {
    let c = checkpoints.map_or(String::new(), |c| c.display().to_string());
    let r = if runner == Runner::Local {
        "local"
    } else {
        "distributed"
    };
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD, format!("{r}|{broker}|{}|{topic}|{c}", out.display()))
        .stderr(if std::env::var("FAULT_DEBUG").is_ok() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::piped()
        })
        .spawn()
        .unwrap()
}

/// The Kafka records, repeats of one commit's record dropped; how many were.
///
/// Records are read uncommitted: tansu hands read-committed consumers the records of
/// aborted transactions anyway (so reading only committed ones checks nothing more), and
/// twice in CI its read-committed consumers saw none of one of a distributed job's two
/// producers' records from some point on while seeing all of the other's. The commit tags
/// make the check the same: a checkpoint's records are written again, tags and all,
/// until its transaction commits; records never written still fail it.
/// [`committed_hidden`] reports what read-committed consumers did not see.
pub fn kafka(broker: &Broker, topic: &str) -> (Vec<String>, usize) {
    dedup(broker.read_all_tagged(topic))
}

/// How many distinct records read-committed consumers do not see (tansu's doing, see
/// [`kafka`]).
pub fn committed_hidden(broker: &Broker, topic: &str) -> usize {
    let (all, _) = kafka(broker, topic);
    let (committed, _) = dedup(broker.read_committed_tagged(topic));
    all.len().saturating_sub(committed.len())
}

fn dedup(records: Vec<(Option<String>, String)>) -> (Vec<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut repeats = 0;
    for (tag, value) in records {
        match tag {
            Some(t) if !seen.insert(t.clone()) => repeats += 1,
            _ => out.push(value),
        }
    }
    out.sort();
    (out, repeats)
}

/// A pane as written: index, timing, count.
pub type Pane = (i64, String, i64);

/// Checks the panes hold every key and window's events exactly once.
pub fn check(panes: &[String], expected: &BTreeMap<(String, i64), i64>, what: &str) {
    let mut by_window: BTreeMap<(String, i64), Vec<Pane>> = BTreeMap::new();
    for l in panes {
        let f: Vec<&str> = l.split(',').collect();
        let (k, w, i, t, n) = (
            f[0],
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3],
            f[4],
        );
        by_window.entry((k.to_string(), w)).or_default().push((
            i,
            t.to_string(),
            n.parse().unwrap(),
        ));
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !by_window.contains_key(*k))
        .collect();
    let extra: Vec<_> = by_window
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    // Which windows are missing tells a lost process from a lost stretch of time.
    if !missing.is_empty() {
        let mut per_key: BTreeMap<&String, (usize, i64, i64)> = BTreeMap::new();
        for (k, w) in &missing {
            let e = per_key.entry(k).or_insert((0, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 = e.1.min(*w);
            e.2 = e.2.max(*w);
        }
        eprintln!("{what}: missing per key (windows, first, last): {per_key:?}");
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} windows without panes (first {:?}), {} unexpected (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (kw, mut panes) in by_window {
        panes.sort();
        let indexes: Vec<i64> = panes.iter().map(|p| p.0).collect();
        let want: Vec<i64> = (0..panes.len() as i64).collect();
        assert_eq!(
            indexes, want,
            "{what}: panes of {kw:?} missing or repeated: {panes:?}"
        );
        // At most one on-time pane (none when all of a window's data came late).
        let ontime = panes.iter().filter(|p| p.1 == "OnTime").count();
        assert!(ontime <= 1, "{what}: {ontime} on-time panes of {kw:?}");
        let last = panes.last().unwrap().2;
        assert_eq!(last, expected[&kw], "{what}: final count of {kw:?}");
    }
}

/// In a run [`spawn`] started (and its worker processes): runs the job and returns
/// `true`; `false` in the test itself.
pub fn child_main() -> bool {
    let Ok(arg) = std::env::var(CHILD) else {
        return false;
    };
    let f: Vec<&str> = arg.split('|').collect();
    let runner = if f[0] == "local" {
        Runner::Local
    } else {
        Runner::Distributed
    };
    let ckpt = (!f[4].is_empty()).then(|| PathBuf::from(f[4]));
    if let Err(e) = job(runner, f[1], Path::new(f[2]), f[3], ckpt.as_deref()) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    true
}

/// The broker with the events, and the count of each key and window.
pub fn setup(topics: &[&str]) -> (Broker, BTreeMap<(String, i64), i64>) {
    let broker = Broker::start();
    broker.create_topic("events", 3);
    for t in topics {
        broker.create_topic(t, 1);
    }
    let input = events();
    broker.produce("events", &input);
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (k, _, ts) in &input {
        *expected
            .entry((k.clone(), ts - ts.rem_euclid(10_000)))
            .or_default() += 1;
    }
    (broker, expected)
}

/// The fault test on `runner`: a run without faults, then `kills` runs each killed by
/// `kill` at a random moment and restarted from the checkpoints, then one to the end; the
/// committed panes hold every event exactly once, in the files and in Kafka.
///
/// `kill` gets the run, a random wait (up to the run without faults' time over
/// `wait_divisor`), what to call the run and the checkpoint directory.
pub fn fault_test(
    runner: Runner,
    kills: usize,
    wait_divisor: u64,
    kill: fn(Child, u64, &str, &Path) -> bool,
) {
    let (broker, expected) = setup(&["panes-ref", "panes"]);
    let dir = tempfile::tempdir().unwrap();
    let (reference, faulty, ckpt) = (
        dir.path().join("reference"),
        dir.path().join("faulty"),
        dir.path().join("checkpoints"),
    );
    for d in [&reference, &faulty] {
        std::fs::create_dir_all(d).unwrap();
    }
    let run = |out: &Path, topic: &str, checkpoints: Option<&Path>| {
        spawn(runner, &broker.address, out, topic, checkpoints)
    };

    // A run without faults.
    let started = std::time::Instant::now();
    super::wait_for(run(&reference, "panes-ref", None), LIMIT).unwrap();
    let took = started.elapsed();
    let ref_files = super::committed_lines(&reference, "panes");
    check(&ref_files, &expected, "the run without faults");
    for timing in ["Early", "OnTime", "Late"] {
        assert!(
            ref_files.iter().any(|l| l.contains(timing)),
            "{timing} panes"
        );
    }

    // Kills at random moments, each run restarted from the checkpoints.
    let mut rng = super::fault_rng(9);
    // FAULT_KILLS (fewer kills) helps when looking into a failure.
    let kills = std::env::var("FAULT_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(kills);
    let mut killed = 0;
    for k in 0..kills {
        let most = (took.as_millis() as u64 / wait_divisor).max(150);
        let wait = rng.random_range(100..most);
        if !kill(
            run(&faulty, "panes", Some(&ckpt)),
            wait,
            &format!("the job (kill {})", k + 1),
            &ckpt,
        ) {
            break;
        }
        killed += 1;
    }
    // The job finished before all the kills (the runs before got that far): fine as long
    // as most of them happened.
    assert!(
        killed * 4 >= kills * 3,
        "only {killed} of {kills} kills before the job finished"
    );
    let kills = killed;
    let last = std::time::Instant::now();
    super::wait_for(run(&faulty, "panes", Some(&ckpt)), LIMIT).unwrap();
    let last = last.elapsed();

    if std::env::var("FAULT_DEBUG").is_ok() {
        for w in ["worker-0", "worker-1"] {
            let mut names: Vec<String> = std::fs::read_dir(ckpt.join(w))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            eprintln!("{w}: {names:?}");
        }
    }
    let got_files = super::committed_lines(&faulty, "panes");
    assert_eq!(
        super::temp_dirs(&faulty),
        Vec::<String>::new(),
        "temporary directories left"
    );
    if std::env::var("FAULT_DEBUG").is_ok() {
        let (k, _) = kafka(&broker, "panes");
        let only_k: Vec<_> = k
            .iter()
            .filter(|l| !got_files.contains(l))
            .take(5)
            .collect();
        let only_f: Vec<_> = got_files
            .iter()
            .filter(|l| !k.contains(l))
            .take(5)
            .collect();
        eprintln!("in Kafka only: {only_k:?}; in files only: {only_f:?}");
    }
    check(
        &got_files,
        &expected,
        &format!("the files after {kills} kills"),
    );
    let (got_kafka, repeats) = kafka(&broker, "panes");
    check(
        &got_kafka,
        &expected,
        &format!("the Kafka topic after {kills} kills"),
    );
    assert!(
        got_kafka == got_files,
        "the files and the Kafka topic hold the same panes"
    );
    let hidden = committed_hidden(&broker, "panes");
    println!(
        "Kafka fault test ({runner:?} runner): {kills} kills, {} panes committed exactly once \
         to files and Kafka ({} windows; {repeats} records of aborted transactions that tansu \
         showed were dropped; {hidden} records hidden from read-committed consumers; run \
         without faults {} ms, the last run {} ms)",
        got_files.len(),
        expected.len(),
        took.as_millis(),
        last.as_millis()
    );
}
