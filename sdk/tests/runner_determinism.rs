//! Results do not depend on the number of worker threads: bundles are cut by data size,
//! partial results merge in bundle order and pre-combining lanes are fixed in number, so
//! even floating-point sums are bit-identical.

use beamline::testing::capture;
use beamline::{Count, Create, Impulse, Mean, Pipeline, PipelineOptions, Reshuffle, Sum};

type Outputs = (Vec<(String, i64)>, Vec<u64>, Vec<(String, u64)>);

fn run(threads: usize) -> Outputs {
    let p = Pipeline::new(PipelineOptions::default().set("threads", threads));
    let words = p.apply(
        "Words",
        Create::of((0..50_000u64).map(|i| format!("w{}", (i * 7919) % 1013))),
    );
    let counts = capture(&words.apply("Count", Count::per_element()));
    let floats = p.apply(
        "Floats",
        Create::of((1..=40_000u64).map(|i| 1.0 / i as f64)),
    );
    let sum = capture(
        &floats
            .apply("Sum", Sum::globally())
            .map("Bits", |f: f64| f.to_bits()),
    );
    let keyed = floats.map("Key", |f: f64| (format!("k{}", f.to_bits() % 7), f));
    let means = capture(
        &keyed
            .apply("Mean", Mean::per_key())
            .map("MeanBits", |(k, m): (String, f64)| (k, m.to_bits())),
    );
    p.run().unwrap();
    (counts.sorted(), sum.items(), means.sorted())
}

#[test]
fn one_and_many_threads_agree() {
    let one = run(1);
    assert_eq!(one.0.len(), 1013);
    assert_eq!(one.0.iter().map(|(_, n)| n).sum::<i64>(), 50_000);
    for threads in [2, 4] {
        assert_eq!(run(threads), one, "threads={threads}");
    }
}

/// Per-key float sums over 64 bundles and more keys than a lane keeps between bundles
/// (its tables are handed to the merge on the way): bit-identical at any thread count.
fn sums_over_many_bundles(threads: usize) -> Vec<(u64, u64)> {
    const N: u64 = 1_200_000;
    const KEYS: u64 = 1_150_000;
    let p = Pipeline::new(PipelineOptions::default().set("threads", threads));
    let pairs = p
        .apply("Impulse", Impulse)
        .flat_map("Chunks", |_: ()| (0..N / 1000).collect::<Vec<u64>>())
        .apply("Spread", Reshuffle::new())
        .flat_map("Pairs", |c: u64| {
            (c * 1000..(c + 1) * 1000).map(|i| (i % KEYS, 1.0 / (i + 1) as f64))
        });
    let sums = capture(
        &pairs
            .apply("Sum", Sum::per_key())
            .map("Bits", |(k, s): (u64, f64)| (k, s.to_bits())),
    );
    p.run().unwrap();
    sums.sorted()
}

#[test]
fn per_key_sums_over_many_bundles_agree_at_any_thread_count() {
    let one = sums_over_many_bundles(1);
    assert_eq!(one.len(), 1_150_000);
    // Keys below 50k got two values, one from each end of the input.
    let (k, bits) = one[7];
    assert_eq!(k, 7);
    assert_eq!(f64::from_bits(bits), 1.0 / 8.0 + 1.0 / 1_150_008.0);
    // Three threads: bundles finish out of order and lanes change hands between them.
    assert!(
        sums_over_many_bundles(3) == one,
        "threads=3 differs from one thread"
    );
}
