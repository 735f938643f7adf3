//! Regression cases of issue 20 (Beam parity): where Beamline disagreed with Apache Beam 2.77.

use super::{kv, strs};
use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    Count, Create, DoFn, Flatten, PCollection, PInput, Pipeline, ProcessContext, Sum, TestStream,
    UserError, Window, WindowInto, WithTimestamps,
};

/// `value@window:timestamp:timing:is_last` of every element.
#[derive(Clone)]
struct Describe;

impl DoFn for Describe {
    type In = i64;
    type Out = String;
    fn process(
        &mut self,
        x: i64,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let w = match ctx.window() {
            Window::Interval { start, end } => format!("[{start},{end})"),
            Window::Global => "global".into(),
        };
        let pane = ctx.pane();
        let ts = match ctx.timestamp() {
            t if t == i64::MIN / 1000 || t < -9_000_000_000_000_000 => "min".to_string(),
            t => t.to_string(),
        };
        ctx.output(format!("{x}@{w}:{ts}:{:?}:{}", pane.timing, pane.is_last));
        Ok(())
    }
}

/// `key@[start,end):timestamp:sorted values` of grouped sessions.
#[derive(Clone)]
struct DescribeGroup;

impl DoFn for DescribeGroup {
    type In = (String, Vec<i64>);
    type Out = String;
    fn process(
        &mut self,
        (k, mut vs): (String, Vec<i64>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        vs.sort();
        let w = match ctx.window() {
            Window::Interval { start, end } => format!("[{start},{end})"),
            Window::Global => "global".into(),
        };
        ctx.output(format!("{k}@{w}:{}:{vs:?}", ctx.timestamp()));
        Ok(())
    }
}

fn numbers(p: &Pipeline, name: &str, v: &[i64]) -> PCollection<i64> {
    p.apply(name, Create::of(v.to_vec())).apply(
        &format!("{name}/Stamp"),
        WithTimestamps::of(|x: &i64| *x * 1000),
    )
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            // Three sessions merge into one when an element of a later bundle bridges the
            // two open ones (it stalled), and the merged window's end is its timestamp.
            name: "issue20_sessions_bridged_in_later_bundle",
            categories: &[C::MergingWindows, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let events = p.apply(
                    "Events",
                    TestStream::new()
                        .add_elements(vec![(kv("k", 1), 1_000), (kv("k", 3), 10_000)])
                        .add_elements(vec![(kv("k", 2), 5_500)]),
                );
                let grouped = events
                    .apply("Sessions", WindowInto::sessions(5_000))
                    .group_by_key("Group")
                    .par_do("Describe", DescribeGroup);
                assert_that(&grouped)
                    .contains_in_any_order(strs(&["k@[1000,15000):14999:[1, 2, 3]"]));
            },
        },
        Case {
            // Merged sessions' sums carry the merged window's end, not the first window's.
            name: "issue20_merged_session_timestamp",
            categories: &[C::MergingWindows, C::Combine],
            expect: Expect::Success,
            build: |p| {
                let sums = p
                    .apply("Events", Create::of(vec![kv("a", 1), kv("a", 3)]))
                    .apply(
                        "Stamp",
                        WithTimestamps::of(|(_, v): &(String, i64)| *v * 1000),
                    )
                    .apply("Sessions", WindowInto::sessions(4_000))
                    .apply("Sum", Sum::per_key())
                    .map("Describe", |(k, n): (String, i64)| format!("{k}:{n}"));
                let stamped = sums.par_do("Timestamp", StampOf);
                assert_that(&stamped).contains_in_any_order(strs(&["a:4@6999"]));
            },
        },
        Case {
            // Flatten of differently windowed inputs: every element keeps its window.
            name: "issue20_flatten_different_windowing",
            categories: &[C::Flatten, C::Windowing],
            expect: Expect::Success,
            build: |p| {
                let a = numbers(p, "A", &[1, 12]).apply("WA", WindowInto::fixed(10_000));
                let b = numbers(p, "B", &[3, 7]).apply("WB", WindowInto::fixed(5_000));
                let out = vec![a, b]
                    .apply("Flatten", Flatten)
                    .par_do("Describe", Describe);
                assert_that(&out).contains_in_any_order(strs(&[
                    "1@[0,10000):1000:Unknown:true",
                    "12@[10000,20000):12000:Unknown:true",
                    "3@[0,5000):3000:Unknown:true",
                    "7@[5000,10000):7000:Unknown:true",
                ]));
            },
        },
        Case {
            // One pane rule for CombineGlobally with defaults, whichever the combiner:
            // the default step's minimum timestamp and no-firing pane (as Beam Python's).
            name: "issue20_combine_globally_pane_rule",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let xs = p.apply("Xs", Create::of(vec![3i64, 1, 2]));
                let sum = xs.apply("Sum", Sum::globally());
                let max = xs.apply("Max", beamline::Max::globally());
                let count = xs.apply("Count", Count::globally());
                let nodefault = xs.apply("NoDefault", Sum::globally().without_defaults());
                let out = vec![sum, max, count, nodefault]
                    .apply("All", Flatten)
                    .par_do("Describe", Describe);
                assert_that(&out).contains_in_any_order(strs(&[
                    "6@global:min:Unknown:true",
                    "3@global:min:Unknown:true",
                    "3@global:min:Unknown:true",
                    "6@global:9223371950454775:OnTime:true",
                ]));
            },
        },
        Case {
            // Defaults need the global window (Beam rejects them elsewhere too).
            name: "issue20_combine_globally_defaults_in_windows",
            categories: &[C::Combine, C::BadInput],
            expect: Expect::Failure("default values are not supported in CombineGlobally"),
            build: |p| {
                let _ = numbers(p, "Xs", &[1, 2])
                    .apply("Fixed", WindowInto::fixed(5_000))
                    .apply("Sum", Sum::globally());
            },
        },
    ]
}

/// `element@timestamp`.
#[derive(Clone)]
struct StampOf;

impl DoFn for StampOf {
    type In = String;
    type Out = String;
    fn process(
        &mut self,
        s: String,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        ctx.output(format!("{s}@{}", ctx.timestamp()));
        Ok(())
    }
}
