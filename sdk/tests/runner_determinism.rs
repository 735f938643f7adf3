//! Results do not depend on the number of worker threads: bundles are cut by data size and
//! partial results merge in bundle order, so even floating-point sums are bit-identical.

use beamline::testing::capture;
use beamline::{Count, Create, Mean, Pipeline, PipelineOptions, Sum};

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
