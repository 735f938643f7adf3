//! Side inputs: singleton, iterable, map and multimap views, windowed lookup.

use super::{kv, strs};
use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    Create, DoFn, PCollection, ParDo, Pipeline, ProcessContext, SideInput, Sum, UserError,
    WindowInto, WithTimestamps,
};
use std::collections::HashMap;

#[derive(Clone)]
struct AddSingleton(SideInput<i64>);

impl DoFn for AddSingleton {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        let s = *ctx.side_input(&self.0)?;
        ctx.output(x + s);
        Ok(())
    }
}

#[derive(Clone)]
struct CountIter(SideInput<Vec<i64>>);

impl DoFn for CountIter {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        let n = ctx.side_input(&self.0)?.len() as i64;
        ctx.output(x * 100 + n);
        Ok(())
    }
}

#[derive(Clone)]
struct Lookup(SideInput<HashMap<String, i64>>);

impl DoFn for Lookup {
    type In = String;
    type Out = (String, i64);
    fn process(
        &mut self,
        k: String,
        ctx: &mut ProcessContext<'_, '_, (String, i64)>,
    ) -> Result<(), UserError> {
        let v = ctx.side_input(&self.0)?.get(&k).copied().unwrap_or(-1);
        ctx.output((k, v));
        Ok(())
    }
}

#[derive(Clone)]
struct LookupAll(SideInput<HashMap<String, Vec<i64>>>);

impl DoFn for LookupAll {
    type In = String;
    type Out = (String, i64);
    fn process(
        &mut self,
        k: String,
        ctx: &mut ProcessContext<'_, '_, (String, i64)>,
    ) -> Result<(), UserError> {
        let v: i64 = ctx
            .side_input(&self.0)?
            .get(&k)
            .map(|v| v.iter().sum())
            .unwrap_or(0);
        ctx.output((k, v));
        Ok(())
    }
}

fn main_nums(p: &Pipeline) -> PCollection<i64> {
    p.apply("Main", Create::of(vec![1i64, 2]))
}

fn table(p: &Pipeline) -> PCollection<(String, i64)> {
    p.apply(
        "Table",
        Create::of(vec![kv("a", 1), kv("b", 2), kv("a", 10)]),
    )
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "side_input_singleton",
            categories: &[C::SideInputs],
            expect: Expect::Success,
            build: |p| {
                let total = p
                    .apply("Side", Create::of(vec![10i64, 20]))
                    .apply("Total", Sum::globally())
                    .as_singleton();
                let out = main_nums(p).apply(
                    "Add",
                    ParDo::of(AddSingleton(total.clone())).with_side_input(&total),
                );
                assert_that(&out).contains_in_any_order(vec![31, 32]);
            },
        },
        Case {
            name: "side_input_singleton_default_on_empty",
            categories: &[C::SideInputs, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let s = p
                    .apply("Side", Create::of(Vec::<i64>::new()))
                    .as_singleton_or(7);
                let out = main_nums(p).apply(
                    "Add",
                    ParDo::of(AddSingleton(s.clone())).with_side_input(&s),
                );
                assert_that(&out).contains_in_any_order(vec![8, 9]);
            },
        },
        Case {
            name: "side_input_iterable",
            categories: &[C::SideInputs],
            expect: Expect::Success,
            build: |p| {
                let s = p.apply("Side", Create::of(vec![5i64, 6, 7])).as_iter();
                let out = main_nums(p)
                    .apply("Count", ParDo::of(CountIter(s.clone())).with_side_input(&s));
                assert_that(&out).contains_in_any_order(vec![103, 203]);
            },
        },
        Case {
            name: "side_input_empty_iterable",
            categories: &[C::SideInputs, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let s = p.apply("Side", Create::of(Vec::<i64>::new())).as_iter();
                let out = main_nums(p)
                    .apply("Count", ParDo::of(CountIter(s.clone())).with_side_input(&s));
                assert_that(&out).contains_in_any_order(vec![100, 200]);
            },
        },
        Case {
            name: "side_input_map",
            categories: &[C::SideInputs],
            expect: Expect::Success,
            build: |p| {
                let m = p
                    .apply("Table", Create::of(vec![kv("a", 1), kv("b", 2)]))
                    .as_map();
                let keys = p.apply("Keys", Create::of(strs(&["a", "b", "z"])));
                let out = keys.apply("Lookup", ParDo::of(Lookup(m.clone())).with_side_input(&m));
                assert_that(&out).contains_in_any_order(vec![kv("a", 1), kv("b", 2), kv("z", -1)]);
            },
        },
        Case {
            name: "side_input_multimap",
            categories: &[C::SideInputs],
            expect: Expect::Success,
            build: |p| {
                let m = table(p).as_multimap();
                let keys = p.apply("Keys", Create::of(strs(&["a", "b", "z"])));
                let out = keys.apply(
                    "Lookup",
                    ParDo::of(LookupAll(m.clone())).with_side_input(&m),
                );
                assert_that(&out).contains_in_any_order(vec![kv("a", 11), kv("b", 2), kv("z", 0)]);
            },
        },
        Case {
            name: "side_input_windowed_lookup",
            categories: &[C::SideInputs, C::Windowing],
            expect: Expect::Success,
            build: |p| {
                let stamp = |name: &str, v: Vec<i64>| {
                    p.apply(name, Create::of(v))
                        .apply(&format!("{name}Ts"), WithTimestamps::of(|x: &i64| *x))
                        .apply(&format!("{name}Win"), WindowInto::fixed(1_000))
                };
                let side = stamp("Side", vec![100, 200, 1500])
                    .apply("Sum", Sum::globally().without_defaults())
                    .as_singleton();
                let main = stamp("Main", vec![10, 1010]);
                let out = main.apply(
                    "Add",
                    ParDo::of(AddSingleton(side.clone())).with_side_input(&side),
                );
                assert_that(&out).contains_in_any_order(vec![310, 2510]);
            },
        },
        Case {
            name: "side_input_singleton_of_many_fails",
            categories: &[C::SideInputs, C::BadInput],
            expect: Expect::Failure("has 2 elements; expected one"),
            build: |p| {
                let s = p.apply("Side", Create::of(vec![1i64, 2])).as_singleton();
                main_nums(p).apply(
                    "Add",
                    ParDo::of(AddSingleton(s.clone())).with_side_input(&s),
                );
            },
        },
    ]
}
