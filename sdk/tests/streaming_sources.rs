//! Unbounded sources in streaming mode: the generator (reproducible, paced, with late
//! events), the directory-watching text source, and the stateless transforms that run on
//! a source's reader thread.

use beamline::io::generator::Generator;
use beamline::io::watch_text::WatchText;
use beamline::testing::capture;
use beamline::{
    BundleContext, Count, DoFn, ParDo, Pipeline, PipelineOptions, ProcessContext, UserError,
    Window, WindowInto,
};

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

/// Counts the elements of each bundle and emits the count when the bundle ends; reports
/// every element in a counter.
#[derive(Clone, Default)]
struct BundleSizes {
    n: i64,
}

impl DoFn for BundleSizes {
    type In = (i64, i64);
    type Out = i64;
    fn process(
        &mut self,
        _: (i64, i64),
        ctx: &mut ProcessContext<'_, '_, i64>,
    ) -> Result<(), UserError> {
        self.n += 1;
        ctx.inc_counter("test", "seen", 1);
        Ok(())
    }
    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, i64>) -> Result<(), UserError> {
        if self.n > 0 {
            ctx.output_at(self.n, 0, Window::Global);
        }
        self.n = 0;
        Ok(())
    }
}

#[test]
fn transforms_after_a_source_keep_bundle_outputs_metrics_and_order_of_calls() {
    // The source, ParDo and Filter run on the reader thread (WindowInto too: see the
    // generator test above); the Sum after them on the executor's.
    let p = Pipeline::new(PipelineOptions::default().set("max_bundle_size", 700));
    let sizes = p
        .apply("Gen", Generator::new(4).with_count(10_000).with_seed(3))
        .apply("Sizes", ParDo::of(BundleSizes::default()))
        .filter("Positive", |n: &i64| *n > 0);
    let got = capture(&sizes);
    let total = capture(
        &sizes
            .map("One", |n: i64| (0i64, n))
            .apply("Sum", beamline::Sum::per_key()),
    );
    let result = p.run().unwrap();
    assert_eq!(got.items().iter().sum::<i64>(), 10_000);
    assert!(got.items().iter().all(|&n| n <= 700), "{:?}", got.items());
    assert_eq!(total.items(), vec![(0, 10_000)]);
    let metrics = result.metrics();
    let seen: Vec<_> = metrics
        .counters
        .iter()
        .filter(|(k, _)| k.name == "seen")
        .map(|(k, v)| (k.step.as_str(), *v))
        .collect();
    assert_eq!(seen, vec![("Sizes", 10_000)]);
}

#[test]
fn a_failing_transform_after_a_source_fails_the_job_naming_it() {
    let p = Pipeline::new(PipelineOptions::default());
    let out = p
        .apply("Gen", Generator::new(4).with_count(5_000))
        .map("Key", |(k, seq): (i64, i64)| (k, seq))
        .flat_map("Explode", |(_, seq): (i64, i64)| {
            if seq == 4_321 {
                panic!("cannot handle event {seq}");
            }
            Some(seq)
        });
    let _ = capture(&out);
    let err = p
        .run()
        .expect_err("the panicking transform fails the job")
        .to_string();
    assert!(
        err.contains("Explode") && err.contains("cannot handle event 4321"),
        "{err}"
    );
}

#[test]
fn a_generator_read_in_parallel_emits_every_event_once_and_none_late() {
    // The readers of a split generator run on the worker threads with the transforms
    // after it; the source's watermark is the slowest reader's, so with no allowed
    // lateness an event counted per window is only dropped if a reader's watermark ran
    // ahead of its own events (and of the other readers').
    let g = Generator::new(7).with_count(30_000).with_seed(11);
    let mut expected = std::collections::HashMap::new();
    for ((k, _), ts) in g.events() {
        *expected.entry((k, ts.div_euclid(1_000))).or_insert(0i64) += 1;
    }
    for threads in [2, 3] {
        let p = Pipeline::new(
            PipelineOptions::default()
                .set("threads", threads)
                .set("max_bundle_size", 1_500),
        );
        // One consumer after the source: the map and window run on its readers.
        let counts = capture(
            &p.apply("Gen", g.clone())
                .map("Key", |(k, _): (i64, i64)| (k, ()))
                .apply("Second", WindowInto::fixed(1_000))
                .apply("Count", Count::per_key())
                .par_do("WithWindow", KeyWindowCount),
        );
        let result = p.run().unwrap();
        let dropped: i64 = result
            .metrics()
            .counters
            .iter()
            .filter(|(k, _)| k.name == "droppedDueToLateness")
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(dropped, 0, "{threads} threads");
        let got: std::collections::HashMap<(i64, i64), i64> = counts.items().into_iter().collect();
        assert_eq!(got, expected, "{threads} threads");
    }
}

/// `((key, window start in seconds), count)` of a per-window count.
#[derive(Clone)]
struct KeyWindowCount;

impl DoFn for KeyWindowCount {
    type In = (i64, i64);
    type Out = ((i64, i64), i64);
    fn process(
        &mut self,
        (k, n): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, ((i64, i64), i64)>,
    ) -> Result<(), UserError> {
        let Window::Interval { start, .. } = ctx.window() else {
            return Err("expected a fixed window".into());
        };
        ctx.output(((k, start.div_euclid(1_000)), n));
        Ok(())
    }
}
