//! The Beamline variants of a workload (local on N threads, local on 1, distributed on 2
//! processes) and what the harness reports of the distributed one.

use crate::Measurement;

/// The runner options of a Beamline variant: `beamline-local` on `threads` threads,
/// `beamline-local-1-thread`, `beamline-distributed` on 2 processes of 1 thread.
pub fn beamline_args(variant: &str, threads: usize) -> Vec<String> {
    match variant {
        "beamline-local-1-thread" | "beamline-streaming-1-thread" => vec!["--threads=1".into()],
        "beamline-distributed" | "beamline-distributed-checkpoints" => vec![
            "--runner=distributed".into(),
            "--processes=2".into(),
            "--threads-per-process=1".into(),
        ],
        _ => vec![format!("--threads={threads}")],
    }
}

/// [`beamline_args`] as pipeline options.
pub fn beamline_options(variant: &str, threads: usize) -> beamline::PipelineOptions {
    let mut o = beamline::PipelineOptions::default();
    for a in beamline_args(variant, threads) {
        if let Some((k, v)) = a.trim_start_matches("--").split_once('=') {
            o = o.set(&k.replace('-', "_"), v);
        }
    }
    o
}

/// The distributed runner's cost over the local runner on one thread: the CPU time its
/// processes spend beyond the local run's (encoding, the exchange between processes,
/// decoding, Timely's progress tracking), per element of the input.
pub fn exchange_note(results: &[Measurement], elements: f64, unit: &str) {
    let find = |name: &str| results.iter().find(|r| r.name == name);
    let one = results.iter().find(|r| r.name.ends_with("-1-thread"));
    if let (Some(d), Some(l)) = (find("beamline-distributed"), one) {
        println!(
            "exchange cost: {:.0} ns of CPU per {unit} (beamline-distributed's CPU time \
             {:.2} s over {}'s {:.2} s, {:.0} {unit}s)",
            (d.cpu_seconds - l.cpu_seconds) / elements * 1e9,
            d.cpu_seconds,
            l.name,
            l.cpu_seconds,
            elements
        );
        if let Some(two) = find("beamline-local").or_else(|| find("beamline-streaming")) {
            println!(
                "distributed (2 processes) vs local: {:.2}x faster than 1 thread, {:.2}x the \
                 2-thread time",
                l.seconds / d.seconds,
                d.seconds / two.seconds
            );
            // What a run on 1 worker thread keeps busy (a streaming run's source readers
            // have threads of their own): with 2 cores, at most 2 / that as fast.
            println!(
                "cores kept busy: {} {:.2}, beamline-distributed {:.2}",
                l.name,
                l.cpu_seconds / l.seconds.max(1e-9),
                d.cpu_seconds / d.seconds.max(1e-9)
            );
        }
    }
}
