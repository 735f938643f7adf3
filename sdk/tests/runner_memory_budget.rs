//! `--memory-budget`: grouping state and materialized PCollections spill to disk past the
//! budget, results stay identical, spill files are removed, bad sizes are clear errors.

use beamline::testing::capture;
use beamline::{Create, Flatten, PCollection, PInput, Pipeline, PipelineOptions};

/// Sums per key over a GroupByKey, with a Flatten, a side input and a Reshuffle downstream.
/// Per key: (sum, count).
type Sums = Vec<(i64, (i64, i64))>;

fn run(args: &[&str]) -> (Sums, Option<i64>) {
    let mut all = vec!["prog"];
    all.extend_from_slice(args);
    let p = Pipeline::new(PipelineOptions::from_args(all).unwrap());
    let pairs: Vec<(i64, i64)> = (0..60_000).map(|i| (i % 997, i)).collect();
    let a = p.apply("A", Create::of(pairs.clone()));
    let b = p.apply("B", Create::of(pairs));
    let both: PCollection<(i64, i64)> = vec![a, b].apply("Both", Flatten);
    let grouped = both
        .apply("Spread", beamline::Reshuffle::new())
        .group_by_key("Group");
    let sums = grouped.map("Sum", |(k, vs): (i64, Vec<i64>)| {
        (k, (vs.iter().sum::<i64>(), vs.len() as i64))
    });
    let got = capture(&sums);
    let result = p.run().unwrap();
    let spilled = result.metrics().counter("beamline", "spilledBytes");
    (got.sorted(), spilled)
}

#[test]
fn spilling_gives_the_same_results_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let spill_dir = format!("--spill-dir={}", dir.path().display());
    let (expected, none) = run(&[]);
    assert_eq!(expected.len(), 997);
    assert_eq!(none, None, "no budget, no spill counter");
    for budget in ["1B", "256KB", "2MB"] {
        let flag = format!("--memory-budget={budget}");
        let (got, spilled) = run(&[&flag, &spill_dir, "--threads=2"]);
        assert_eq!(got, expected, "budget {budget}");
        assert!(spilled.unwrap_or(0) > 0, "budget {budget} spilled nothing");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "spill files left behind: {left:?}");
    }
    // A budget larger than the data spills nothing.
    let (got, spilled) = run(&["--memory-budget=4GB", &spill_dir]);
    assert_eq!(got, expected);
    assert_eq!(spilled, Some(0));
}

#[test]
fn bad_budget_and_unwritable_spill_dir_are_clear_errors() {
    let p = Pipeline::new(PipelineOptions::default().set("memory_budget", "lots"));
    p.apply("A", Create::of(vec![(1i64, 2i64)]))
        .group_by_key("G");
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("--memory-budget: 'lots' is not a size"),
        "{err}"
    );

    let p = Pipeline::new(
        PipelineOptions::default()
            .set("memory_budget", "1B")
            .set("spill_dir", "/proc/no-such-dir/spill"),
    );
    p.apply("A", Create::of(vec![(1i64, 2i64)]))
        .group_by_key("G");
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("spill file") && err.contains("/proc/no-such-dir/spill"),
        "{err}"
    );
}
