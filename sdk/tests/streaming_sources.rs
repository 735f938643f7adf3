//! Unbounded sources in streaming mode: the generator (reproducible, paced, with late
//! events) and the directory-watching text source.

use beamline::io::generator::Generator;
use beamline::io::text::WatchText;
use beamline::testing::capture;
use beamline::{Count, Pipeline, PipelineOptions, WindowInto};

#[test]
fn generator_is_reproducible_and_counts_match() {
    let g = Generator::new(5)
        .with_count(3_000)
        .with_seed(9)
        .with_late_events(0.05, 1_000);
    let events: Vec<_> = g.events().collect();
    assert_eq!(events.len(), 3_000);
    assert_eq!(events, g.events().collect::<Vec<_>>());
    let p = Pipeline::new(PipelineOptions::default());
    let counts = p
        .apply("Gen", g.clone())
        .map("Key", |(k, _): (i64, i64)| (k, ()))
        .apply(
            "Window",
            WindowInto::fixed(1_000).with_allowed_lateness(10_000),
        )
        .apply("Count", Count::per_key());
    let got = capture(&counts);
    p.run().unwrap();
    let mut expected = std::collections::HashMap::new();
    for ((k, _), ts) in events {
        *expected.entry((k, ts.div_euclid(1_000))).or_insert(0i64) += 1;
    }
    // Late data fires extra (discarding) panes: sum them per key and window.
    let total: i64 = got.items().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3_000);
    assert!(got.items().len() >= expected.len());
}

#[test]
fn paced_generator_takes_wall_clock_time() {
    let p = Pipeline::new(PipelineOptions::default());
    let n = capture(
        &p.apply("Gen", Generator::new(3).with_count(200).with_rate(1_000))
            .map("One", |_: (i64, i64)| 1i64),
    );
    let start = std::time::Instant::now();
    p.run().unwrap();
    assert_eq!(n.items().len(), 200);
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn watch_text_streams_new_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "one\ntwo\n").unwrap();
    let late = dir.path().join("b.txt");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        std::fs::write(late, "three\n").unwrap();
    });
    let p = Pipeline::new(PipelineOptions::default());
    let lines = p.apply(
        "Watch",
        WatchText::new(format!("{}/*.txt", dir.path().display()))
            .with_poll_interval(20)
            .stop_after_idle(400),
    );
    let got = capture(&lines);
    p.run().unwrap();
    writer.join().unwrap();
    assert_eq!(got.sorted(), vec!["one", "three", "two"]);
}
