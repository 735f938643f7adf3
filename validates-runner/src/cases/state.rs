//! Stateful ParDo: every state kind, timers in both time domains, looping timers,
//! on-window-expiration, the key in the DoFn, state per window.

use crate::{Case, Category as C, Expect};
use beamline::io::generator::Generator;
use beamline::testing::assert_that;
use beamline::{
    CombineFn, Count, Create, DoFn, PCollection, ParDo, Pipeline, ProcessContext, StateSpec,
    TestStream, TimerContext, TimerSpec, UserError, WindowInto,
};

type Kv = (String, i64);

fn input(p: &Pipeline) -> PCollection<Kv> {
    p.apply(
        "Kvs",
        Create::of(vec![
            ("a".to_string(), 3i64),
            ("b".to_string(), 1),
            ("a".to_string(), 2),
            ("a".to_string(), 3),
        ]),
    )
}

/// Per-element state logic: (state, key, value, timestamp) to an optional output line.
type StateBody =
    fn(&mut beamline::State<'_, '_>, &str, i64, i64) -> Result<Option<String>, UserError>;

/// Runs its body on the state of every element and emits what it returns.
#[derive(Clone)]
struct WithState(StateBody);

impl DoFn for WithState {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let ts = ctx.timestamp();
        let mut st = ctx.state()?;
        if let Some(out) = (self.0)(&mut st, &k, v, ts)? {
            ctx.output(out);
        }
        Ok(())
    }
}

struct Sum;

impl CombineFn for Sum {
    type In = i64;
    type Acc = i64;
    type Out = i64;
    fn create_accumulator(&self) -> i64 {
        0
    }
    fn add_input(&self, a: &mut i64, x: i64) {
        *a += x
    }
    fn merge_accumulators(&self, v: Vec<i64>) -> i64 {
        v.into_iter().sum()
    }
    fn extract_output(&self, a: i64) -> i64 {
        a
    }
}

/// Emits a line when a timer fires: `key timer at timestamp (state)`.
#[derive(Clone)]
struct Timers {
    looping: bool,
}

impl DoFn for Timers {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (_, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let end = ctx.window().max_timestamp();
        let mut st = ctx.state()?;
        st.add("sum", v)?;
        st.set_timer("flush", if self.looping { 10_000 } else { end })?;
        Ok(())
    }
    fn on_timer(
        &mut self,
        timer: &str,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let ts = ctx.timestamp();
        let looping = self.looping;
        let mut st = ctx.state()?;
        let key: String = st.key()?;
        let sum: i64 = st.read_bag::<i64>("sum")?.iter().sum();
        if looping && ts < 30_000 {
            st.set_timer("flush", ts + 10_000)?;
        }
        ctx.output(format!("{key} {timer} at {ts} sum {sum}"));
        Ok(())
    }
    fn on_window_expiration(
        &mut self,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let st = ctx.state()?;
        let key: String = st.key()?;
        ctx.output(format!("{key} expired"));
        Ok(())
    }
}

#[derive(Clone)]
struct ProcTimer;

impl DoFn for ProcTimer {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        _: Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
        st.write("n", n)?;
        if n == 1 {
            let at = st.processing_time() + 1_000;
            st.set_timer("t", at)?;
        }
        Ok(())
    }
    fn on_timer(
        &mut self,
        _: &str,
        ctx: &mut TimerContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let mut st = ctx.state()?;
        let n: i64 = st.read("n")?.unwrap_or(0);
        let key: String = st.key()?;
        ctx.output(format!("{key} saw {n}"));
        Ok(())
    }
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn tick_events() -> TestStream<Kv> {
    TestStream::new()
        .add_elements(vec![
            (("a".to_string(), 1), 500),
            (("a".to_string(), 2), 700),
        ])
        .advance_watermark_to(50_000)
}

/// Keeps a running sum per key and adds the side input's total to it.
#[derive(Clone)]
struct SumPlusSide;

impl DoFn for SumPlusSide {
    type In = Kv;
    type Out = String;
    fn process(
        &mut self,
        (k, v): Kv,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let side: i64 = ctx.side_input_at::<i64>(0)?.iter().sum();
        let mut st = ctx.state()?;
        let sum = st.read::<i64>("sum")?.unwrap_or(0) + v;
        st.write("sum", sum)?;
        ctx.output(format!("{k}:{sum}+{side}"));
        Ok(())
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "state_with_side_input",
            categories: &[C::StatefulParDo, C::SideInputs],
            expect: Expect::Success,
            build: |p| {
                let side = p.apply("Side", Create::of(vec![100i64, 20])).as_iter();
                let out = input(p).apply(
                    "S",
                    ParDo::of(SumPlusSide)
                        .with_state(StateSpec::value::<i64>("sum"))
                        .with_side_input(&side),
                );
                // Sums per key depend on arrival order; their number and the side do not.
                let keys = out.map("SideTotal", |l: String| {
                    l.split_once('+')
                        .map(|(_, s)| s.to_string())
                        .unwrap_or_default()
                });
                assert_that(&keys).contains_in_any_order(lines(&["120", "120", "120", "120"]));
                let b = out.filter("OnlyB", |l: &String| l.starts_with("b:"));
                assert_that(&b).contains_in_any_order(lines(&["b:1+120"]));
            },
        },
        Case {
            name: "value_state_running_count",
            categories: &[C::StatefulParDo, C::KeyInParDo],
            expect: Expect::Success,
            build: |p| {
                let out = input(p).apply(
                    "S",
                    ParDo::of(WithState(|st, k, _, _| {
                        let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
                        st.write("n", n)?;
                        let key: String = st.key()?;
                        Ok(Some(format!("{key}={k}#{n}")))
                    }))
                    .with_state(StateSpec::value::<i64>("n")),
                );
                assert_that(&out)
                    .contains_in_any_order(lines(&["a=a#1", "a=a#2", "a=a#3", "b=b#1"]));
            },
        },
        Case {
            name: "bag_state",
            categories: &[C::StatefulParDo],
            expect: Expect::Success,
            build: |p| {
                let out = input(p).apply(
                    "S",
                    ParDo::of(WithState(|st, k, v, _| {
                        st.add("bag", v)?;
                        let b: Vec<i64> = st.read_bag("bag")?;
                        Ok((b.len() == 3 || k == "b")
                            .then(|| format!("{k}:{}", b.iter().sum::<i64>())))
                    }))
                    .with_state(StateSpec::bag::<i64>("bag")),
                );
                assert_that(&out).contains_in_any_order(lines(&["a:8", "b:1"]));
            },
        },
        Case {
            name: "combining_state",
            categories: &[C::StatefulParDo],
            expect: Expect::Success,
            build: |p| {
                // A running sum: its final value per key does not depend on the order the
                // elements arrive in (which Beam leaves open: Create reshuffles).
                let out = input(p).apply(
                    "S",
                    ParDo::of(WithState(|st, k, v, _| {
                        st.add("sum", v)?;
                        Ok(Some(format!("{k}={}", st.read_combined::<i64>("sum")?)))
                    }))
                    .with_state(StateSpec::combining("sum", Sum)),
                );
                let last = out.filter("Final", |s: &String| s == "a=8" || s == "b=1");
                assert_that(&last.apply("Count", Count::globally())).is_singleton(2);
            },
        },
        Case {
            name: "map_state",
            categories: &[C::StatefulParDo, C::MapState],
            expect: Expect::Success,
            build: |p| {
                let out = input(p).apply(
                    "S",
                    ParDo::of(WithState(|st, k, v, _| {
                        let c: i64 = st.map_get::<i64, i64>("m", &v)?.unwrap_or(0);
                        st.map_put("m", v, c + 1)?;
                        let e: Vec<(i64, i64)> = st.map_entries("m")?;
                        Ok((k == "a" && e.iter().map(|x| x.1).sum::<i64>() == 3)
                            .then(|| format!("{e:?}")))
                    }))
                    .with_state(StateSpec::map::<i64, i64>("m")),
                );
                assert_that(&out).is_singleton("[(2, 1), (3, 2)]".to_string());
            },
        },
        Case {
            name: "set_state",
            categories: &[C::StatefulParDo, C::SetState],
            expect: Expect::Success,
            build: |p| {
                let out = input(p).apply(
                    "S",
                    ParDo::of(WithState(|st, k, v, _| {
                        let new = st.set_add("s", v)?;
                        Ok(Some(format!(
                            "{k}{v}:{new}:{}",
                            st.set_contains("s", &3i64)?
                        )))
                    }))
                    .with_state(StateSpec::set::<i64>("s")),
                );
                let firsts = out.filter("New", |s: &String| s.contains(":true:"));
                assert_that(&firsts.apply("Count", Count::globally())).is_singleton(3);
            },
        },
        Case {
            name: "ordered_list_state",
            categories: &[C::StatefulParDo, C::OrderedListState, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new().add_elements(vec![
                    (("a".to_string(), 30), 3_000),
                    (("a".to_string(), 10), 1_000),
                    (("a".to_string(), 20), 2_000),
                ]);
                let out = p.apply("Events", ev).apply(
                    "S",
                    ParDo::of(WithState(|st, _, v, ts| {
                        st.ordered_add("l", ts, v)?;
                        let all: Vec<(i64, i64)> = st.ordered_range("l", 0, 10_000)?;
                        Ok((all.len() == 3)
                            .then(|| format!("{:?}", all.iter().map(|x| x.1).collect::<Vec<_>>())))
                    }))
                    .with_state(StateSpec::ordered_list::<i64>("l")),
                );
                assert_that(&out).is_singleton("[10, 20, 30]".to_string());
            },
        },
        Case {
            name: "event_time_timer_at_window_end",
            categories: &[C::StatefulParDo, C::TimersInParDo, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let out = p
                    .apply("Events", tick_events())
                    .apply("W", WindowInto::fixed(10_000))
                    .apply(
                        "T",
                        ParDo::of(Timers { looping: false })
                            .with_state(StateSpec::bag::<i64>("sum"))
                            .with_timer(TimerSpec::event_time("flush")),
                    );
                assert_that(&out).is_singleton("a flush at 9999 sum 3".to_string());
            },
        },
        Case {
            name: "looping_timer",
            categories: &[
                C::StatefulParDo,
                C::TimersInParDo,
                C::LoopingTimer,
                C::TestStream,
            ],
            expect: Expect::Success,
            build: |p| {
                let out = p.apply("Events", tick_events()).apply(
                    "T",
                    ParDo::of(Timers { looping: true })
                        .with_state(StateSpec::bag::<i64>("sum"))
                        .with_timer(TimerSpec::event_time("flush")),
                );
                assert_that(&out).contains_in_any_order(lines(&[
                    "a flush at 10000 sum 3",
                    "a flush at 20000 sum 3",
                    "a flush at 30000 sum 3",
                ]));
            },
        },
        Case {
            name: "on_window_expiration",
            categories: &[C::StatefulParDo, C::OnWindowExpiration, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let out = p
                    .apply("Events", tick_events())
                    .apply("W", WindowInto::fixed(10_000))
                    .apply(
                        "T",
                        ParDo::of(Timers { looping: false })
                            .with_state(StateSpec::bag::<i64>("sum"))
                            .with_timer(TimerSpec::event_time("flush"))
                            .with_window_expiration(),
                    );
                assert_that(&out)
                    .contains_in_any_order(lines(&["a flush at 9999 sum 3", "a expired"]));
            },
        },
        Case {
            name: "processing_time_timer",
            categories: &[C::StatefulParDo, C::ProcessingTimeTimers, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new()
                    .add_elements(vec![(("a".to_string(), 1), 1)])
                    .add_elements(vec![(("a".to_string(), 1), 2)])
                    .advance_processing_time(2_000)
                    .add_elements(vec![(("a".to_string(), 1), 3)]);
                let out = p.apply("Events", ev).apply(
                    "T",
                    ParDo::of(ProcTimer)
                        .with_state(StateSpec::value::<i64>("n"))
                        .with_timer(TimerSpec::processing_time("t")),
                );
                assert_that(&out).is_singleton("a saw 2".to_string());
            },
        },
        Case {
            name: "state_is_per_window",
            categories: &[C::StatefulParDo, C::Windowing, C::TestStream],
            expect: Expect::Success,
            build: |p| {
                let ev = TestStream::new().add_elements(vec![
                    (("a".to_string(), 1), 1_000),
                    (("a".to_string(), 1), 2_000),
                    (("a".to_string(), 1), 12_000),
                ]);
                let out = p
                    .apply("Events", ev)
                    .apply("W", WindowInto::fixed(10_000))
                    .apply(
                        "S",
                        ParDo::of(WithState(|st, _, _, _| {
                            let n = st.read::<i64>("n")?.unwrap_or(0) + 1;
                            st.write("n", n)?;
                            Ok(Some(n.to_string()))
                        }))
                        .with_state(StateSpec::value::<i64>("n")),
                    );
                assert_that(&out).contains_in_any_order(lines(&["1", "2", "1"]));
            },
        },
        Case {
            name: "unbounded_generator_counts",
            categories: &[C::UnboundedPCollections, C::Windowing, C::Combine],
            expect: Expect::Success,
            build: |p| {
                let g = Generator::new(4).with_count(2_000).with_seed(3);
                let mut expected = std::collections::HashMap::new();
                for ((k, _), ts) in g.events() {
                    *expected.entry((k, ts.div_euclid(60_000))).or_insert(0i64) += 1;
                }
                let totals = p
                    .apply("Gen", g)
                    .map("Key", |(k, _): (i64, i64)| (k, ()))
                    .apply("W", WindowInto::fixed(60_000))
                    .apply("Count", Count::per_key())
                    .map("Counts", |(_, n): (i64, i64)| n);
                let mut want: Vec<i64> = expected.into_values().collect();
                want.sort();
                assert_that(&totals).contains_in_any_order(want);
            },
        },
    ]
}
