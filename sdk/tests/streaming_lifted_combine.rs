//! Combiner lifting in streaming: a CombinePerKey right after an unbounded source (and
//! the stateless transforms fused with it) pre-combines each bundle on the source's
//! threads. Its panes must be exactly those of the same pipeline without lifting (a
//! Reshuffle in between prevents it): values, pane indexes, timing, timestamps, and
//! late data dropped. With several worker threads (`--threads`) the generator is read in
//! parallel, so bundles (and with them early and late panes) differ from run to run, but
//! every window's total must not.

use beamline::io::generator::Generator;
use beamline::testing::capture;
use beamline::{
    Count, DoFn, PCollection, ParDo, Pipeline, PipelineOptions, ProcessContext, Reshuffle, Sum,
    TimestampCombiner, Trigger, UserError, Window, WindowInto,
};
use std::collections::BTreeMap;

/// `key,window_start,pane_index,timing,timestamp,value` per pane.
#[derive(Clone)]
struct Describe;

impl DoFn for Describe {
    type In = (i64, i64);
    type Out = String;
    fn process(
        &mut self,
        (k, n): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let start = match ctx.window() {
            Window::Interval { start, .. } => start,
            Window::Global => i64::MIN,
        };
        let pane = ctx.pane();
        ctx.output(format!(
            "{k},{start},{},{:?},{},{n}",
            pane.index,
            pane.timing,
            ctx.timestamp()
        ));
        Ok(())
    }
}

/// Panes of a per-key count (accumulating) or sum (discarding: its accumulator cannot be
/// copied for accumulating panes, which rules lifting out) over a generator with late
/// events; `lifted: false` puts a Reshuffle before the windowing, which stops the combine
/// from being lifted. Late events are up to `lateness_ms` behind the watermark (the
/// allowed lateness is 20s).
fn panes(
    lifted: bool,
    sum: bool,
    combiner: TimestampCombiner,
    threads: usize,
    lateness_ms: i64,
) -> (Vec<String>, i64) {
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("max_bundle_size", 1_000)
            .set("threads", threads),
    );
    let events = p
        .apply(
            "Gen",
            Generator::new(40)
                .with_count(40_000)
                .with_seed(11)
                .with_events_per_second(500)
                .with_out_of_orderness(3_000)
                .with_late_events(0.02, lateness_ms),
        )
        .map("Key", |(k, seq): (i64, i64)| (k, seq % 7));
    let events: PCollection<(i64, i64)> = if lifted {
        events
    } else {
        events.apply("Shuffle", Reshuffle::new())
    };
    let window = WindowInto::fixed(10_000)
        .triggering(Trigger::after_watermark(
            Some(Trigger::AfterCount(60)),
            Some(Trigger::AfterCount(1)),
        ))
        .with_allowed_lateness(20_000)
        .with_timestamp_combiner(combiner);
    let window = if sum {
        window.discarding()
    } else {
        window.accumulating()
    };
    let windowed = events.apply("Window", window);
    let combined = if sum {
        windowed.apply("Combine", Sum::per_key())
    } else {
        windowed
            .map("Ones", |(k, _): (i64, i64)| (k, ()))
            .apply("Combine", Count::per_key())
    };
    let got = capture(&combined.apply("Describe", ParDo::of(Describe)));
    let result = p.run().unwrap();
    let dropped = result
        .metrics()
        .counter("beamline", "droppedDueToLateness")
        .unwrap_or(0);
    (got.sorted(), dropped)
}

const CONFIGS: [(bool, TimestampCombiner); 3] = [
    (true, TimestampCombiner::EndOfWindow),
    (false, TimestampCombiner::EndOfWindow),
    (true, TimestampCombiner::Latest),
];

#[test]
fn lifted_panes_equal_unlifted_panes() {
    for (sum, combiner) in CONFIGS {
        let (plain, plain_dropped) = panes(false, sum, combiner, 1, 30_000);
        let (lifted, lifted_dropped) = panes(true, sum, combiner, 1, 30_000);
        assert!(lifted.len() > 100, "{} panes", lifted.len());
        assert!(
            lifted.iter().any(|l| l.contains("Late")) && lifted.iter().any(|l| l.contains("Early")),
            "early and late panes are part of the comparison"
        );
        assert_eq!(lifted, plain, "sum={sum} {combiner:?}");
        assert!(lifted_dropped > 0, "some events are too late");
        assert_eq!(lifted_dropped, plain_dropped);
    }
}

/// Each `(key, window start)`'s total: the sum of its (discarding) panes, or its last
/// (accumulating) pane.
fn totals(panes: &[String], discarding: bool) -> BTreeMap<(i64, i64), i64> {
    let mut last: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for line in panes {
        let f: Vec<&str> = line.split(',').collect();
        let (key, start) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let (index, value): (i64, i64) = (f[2].parse().unwrap(), f[5].parse().unwrap());
        let e = last.entry((key, start)).or_insert((-1, 0));
        if discarding {
            e.1 += value;
        } else if index > e.0 {
            *e = (index, value);
        }
    }
    last.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

#[test]
fn reading_in_parallel_keeps_every_windows_total() {
    // Late events within the allowed lateness: none is dropped however the readers of
    // the source interleave.
    for (sum, combiner) in CONFIGS {
        let (one, one_dropped) = panes(true, sum, combiner, 1, 15_000);
        let expected = totals(&one, sum);
        assert_eq!(one_dropped, 0);
        assert!(expected.len() > 100, "{} windows", expected.len());
        for lifted in [true, false] {
            let (three, dropped) = panes(lifted, sum, combiner, 3, 15_000);
            assert_eq!(dropped, 0, "lifted={lifted} sum={sum} {combiner:?}");
            assert_eq!(
                totals(&three, sum),
                expected,
                "lifted={lifted} sum={sum} {combiner:?}"
            );
        }
    }
}
