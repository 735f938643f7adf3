//! The core transforms on the local runner: element-wise, grouping, combining, side inputs,
//! multiple outputs, windows, metrics and the DoFn lifecycle.

use beamline::testing::capture;
use beamline::{
    BundleContext, CoGroupByKey, CombineFn, CombineGlobally, CombinePerKey, Count, Create,
    Distinct, DoFn, Flatten, Keys, KvSwap, Max, Mean, Min, PInput, ParDo, Partition, Pipeline,
    PipelineOptions, ProcessContext, Reshuffle, Sample, Sum, Top, TupleTag, UserError, Values,
    WindowInto, WithTimestamps,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineOptions::default())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn kv(k: &str, v: i64) -> (String, i64) {
    (k.to_string(), v)
}

#[test]
fn map_flat_map_filter() {
    let p = pipeline();
    let lines = p.apply("Lines", Create::of(strings(&["a b", "c", ""])));
    let words = lines.flat_map("Split", |l: String| {
        l.split_whitespace().map(String::from).collect::<Vec<_>>()
    });
    let upper = words.map("Upper", |w: String| w.to_uppercase());
    let not_b = upper.filter("NotB", |w: &String| w != "B");
    let got = capture(&not_b);
    p.run().unwrap();
    assert_eq!(got.sorted(), strings(&["A", "C"]));
}

#[test]
fn keys_values_swap() {
    let p = pipeline();
    let kvs = p.apply("Kvs", Create::of(vec![kv("a", 1), kv("b", 2)]));
    let k = capture(&kvs.apply("Keys", Keys));
    let v = capture(&kvs.apply("Values", Values));
    let s = capture(&kvs.apply("Swap", KvSwap));
    p.run().unwrap();
    assert_eq!(k.sorted(), strings(&["a", "b"]));
    assert_eq!(v.sorted(), vec![1, 2]);
    assert_eq!(s.sorted(), vec![(1, "a".to_string()), (2, "b".to_string())]);
}

#[test]
fn group_by_key_and_cogroup_by_key() {
    let p = pipeline();
    let a = p.apply("A", Create::of(vec![kv("k1", 1), kv("k2", 2), kv("k1", 3)]));
    let b = p.apply(
        "B",
        Create::of(vec![
            ("k1".to_string(), "x".to_string()),
            ("k3".to_string(), "y".to_string()),
        ]),
    );
    let grouped = a
        .group_by_key("Group")
        .map("Sort", |(k, mut vs): (String, Vec<i64>)| {
            vs.sort();
            (k, vs)
        });
    let joined = (a.clone(), b).apply("Join", CoGroupByKey::new());
    let g = capture(&grouped);
    let j = capture(&joined.map(
        "SortJoined",
        |(k, (mut x, y)): (String, (Vec<i64>, Vec<String>))| {
            x.sort();
            (k, (x, y))
        },
    ));
    p.run().unwrap();
    assert_eq!(
        g.sorted(),
        vec![("k1".to_string(), vec![1, 3]), ("k2".to_string(), vec![2])]
    );
    assert_eq!(
        j.sorted(),
        vec![
            ("k1".to_string(), (vec![1, 3], strings(&["x"]))),
            ("k2".to_string(), (vec![2], vec![])),
            ("k3".to_string(), (vec![], strings(&["y"]))),
        ]
    );
}

#[test]
fn flatten_partition_reshuffle_distinct() {
    let p = pipeline();
    let a = p.apply("A", Create::of(1i64..=5));
    let b = p.apply("B", Create::of(4i64..=8));
    let all = vec![a, b].apply("Flatten", Flatten);
    let parts = all.apply("Parity", Partition::new(2, |x: &i64, n| (*x as usize) % n));
    let even = capture(&parts[0]);
    let odd = capture(&parts[1]);
    let distinct = capture(
        &all.apply("Reshuffle", Reshuffle::new())
            .apply("Distinct", Distinct::new()),
    );
    p.run().unwrap();
    assert_eq!(even.sorted(), vec![2, 4, 4, 6, 8]);
    assert_eq!(odd.sorted(), vec![1, 3, 5, 5, 7]);
    assert_eq!(distinct.sorted(), (1..=8).collect::<Vec<i64>>());
}

#[test]
fn partition_out_of_range_fails_naming_the_transform() {
    let p = pipeline();
    let xs = p.apply("Xs", Create::of(vec![1i64, 2]));
    xs.apply("Bad", Partition::new(2, |_: &i64, _| 7));
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("'Bad'") && err.contains("returned 7"), "{err}");
}

#[test]
fn standard_combiners_per_key_and_globally() {
    let p = pipeline();
    let kvs = p.apply(
        "Kvs",
        Create::of(vec![kv("a", 3), kv("a", 1), kv("b", 10), kv("a", 2)]),
    );
    let sum = capture(&kvs.apply("Sum", Sum::per_key()));
    let count = capture(&kvs.apply("Count", Count::per_key()));
    let min = capture(&kvs.apply("Min", Min::per_key()));
    let max = capture(&kvs.apply("Max", Max::per_key()));
    let mean = capture(&kvs.apply("Mean", Mean::per_key()));
    let top = capture(&kvs.apply("Top2", Top::largest(2).per_key()));
    let values = kvs.apply("Values", Values);
    let gsum = capture(&values.apply("GSum", Sum::globally()));
    let gcount = capture(&values.apply("GCount", Count::globally()));
    let gsmall = capture(&values.apply("GSmallest", Top::smallest(2).globally()));
    let sample = capture(&values.apply("GSample", Sample::fixed_size(3).globally()));
    let per_elem = capture(&values.apply("PerElement", Count::per_element()));
    p.run().unwrap();
    assert_eq!(sum.sorted(), vec![kv("a", 6), kv("b", 10)]);
    assert_eq!(count.sorted(), vec![kv("a", 3), kv("b", 1)]);
    assert_eq!(min.sorted(), vec![kv("a", 1), kv("b", 10)]);
    assert_eq!(max.sorted(), vec![kv("a", 3), kv("b", 10)]);
    let mean: HashMap<String, f64> = mean.items().into_iter().collect();
    assert_eq!(mean["a"], 2.0);
    assert_eq!(mean["b"], 10.0);
    assert_eq!(
        top.sorted(),
        vec![("a".to_string(), vec![3, 2]), ("b".to_string(), vec![10])]
    );
    assert_eq!(gsum.items(), vec![16]);
    assert_eq!(gcount.items(), vec![4]);
    assert_eq!(gsmall.items(), vec![vec![1, 2]]);
    let s = sample.items();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].len(), 3);
    assert!(s[0].iter().all(|x| [3, 1, 10, 2].contains(x)));
    assert_eq!(per_elem.sorted(), vec![(1, 1), (2, 1), (3, 1), (10, 1)]);
}

#[test]
fn empty_global_combines_give_defaults() {
    let p = pipeline();
    let empty = p.apply("Empty", Create::of(Vec::<i64>::new()));
    let sum = capture(&empty.apply("Sum", Sum::globally()));
    let count = capture(&empty.apply("Count", Count::globally()));
    let mean = capture(&empty.apply("Mean", Mean::globally()));
    let min = capture(&empty.apply("Min", Min::globally()));
    let fsum = capture(
        &p.apply("EmptyF", Create::of(Vec::<f64>::new()))
            .apply("FSum", Sum::globally()),
    );
    p.run().unwrap();
    assert_eq!(sum.items(), vec![0]);
    assert_eq!(count.items(), vec![0]);
    assert!(mean.items()[0].is_nan());
    assert!(min.items().is_empty());
    assert_eq!(fsum.items(), vec![0.0]);
}

/// Average word length, as a user CombineFn with a struct accumulator.
struct AvgLen;

impl CombineFn for AvgLen {
    type In = String;
    type Acc = (usize, usize);
    type Out = f64;
    fn create_accumulator(&self) -> (usize, usize) {
        (0, 0)
    }
    fn add_input(&self, acc: &mut (usize, usize), s: String) {
        acc.0 += s.len();
        acc.1 += 1;
    }
    fn merge_accumulators(&self, accs: Vec<(usize, usize)>) -> (usize, usize) {
        accs.into_iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
    fn extract_output(&self, (sum, n): (usize, usize)) -> f64 {
        if n == 0 {
            0.0
        } else {
            sum as f64 / n as f64
        }
    }
}

#[test]
fn user_combine_fn_globally_and_per_key() {
    let p = pipeline();
    let words = p.apply("Words", Create::of(strings(&["ab", "abcd", "x", "xyz"])));
    let avg = capture(&words.apply("Avg", CombineGlobally::new(AvgLen)));
    let keyed = words.map("ByFirst", |w: String| (w[..1].to_string(), w));
    let per_key = capture(&keyed.apply("AvgPerKey", CombinePerKey::new(AvgLen)));
    p.run().unwrap();
    assert_eq!(avg.items(), vec![2.5]);
    assert_eq!(per_key.items().len(), 2);
    let m: HashMap<String, f64> = per_key.items().into_iter().collect();
    assert_eq!(m["a"], 3.0);
    assert_eq!(m["x"], 2.0);
}

#[derive(Clone)]
struct SplitParity {
    odd: TupleTag<String>,
}

impl DoFn for SplitParity {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        if x % 2 == 0 {
            ctx.output(x);
        } else {
            ctx.output_to(&self.odd, format!("odd {x}"))?;
        }
        Ok(())
    }
}

#[test]
fn tagged_outputs() {
    let p = pipeline();
    let odd = TupleTag::<String>::new("odd");
    let outs = p.apply("Nums", Create::of(1i64..=4)).apply(
        "Split",
        ParDo::of(SplitParity { odd: odd.clone() }).with_outputs(vec![odd.erased()]),
    );
    let even = capture(&outs.main());
    let odds = capture(&outs.get(&odd).unwrap());
    p.run().unwrap();
    assert_eq!(even.sorted(), vec![2, 4]);
    assert_eq!(odds.sorted(), strings(&["odd 1", "odd 3"]));
}

#[derive(Clone)]
struct UseSides {
    total: beamline::SideInput<i64>,
    all: beamline::SideInput<Vec<i64>>,
    names: beamline::SideInput<HashMap<i64, String>>,
    tags: beamline::SideInput<HashMap<i64, Vec<String>>>,
}

impl DoFn for UseSides {
    type In = i64;
    type Out = String;
    fn process(
        &mut self,
        x: i64,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let total = *ctx.side_input(&self.total)?;
        let n = ctx.side_input(&self.all)?.len();
        let name = ctx
            .side_input(&self.names)?
            .get(&x)
            .cloned()
            .unwrap_or_default();
        let mut tags = ctx
            .side_input(&self.tags)?
            .get(&x)
            .cloned()
            .unwrap_or_default();
        tags.sort();
        ctx.output(format!("{x}/{total}/{n}/{name}/{}", tags.join("+")));
        Ok(())
    }
}

#[test]
fn side_inputs_of_every_kind() {
    let p = pipeline();
    let nums = p.apply("Nums", Create::of(vec![1i64, 2]));
    let total = nums.apply("Total", Sum::globally());
    let names = p.apply(
        "Names",
        Create::of(vec![(1i64, "one".to_string()), (2, "two".to_string())]),
    );
    let tags = p.apply(
        "Tags",
        Create::of(vec![(1i64, "t1".to_string()), (1, "t0".to_string())]),
    );
    let f = UseSides {
        total: total.as_singleton(),
        all: nums.as_iter(),
        names: names.as_map(),
        tags: tags.as_multimap(),
    };
    let out = nums.apply(
        "Use",
        ParDo::of(f.clone())
            .with_side_input(&f.total)
            .with_side_input(&f.all)
            .with_side_input(&f.names)
            .with_side_input(&f.tags),
    );
    let got = capture(&out);
    p.run().unwrap();
    assert_eq!(got.sorted(), strings(&["1/3/2/one/t0+t1", "2/3/2/two/"]));
}

#[test]
fn singleton_side_input_of_many_elements_fails() {
    let p = pipeline();
    let nums = p.apply("Nums", Create::of(vec![1i64, 2]));
    let f = UseSides {
        total: nums.as_singleton(),
        all: nums.as_iter(),
        names: p
            .apply("N", Create::of(Vec::<(i64, String)>::new()))
            .as_map(),
        tags: p
            .apply("T", Create::of(Vec::<(i64, String)>::new()))
            .as_multimap(),
    };
    nums.apply(
        "Use",
        ParDo::of(f.clone())
            .with_side_input(&f.total)
            .with_side_input(&f.all)
            .with_side_input(&f.names)
            .with_side_input(&f.tags),
    );
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("'Use'") && err.contains("has 2 elements"),
        "{err}"
    );
}

static SETUP: AtomicUsize = AtomicUsize::new(0);
static START: AtomicUsize = AtomicUsize::new(0);
static PROCESS: AtomicUsize = AtomicUsize::new(0);
static FINISH: AtomicUsize = AtomicUsize::new(0);
static TEARDOWN: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct Lifecycle;

impl DoFn for Lifecycle {
    type In = i64;
    type Out = i64;
    fn setup(&mut self) -> Result<(), UserError> {
        SETUP.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn start_bundle(&mut self, _: &mut BundleContext<'_, '_, i64>) -> Result<(), UserError> {
        START.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        PROCESS.fetch_add(1, Ordering::SeqCst);
        ctx.inc_counter("test", "seen", 1);
        ctx.update_distribution("test", "value", x);
        ctx.set_gauge("test", "last", 7);
        ctx.output(x);
        Ok(())
    }
    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, i64>) -> Result<(), UserError> {
        FINISH.fetch_add(1, Ordering::SeqCst);
        ctx.inc_counter("test", "bundles", 1);
        Ok(())
    }
    fn teardown(&mut self) -> Result<(), UserError> {
        TEARDOWN.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn dofn_lifecycle_and_metrics() {
    let p = pipeline();
    p.apply("Nums", Create::of(1i64..=1000))
        .apply("Life", ParDo::of(Lifecycle));
    let result = p.run().unwrap();
    let m = result.metrics();
    assert_eq!(PROCESS.load(Ordering::SeqCst), 1000);
    let setups = SETUP.load(Ordering::SeqCst);
    assert!(setups >= 1);
    assert_eq!(TEARDOWN.load(Ordering::SeqCst), setups);
    let bundles = START.load(Ordering::SeqCst);
    assert!(bundles >= 1);
    assert_eq!(FINISH.load(Ordering::SeqCst), bundles);
    assert_eq!(m.counter("test", "seen"), Some(1000));
    assert_eq!(m.counter("test", "bundles"), Some(bundles as i64));
    let d = m.distribution("test", "value").unwrap();
    assert_eq!((d.count, d.sum, d.min, d.max), (1000, 500_500, 1, 1000));
    assert_eq!(m.gauge("test", "last"), Some(7));
    assert_eq!(m.counter("test", "missing"), None);
}

#[test]
fn fixed_windows_group_by_window() {
    let p = pipeline();
    let events = p.apply(
        "Events",
        Create::of(vec![
            kv("u", 1_000),
            kv("u", 59_000),
            kv("u", 61_000),
            kv("v", 30_000),
        ]),
    );
    let counts = events
        .apply("Stamp", WithTimestamps::of(|(_, ts): &(String, i64)| *ts))
        .apply("Minutes", WindowInto::fixed(60_000))
        .apply("Count", Count::per_key());
    let with_window = counts.par_do("Describe", DescribeWindow { grouped: true });
    let got = capture(&with_window);
    p.run().unwrap();
    assert_eq!(
        got.sorted(),
        strings(&[
            "u=1 in [60000,120000) at 119999",
            "u=2 in [0,60000) at 59999",
            "v=1 in [0,60000) at 59999"
        ])
    );
}

/// Maps rewrite values where they lie (batch and streaming): timestamps and windows stay.
#[test]
fn a_map_keeps_timestamps_and_windows() {
    for streaming in [false, true] {
        let p = Pipeline::new(PipelineOptions::default().set("streaming", streaming));
        let events = p.apply("Events", Create::of(vec![kv("u", 1_000), kv("v", 61_000)]));
        let described = events
            .apply("Stamp", WithTimestamps::of(|(_, ts): &(String, i64)| *ts))
            .apply("Minutes", WindowInto::fixed(60_000))
            .map("Shout", |(k, ts): (String, i64)| {
                (k.to_uppercase(), ts / 1000)
            })
            .par_do("Describe", DescribeWindow { grouped: false });
        let got = capture(&described);
        p.run().unwrap();
        assert_eq!(
            got.sorted(),
            strings(&[
                "U=1 in [0,60000) at 1000",
                "V=61 in [60000,120000) at 61000"
            ]),
            "streaming: {streaming}"
        );
    }
}

#[test]
fn sliding_and_session_windows() {
    let p = pipeline();
    let events = p.apply(
        "Events",
        Create::of(vec![
            kv("a", 0),
            kv("a", 5_000),
            kv("a", 30_000),
            kv("b", 12_000),
        ]),
    );
    let stamped = events.apply("Stamp", WithTimestamps::of(|(_, ts): &(String, i64)| *ts));
    let sliding = stamped
        .apply("Sliding", WindowInto::sliding(20_000, 10_000))
        .apply("CountS", Count::per_key())
        .par_do("DescribeS", DescribeWindow { grouped: true });
    let sessions = stamped
        .apply("Sessions", WindowInto::sessions(10_000))
        .apply("CountG", Count::per_key())
        .par_do("DescribeG", DescribeWindow { grouped: true });
    let s = capture(&sliding);
    let g = capture(&sessions);
    p.run().unwrap();
    assert_eq!(
        s.sorted(),
        strings(&[
            "a=1 in [20000,40000) at 39999",
            "a=1 in [30000,50000) at 49999",
            "a=2 in [-10000,10000) at 9999",
            "a=2 in [0,20000) at 19999",
            "b=1 in [0,20000) at 19999",
            "b=1 in [10000,30000) at 29999",
        ])
    );
    assert_eq!(
        g.sorted(),
        strings(&[
            "a=1 in [30000,40000) at 39999",
            "a=2 in [0,15000) at 14999",
            "b=1 in [12000,22000) at 21999",
        ])
    );
}

#[derive(Clone)]
struct DescribeWindow {
    /// The elements are a grouping's output: the one on-time pane of their window.
    grouped: bool,
}

impl DoFn for DescribeWindow {
    type In = (String, i64);
    type Out = String;
    fn process(
        &mut self,
        (k, n): (String, i64),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let beamline::Window::Interval { start, end } = ctx.window() else {
            return Err("expected an interval window".into());
        };
        let pane = ctx.pane();
        if self.grouped {
            assert!(pane.is_first && pane.is_last && pane.timing == beamline::Timing::OnTime);
        }
        ctx.output(format!("{k}={n} in [{start},{end}) at {}", ctx.timestamp()));
        Ok(())
    }
}
