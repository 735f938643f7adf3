//! The distributed runner in streaming: the stateless transforms after an unbounded source
//! run in the source's operator. A DoFn there sees every element, ends each bundle
//! (it emits only from `finish_bundle`), reports its counter, and the job gives the local
//! runner's results.
//!
//! A plain `main` (no test harness): the distributed runner re-executes this binary as its
//! worker processes, which rebuild the same pipeline.

use beamline::io::generator::Generator;
use beamline::{
    BundleContext, Count, DoFn, Pipeline, PipelineOptions, ProcessContext, UserError, Window,
    WriteToText,
};
use std::path::Path;

const EVENTS: u64 = 30_000;

/// Passes keys on at the end of each bundle, counting them.
#[derive(Clone, Default)]
struct AtBundleEnd {
    held: Vec<(i64, i64)>,
}

impl DoFn for AtBundleEnd {
    type In = (i64, i64);
    type Out = i64;
    fn process(
        &mut self,
        (key, _): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, i64>,
    ) -> Result<(), UserError> {
        ctx.inc_counter("test", "seen", 1);
        self.held.push((key, ctx.timestamp()));
        Ok(())
    }

    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, i64>) -> Result<(), UserError> {
        for (key, ts) in self.held.drain(..) {
            ctx.output_at(key, ts, Window::Global);
        }
        Ok(())
    }
}

/// Runs the pipeline with `options`; the output's lines (sorted) and the counter.
fn run(options: PipelineOptions, out: &Path) -> (Vec<String>, i64) {
    let p = Pipeline::new(options.set("streaming", "true"));
    p.apply("Events", Generator::new(50).with_count(EVENTS).with_seed(3))
        .par_do("AtBundleEnd", AtBundleEnd::default())
        .apply("Count", Count::per_element())
        .map("Format", |(k, n): (i64, i64)| format!("{k},{n}"))
        .apply("Write", WriteToText::new(out.join("out").to_string_lossy()));
    let result = p.run().expect("the job runs");
    if beamline::worker::is_worker() {
        // A worker's share is done; the launcher reads the output.
        return (Vec::new(), 0);
    }
    let seen = result.metrics().counter("test", "seen").unwrap_or(0);
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    (lines, seen)
}

fn main() {
    // Every process runs this `main` (SPMD): a worker skips the runs before its job and
    // does its share of the distributed one; the launching process checks the results.
    let worker = beamline::worker::is_worker();
    let dir = tempfile::tempdir().unwrap();
    let (local, d) = (dir.path().join("local"), dir.path().join("distributed"));
    if !worker {
        std::fs::create_dir_all(&local).unwrap();
        std::fs::create_dir_all(&d).unwrap();
    }
    let (want, seen_local) = run(PipelineOptions::default().set("runner", "local"), &local);
    let (got, seen) = run(
        PipelineOptions::default()
            .set("runner", "distributed")
            .set("processes", "2"),
        &d,
    );
    if worker {
        return;
    }
    assert_eq!(seen_local, EVENTS as i64);
    assert_eq!(
        seen, EVENTS as i64,
        "every process's counter reaches the result"
    );
    assert_eq!(want.len(), 50, "{want:?}");
    assert_eq!(got, want);
    let total: i64 = got
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, EVENTS as i64);
    println!(
        "distributed source chain: {} keys, {seen} events, as local",
        got.len()
    );
}
