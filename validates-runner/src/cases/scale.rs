//! Scale: more than a million keys, keys and values over 1 MiB, skewed keys.

use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{Count, Impulse, Pipeline, Sum};

fn generated(p: &Pipeline, n: i64) -> beamline::PCollection<i64> {
    p.apply("Impulse", Impulse)
        .flat_map("Range", move |_: ()| 0..n)
        .apply("Spread", beamline::Reshuffle::new())
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "more_than_a_million_keys",
            categories: &[C::ManyKeys, C::GroupByKey, C::Combine],
            expect: Expect::Success,
            build: |p| {
                let counts = generated(p, 1_100_000)
                    .map("KeyPairs", |x: i64| (x % 1_050_000, 1i64))
                    .apply("CountPerKey", Count::per_key());
                let keys = counts.apply("Keys", Count::globally());
                assert_that(&keys).is_singleton(1_050_000);
                let twice = counts
                    .filter("Twice", |(_, n): &(i64, i64)| *n == 2)
                    .apply("CountTwice", Count::globally());
                assert_that(&twice).is_singleton(50_000);
            },
        },
        Case {
            name: "keys_larger_than_a_mebibyte",
            categories: &[C::LargeKeys, C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let g = generated(p, 6)
                    .map("Big", |x: i64| {
                        ("k".repeat(1_100_000 + (x % 2) as usize), x)
                    })
                    .group_by_key("Group")
                    .map("Summary", |(k, v): (String, Vec<i64>)| {
                        (k.len() as i64, v.iter().sum::<i64>())
                    });
                assert_that(&g).contains_in_any_order(vec![(1_100_000, 6), (1_100_001, 9)]);
            },
        },
        Case {
            name: "values_larger_than_a_mebibyte",
            categories: &[C::LargeKeys, C::Combine],
            expect: Expect::Success,
            build: |p| {
                let sizes = generated(p, 4)
                    .map("Big", |x: i64| ((x % 2), "v".repeat(1 << 21)))
                    .group_by_key("Group")
                    .map("Size", |(k, v): (i64, Vec<String>)| {
                        (k, v.iter().map(|s| s.len() as i64).sum::<i64>())
                    });
                assert_that(&sizes).contains_in_any_order(vec![(0, 2 << 21), (1, 2 << 21)]);
            },
        },
        Case {
            name: "skewed_keys",
            categories: &[C::SkewedKeys, C::Combine, C::GroupByKey],
            expect: Expect::Success,
            build: |p| {
                let kvs = generated(p, 200_000).map("Skew", |x: i64| {
                    (if x % 10 == 0 { x % 1000 } else { -1 }, 1i64)
                });
                let hot = kvs
                    .apply("Sum", Sum::per_key())
                    .filter("Hot", |(k, _): &(i64, i64)| *k == -1);
                assert_that(&hot).is_singleton((-1, 180_000));
                let grouped = kvs
                    .group_by_key("Group")
                    .filter("HotG", |(k, _): &(i64, Vec<i64>)| *k == -1)
                    .map("Len", |(_, v): (i64, Vec<i64>)| v.len() as i64);
                assert_that(&grouped).is_singleton(180_000);
            },
        },
    ]
}
