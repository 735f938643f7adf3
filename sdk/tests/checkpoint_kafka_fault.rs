//! The fault test with Kafka in and out: a streaming job reads events from a Kafka topic
//! (3 partitions), counts them per key in event-time windows with early, on-time and late
//! panes, and writes every pane to a Kafka topic (transactions) and to files (committed
//! by checkpoints). It is killed with SIGKILL at 20 random moments and restarted each time
//! from its checkpoints. Afterwards the committed output holds every pane exactly once:
//! the files and the Kafka topic hold the same panes, no pane of a key and window is
//! missing or repeated, and each window's final count is the number of its events.
//!
//! Panes are compared by these invariants, not line for line with a run without faults:
//! reading from Kafka, bundles (so early and late panes) depend on when records arrive.
//!
//! tansu, the broker here, hands records of aborted transactions to read-committed
//! consumers (Kafka does not); a kill during a sink's commit leaves one, written again by
//! the restarted job. The test reads each record's `beamline-commit` header and drops
//! repeats of a commit's record, reporting how many; that the sink never commits a
//! checkpoint's records twice is checked by `io_kafka` (its commit marker).

mod common;

use beamline::io::kafka::{ReadFromKafka, WriteToKafka};
use beamline::{
    Bytes, Count, DoFn, Pipeline, PipelineOptions, ProcessContext, Trigger, UserError, Window,
    WindowInto, WriteToText,
};
use common::Broker;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const EVENTS: usize = 300_000;
const KEYS: usize = 40;
const CHILD: &str = "BEAMLINE_KAFKA_FAULT_CHILD";
/// How long a run may take before the test fails as hung.
const LIMIT: Duration = Duration::from_secs(180);

/// `key,window start,pane index,timing,count` of each pane.
#[derive(Clone)]
struct Describe;

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
fn events() -> Vec<(String, String, i64)> {
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

fn job(broker: &str, out: &Path, topic: &str, checkpoints: Option<&Path>) -> beamline::Result<()> {
    let mut options = PipelineOptions::default().set("streaming", "true");
    if let Some(dir) = checkpoints {
        options = options
            .set("checkpoint_dir", dir.to_string_lossy())
            .set("checkpoint_interval", "50ms");
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
        // Slow enough to be killed in the middle: a pause every 5,000 events.
        .map("Pace", {
            let seen = std::sync::atomic::AtomicU64::new(0);
            move |e: (String, i64)| {
                if seen
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(5_000)
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

fn spawn(broker: &str, out: &Path, topic: &str, checkpoints: Option<&Path>) -> Child {
    let c = checkpoints.map_or(String::new(), |c| c.display().to_string());
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD, format!("{broker}|{}|{topic}|{c}", out.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The committed Kafka records, repeats of one commit's record dropped; how many were.
fn kafka(broker: &Broker, topic: &str) -> (Vec<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut repeats = 0;
    for (tag, value) in broker.read_committed_tagged(topic) {
        match tag {
            Some(t) if !seen.insert(t.clone()) => repeats += 1,
            _ => out.push(value),
        }
    }
    out.sort();
    (out, repeats)
}

/// A pane as written: index, timing, count.
type Pane = (i64, String, i64);

/// Checks the panes hold every key and window's events exactly once.
fn check(panes: &[String], expected: &BTreeMap<(String, i64), i64>, what: &str) {
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
    assert_eq!(
        by_window.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the windows with panes"
    );
    for (kw, mut panes) in by_window {
        panes.sort();
        let indexes: Vec<i64> = panes.iter().map(|p| p.0).collect();
        let want: Vec<i64> = (0..panes.len() as i64).collect();
        assert_eq!(indexes, want, "{what}: panes of {kw:?} missing or repeated");
        let ontime = panes.iter().filter(|p| p.1 == "OnTime").count();
        assert_eq!(ontime, 1, "{what}: on-time panes of {kw:?}");
        let last = panes.last().unwrap().2;
        assert_eq!(last, expected[&kw], "{what}: final count of {kw:?}");
    }
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        let f: Vec<&str> = arg.split('|').collect();
        let ckpt = (!f[3].is_empty()).then(|| PathBuf::from(f[3]));
        if let Err(e) = job(f[0], Path::new(f[1]), f[2], ckpt.as_deref()) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let broker = Broker::start();
    broker.create_topic("events", 3);
    broker.create_topic("panes-ref", 1);
    broker.create_topic("panes", 1);
    let input = events();
    broker.produce("events", &input);
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (k, _, ts) in &input {
        *expected
            .entry((k.clone(), ts - ts.rem_euclid(10_000)))
            .or_default() += 1;
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

    // A run without faults.
    let started = Instant::now();
    common::wait_for(spawn(&broker.address, &reference, "panes-ref", None), LIMIT).unwrap();
    let took = started.elapsed();
    let ref_files = common::committed_lines(&reference, "panes");
    check(&ref_files, &expected, "the run without faults");
    for timing in ["Early", "OnTime", "Late"] {
        assert!(
            ref_files.iter().any(|l| l.contains(timing)),
            "{timing} panes"
        );
    }

    // 20 kills at random moments, each run restarted from the checkpoints.
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(9),
    );
    let mut kills = 0;
    while kills < 20 {
        let wait = rng.random_range(100..(took.as_millis() as u64 / 8).max(150));
        common::kill_after(
            spawn(&broker.address, &faulty, "panes", Some(&ckpt)),
            wait,
            &format!("the job (kill {})", kills + 1),
        );
        kills += 1;
    }
    common::wait_for(spawn(&broker.address, &faulty, "panes", Some(&ckpt)), LIMIT).unwrap();

    let got_files = common::committed_lines(&faulty, "panes");
    check(&got_files, &expected, "the files after 20 kills");
    let (got_kafka, repeats) = kafka(&broker, "panes");
    check(&got_kafka, &expected, "the Kafka topic after 20 kills");
    assert!(
        got_kafka == got_files,
        "the files and the Kafka topic hold the same panes"
    );
    println!(
        "Kafka fault test: {kills} kills, {} panes committed exactly once to files and Kafka \
         ({} windows; {repeats} records of aborted transactions that tansu showed were dropped; \
         run without faults {} ms)",
        got_files.len(),
        expected.len(),
        took.as_millis()
    );
}
