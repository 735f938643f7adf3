//! PAssert-style assertions: passing and failing in every scope, with a diff in the error.

use beamline::testing::assert_that;
use beamline::{
    Count, Create, PCollection, Pipeline, PipelineOptions, TestStream, Trigger, WindowInto,
};

fn p() -> Pipeline {
    Pipeline::new(PipelineOptions::default())
}

#[test]
fn passing_assertions() {
    let p = p();
    let xs = p.apply("Xs", Create::of(vec![3i64, 1, 2, 2]));
    assert_that(&xs).contains_in_any_order(vec![2, 1, 2, 3]);
    assert_that(&xs.filter("None", |_| false)).is_empty();
    assert_that(&xs.apply("Count", Count::globally())).is_singleton(4);
    p.run().unwrap();
}

#[test]
fn failing_assertion_fails_the_job_with_a_diff() {
    let p = p();
    let xs = p.apply("Xs", Create::of(vec![1i64, 2, 5]));
    assert_that(&xs).equal_to(vec![1, 2, 3]);
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("missing [3]") && err.contains("unexpected [5]"),
        "{err}"
    );
}

#[test]
fn empty_collections_are_checked_too() {
    let p = p();
    let none = p.apply("None", Create::of(Vec::<i64>::new()));
    assert_that(&none).contains_in_any_order(vec![7]);
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("missing [7]"), "{err}");
}

#[test]
fn pane_scopes() {
    let p = p();
    let events: PCollection<(String, i64)> = p.apply(
        "Events",
        TestStream::new()
            .add_elements(vec![
                (("a".to_string(), 1), 1_000),
                (("a".to_string(), 1), 2_000),
            ])
            .advance_watermark_to(10_000)
            .add_elements(vec![(("a".to_string(), 1), 3_000)]),
    );
    let counts = events
        .apply(
            "Window",
            WindowInto::fixed(10_000)
                .triggering(Trigger::after_watermark(
                    Some(Trigger::AfterCount(2)),
                    Some(Trigger::AfterCount(1)),
                ))
                .accumulating()
                .with_allowed_lateness(60_000),
        )
        .apply("Count", Count::per_key());
    let a = |n: i64| ("a".to_string(), n);
    assert_that(&counts)
        .in_early_panes(0, 10_000)
        .contains_in_any_order(vec![a(2)]);
    assert_that(&counts)
        .in_on_time_pane(0, 10_000)
        .is_singleton(a(2));
    assert_that(&counts)
        .in_late_panes(0, 10_000)
        .contains_in_any_order(vec![a(3)]);
    assert_that(&counts)
        .in_window(0, 10_000)
        .contains_in_any_order(vec![a(2), a(2), a(3)]);
    assert_that(&counts).in_window(10_000, 20_000).is_empty();
    p.run().unwrap();
}
