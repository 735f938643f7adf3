//! Windowing: fixed, sliding, sessions, global; timestamps and timestamp combiners.

use super::kv;
use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    Count, Create, DoFn, PCollection, Pipeline, ProcessContext, Sum, TimestampCombiner, UserError,
    WindowInto, WithTimestamps,
};

/// `(key, timestamp ms)` events, timestamped.
fn events(p: &Pipeline, v: Vec<(&str, i64)>) -> PCollection<(String, i64)> {
    p.apply("Events", Create::of(v.into_iter().map(|(k, t)| kv(k, t))))
        .apply("Stamp", WithTimestamps::of(|(_, t): &(String, i64)| *t))
}

/// `key@window_start:count:timestamp`.
#[derive(Clone)]
struct Describe;

impl DoFn for Describe {
    type In = (String, i64);
    type Out = String;
    fn process(
        &mut self,
        (k, n): (String, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let start = match ctx.window() {
            beamline::Window::Interval { start, .. } => start.to_string(),
            beamline::Window::Global => "global".into(),
        };
        ctx.output(format!("{k}@{start}:{n}:{}", ctx.timestamp()));
        Ok(())
    }
}

fn described(c: &PCollection<(String, i64)>) -> PCollection<String> {
    c.par_do("Describe", Describe)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "fixed_windows_count",
            categories: &[C::Windowing],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 0), ("u", 59_999), ("u", 60_000), ("v", -1)])
                    .apply("Min", WindowInto::fixed(60_000))
                    .apply("Count", Count::per_key());
                assert_that(&described(&c)).contains_in_any_order(s(&[
                    "u@0:2:59999",
                    "u@60000:1:119999",
                    "v@-60000:1:-1",
                ]));
            },
        },
        Case {
            name: "fixed_windows_with_offset_and_window_assertion",
            categories: &[C::Windowing],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 0), ("u", 5_000), ("u", 12_000)])
                    .apply(
                        "Win",
                        WindowInto::new(beamline::WindowFn::Fixed {
                            size: 10_000,
                            offset: 5_000,
                        }),
                    )
                    .apply("Count", Count::per_key());
                assert_that(&c)
                    .in_window(-5_000, 5_000)
                    .is_singleton(kv("u", 1));
                assert_that(&c)
                    .in_window(5_000, 15_000)
                    .is_singleton(kv("u", 2));
            },
        },
        Case {
            name: "sliding_windows_count",
            categories: &[C::Windowing],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 1_000), ("u", 6_000)])
                    .apply("Slide", WindowInto::sliding(10_000, 5_000))
                    .apply("Count", Count::per_key());
                assert_that(&described(&c)).contains_in_any_order(s(&[
                    "u@-5000:1:4999",
                    "u@0:2:9999",
                    "u@5000:1:14999",
                ]));
            },
        },
        Case {
            name: "session_windows_merge",
            categories: &[C::MergingWindows],
            expect: Expect::Success,
            build: |p| {
                let c = events(
                    p,
                    vec![
                        ("u", 0),
                        ("u", 4_000),
                        ("u", 8_000),
                        ("u", 30_000),
                        ("v", 1_000),
                    ],
                )
                .apply("Sessions", WindowInto::sessions(5_000))
                .apply("Count", Count::per_key());
                assert_that(&described(&c)).contains_in_any_order(s(&[
                    "u@0:3:12999",
                    "u@30000:1:34999",
                    "v@1000:1:5999",
                ]));
            },
        },
        Case {
            name: "session_windows_group_values",
            categories: &[C::MergingWindows, C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let g = events(p, vec![("u", 0), ("u", 9_000), ("u", 3_000)])
                    .apply("Sessions", WindowInto::sessions(5_000))
                    .group_by_key("Group")
                    .map("Sorted", |(k, mut v): (String, Vec<i64>)| {
                        v.sort();
                        (k, v)
                    });
                // [0, 5s) and [3s, 8s) merge; [9s, 14s) stays apart.
                assert_that(&g).contains_in_any_order(vec![
                    ("u".to_string(), vec![0, 3_000]),
                    ("u".to_string(), vec![9_000]),
                ]);
            },
        },
        Case {
            name: "global_window_groups_everything",
            categories: &[C::Windowing, C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", -1_000_000), ("u", 1_000_000)])
                    .apply("Global", WindowInto::global())
                    .apply("Count", Count::per_key());
                assert_that(&c).is_singleton(kv("u", 2));
            },
        },
        Case {
            name: "rewindowing_fixed_then_larger",
            categories: &[C::Windowing],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 1_000), ("u", 11_000), ("u", 21_000)])
                    .apply("Ten", WindowInto::fixed(10_000))
                    .apply("Count10", Count::per_key())
                    .apply("Sixty", WindowInto::fixed(60_000))
                    .apply("Sum60", Sum::per_key());
                assert_that(&c).is_singleton(kv("u", 3));
            },
        },
        Case {
            name: "timestamp_combiner_earliest",
            categories: &[C::TimestampCombiners],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 7_000), ("u", 3_000)])
                    .apply(
                        "Win",
                        WindowInto::fixed(10_000)
                            .with_timestamp_combiner(TimestampCombiner::Earliest),
                    )
                    .apply("Count", Count::per_key());
                assert_that(&described(&c)).is_singleton("u@0:2:3000".to_string());
            },
        },
        Case {
            name: "timestamp_combiner_latest",
            categories: &[C::TimestampCombiners],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 7_000), ("u", 3_000)])
                    .apply(
                        "Win",
                        WindowInto::fixed(10_000)
                            .with_timestamp_combiner(TimestampCombiner::Latest),
                    )
                    .apply("Count", Count::per_key());
                assert_that(&described(&c)).is_singleton("u@0:2:7000".to_string());
            },
        },
        Case {
            name: "timestamp_combiner_end_of_window_default",
            categories: &[C::TimestampCombiners],
            expect: Expect::Success,
            build: |p| {
                let c = events(p, vec![("u", 7_000)])
                    .apply("Win", WindowInto::fixed(10_000))
                    .apply("Count", Count::per_key());
                assert_that(&described(&c)).is_singleton("u@0:1:9999".to_string());
            },
        },
    ]
}
