//! The embedded local runner: runs a portable pipeline proto on all cores of this process.
//!
//! Selected with `--runner=local` (the default). It executes the *proto*, not SDK
//! objects: [`beamline_translate::prepare`] turns the pipeline into the engine's graph and
//! picks batch or streaming; this crate only schedules it on the engine's executors, on a
//! thread of its own behind a [`JobHandle`].
//!
//! Options: those of [`beamline_translate::engine_options`] (`--threads`, `--streaming`,
//! `--memory-budget`, `--spill-dir`, `--max-bundle-size`, checkpoints and restarts). With
//! unbounded sources, Ctrl-C or SIGTERM drains the job: sources stop, watermarks advance
//! to the end, every pending pane fires. With `--restarts=N` a failed streaming job runs
//! again in this process from its newest checkpoint, at most N times.

mod interrupt;

use beamline_engine::checkpoint::Restore;
use beamline_engine::exec::{execute, ExecOptions};
use beamline_engine::job::{JobControl, JobHandle, ThreadJob};
use beamline_engine::options::OptionSpec;
use beamline_engine::restart::Failure;
use beamline_engine::runner::{JobContext, Runner, RunnerRegistration};
use beamline_engine::stream::{execute_streaming, StreamOptions};
use beamline_engine::EngineError;
use beamline_translate::Mode;

/// The local runner.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRunner;

impl Runner for LocalRunner {
    fn options(&self) -> Vec<OptionSpec> {
        beamline_translate::engine_options()
    }

    fn start(&self, pipeline: &[u8], job: JobContext) -> Result<Box<dyn JobHandle>, EngineError> {
        let prepared = beamline_translate::prepare(pipeline, &job)?;
        if prepared.mode == Mode::Batch {
            if let Some(c) = &prepared.options.checkpoint {
                return Err(EngineError::InvalidPipeline(format!(
                    "--checkpoint-dir={}: checkpoints are taken of streaming jobs; this one \
                     runs in batch (pass --streaming to run it as a stream)",
                    c.dir.display()
                )));
            }
        }
        let control = JobControl::default();
        // Real time for unbounded sources; virtual (deterministic) time otherwise.
        let real_time = prepared.has_unbounded_sources();
        let signals = job.handle_signals;
        if signals {
            interrupt::watch(control.clone(), prepared.mode == Mode::Streaming);
        }
        // A failed job's temporary files go, unless checkpoints hold them (a restart
        // from the last checkpoint commits or replaces them).
        let cleanup = if prepared.options.checkpoint.is_some() {
            Vec::new()
        } else {
            job.cleanup.clone()
        };
        let body = move |control: &JobControl| -> Result<(), EngineError> {
            let _unwatch = Unwatch(signals.then(|| control.clone()));
            let o = &prepared.options;
            match prepared.mode {
                Mode::Streaming => {
                    let run = |restart: usize| {
                        let mut checkpoint = o.checkpoint.clone();
                        if let Some(c) = checkpoint.as_mut().filter(|_| restart > 0) {
                            // A restart resumes from what the failed run checkpointed.
                            c.restore = Restore::Latest;
                        }
                        let opts = StreamOptions {
                            virtual_time: !real_time,
                            control: control.clone(),
                            max_bundle_size: o.max_bundle_size,
                            workers: o.threads,
                            checkpoint,
                            memory_budget: o.memory_budget,
                            spill_dir: o.spill_dir.clone(),
                        };
                        execute_streaming(&prepared.graph, &opts).map_err(Failure::of)
                    };
                    o.restarts.run(control, run)?;
                }
                Mode::Batch => {
                    let opts = ExecOptions {
                        threads: o.threads,
                        memory_budget: o.memory_budget,
                        spill_dir: o.spill_dir.clone(),
                        control: control.clone(),
                    };
                    execute(&prepared.graph, &opts)?;
                }
            }
            Ok(())
        };
        let on_failure = move || {
            for dir in &cleanup {
                let _ = std::fs::remove_dir_all(dir);
            }
        };
        Ok(Box::new(ThreadJob::spawn(
            "local", control, body, on_failure,
        )?))
    }
}

/// Stops watching signals for a job when its body ends, however it ends.
struct Unwatch(Option<JobControl>);

impl Drop for Unwatch {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            interrupt::forget(c);
        }
    }
}

/// Parses a byte size (see [`beamline_engine::options::parse_size`]).
///
/// # Errors
/// A message saying what is wrong with `s`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    beamline_engine::options::parse_size(s)
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
