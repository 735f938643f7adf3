//! Triggers whose expected panes are computed by hand from Beam's trigger semantics:
//! Repeatedly(AfterCount), AfterEach, AfterAll, OrFinally, Always, Never (with the final
//! pane at window expiration), streaming Combine and windowed side inputs.

use beamline::testing::capture;
use beamline::{
    Count, DoFn, PCollection, ParDo, Pipeline, PipelineOptions, ProcessContext, Sum, TestStream,
    Trigger, UserError, WindowInto,
};

type Kv = (String, i64);

fn kv(k: &str, v: i64, ts: i64) -> (Kv, i64) {
    ((k.to_string(), v), ts)
}

/// `key values timing index last`, values sorted.
#[derive(Clone)]
struct Pane;

impl DoFn for Pane {
    type In = (String, Vec<i64>);
    type Out = String;
    fn process(
        &mut self,
        (k, mut vs): (String, Vec<i64>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        vs.sort();
        let p = ctx.pane();
        ctx.output(format!(
            "{k} {vs:?} {:?} {} {}",
            p.timing, p.index, p.is_last
        ));
        Ok(())
    }
}

fn panes(events: TestStream<Kv>, window: WindowInto<Kv>) -> Vec<String> {
    let p = Pipeline::new(PipelineOptions::default());
    let input: PCollection<Kv> = p.apply("Events", events);
    let out = input
        .apply("Window", window)
        .group_by_key("Group")
        .par_do("Pane", Pane);
    let got = capture(&out);
    p.run().unwrap();
    got.sorted()
}

fn bundles() -> TestStream<Kv> {
    TestStream::new()
        .add_elements(vec![kv("k", 1, 1), kv("k", 2, 2), kv("k", 3, 3)])
        .add_elements(vec![kv("k", 4, 4)])
        .add_elements(vec![kv("k", 5, 5), kv("j", 6, 6)])
        .add_elements(vec![kv("k", 7, 7)])
}

#[test]
fn repeatedly_after_count_with_final_pane_at_expiration() {
    let got = panes(
        bundles(),
        WindowInto::global().triggering(Trigger::Repeatedly(Box::new(Trigger::AfterCount(2)))),
    );
    assert_eq!(
        got,
        vec![
            // Leftovers fire once when the (global) window expires at the end of input.
            "j [6] OnTime 0 true",
            "k [1, 2, 3] Early 0 false",
            "k [4, 5] Early 1 false",
            "k [7] OnTime 2 true",
        ]
    );
}

#[test]
fn after_each_runs_subtriggers_in_order_then_finishes() {
    let events = TestStream::new()
        .add_elements(vec![kv("k", 1, 1)])
        .add_elements(vec![kv("k", 2, 2)])
        .add_elements(vec![kv("k", 3, 3)])
        .add_elements(vec![kv("k", 4, 4)])
        .add_elements(vec![kv("k", 5, 5)])
        .add_elements(vec![kv("k", 6, 6)]);
    let got = panes(
        events,
        WindowInto::global().triggering(Trigger::AfterEach(vec![
            Trigger::AfterCount(2),
            Trigger::AfterCount(3),
        ])),
    );
    // Fires after 2 elements, then after 3 more and finishes; element 6 is dropped.
    assert_eq!(
        got,
        vec!["k [1, 2] Early 0 false", "k [3, 4, 5] Early 1 true"]
    );
}

#[test]
fn or_finally_and_after_all() {
    let one_by_one = || {
        TestStream::new()
            .add_elements(vec![kv("k", 1, 1)])
            .add_elements(vec![kv("k", 2, 2)])
            .add_elements(vec![kv("k", 3, 3)])
            .add_elements(vec![kv("k", 4, 4)])
    };
    let got = panes(
        one_by_one(),
        WindowInto::global().triggering(Trigger::OrFinally(
            Box::new(Trigger::Repeatedly(Box::new(Trigger::AfterCount(1)))),
            Box::new(Trigger::AfterCount(3)),
        )),
    );
    assert_eq!(
        got,
        vec![
            "k [1] Early 0 false",
            "k [2] Early 1 false",
            "k [3] Early 2 true"
        ]
    );
    let got = panes(
        one_by_one(),
        WindowInto::global()
            .triggering(Trigger::Repeatedly(Box::new(Trigger::AfterAll(vec![
                Trigger::AfterCount(2),
                Trigger::AfterCount(3),
            ]))))
            .accumulating(),
    );
    // Fires once both counts are reached (3 elements); element 4 waits for expiration.
    assert_eq!(
        got,
        vec!["k [1, 2, 3, 4] OnTime 1 true", "k [1, 2, 3] Early 0 false"]
    );
}

#[test]
fn always_and_never() {
    let got = panes(bundles(), WindowInto::global().triggering(Trigger::Always));
    assert_eq!(got.len(), 5, "{got:?}");
    let got = panes(
        bundles(),
        WindowInto::fixed(1_000).triggering(Trigger::Never),
    );
    assert_eq!(
        got,
        vec!["j [6] OnTime 0 true", "k [1, 2, 3, 4, 5, 7] OnTime 0 true"]
    );
}

#[test]
fn streaming_combine_per_key_and_globally() {
    let p = Pipeline::new(PipelineOptions::default());
    let events: PCollection<Kv> = p.apply(
        "Events",
        TestStream::new()
            .add_elements(vec![
                kv("a", 1, 1_000),
                kv("a", 2, 2_000),
                kv("b", 3, 12_000),
            ])
            .advance_watermark_to(10_000)
            .add_elements(vec![kv("a", 4, 3_000)]),
    );
    let windowed = events.apply(
        "Window",
        WindowInto::fixed(10_000).with_allowed_lateness(60_000),
    );
    let sums = capture(&windowed.apply("Sum", Sum::per_key()));
    let counts = capture(
        &windowed
            .apply("Values", beamline::Values)
            .apply("Count", Count::globally().without_defaults()),
    );
    p.run().unwrap();
    // a: on-time pane 3, then a late pane with the late 4 (discarding).
    assert_eq!(
        sums.sorted(),
        vec![
            ("a".to_string(), 3),
            ("a".to_string(), 4),
            ("b".to_string(), 3)
        ]
    );
    // Non-global windows: no default; one count per pane.
    assert_eq!(counts.sorted(), vec![1, 1, 2]);
}

#[derive(Clone)]
struct WithSide {
    side: beamline::SideInput<Vec<i64>>,
}

impl DoFn for WithSide {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let mut side = ctx.side_input(&self.side)?.clone();
        side.sort();
        ctx.output(format!("{k}{v} sees {side:?}"));
        Ok(())
    }
}

#[test]
fn windowed_side_inputs_wait_for_their_window() {
    let p = Pipeline::new(PipelineOptions::default());
    let main: PCollection<Kv> = p.apply(
        "Main",
        TestStream::new()
            .add_elements(vec![kv("m", 1, 1_000), kv("m", 2, 11_000)])
            .advance_watermark_to(30_000),
    );
    let side: PCollection<i64> = p.apply(
        "Side",
        TestStream::new()
            .add_elements(vec![(10, 500), (20, 5_000)])
            .advance_watermark_to(10_000)
            .add_elements(vec![(30, 15_000)])
            .advance_watermark_to(30_000),
    );
    let w = |p: &PCollection<Kv>| p.apply("WindowMain", WindowInto::fixed(10_000));
    let side_w = side.apply("WindowSide", WindowInto::fixed(10_000));
    let view = side_w.as_iter();
    let out = w(&main).apply(
        "Use",
        ParDo::of(WithSide { side: view.clone() }).with_side_input(&view),
    );
    let got = capture(&out);
    p.run().unwrap();
    // Each main element sees the side values of its own window, complete.
    assert_eq!(got.sorted(), vec!["m1 sees [10, 20]", "m2 sees [30]"]);
}
