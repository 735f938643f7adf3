//! Kafka IO against a real Kafka-protocol broker (tansu, started by the test): records
//! read from a topic's partitions are counted per key and window and written back; with
//! checkpoints the output is written in transactions and the offsets are committed to
//! the consumer group; bad configurations and records the broker never takes fail with
//! clear errors.

mod common;

use beamline::io::kafka::{ReadFromKafka, WriteToKafka};
use beamline::{Bytes, Count, Pipeline, PipelineOptions, WindowInto};
use common::Broker;
use std::collections::BTreeMap;

fn clicks(n: usize) -> Vec<(String, String, i64)> {
    (0..n)
        .map(|i| {
            let user = format!("user{}", i % 7);
            (user.clone(), user, 1_000_000 + i as i64 * 100)
        })
        .collect()
}

/// `user,window start,count` lines of the input.
fn expected(input: &[(String, String, i64)]) -> Vec<String> {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (_, user, ts) in input {
        *counts
            .entry((user.clone(), ts - ts.rem_euclid(60_000)))
            .or_default() += 1;
    }
    let mut lines: Vec<String> = counts
        .into_iter()
        .map(|((u, w), n)| format!("{u},{w},{n}"))
        .collect();
    lines.sort();
    lines
}

fn run(broker: &Broker, options: PipelineOptions, input: &str, output: &str) {
    let p = Pipeline::new(options.set("streaming", "true"));
    p.apply(
        "Clicks",
        ReadFromKafka::new(&broker.address, [input])
            .with_group("counter")
            .until_end(),
    )
    .map("User", |(_, v): (Bytes, Bytes)| {
        (String::from_utf8(v.0).unwrap(), 1i64)
    })
    .apply("Minutes", WindowInto::fixed(60_000))
    .apply("Count", Count::per_key())
    .par_do("Format", common::Line)
    .map("Record", |line: String| {
        (Bytes(Vec::new()), Bytes(line.into_bytes()))
    })
    .apply("Write", WriteToKafka::new(&broker.address, output));
    p.run().expect("the job runs");
}

#[test]
fn records_are_read_counted_per_window_and_written_back() {
    let broker = Broker::start();
    broker.create_topic("clicks", 3);
    broker.create_topic("counts", 1);
    let input = clicks(5_000);
    broker.produce("clicks", &input);
    run(&broker, PipelineOptions::default(), "clicks", "counts");
    let mut got = broker.read_committed("counts");
    got.sort();
    assert_eq!(got, expected(&input));
}

/// The offsets committed for `group` on `topic`'s partitions, summed.
fn committed_total(broker: &Broker, group: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, std::time::Duration::from_secs(10))
        .unwrap();
    got.elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum()
}

#[test]
fn with_checkpoints_output_is_transactional_and_offsets_are_committed() {
    let broker = Broker::start();
    broker.create_topic("clicks", 3);
    broker.create_topic("counts", 1);
    let input = clicks(20_000);
    broker.produce("clicks", &input);
    let dir = tempfile::tempdir().unwrap();
    let options = PipelineOptions::default()
        .set("checkpoint_dir", dir.path().to_string_lossy())
        .set("checkpoint_interval", "20ms");
    run(&broker, options.clone(), "clicks", "counts");
    let mut got = broker.read_committed("counts");
    got.sort();
    assert_eq!(got, expected(&input));
    // Every record's offset reached the group (after the last checkpoint).
    assert_eq!(committed_total(&broker, "counter", "clicks", 3), 20_000);
    // The sink's marker: the checkpoint its last transaction committed.
    assert!(committed_total(&broker, "beamline-counts-commits", "counts", 1) > 0);
    // Run again from the same checkpoints: the job had finished; nothing is written twice.
    run(&broker, options, "clicks", "counts");
    assert_eq!(broker.read_committed("counts").len(), got.len());
}

/// The abort path, checked through the commit marker (tansu shows aborted records to
/// read-committed consumers, so the records themselves cannot tell): a record the producer
/// refuses in the middle of a checkpoint's transaction aborts it, the marker it would
/// have committed is not, and the job fails naming the sink's topic.
#[test]
fn a_failing_transaction_is_aborted_and_its_marker_not_committed() {
    let broker = Broker::start();
    broker.create_topic("small", 1);
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("streaming", "true")
            .set("checkpoint_dir", dir.path().to_string_lossy()),
    );
    p.apply("Lines", beamline::Create::of(vec![1usize, 10, 5_000, 20]))
        .map("Record", |n: usize| {
            (Bytes(Vec::new()), Bytes(vec![b'x'; n]))
        })
        .apply(
            "Write",
            WriteToKafka::new(&broker.address, "small").with_property("message.max.bytes", "1500"),
        );
    let err = p.run().expect_err("the transaction fails").to_string();
    assert!(err.contains("writing to 'small'"), "{err}");
    assert_eq!(
        committed_total(&broker, "beamline-small-commits", "small", 1),
        0
    );
}

/// A killed run can leave its sink's transaction open, and an open transaction hides every
/// record written after it from read-committed consumers. The next run's sink ends it
/// (fencing the old producer off) when it starts, even if it has nothing to write.
#[test]
fn a_run_with_nothing_to_write_ends_the_transaction_a_killed_run_left_open() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let broker = Broker::start();
    broker.create_topic("counts", 1);
    let producer = |id: &str| {
        let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .set("transactional.id", id)
            .create()
            .unwrap();
        p.init_transactions(std::time::Duration::from_secs(10))
            .unwrap();
        p.begin_transaction().unwrap();
        p.send(BaseRecord::<[u8], str>::to("counts").payload(id))
            .map_err(|e| e.0)
            .unwrap();
        p.flush(std::time::Duration::from_secs(10)).unwrap();
        p
    };
    // The killed run's producer: its transaction stays open.
    std::mem::forget(producer("beamline-counts"));
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("streaming", "true")
            .set("checkpoint_dir", dir.path().to_string_lossy()),
    );
    p.apply("Nothing", beamline::Create::of(Vec::<String>::new()))
        .map("Record", |l: String| {
            (Bytes(Vec::new()), Bytes(l.into_bytes()))
        })
        .apply("Write", WriteToKafka::new(&broker.address, "counts"));
    p.run().expect("the job runs");
    // Another writer's committed record is visible.
    let other = producer("another-writer");
    other
        .commit_transaction(std::time::Duration::from_secs(10))
        .unwrap();
    let got = broker.read_committed("counts");
    assert!(got.contains(&"another-writer".to_string()), "{got:?}");
}

/// Event time from the value (`user,millis`), whatever the record's timestamp.
fn time_in_value(_key: &[u8], value: &[u8], _record: Option<i64>) -> Option<i64> {
    std::str::from_utf8(value)
        .ok()?
        .split(',')
        .nth(1)?
        .parse()
        .ok()
}
beamline::register_kafka_timestamp!("test.time_in_value", time_in_value);

#[test]
fn event_time_can_come_from_a_registered_function() {
    let broker = Broker::start();
    broker.create_topic("timed", 2);
    broker.create_topic("timed-counts", 1);
    // Record timestamps all 1 ms; the real time is in the value.
    let input: Vec<(String, String, i64)> = (0..3_000)
        .map(|i| {
            let user = format!("user{}", i % 3);
            let ts = 5_000_000 + i as i64 * 200;
            (user.clone(), format!("{user},{ts}"), 1)
        })
        .collect();
    broker.produce("timed", &input);
    let p = Pipeline::new(PipelineOptions::default().set("streaming", "true"));
    p.apply(
        "Clicks",
        ReadFromKafka::new(&broker.address, ["timed"])
            .with_timestamp_fn("test.time_in_value")
            .until_end(),
    )
    .map("User", |(_, v): (Bytes, Bytes)| {
        let text = String::from_utf8(v.0).unwrap();
        (text.split(',').next().unwrap().to_string(), 1i64)
    })
    .apply("Minutes", WindowInto::fixed(60_000))
    .apply("Count", Count::per_key())
    .par_do("Format", common::Line)
    .map("Record", |line: String| {
        (Bytes(Vec::new()), Bytes(line.into_bytes()))
    })
    .apply("Write", WriteToKafka::new(&broker.address, "timed-counts"));
    p.run().expect("the job runs");
    let mut got = broker.read_committed("timed-counts");
    got.sort();
    let by_value: Vec<(String, String, i64)> = input
        .iter()
        .map(|(k, v, _)| {
            (
                k.clone(),
                k.clone(),
                time_in_value(&[], v.as_bytes(), None).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected(&by_value));

    // A function nobody registered is an error naming it.
    let p = Pipeline::new(PipelineOptions::default().set("streaming", "true"));
    p.apply(
        "Clicks",
        ReadFromKafka::new(&broker.address, ["timed"])
            .with_timestamp_fn("nobody.registered")
            .until_end(),
    );
    let err = p.run().expect_err("unknown function").to_string();
    assert!(
        err.contains("no Kafka timestamp function 'nobody.registered'"),
        "{err}"
    );
}

#[test]
fn records_the_broker_never_takes_fail_the_job_instead_of_vanishing() {
    // Nothing listens on this port: every record times out in the producer's queue.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Pipeline::new(PipelineOptions::default());
    p.apply(
        "Records",
        beamline::Create::of(vec![(Bytes(b"k".to_vec()), Bytes(b"v".to_vec())); 3]),
    )
    .apply(
        "Write",
        WriteToKafka::new(format!("127.0.0.1:{port}"), "nowhere")
            .with_property("message.timeout.ms", "300"),
    );
    let err = p.run().expect_err("undelivered records").to_string();
    assert!(
        err.contains("writing to 'nowhere'") && err.contains("record(s) not delivered"),
        "{err}"
    );
}
