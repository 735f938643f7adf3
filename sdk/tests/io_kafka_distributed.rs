//! Kafka on the distributed runner: two processes read a 4-partition topic (its partitions
//! split among them), count per key and window across processes, and write files; the
//! counts are the input's. No checkpoints (the distributed runner does not take them).
//!
//! A plain `main` (no test harness): the distributed runner re-executes this binary as its
//! worker processes; the launching process starts the broker and passes its address and
//! the output directory to them in the environment.

mod common;

use beamline::io::kafka::ReadFromKafka;
use beamline::{Bytes, Count, Pipeline, PipelineOptions, WindowInto, WriteToText};
use std::collections::BTreeMap;
use std::path::Path;

const BROKER: &str = "BEAMLINE_TEST_KAFKA";
const OUT: &str = "BEAMLINE_TEST_KAFKA_OUT";

fn run(broker: &str, out: &Path) {
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("runner", "distributed")
            .set("processes", "2")
            .set("streaming", "true"),
    );
    p.apply(
        "Clicks",
        ReadFromKafka::new(broker, ["clicks"])
            .with_start(beamline::io::kafka::StartOffset::Earliest)
            .until_end(),
    )
    .map("User", |(_, v): (Bytes, Bytes)| {
        (String::from_utf8(v.0).unwrap_or_default(), 1i64)
    })
    .apply("Minutes", WindowInto::fixed(60_000))
    .apply("Count", Count::per_key())
    .par_do("Format", common::Line)
    .apply(
        "Write",
        WriteToText::new(out.join("counts").to_string_lossy()),
    );
    p.run().expect("the job runs");
}

fn main() {
    if beamline::worker::is_worker() {
        let broker = std::env::var(BROKER).expect("the launcher passes the broker");
        let out = std::env::var(OUT).expect("the launcher passes the output directory");
        run(&broker, Path::new(&out));
        return;
    }
    let broker = common::Broker::start();
    broker.create_topic("clicks", 4);
    let input: Vec<(String, String, i64)> = (0..8_000)
        .map(|i| {
            let user = format!("user{}", i % 9);
            (user.clone(), user, 2_000_000 + i as i64 * 50)
        })
        .collect();
    broker.produce("clicks", &input);
    let dir = tempfile::tempdir().unwrap();
    // Worker processes inherit the environment.
    std::env::set_var(BROKER, &broker.address);
    std::env::set_var(OUT, dir.path());
    run(&broker.address, dir.path());
    let mut want: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (_, user, ts) in &input {
        *want
            .entry((user.clone(), ts - ts.rem_euclid(60_000)))
            .or_default() += 1;
    }
    let want: Vec<String> = want
        .into_iter()
        .map(|((u, w), n)| format!("{u},{w},{n}"))
        .collect();
    let mut want = want;
    want.sort();
    let got = common::committed_lines(dir.path(), "counts");
    assert_eq!(got, want);
    println!("kafka on 2 processes: {} counts as the input's", got.len());
}
