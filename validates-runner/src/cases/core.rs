//! Element-wise transforms, grouping, flatten, composites, lifecycle and metrics.

use super::{kv, strs};
use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    BundleContext, Bytes, CoGroupByKey, Count, Create, Distinct, DoFn, Flatten, Impulse, Keys,
    KvSwap, PInput, ParDo, Partition, Pipeline, ProcessContext, Reshuffle, TupleTag, UserError,
    Values,
};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Point {
    x: i64,
    label: String,
}
beamline::serde_element!(Point);

fn nums(p: &Pipeline) -> beamline::PCollection<i64> {
    p.apply("Nums", Create::of(1i64..=6))
}

#[derive(Clone)]
struct Split {
    odd: TupleTag<String>,
}

impl DoFn for Split {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        if x % 2 == 0 {
            ctx.output(x);
        } else {
            ctx.output_to(&self.odd, format!("odd{x}"))?;
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Lifecycle;

impl DoFn for Lifecycle {
    type In = i64;
    type Out = i64;
    fn start_bundle(&mut self, ctx: &mut BundleContext<'_, '_, i64>) -> Result<(), UserError> {
        ctx.inc_counter("life", "started", 1);
        Ok(())
    }
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        ctx.inc_counter("life", "elements", 1);
        ctx.update_distribution("life", "values", x);
        ctx.set_gauge("life", "gauge", 42);
        ctx.output(x);
        Ok(())
    }
    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, i64>) -> Result<(), UserError> {
        ctx.inc_counter("life", "finished", 1);
        Ok(())
    }
}

fn lifecycle_result(r: &beamline::PipelineResult) -> Result<(), String> {
    let m = r.metrics();
    let started = m
        .counter("life", "started")
        .ok_or("no start_bundle counter")?;
    let finished = m
        .counter("life", "finished")
        .ok_or("no finish_bundle counter")?;
    if started != finished || started < 1 {
        return Err(format!(
            "start_bundle {started} times, finish_bundle {finished} times"
        ));
    }
    if m.counter("life", "elements") != Some(100) {
        return Err(format!(
            "elements counter {:?}",
            m.counter("life", "elements")
        ));
    }
    let d = m.distribution("life", "values").ok_or("no distribution")?;
    if (d.count, d.sum, d.min, d.max) != (100, 5050, 1, 100) {
        return Err(format!("distribution {d:?}"));
    }
    if m.gauge("life", "gauge") != Some(42) {
        return Err("gauge not 42".into());
    }
    Ok(())
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "impulse_emits_one_element",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                let one = p.apply("Impulse", Impulse).map("One", |_: ()| 1i64);
                assert_that(&one).is_singleton(1);
            },
        },
        Case {
            name: "create_integers",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                assert_that(&nums(p)).contains_in_any_order(vec![1, 2, 3, 4, 5, 6]);
            },
        },
        Case {
            name: "create_strings",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                let s = p.apply("S", Create::of(strs(&["", "ä", "x y"])));
                assert_that(&s).contains_in_any_order(strs(&["x y", "", "ä"]));
            },
        },
        Case {
            name: "create_floats_and_bools",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                let f = p.apply("F", Create::of(vec![0.5f64, -0.0, 1e300]));
                assert_that(&f).contains_in_any_order(vec![1e300, 0.5, -0.0]);
                let b = p.apply("B", Create::of(vec![true, false, true]));
                assert_that(&b).contains_in_any_order(vec![true, true, false]);
            },
        },
        Case {
            name: "create_bytes_and_options",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                let b = p.apply("B", Create::of(vec![Bytes(vec![0, 255]), Bytes(vec![])]));
                assert_that(&b).contains_in_any_order(vec![Bytes(vec![]), Bytes(vec![0, 255])]);
                let o = p.apply("O", Create::of(vec![Some(1i64), None]));
                assert_that(&o).contains_in_any_order(vec![None, Some(1)]);
            },
        },
        Case {
            name: "create_nested_types",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                let v = p.apply("V", Create::of(vec![vec![kv("a", 1)], vec![]]));
                assert_that(&v).contains_in_any_order(vec![vec![], vec![kv("a", 1)]]);
            },
        },
        Case {
            name: "create_serde_user_type",
            categories: &[C::Impulse],
            expect: Expect::Success,
            build: |p| {
                let pts = p.apply(
                    "Pts",
                    Create::of(vec![Point {
                        x: 1,
                        label: "a".into(),
                    }]),
                );
                let moved = pts.map("Move", |mut pt: Point| {
                    pt.x += 1;
                    pt
                });
                assert_that(&moved).is_singleton(Point {
                    x: 2,
                    label: "a".into(),
                });
            },
        },
        Case {
            name: "create_empty",
            categories: &[C::Impulse, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let e = p.apply("E", Create::of(Vec::<i64>::new()));
                assert_that(&e.map("Double", |x: i64| x * 2)).is_empty();
            },
        },
        Case {
            name: "map",
            categories: &[C::ParDo],
            expect: Expect::Success,
            build: |p| {
                assert_that(&nums(p).map("Sq", |x: i64| x * x))
                    .contains_in_any_order(vec![1, 4, 9, 16, 25, 36]);
            },
        },
        Case {
            name: "flat_map",
            categories: &[C::ParDo],
            expect: Expect::Success,
            build: |p| {
                let r = nums(p).flat_map("Rep", |x: i64| vec![x; (x % 3) as usize]);
                assert_that(&r).contains_in_any_order(vec![1, 2, 2, 4, 5, 5]);
            },
        },
        Case {
            name: "filter",
            categories: &[C::ParDo],
            expect: Expect::Success,
            build: |p| {
                assert_that(&nums(p).filter("Even", |x: &i64| x % 2 == 0))
                    .contains_in_any_order(vec![2, 4, 6]);
            },
        },
        Case {
            name: "chain_of_ten_pardos",
            categories: &[C::ParDo],
            expect: Expect::Success,
            build: |p| {
                let mut c = nums(p);
                for i in 0..10 {
                    c = c.map(&format!("Inc{i}"), |x: i64| x + 1);
                }
                assert_that(&c).contains_in_any_order(vec![11, 12, 13, 14, 15, 16]);
            },
        },
        Case {
            name: "keys_values_kvswap",
            categories: &[C::ParDo, C::Composites],
            expect: Expect::Success,
            build: |p| {
                let kvs = p.apply("Kvs", Create::of(vec![kv("a", 1), kv("b", 2)]));
                assert_that(&kvs.apply("Keys", Keys)).contains_in_any_order(strs(&["a", "b"]));
                assert_that(&kvs.apply("Values", Values)).contains_in_any_order(vec![1, 2]);
                assert_that(&kvs.apply("Swap", KvSwap))
                    .contains_in_any_order(vec![(1, "a".to_string()), (2, "b".to_string())]);
            },
        },
        Case {
            name: "tagged_outputs",
            categories: &[C::ParDo, C::MultipleOutputs],
            expect: Expect::Success,
            build: |p| {
                let odd = TupleTag::<String>::new("odd");
                let outs = nums(p).apply(
                    "Split",
                    ParDo::of(Split { odd: odd.clone() }).with_outputs(vec![odd.erased()]),
                );
                assert_that(&outs.main()).contains_in_any_order(vec![2, 4, 6]);
                assert_that(&outs.get(&odd).unwrap())
                    .contains_in_any_order(strs(&["odd1", "odd3", "odd5"]));
            },
        },
        Case {
            name: "partition_three_ways",
            categories: &[C::Composites],
            expect: Expect::Success,
            build: |p| {
                let parts =
                    nums(p).apply("Mod3", Partition::new(3, |x: &i64, n| (*x as usize) % n));
                assert_that(&parts[0]).contains_in_any_order(vec![3, 6]);
                assert_that(&parts[1]).contains_in_any_order(vec![1, 4]);
                assert_that(&parts[2]).contains_in_any_order(vec![2, 5]);
            },
        },
        Case {
            name: "flatten_two",
            categories: &[C::Flatten],
            expect: Expect::Success,
            build: |p| {
                let a = p.apply("A", Create::of(vec![1i64, 2]));
                let b = p.apply("B", Create::of(vec![2i64, 3]));
                assert_that(&vec![a, b].apply("Both", Flatten))
                    .contains_in_any_order(vec![1, 2, 2, 3]);
            },
        },
        Case {
            name: "flatten_three_with_empty",
            categories: &[C::Flatten, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let a = p.apply("A", Create::of(vec![1i64]));
                let b = p.apply("B", Create::of(Vec::<i64>::new()));
                let c = p.apply("C", Create::of(vec![9i64]));
                assert_that(&vec![a, b, c].apply("All", Flatten)).contains_in_any_order(vec![1, 9]);
            },
        },
        Case {
            name: "flatten_of_same_collection_twice",
            categories: &[C::Flatten],
            expect: Expect::Success,
            build: |p| {
                let a = p.apply("A", Create::of(vec![1i64, 2]));
                assert_that(&vec![a.clone(), a].apply("Twice", Flatten))
                    .contains_in_any_order(vec![1, 1, 2, 2]);
            },
        },
        Case {
            // Runners may feed the shuffle from each flatten input directly.
            name: "flatten_then_group_by_key",
            categories: &[C::Flatten, C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let a = p
                    .apply("A", Create::of(vec![1i64, 2]))
                    .map("KeyA", |x: i64| (format!("k{}", x % 2), x));
                let b = p.apply("B", Create::of(vec![kv("k0", 10)]));
                let g = vec![a.clone(), b, a]
                    .apply("Three", Flatten)
                    .group_by_key("Group")
                    .map("Sort", |(k, mut v): (String, Vec<i64>)| {
                        v.sort();
                        (k, v)
                    });
                assert_that(&g).contains_in_any_order(vec![
                    ("k0".to_string(), vec![2, 2, 10]),
                    ("k1".to_string(), vec![1, 1]),
                ]);
            },
        },
        Case {
            name: "flatten_read_by_group_by_key_and_another_transform",
            categories: &[C::Flatten, C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let a = p.apply("A", Create::of(vec![kv("x", 1)]));
                let b = p.apply("B", Create::of(vec![kv("x", 2), kv("y", 3)]));
                let all = vec![a, b].apply("Both", Flatten);
                let g = all
                    .group_by_key("Group")
                    .map("Size", |(k, v): (String, Vec<i64>)| (k, v.len() as i64));
                assert_that(&g)
                    .contains_in_any_order(vec![("x".to_string(), 2), ("y".to_string(), 1)]);
                assert_that(&all.apply("Keys", Keys)).contains_in_any_order(vec![
                    "x".to_string(),
                    "x".to_string(),
                    "y".to_string(),
                ]);
            },
        },
        Case {
            name: "group_by_key",
            categories: &[C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let g = p
                    .apply("Kvs", Create::of(vec![kv("a", 1), kv("b", 2), kv("a", 3)]))
                    .group_by_key("Group")
                    .map("Sort", |(k, mut v): (String, Vec<i64>)| {
                        v.sort();
                        (k, v)
                    });
                assert_that(&g).contains_in_any_order(vec![
                    ("a".to_string(), vec![1, 3]),
                    ("b".to_string(), vec![2]),
                ]);
            },
        },
        Case {
            name: "group_by_key_empty",
            categories: &[C::GroupByKey, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let g = p
                    .apply("None", Create::of(Vec::<(String, i64)>::new()))
                    .group_by_key("Group");
                assert_that(&g).is_empty();
            },
        },
        Case {
            name: "group_by_key_integer_and_tuple_keys",
            categories: &[C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let g = p
                    .apply(
                        "Kvs",
                        Create::of(vec![
                            ((1i64, "x".to_string()), 1i64),
                            ((1, "x".to_string()), 2),
                            ((-1, "x".to_string()), 3),
                        ]),
                    )
                    .group_by_key("Group")
                    .map("Len", |(k, v): ((i64, String), Vec<i64>)| {
                        (k.0, v.len() as i64)
                    });
                assert_that(&g).contains_in_any_order(vec![(1, 2), (-1, 1)]);
            },
        },
        Case {
            name: "cogroup_by_key",
            categories: &[C::CoGroupByKey],
            expect: Expect::Success,
            build: |p| {
                let a = p.apply("A", Create::of(vec![kv("k", 1), kv("k", 2), kv("j", 3)]));
                let b = p.apply("B", Create::of(vec![("k".to_string(), "x".to_string())]));
                let j = (a, b).apply("Join", CoGroupByKey::new()).map(
                    "Sizes",
                    |(k, (a, b)): (String, (Vec<i64>, Vec<String>))| {
                        (k, (a.len() as i64) * 10 + b.len() as i64)
                    },
                );
                assert_that(&j).contains_in_any_order(vec![kv("k", 21), kv("j", 10)]);
            },
        },
        Case {
            name: "cogroup_by_key_one_side_empty",
            categories: &[C::CoGroupByKey, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let a = p.apply("A", Create::of(vec![kv("k", 1)]));
                let b = p.apply("B", Create::of(Vec::<(String, String)>::new()));
                let j = (a, b).apply("Join", CoGroupByKey::new()).map(
                    "Sizes",
                    |(k, (a, b)): (String, (Vec<i64>, Vec<String>))| {
                        (k, (a.len() * 10 + b.len()) as i64)
                    },
                );
                assert_that(&j).is_singleton(kv("k", 10));
            },
        },
        Case {
            name: "reshuffle_keeps_elements",
            categories: &[C::Composites],
            expect: Expect::Success,
            build: |p| {
                assert_that(&nums(p).apply("Reshuffle", Reshuffle::new()))
                    .contains_in_any_order(vec![1, 2, 3, 4, 5, 6]);
            },
        },
        Case {
            name: "distinct",
            categories: &[C::Composites],
            expect: Expect::Success,
            build: |p| {
                let d = p
                    .apply("Dups", Create::of(vec![3i64, 1, 3, 3, 2, 1]))
                    .apply("Distinct", Distinct::new());
                assert_that(&d).contains_in_any_order(vec![1, 2, 3]);
            },
        },
        Case {
            name: "count_per_element",
            categories: &[C::Composites, C::Combine],
            expect: Expect::Success,
            build: |p| {
                let c = p
                    .apply("Words", Create::of(strs(&["a", "b", "a"])))
                    .apply("Count", Count::per_element());
                assert_that(&c).contains_in_any_order(vec![kv("a", 2), kv("b", 1)]);
            },
        },
        Case {
            name: "pardo_lifecycle_and_metrics",
            categories: &[C::ParDoLifecycle, C::Metrics],
            expect: Expect::Result(lifecycle_result),
            build: |p| {
                p.apply("Nums", Create::of(1i64..=100))
                    .apply("Life", ParDo::of(Lifecycle));
            },
        },
        Case {
            name: "metrics_summed_across_transforms",
            categories: &[C::Metrics],
            expect: Expect::Result(|r| match r.metrics().counter("life", "elements") {
                Some(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }),
            build: |p| {
                let n = p.apply("Nums", Create::of(1i64..=100));
                n.apply("LifeA", ParDo::of(Lifecycle));
                n.apply("LifeB", ParDo::of(Lifecycle));
            },
        },
    ]
}
