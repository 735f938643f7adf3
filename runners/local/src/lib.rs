//! The embedded local runner: decodes a portable pipeline proto and runs it on all cores.
//!
//! Selected with `--runner=local` (the default). It executes the *proto*, not SDK
//! objects: [`translate`] turns the pipeline into the engine's graph, resolving user
//! functions through the job's function registry and the `inventory` registrations.
//!
//! Options read: `--threads=N` (default: all cores), `--streaming` (event-driven execution
//! with triggers and timers; chosen automatically for unbounded sources, TestStream and
//! non-default triggers; stateful DoFns run in both modes), `--memory-budget=SIZE`
//! (batch: spill grouping state, stateful DoFns' input and materialized PCollections to
//! disk past SIZE, e.g. `512MB`, `2GiB`) and
//! `--spill-dir=DIR`, `--max-bundle-size=N` (streaming: most elements a source reads
//! into one bundle, default 32768). With unbounded sources, Ctrl-C drains the job:
//! sources stop, watermarks advance to the end, every pending pane fires.

mod interrupt;
pub mod translate;

use beamline_engine::exec::{execute, ExecOptions};
use beamline_engine::runner::{JobContext, JobResult, Runner, RunnerRegistration};
use beamline_engine::stream::{execute_streaming, StreamOptions};
use beamline_engine::EngineError;
use beamline_proto::pipeline::Pipeline;
use beamline_proto::prost::Message;

/// The local runner.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRunner;

impl Runner for LocalRunner {
    fn run(&self, pipeline: &[u8], job: JobContext) -> Result<JobResult, EngineError> {
        let proto = Pipeline::decode(pipeline)
            .map_err(|e| EngineError::InvalidPipeline(format!("malformed pipeline proto: {e}")))?;
        let graph = translate::to_graph(&proto, &job.functions)?;
        let threads = match job.options.get("threads") {
            Some(t) => t.parse().map_err(|_| {
                EngineError::InvalidPipeline(format!("--threads must be a number, got '{t}'"))
            })?,
            None => 0,
        };
        let streaming = job.options.get("streaming").is_some_and(|v| v == "true")
            || graph.nodes.iter().any(|n| n.kind.needs_streaming())
            || graph
                .pcollections
                .iter()
                .any(|p| p.windowing.trigger != beamline_engine::trigger::Trigger::Default);
        let metrics = if streaming {
            // Real time for unbounded sources; virtual (deterministic) time otherwise.
            let has_sources = graph
                .nodes
                .iter()
                .any(|n| matches!(n.kind, beamline_engine::graph::NodeKind::Source { .. }));
            let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            if has_sources {
                interrupt::watch(cancel.clone());
            }
            let max_bundle_size = match job.options.get("max_bundle_size") {
                Some(n) => n.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| {
                    EngineError::InvalidPipeline(format!(
                        "--max-bundle-size must be a positive number, got '{n}'"
                    ))
                })?,
                None => beamline_engine::stream::DEFAULT_MAX_BUNDLE_SIZE,
            };
            let opts = StreamOptions {
                virtual_time: !has_sources,
                cancel: Some(cancel),
                max_bundle_size,
                workers: threads,
            };
            execute_streaming(&graph, &opts)?
        } else {
            let memory_budget = match job.options.get("memory_budget") {
                Some(b) => Some(parse_size(b).map_err(|reason| {
                    EngineError::InvalidPipeline(format!("--memory-budget: {reason}"))
                })?),
                None => None,
            };
            let opts = ExecOptions {
                threads,
                memory_budget,
                spill_dir: job.options.get("spill_dir").map(std::path::PathBuf::from),
            };
            execute(&graph, &opts)?
        };
        Ok(JobResult { metrics })
    }
}

/// Parses a byte size: a number with an optional unit (`B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB`; units are powers of 1024, case-insensitive).
///
/// # Errors
/// A message saying what is wrong with `s`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 512MB, 2GiB, 1000000)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use B, KB, MB or GB)"
            ))
        }
    };
    let bytes = num * mult;
    if bytes < 1.0 {
        return Err(format!("'{s}' is less than one byte"));
    }
    Ok(bytes as usize)
}

inventory::submit! {
    RunnerRegistration {
        name: "local",
        description: "embedded multi-threaded runner in this process (default)",
        create: || Box::new(LocalRunner),
    }
}

/// Makes sure this crate (and its runner registration) is linked into the binary.
pub fn link() {}
