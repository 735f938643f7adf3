//! Stateful DoFns in a bounded pipeline: the batch executor (key partitions in parallel,
//! timers and expiry once the input is complete) gives what the streaming executor gives,
//! at any thread count and when everything spills; failures name the transform.

use beamline::testing::capture;
use beamline::{
    Create, DoFn, ParDo, Pipeline, PipelineOptions, ProcessContext, StateSpec, TimerContext,
    TimerSpec, TupleTag, UserError, Window, WindowInto,
};

type Kv = (i64, i64);

/// Gives each element the timestamp of its value (seconds).
#[derive(Clone)]
struct Stamp;

impl DoFn for Stamp {
    type In = Kv;
    type Out = Kv;
    fn process(&mut self, kv: Kv, ctx: &mut ProcessContext<'_, '_, Kv>) -> Result<(), UserError> {
        ctx.output_with_timestamp(kv, kv.1 * 1_000);
        Ok(())
    }
}

/// Per key and window: distinct values (set state), their sum (value state), a timer at
/// the end of the window reporting both, an expiry callback, duplicates to a side output.
#[derive(Clone)]
struct Distinct {
    dups: TupleTag<String>,
}

fn window_start(w: Window) -> i64 {
    match w {
        Window::Interval { start, .. } => start,
        Window::Global => i64::MIN,
    }
}

impl DoFn for Distinct {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        if k < 0 {
            return Err(format!("negative key {k}").into());
        }
        ctx.inc_counter("test", "elements", 1);
        let end = match ctx.window() {
            Window::Interval { end, .. } => end - 1,
            Window::Global => return Err("expected fixed windows".into()),
        };
        let mut st = ctx.state()?;
        if st.set_add("seen", v)? {
            let sum = st.read::<i64>("sum")?.unwrap_or(0) + v;
            st.write("sum", sum)?;
            st.set_timer("report", end)?;
        } else {
            ctx.output_to(&self.dups, format!("{k} dup {v}"))?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timer: &str,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let start = window_start(ctx.window());
        let mut st = ctx.state()?;
        let key: i64 = st.key()?;
        let distinct: Vec<i64> = st.set_read("seen")?;
        let sum: i64 = st.read("sum")?.unwrap_or(0);
        ctx.output(format!(
            "{key}@{start}: {} distinct, sum {sum}",
            distinct.len()
        ));
        Ok(())
    }

    fn on_window_expiration(
        &mut self,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let start = window_start(ctx.window());
        let key: i64 = ctx.state()?.key()?;
        ctx.output(format!("{key}@{start} expired"));
        Ok(())
    }
}

#[derive(Debug)]
struct Outcome {
    main: Vec<String>,
    dups: Vec<String>,
    elements: Option<i64>,
}

fn run(input: Vec<Kv>, options: &[(&str, &str)]) -> Result<Outcome, String> {
    let mut opts = PipelineOptions::default();
    for (k, v) in options {
        opts = opts.set(k, *v);
    }
    let p = Pipeline::new(opts);
    let dups = TupleTag::<String>::new("dups");
    let outs = p
        .apply("Input", Create::of(input))
        .par_do("Stamp", Stamp)
        .apply("Minutes", WindowInto::fixed(60_000))
        .apply(
            "Distinct",
            ParDo::of(Distinct { dups: dups.clone() })
                .with_state(StateSpec::set::<i64>("seen"))
                .with_state(StateSpec::value::<i64>("sum"))
                .with_timer(TimerSpec::event_time("report"))
                .with_window_expiration()
                .with_outputs(vec![dups.erased()]),
        );
    let main = capture(&outs.main());
    let dup = capture(&outs.get(&dups).expect("declared"));
    let result = p.run().map_err(|e| e.to_string())?;
    Ok(Outcome {
        main: main.sorted(),
        dups: dup.sorted(),
        elements: result.metrics().counter("test", "elements"),
    })
}

/// 3000 keys, values repeating within each key, spread over a few minutes.
fn input() -> Vec<Kv> {
    (0..30_000i64).map(|i| (i % 3_000, (i * 7) % 200)).collect()
}

#[test]
fn batch_matches_streaming_at_any_thread_count_and_when_spilling() {
    let streaming = run(input(), &[("streaming", "true")]).unwrap();
    // Every (key, window) reports once and expires once.
    let reports = streaming
        .main
        .iter()
        .filter(|l| l.contains("distinct"))
        .count();
    let expiries = streaming
        .main
        .iter()
        .filter(|l| l.ends_with("expired"))
        .count();
    assert_eq!(reports, expiries);
    assert!(reports >= 3_000, "{reports}");
    assert!(!streaming.dups.is_empty());
    assert_eq!(streaming.elements, Some(30_000));
    for options in [
        &[][..],
        &[("threads", "1")][..],
        &[("threads", "2")][..],
        &[("memory_budget", "1B")][..],
    ] {
        let batch = run(input(), options).unwrap();
        assert_eq!(batch.main, streaming.main, "{options:?}");
        assert_eq!(batch.dups, streaming.dups, "{options:?}");
        assert_eq!(batch.elements, Some(30_000), "{options:?}");
    }
}

#[test]
fn known_values_per_key_and_window() {
    // Key 1: values 1, 1, 2 in the first minute, 61 in the second; key 2: one value.
    let out = run(vec![(1, 1), (1, 1), (1, 2), (1, 61), (2, 5)], &[]).unwrap();
    assert_eq!(
        out.main,
        vec![
            "1@0 expired",
            "1@0: 2 distinct, sum 3",
            "1@60000 expired",
            "1@60000: 1 distinct, sum 61",
            "2@0 expired",
            "2@0: 1 distinct, sum 5",
        ]
    );
    assert_eq!(out.dups, vec!["1 dup 1"]);
}

#[test]
fn a_failing_element_fails_the_job_naming_the_transform() {
    let mut data = input();
    data.push((-4, 1));
    for options in [&[][..], &[("memory_budget", "1B")][..]] {
        let err = run(data.clone(), options).unwrap_err();
        assert!(
            err.contains("'Distinct'") && err.contains("negative key -4"),
            "{err}"
        );
    }
}
