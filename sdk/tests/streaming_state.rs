//! Stateful DoFns: every state kind, looping and cleared timers, on-window-expiration,
//! state dropped at window expiry, and stateful DoFns in a bounded (batch) pipeline.

use beamline::testing::capture;
use beamline::{
    CombineFn, Create, DoFn, PCollection, ParDo, Pipeline, PipelineOptions, ProcessContext,
    StateSpec, TestStream, TimerContext, TimerSpec, UserError, WindowInto,
};

type Kv = (String, i64);

fn kv(k: &str, v: i64, ts: i64) -> (Kv, i64) {
    ((k.to_string(), v), ts)
}

struct MaxFn;

impl CombineFn for MaxFn {
    type In = i64;
    type Acc = i64;
    type Out = i64;
    fn create_accumulator(&self) -> i64 {
        i64::MIN
    }
    fn add_input(&self, acc: &mut i64, x: i64) {
        *acc = (*acc).max(x);
    }
    fn merge_accumulators(&self, accs: Vec<i64>) -> i64 {
        accs.into_iter().max().unwrap_or(i64::MIN)
    }
    fn extract_output(&self, acc: i64) -> i64 {
        acc
    }
}

/// Uses map, set, ordered-list and combining state; reports on every element.
#[derive(Clone)]
struct AllKinds;

impl DoFn for AllKinds {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let ts = ctx.timestamp();
        let mut st = ctx.state()?;
        let parity = if v % 2 == 0 { "even" } else { "odd" };
        let seen: i64 = st
            .map_get::<String, i64>("by_parity", &parity.to_string())?
            .unwrap_or(0);
        st.map_put("by_parity", parity.to_string(), seen + 1)?;
        let new = st.set_add("distinct", v)?;
        st.ordered_add("timeline", ts, v)?;
        st.add("max", v)?;
        let max: i64 = st.read_combined("max")?;
        let early: Vec<(i64, i64)> = st.ordered_range("timeline", 0, 3_000)?;
        let distinct: Vec<i64> = st.set_read("distinct")?;
        let parities: Vec<(String, i64)> = st.map_entries("by_parity")?;
        ctx.output(format!(
            "{k}:{v} new={new} max={max} distinct={distinct:?} early={early:?} parities={parities:?}"
        ));
        Ok(())
    }
}

#[test]
fn every_state_kind() {
    let p = Pipeline::new(PipelineOptions::default());
    let input: PCollection<Kv> = p.apply(
        "Events",
        TestStream::new()
            .add_elements(vec![kv("a", 4, 1_000)])
            .add_elements(vec![kv("a", 1, 5_000)])
            .add_elements(vec![kv("a", 4, 2_000)])
            .add_elements(vec![kv("b", 9, 1_500)]),
    );
    let out = input.apply(
        "Kinds",
        ParDo::of(AllKinds)
            .with_state(StateSpec::map::<String, i64>("by_parity"))
            .with_state(StateSpec::set::<i64>("distinct"))
            .with_state(StateSpec::ordered_list::<i64>("timeline"))
            .with_state(StateSpec::combining("max", MaxFn)),
    );
    let got = capture(&out);
    p.run().unwrap();
    assert_eq!(
        got.sorted(),
        vec![
            "a:1 new=true max=4 distinct=[1, 4] early=[(1000, 4)] parities=[(\"even\", 1), (\"odd\", 1)]",
            "a:4 new=false max=4 distinct=[1, 4] early=[(1000, 4), (2000, 4)] parities=[(\"even\", 2), (\"odd\", 1)]",
            "a:4 new=true max=4 distinct=[4] early=[(1000, 4)] parities=[(\"even\", 1)]",
            "b:9 new=true max=9 distinct=[9] early=[(1500, 9)] parities=[(\"odd\", 1)]",
        ]
    );
}

/// A looping event-time timer that ticks every 10s until the watermark passes 35s,
/// plus a timer that is set and then cleared, and an expiration callback.
#[derive(Clone)]
struct Ticker;

impl DoFn for Ticker {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (_, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        if st.read::<i64>("started")?.is_none() {
            st.write("started", v)?;
            st.set_timer("tick", 10_000)?;
            st.set_timer("never", 5_000)?;
            st.clear_timer("never");
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timer: &str,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let ts = ctx.timestamp();
        let mut st = ctx.state()?;
        let key: String = st.key()?;
        match timer {
            "tick" => {
                if ts < 30_000 {
                    st.set_timer("tick", ts + 10_000)?;
                }
                ctx.output(format!("{key} tick at {ts}"));
            }
            other => return Err(format!("timer {other} should not fire").into()),
        }
        Ok(())
    }

    fn on_window_expiration(
        &mut self,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        let key: String = st.key()?;
        let started: i64 = st.read("started")?.unwrap_or(-1);
        ctx.output(format!("{key} expired (started with {started})"));
        Ok(())
    }
}

#[test]
fn looping_timer_cleared_timer_and_window_expiration() {
    let p = Pipeline::new(PipelineOptions::default());
    let input: PCollection<Kv> = p.apply(
        "Events",
        TestStream::new()
            .add_elements(vec![kv("a", 7, 1_000)])
            .advance_watermark_to(50_000),
    );
    let out = input.apply(
        "Tick",
        ParDo::of(Ticker)
            .with_state(StateSpec::value::<i64>("started"))
            .with_timer(TimerSpec::event_time("tick"))
            .with_timer(TimerSpec::event_time("never"))
            .with_window_expiration(),
    );
    let got = capture(&out);
    p.run().unwrap();
    assert_eq!(
        got.sorted(),
        vec![
            "a expired (started with 7)",
            "a tick at 10000",
            "a tick at 20000",
            "a tick at 30000",
        ]
    );
}

/// Counts elements per key and window; state is per window and dropped when it expires.
#[derive(Clone)]
struct CountSoFar;

impl DoFn for CountSoFar {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, _): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let w = ctx.window();
        let mut st = ctx.state()?;
        let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
        st.write("n", n)?;
        ctx.output(format!("{k} {w:?} #{n}"));
        Ok(())
    }
}

#[test]
fn state_is_per_window_and_late_elements_are_dropped() {
    let p = Pipeline::new(PipelineOptions::default());
    let input: PCollection<Kv> = p.apply(
        "Events",
        TestStream::new()
            .add_elements(vec![
                kv("a", 1, 1_000),
                kv("a", 2, 2_000),
                kv("a", 3, 12_000),
            ])
            .advance_watermark_to(25_000)
            .add_elements(vec![kv("a", 4, 3_000)]),
    );
    let out = input.apply("Window", WindowInto::fixed(10_000)).apply(
        "Count",
        ParDo::of(CountSoFar).with_state(StateSpec::value::<i64>("n")),
    );
    let got = capture(&out);
    let result = p.run().unwrap();
    let mut lines = got.sorted();
    lines.sort();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with("#2")));
    assert_eq!(
        result.metrics().counter("beamline", "droppedDueToLateness"),
        Some(1)
    );
}

#[test]
fn stateful_dofn_in_a_bounded_pipeline() {
    let p = Pipeline::new(PipelineOptions::default());
    let out = p
        .apply(
            "Kvs",
            Create::of(vec![
                ("x".to_string(), 1i64),
                ("x".to_string(), 2),
                ("y".to_string(), 3),
            ]),
        )
        .apply(
            "Count",
            ParDo::of(CountSoFar).with_state(StateSpec::value::<i64>("n")),
        );
    let got = capture(&out);
    p.run().unwrap();
    let lines = got.sorted();
    assert_eq!(lines.len(), 3);
    assert!(lines.contains(&"x Global #2".to_string()), "{lines:?}");
    assert!(lines.contains(&"y Global #1".to_string()), "{lines:?}");
}

#[test]
fn undeclared_state_is_an_error_naming_the_transform() {
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Kvs", Create::of(vec![("x".to_string(), 1i64)]))
        .apply(
            "Count",
            ParDo::of(CountSoFar).with_state(StateSpec::value::<i64>("other")),
        );
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("'Count'") && err.contains("state 'n' is not declared"),
        "{err}"
    );
}

/// Counts per key and adds the side input's values.
#[derive(Clone)]
struct CountPlusSide;

impl DoFn for CountPlusSide {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, _): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let side: Vec<i64> = ctx.side_input_at(0)?;
        let mut st = ctx.state()?;
        let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
        st.write("n", n)?;
        ctx.output(format!("{k} #{n} +{}", side.iter().sum::<i64>()));
        Ok(())
    }
}

#[test]
fn stateful_dofn_with_a_side_input_processes_every_element() {
    // Elements wait for the side input, then are processed, not dropped as late.
    let p = Pipeline::new(PipelineOptions::default());
    let side = p.apply("Side", Create::of(vec![10i64, 5])).as_iter();
    let out = p
        .apply(
            "Kvs",
            Create::of(vec![
                ("x".to_string(), 1i64),
                ("x".to_string(), 2),
                ("y".to_string(), 3),
            ]),
        )
        .apply(
            "Count",
            ParDo::of(CountPlusSide)
                .with_state(StateSpec::value::<i64>("n"))
                .with_side_input(&side),
        );
    let got = capture(&out);
    p.run().unwrap();
    assert_eq!(got.sorted(), vec!["x #1 +15", "x #2 +15", "y #1 +15"]);
}
