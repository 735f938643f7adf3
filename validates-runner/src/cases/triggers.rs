//! Triggers, panes and late data. Scenarios named `beam_*` compare with panes recorded from
//! Apache Beam Python 2.77 on the same TestStream (data/beam_2_77_scenarios.json, made by
//! sdk/tests/data/streaming/make_fixtures.py); the others are computed by hand.

use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    Count, DoFn, PCollection, Pipeline, ProcessContext, TestStream, Trigger, UserError, WindowInto,
};
use serde_json::Value as J;

type Kv = (String, i64);

fn fixture() -> J {
    serde_json::from_str(include_str!("../../data/beam_2_77_scenarios.json"))
        .expect("fixture parses")
}

fn scenario_events(fx: &J, name: &str) -> TestStream<Kv> {
    let sc = fx["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .find(|s| s["name"] == name)
        .expect("scenario");
    let mut ts = TestStream::new();
    for e in sc["events"].as_array().expect("events") {
        ts = match e[0].as_str().expect("kind") {
            "add" => ts.add_elements(
                e[1].as_array()
                    .expect("items")
                    .iter()
                    .map(|x| {
                        (
                            (
                                x[0].as_str().expect("k").to_string(),
                                x[1].as_i64().expect("v"),
                            ),
                            x[2].as_i64().expect("t"),
                        )
                    })
                    .collect(),
            ),
            "wm" => ts.advance_watermark_to(e[1].as_i64().expect("wm")),
            _ => ts.advance_processing_time(e[1].as_i64().expect("pt")),
        };
    }
    ts
}

fn expected(fx: &J, name: &str) -> Vec<String> {
    fx["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter(|o| o["scenario"] == name)
        .map(|o| {
            let w = match &o["window"] {
                J::Array(a) => format!("{}-{}", a[0], a[1]),
                _ => "global".into(),
            };
            let v = match &o["value"] {
                J::Array(a) => format!(
                    "{:?}",
                    a.iter()
                        .map(|x| x.as_i64().unwrap_or(0))
                        .collect::<Vec<_>>()
                ),
                other => other.to_string(),
            };
            let pn = &o["pane"];
            format!(
                "{} {v} {w} {} {} {} {} {} {}",
                o["key"].as_str().unwrap_or(""),
                o["timestamp"],
                pn["timing"].as_str().unwrap_or(""),
                pn["index"],
                pn["nonspeculative_index"],
                pn["is_first"],
                pn["is_last"]
            )
        })
        .collect()
}

fn describe(k: &str, v: String, ctx_w: beamline::Window, ts: i64, p: beamline::PaneInfo) -> String {
    let w = match ctx_w {
        beamline::Window::Interval { start, end } => format!("{start}-{end}"),
        _ => "global".into(),
    };
    let t = match p.timing {
        beamline::Timing::Early => "EARLY",
        beamline::Timing::OnTime => "ON_TIME",
        beamline::Timing::Late => "LATE",
        _ => "UNKNOWN",
    };
    format!(
        "{k} {v} {w} {ts} {t} {} {} {} {}",
        p.index, p.nonspeculative_index, p.is_first, p.is_last
    )
}

#[derive(Clone)]
struct Describe;

impl DoFn for Describe {
    type In = (String, Vec<i64>);
    type Out = String;
    fn process(
        &mut self,
        (k, mut v): (String, Vec<i64>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        v.sort();
        let s = describe(
            &k,
            format!("{v:?}"),
            ctx.window(),
            ctx.timestamp(),
            ctx.pane(),
        );
        ctx.output(s);
        Ok(())
    }
}

fn beam_scenario(p: &Pipeline, name: &str, window: WindowInto<Kv>) {
    let fx = fixture();
    let out = p
        .apply("Events", scenario_events(&fx, name))
        .apply("Window", window)
        .group_by_key("Group")
        .par_do("Describe", Describe);
    assert_that(&out).contains_in_any_order(expected(&fx, name));
}

fn early_late() -> Trigger {
    Trigger::after_watermark(Some(Trigger::AfterCount(2)), Some(Trigger::AfterCount(1)))
}

fn kv(k: &str, v: i64, t: i64) -> (Kv, i64) {
    ((k.to_string(), v), t)
}

fn bundles() -> TestStream<Kv> {
    TestStream::new()
        .add_elements(vec![kv("k", 1, 1), kv("k", 2, 2), kv("k", 3, 3)])
        .add_elements(vec![kv("k", 4, 4)])
        .add_elements(vec![kv("k", 5, 5), kv("j", 6, 6)])
        .add_elements(vec![kv("k", 7, 7)])
}

fn hand(p: &Pipeline, events: TestStream<Kv>, w: WindowInto<Kv>, expected: &[&str]) {
    let out = p
        .apply("Events", events)
        .apply("Window", w)
        .group_by_key("Group")
        .par_do("Describe", Describe);
    assert_that(&out).contains_in_any_order(expected.iter().map(|s| s.to_string()).collect());
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "beam_fixed_default_trigger_late_and_dropped",
            categories: &[C::Triggers, C::AllowedLateness, C::TestStream],
            expect: Expect::Result(|r| {
                match r.metrics().counter("beamline", "droppedDueToLateness") {
                    Some(1) => Ok(()),
                    o => Err(format!("dropped counter {o:?}")),
                }
            }),
            build: |p| {
                beam_scenario(
                    p,
                    "fixed_default_late",
                    WindowInto::fixed(10_000).with_allowed_lateness(5_000),
                )
            },
        },
        Case {
            name: "beam_early_ontime_late_accumulating",
            categories: &[C::Triggers, C::AllowedLateness, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                beam_scenario(
                    p,
                    "early_ontime_late_accumulating",
                    WindowInto::fixed(10_000)
                        .triggering(early_late())
                        .accumulating()
                        .with_allowed_lateness(5_000),
                )
            },
        },
        Case {
            name: "beam_early_ontime_late_discarding",
            categories: &[C::Triggers, C::AllowedLateness, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                beam_scenario(
                    p,
                    "early_ontime_late_discarding",
                    WindowInto::fixed(10_000)
                        .triggering(early_late())
                        .with_allowed_lateness(5_000),
                )
            },
        },
        Case {
            name: "beam_after_processing_time",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                beam_scenario(
                    p,
                    "processing_time",
                    WindowInto::fixed(20_000).triggering(Trigger::after_watermark(
                        Some(Trigger::AfterProcessingTime(10_000)),
                        None,
                    )),
                )
            },
        },
        Case {
            name: "beam_sliding_windows",
            categories: &[C::Windowing, C::TestStream],
            expect: Expect::Success,
            build: |p| beam_scenario(p, "sliding_default", WindowInto::sliding(10_000, 5_000)),
        },
        Case {
            name: "beam_session_windows",
            categories: &[C::MergingWindows, C::TestStream],
            expect: Expect::Success,
            build: |p| beam_scenario(p, "sessions_default", WindowInto::sessions(5_000)),
        },
        Case {
            name: "repeatedly_after_count",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                hand(
                    p,
                    bundles(),
                    WindowInto::global()
                        .triggering(Trigger::Repeatedly(Box::new(Trigger::AfterCount(2)))),
                    &[
                        "j [6] global 9223371950454775 ON_TIME 0 0 true true",
                        "k [1, 2, 3] global 9223371950454775 EARLY 0 -1 true false",
                        "k [4, 5] global 9223371950454775 EARLY 1 -1 false false",
                        "k [7] global 9223371950454775 ON_TIME 2 0 false true",
                    ],
                )
            },
        },
        Case {
            name: "after_each",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new()
                    .add_elements(vec![kv("k", 1, 1)])
                    .add_elements(vec![kv("k", 2, 2)])
                    .add_elements(vec![kv("k", 3, 3), kv("k", 4, 4), kv("k", 5, 5)])
                    .add_elements(vec![kv("k", 6, 6)]);
                hand(
                    p,
                    ev,
                    WindowInto::global().triggering(Trigger::AfterEach(vec![
                        Trigger::AfterCount(2),
                        Trigger::AfterCount(3),
                    ])),
                    &[
                        "k [1, 2] global 9223371950454775 EARLY 0 -1 true false",
                        "k [3, 4, 5] global 9223371950454775 EARLY 1 -1 false true",
                    ],
                )
            },
        },
        Case {
            name: "or_finally",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new()
                    .add_elements(vec![kv("k", 1, 1)])
                    .add_elements(vec![kv("k", 2, 2)])
                    .add_elements(vec![kv("k", 3, 3)])
                    .add_elements(vec![kv("k", 4, 4)]);
                hand(
                    p,
                    ev,
                    WindowInto::global().triggering(Trigger::OrFinally(
                        Box::new(Trigger::Repeatedly(Box::new(Trigger::AfterCount(1)))),
                        Box::new(Trigger::AfterCount(3)),
                    )),
                    &[
                        "k [1] global 9223371950454775 EARLY 0 -1 true false",
                        "k [2] global 9223371950454775 EARLY 1 -1 false false",
                        "k [3] global 9223371950454775 EARLY 2 -1 false true",
                    ],
                )
            },
        },
        Case {
            name: "after_all_accumulating",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new()
                    .add_elements(vec![kv("k", 1, 1)])
                    .add_elements(vec![kv("k", 2, 2)])
                    .add_elements(vec![kv("k", 3, 3)])
                    .add_elements(vec![kv("k", 4, 4)]);
                hand(
                    p,
                    ev,
                    WindowInto::global()
                        .accumulating()
                        .triggering(Trigger::Repeatedly(Box::new(Trigger::AfterAll(vec![
                            Trigger::AfterCount(2),
                            Trigger::AfterCount(3),
                        ])))),
                    &[
                        "k [1, 2, 3] global 9223371950454775 EARLY 0 -1 true false",
                        "k [1, 2, 3, 4] global 9223371950454775 ON_TIME 1 0 false true",
                    ],
                )
            },
        },
        Case {
            name: "never_fires_only_at_expiration",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                hand(
                    p,
                    bundles(),
                    WindowInto::fixed(1_000).triggering(Trigger::Never),
                    &[
                        "j [6] 0-1000 999 ON_TIME 0 0 true true",
                        "k [1, 2, 3, 4, 5, 7] 0-1000 999 ON_TIME 0 0 true true",
                    ],
                )
            },
        },
        Case {
            name: "always_fires_every_bundle",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let out = p
                    .apply("Events", bundles())
                    .apply("Window", WindowInto::global().triggering(Trigger::Always))
                    .group_by_key("Group")
                    .map("Len", |(k, v): (String, Vec<i64>)| (k, v.len() as i64));
                // One pane per key per bundle: [1,2,3], [4], [5] and [6] for j, [7].
                assert_that(&out).contains_in_any_order(vec![
                    ("k".into(), 3),
                    ("k".into(), 1),
                    ("k".into(), 1),
                    ("j".into(), 1),
                    ("k".into(), 1),
                ]);
            },
        },
        Case {
            name: "late_data_beyond_lateness_dropped_in_count",
            categories: &[C::AllowedLateness, C::Combine, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new()
                    .add_elements(vec![kv("a", 1, 1_000)])
                    .advance_watermark_to(20_000)
                    .add_elements(vec![kv("a", 1, 2_000), kv("a", 1, 15_000)]);
                let c = p
                    .apply("Events", ev)
                    .apply(
                        "Window",
                        WindowInto::fixed(10_000).with_allowed_lateness(5_000),
                    )
                    .apply("Count", Count::per_key());
                assert_that(&c)
                    .in_window(0, 10_000)
                    .is_singleton(("a".into(), 1));
                assert_that(&c)
                    .in_late_panes(10_000, 20_000)
                    .is_singleton(("a".into(), 1));
            },
        },
        Case {
            name: "pane_scopes_early_ontime_late",
            categories: &[C::Triggers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new()
                    .add_elements(vec![kv("a", 1, 1_000), kv("a", 1, 2_000)])
                    .advance_watermark_to(10_000)
                    .add_elements(vec![kv("a", 1, 3_000)]);
                let c: PCollection<(String, i64)> = p
                    .apply("Events", ev)
                    .apply(
                        "Window",
                        WindowInto::fixed(10_000)
                            .triggering(early_late())
                            .accumulating()
                            .with_allowed_lateness(60_000),
                    )
                    .apply("Count", Count::per_key());
                assert_that(&c)
                    .in_early_panes(0, 10_000)
                    .is_singleton(("a".into(), 2));
                assert_that(&c)
                    .in_on_time_pane(0, 10_000)
                    .is_singleton(("a".into(), 2));
                assert_that(&c)
                    .in_late_panes(0, 10_000)
                    .is_singleton(("a".into(), 3));
            },
        },
    ]
}
