//! Event-time scenarios whose expected panes come from Apache Beam Python 2.77 running the
//! same TestStream (data/streaming/make_fixtures.py wrote beam_2_77_scenarios.json):
//! fixed, sliding and session windows; early / on-time / late panes in accumulating and
//! discarding modes; late data dropped beyond allowed lateness; AfterCount;
//! AfterProcessingTime; a stateful DoFn with event-time and processing-time timers.

use beamline::testing::capture;
use beamline::{
    DoFn, PCollection, ParDo, Pipeline, PipelineOptions, ProcessContext, StateSpec, Sum,
    TestStream, TimerContext, TimerSpec, Top, Trigger, UserError, WindowInto,
};
use serde_json::Value as J;

fn fixture() -> J {
    serde_json::from_str(include_str!("data/streaming/beam_2_77_scenarios.json")).unwrap()
}

fn test_stream(events: &J) -> TestStream<(String, i64)> {
    let mut ts = TestStream::new();
    for e in events.as_array().unwrap() {
        let kind = e[0].as_str().unwrap();
        ts = match kind {
            "add" => ts.add_elements(
                e[1].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| {
                        (
                            (x[0].as_str().unwrap().to_string(), x[1].as_i64().unwrap()),
                            x[2].as_i64().unwrap(),
                        )
                    })
                    .collect(),
            ),
            "wm" => ts.advance_watermark_to(e[1].as_i64().unwrap()),
            "pt" => ts.advance_processing_time(e[1].as_i64().unwrap()),
            other => panic!("unknown event {other}"),
        };
    }
    ts
}

/// Formats an output like the fixture records, for comparison.
#[derive(Clone)]
struct Describe;

fn describe(
    key: &str,
    value: String,
    ctx_window: beamline::Window,
    ts: i64,
    pane: beamline::PaneInfo,
) -> String {
    let window = match ctx_window {
        beamline::Window::Global => "global".to_string(),
        beamline::Window::Interval { start, end } => format!("[{start}, {end}]"),
    };
    let timing = match pane.timing {
        beamline::Timing::Early => "EARLY",
        beamline::Timing::OnTime => "ON_TIME",
        beamline::Timing::Late => "LATE",
        beamline::Timing::Unknown => "UNKNOWN",
    };
    format!(
        "{key} {value} {window} {ts} {timing} {} {} {} {}",
        pane.index, pane.nonspeculative_index, pane.is_first, pane.is_last
    )
}

impl DoFn for Describe {
    type In = (String, Vec<i64>);
    type Out = String;
    fn process(
        &mut self,
        (k, mut vs): (String, Vec<i64>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        vs.sort();
        let v = format!("{vs:?}");
        let s = describe(&k, v, ctx.window(), ctx.timestamp(), ctx.pane());
        ctx.output(s);
        Ok(())
    }
}

#[derive(Clone)]
struct DescribeScalar;

impl DoFn for DescribeScalar {
    type In = (String, i64);
    type Out = String;
    fn process(
        &mut self,
        (k, v): (String, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let s = describe(&k, v.to_string(), ctx.window(), ctx.timestamp(), ctx.pane());
        ctx.output(s);
        Ok(())
    }
}

fn expected(fx: &J, scenario: &str) -> Vec<String> {
    let mut v: Vec<String> = fx["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["scenario"] == scenario)
        .map(|o| {
            let window = match &o["window"] {
                J::String(s) => s.clone(),
                J::Array(a) => format!("[{}, {}]", a[0], a[1]),
                other => panic!("{other}"),
            };
            let value = match &o["value"] {
                J::Array(a) => format!(
                    "{:?}",
                    a.iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>()
                ),
                other => other.to_string(),
            };
            let p = &o["pane"];
            format!(
                "{} {} {} {} {} {} {} {} {}",
                o["key"].as_str().unwrap(),
                value,
                window,
                o["timestamp"],
                p["timing"].as_str().unwrap(),
                p["index"],
                p["nonspeculative_index"],
                p["is_first"],
                p["is_last"]
            )
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "fixture has no outputs for {scenario}");
    v
}

fn events_of<'a>(fx: &'a J, scenario: &str) -> &'a J {
    &fx["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == scenario)
        .unwrap_or_else(|| panic!("no scenario {scenario}"))["events"]
}

fn run_grouped(scenario: &str, window: WindowInto<(String, i64)>) {
    let fx = fixture();
    let p = Pipeline::new(PipelineOptions::default());
    let input: PCollection<(String, i64)> =
        p.apply("Events", test_stream(events_of(&fx, scenario)));
    let out = input
        .apply("Window", window)
        .group_by_key("Group")
        .par_do("Describe", Describe);
    let got = capture(&out);
    let result = p.run().unwrap();
    assert_eq!(got.sorted(), expected(&fx, scenario), "scenario {scenario}");
    if scenario == "fixed_default_late" {
        // a=99 at 6s arrived when the watermark was 30s: beyond 10s + 5s lateness.
        assert_eq!(
            result.metrics().counter("beamline", "droppedDueToLateness"),
            Some(1)
        );
    }
}

#[test]
fn fixed_windows_default_trigger_with_late_and_dropped_data() {
    run_grouped(
        "fixed_default_late",
        WindowInto::fixed(10_000).with_allowed_lateness(5_000),
    );
}

fn early_late() -> Trigger {
    Trigger::after_watermark(Some(Trigger::AfterCount(2)), Some(Trigger::AfterCount(1)))
}

#[test]
fn early_on_time_late_accumulating() {
    run_grouped(
        "early_ontime_late_accumulating",
        WindowInto::fixed(10_000)
            .triggering(early_late())
            .accumulating()
            .with_allowed_lateness(5_000),
    );
}

#[test]
fn early_on_time_late_discarding() {
    run_grouped(
        "early_ontime_late_discarding",
        WindowInto::fixed(10_000)
            .triggering(early_late())
            .discarding()
            .with_allowed_lateness(5_000),
    );
}

#[test]
fn after_processing_time_early_firing() {
    run_grouped(
        "processing_time",
        WindowInto::fixed(20_000).triggering(Trigger::after_watermark(
            Some(Trigger::AfterProcessingTime(10_000)),
            None,
        )),
    );
}

/// Combines fire the panes grouping fires, with the combined value: `Sum` (an inline
/// accumulator, kept per pane), `Top` (a boxed accumulator: accumulating panes keep the
/// values) — in accumulating, discarding and merging (session) windowing.
#[test]
fn combines_fire_the_panes_of_grouping() {
    let fx = fixture();
    let cases: Vec<(&str, WindowInto<(String, i64)>)> = vec![
        (
            "early_ontime_late_accumulating",
            WindowInto::fixed(10_000)
                .triggering(early_late())
                .accumulating()
                .with_allowed_lateness(5_000),
        ),
        (
            "early_ontime_late_discarding",
            WindowInto::fixed(10_000)
                .triggering(early_late())
                .with_allowed_lateness(5_000),
        ),
        ("sessions_default", WindowInto::sessions(5_000)),
        (
            "fixed_default_late",
            WindowInto::fixed(10_000).with_allowed_lateness(5_000),
        ),
    ];
    for (scenario, window) in cases {
        let p = Pipeline::new(PipelineOptions::default());
        let input: PCollection<(String, i64)> =
            p.apply("Events", test_stream(events_of(&fx, scenario)));
        let windowed = input.apply("Window", window);
        let grouped = windowed.group_by_key("Group");
        let lists = grouped.par_do("Describe", Describe);
        let sums_of_groups = grouped
            .map("SumGroup", |(k, vs): (String, Vec<i64>)| {
                (k, vs.iter().sum::<i64>())
            })
            .par_do("DescribeSumGroup", DescribeScalar);
        let sums = windowed
            .apply("Sum", Sum::per_key())
            .par_do("DescribeSum", DescribeScalar);
        let tops = windowed
            .apply("Top", Top::largest(1000).per_key())
            .par_do("DescribeTop", Describe);
        let (lists, sums_of_groups, sums, tops) = (
            capture(&lists),
            capture(&sums_of_groups),
            capture(&sums),
            capture(&tops),
        );
        p.run().unwrap();
        assert_eq!(
            lists.sorted(),
            expected(&fx, scenario),
            "scenario {scenario}"
        );
        assert_eq!(sums.sorted(), sums_of_groups.sorted(), "sums, {scenario}");
        assert_eq!(tops.sorted(), lists.sorted(), "top, {scenario}");
    }
}

#[test]
fn sliding_windows() {
    run_grouped("sliding_default", WindowInto::sliding(10_000, 5_000));
}

#[test]
fn session_windows_merge() {
    run_grouped("sessions_default", WindowInto::sessions(5_000));
}

/// Buffers values per key and window; an event-time timer at the end of the window emits
/// the sum, a processing-time timer at 5s emits minus the number of elements seen.
#[derive(Clone)]
struct BufferUntilTimer;

impl DoFn for BufferUntilTimer {
    type In = (String, i64);
    type Out = (String, i64);
    fn process(
        &mut self,
        (_, v): (String, i64),
        ctx: &mut ProcessContext<'_, '_, (String, i64)>,
    ) -> Result<(), UserError> {
        let window_end = ctx.window().max_timestamp();
        let mut st = ctx.state()?;
        st.add("buf", v)?;
        let n = st.read::<i64>("seen")?.unwrap_or(0) + 1;
        st.write("seen", n)?;
        st.set_timer("flush", window_end)?;
        if n == 1 {
            st.set_timer("early", 5_000)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: &str,
        ctx: &mut TimerContext<'_, '_, (String, i64)>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        let key: String = st.key()?;
        let out = match timer {
            "flush" => {
                let sum = st.read_bag::<i64>("buf")?.iter().sum();
                st.clear("buf")?;
                sum
            }
            "early" => -st.read::<i64>("seen")?.unwrap_or(0),
            other => return Err(format!("unexpected timer {other}").into()),
        };
        ctx.output((key, out));
        Ok(())
    }
}

#[test]
fn stateful_dofn_with_event_and_processing_time_timers() {
    let fx = fixture();
    let p = Pipeline::new(PipelineOptions::default());
    let input: PCollection<(String, i64)> =
        p.apply("Events", test_stream(events_of(&fx, "stateful_timers")));
    let out = input
        .apply("Window", WindowInto::fixed(10_000))
        .apply(
            "Buffer",
            ParDo::of(BufferUntilTimer)
                .with_state(StateSpec::bag::<i64>("buf"))
                .with_state(StateSpec::value::<i64>("seen"))
                .with_timer(TimerSpec::event_time("flush"))
                .with_timer(TimerSpec::processing_time("early")),
        )
        .par_do("Describe", DescribeScalar);
    let got = capture(&out);
    p.run().unwrap();
    assert_eq!(got.sorted(), expected(&fx, "stateful_timers"));
}
