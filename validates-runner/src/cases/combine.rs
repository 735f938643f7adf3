//! Combine globally and per key: every standard combiner, empty inputs, user CombineFns.

use super::kv;
use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    CombineFn, CombineGlobally, CombinePerKey, Count, Create, Max, Mean, Min, PCollection,
    Pipeline, Sample, Sum, Top,
};

fn values(p: &Pipeline) -> PCollection<i64> {
    p.apply("Values", Create::of(vec![5i64, -2, 9, 9, 0]))
}

fn keyed(p: &Pipeline) -> PCollection<(String, i64)> {
    p.apply(
        "Keyed",
        Create::of(vec![
            kv("a", 5),
            kv("b", -2),
            kv("a", 9),
            kv("b", 9),
            kv("a", 0),
        ]),
    )
}

fn empty(p: &Pipeline) -> PCollection<i64> {
    p.apply("Empty", Create::of(Vec::<i64>::new()))
}

/// Concatenates strings in sorted order (a user CombineFn with a Vec accumulator).
struct SortedConcat;

impl CombineFn for SortedConcat {
    type In = String;
    type Acc = Vec<String>;
    type Out = String;
    fn create_accumulator(&self) -> Vec<String> {
        Vec::new()
    }
    fn add_input(&self, acc: &mut Vec<String>, s: String) {
        acc.push(s);
    }
    fn merge_accumulators(&self, accs: Vec<Vec<String>>) -> Vec<String> {
        accs.into_iter().flatten().collect()
    }
    fn extract_output(&self, mut acc: Vec<String>) -> String {
        acc.sort();
        acc.join("+")
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "sum_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&values(p).apply("Sum", Sum::globally())).is_singleton(21);
            },
        },
        Case {
            name: "sum_per_key",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&keyed(p).apply("Sum", Sum::per_key()))
                    .contains_in_any_order(vec![kv("a", 14), kv("b", 7)]);
            },
        },
        Case {
            name: "sum_floats_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let f = p.apply("F", Create::of(vec![0.25f64, 0.5, 1.0]));
                assert_that(&f.apply("Sum", Sum::globally())).is_singleton(1.75);
            },
        },
        Case {
            name: "count_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&values(p).apply("Count", Count::globally())).is_singleton(5);
            },
        },
        Case {
            name: "count_per_key",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&keyed(p).apply("Count", Count::per_key()))
                    .contains_in_any_order(vec![kv("a", 3), kv("b", 2)]);
            },
        },
        Case {
            name: "min_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&values(p).apply("Min", Min::globally())).is_singleton(-2);
            },
        },
        Case {
            name: "min_per_key",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&keyed(p).apply("Min", Min::per_key()))
                    .contains_in_any_order(vec![kv("a", 0), kv("b", -2)]);
            },
        },
        Case {
            name: "max_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&values(p).apply("Max", Max::globally())).is_singleton(9);
            },
        },
        Case {
            name: "max_per_key_strings",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let s = p.apply(
                    "S",
                    Create::of(vec![
                        ("k".to_string(), "pear".to_string()),
                        ("k".to_string(), "apple".to_string()),
                    ]),
                );
                assert_that(&s.apply("Max", Max::per_key()))
                    .is_singleton(("k".to_string(), "pear".to_string()));
            },
        },
        Case {
            name: "mean_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&values(p).apply("Mean", Mean::globally())).is_singleton(4.2);
            },
        },
        Case {
            name: "mean_per_key",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&keyed(p).apply("Mean", Mean::per_key())).contains_in_any_order(vec![
                    ("a".to_string(), 14.0 / 3.0),
                    ("b".to_string(), 3.5),
                ]);
            },
        },
        Case {
            name: "top_largest_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&values(p).apply("Top", Top::largest(3).globally()))
                    .is_singleton(vec![9, 9, 5]);
            },
        },
        Case {
            name: "top_smallest_per_key",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                assert_that(&keyed(p).apply("Top", Top::smallest(2).per_key()))
                    .contains_in_any_order(vec![
                        ("a".to_string(), vec![0, 5]),
                        ("b".to_string(), vec![-2, 9]),
                    ]);
            },
        },
        Case {
            name: "sample_globally_size",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let sizes = values(p)
                    .apply("Sample", Sample::fixed_size(3).globally())
                    .map("Check", |s: Vec<i64>| {
                        s.len() as i64 * 100
                            + s.iter().filter(|x| [5, -2, 9, 0].contains(x)).count() as i64
                    });
                assert_that(&sizes).is_singleton(303);
            },
        },
        Case {
            name: "sample_per_key_small_groups",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let s = keyed(p)
                    .apply("Sample", Sample::fixed_size(10).per_key())
                    .map("Len", |(k, v): (String, Vec<i64>)| (k, v.len() as i64));
                assert_that(&s).contains_in_any_order(vec![kv("a", 3), kv("b", 2)]);
            },
        },
        Case {
            name: "empty_sum_is_zero",
            categories: &[C::Combine, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                assert_that(&empty(p).apply("Sum", Sum::globally())).is_singleton(0);
            },
        },
        Case {
            name: "empty_count_is_zero",
            categories: &[C::Combine, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                assert_that(&empty(p).apply("Count", Count::globally())).is_singleton(0);
            },
        },
        Case {
            name: "empty_top_is_empty_list",
            categories: &[C::Combine, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                assert_that(&empty(p).apply("Top", Top::largest(2).globally()))
                    .is_singleton(vec![]);
            },
        },
        Case {
            name: "empty_min_has_no_output",
            categories: &[C::Combine, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                assert_that(&empty(p).apply("Min", Min::globally())).is_empty();
            },
        },
        Case {
            name: "empty_per_key_has_no_output",
            categories: &[C::Combine, C::EmptyInputs],
            expect: Expect::Success,
            build: |p| {
                let e = p.apply("E", Create::of(Vec::<(String, i64)>::new()));
                assert_that(&e.apply("Sum", Sum::per_key())).is_empty();
            },
        },
        Case {
            name: "user_combine_fn_globally",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let s = p.apply(
                    "S",
                    Create::of(vec!["b".to_string(), "c".to_string(), "a".to_string()]),
                );
                assert_that(&s.apply("Concat", CombineGlobally::new(SortedConcat)))
                    .is_singleton("a+b+c".to_string());
            },
        },
        Case {
            name: "user_combine_fn_per_key_many_bundles",
            categories: &[C::Combine],
            expect: Expect::Success,
            build: |p| {
                let s = p.apply(
                    "S",
                    Create::of((0..5000).map(|i| (format!("k{}", i % 2), format!("{:04}", i % 3)))),
                );
                let lens = s
                    .apply("Concat", CombinePerKey::new(SortedConcat))
                    .map("Len", |(k, v): (String, String)| (k, v.len() as i64));
                assert_that(&lens)
                    .contains_in_any_order(vec![kv("k0", 2500 * 5 - 1), kv("k1", 2500 * 5 - 1)]);
            },
        },
    ]
}
