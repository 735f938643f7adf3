//! Combiner lifting in streaming: a CombinePerKey right after an unbounded source (and
//! the stateless transforms fused with it) pre-combines each bundle on the source's
//! threads. Its panes must be exactly those of the same pipeline without lifting (a
//! Reshuffle in between prevents it): values, pane indexes, timing, timestamps, and
//! late data dropped; with one worker thread or several (`--threads`).

use beamline::io::generator::Generator;
use beamline::testing::capture;
use beamline::{
    Count, DoFn, PCollection, ParDo, Pipeline, PipelineOptions, ProcessContext, Reshuffle, Sum,
    TimestampCombiner, Trigger, UserError, Window, WindowInto,
};

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
/// from being lifted.
fn panes(
    lifted: bool,
    sum: bool,
    combiner: TimestampCombiner,
    threads: usize,
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
                .with_late_events(0.02, 30_000),
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

#[test]
fn lifted_panes_equal_unlifted_panes() {
    for (sum, combiner) in [
        (true, TimestampCombiner::EndOfWindow),
        (false, TimestampCombiner::EndOfWindow),
        (true, TimestampCombiner::Latest),
    ] {
        let (plain, plain_dropped) = panes(false, sum, combiner, 1);
        let (lifted, lifted_dropped) = panes(true, sum, combiner, 3);
        assert_eq!(
            panes(true, sum, combiner, 1),
            (lifted.clone(), lifted_dropped)
        );
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
