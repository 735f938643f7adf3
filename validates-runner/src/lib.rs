//! Beamline's validates-runner suite: conformance cases run on every runner, and the
//! capability matrix (runner × category) they produce.
//!
//! A [`Case`] is a named pipeline whose expected output is asserted inside the pipeline
//! (with [`beamline::testing::assert_that`]) or checked on the job's result, tagged with
//! the capability [`Category`]s it uses, named as Apache Beam's ValidatesRunner categories.
//! Expected outputs are computed independently of the runners: by hand, by plain Rust
//! code in the case, or from panes recorded with Apache Beam Python 2.77.
//!
//! Every runner in [`RUNNERS`] declares what it cannot do (a skip list with reasons); a
//! case in a skipped category is reported as unsupported, every other case must pass.

pub mod beam_service;
pub mod cases;
mod isolated;
mod matrix;

pub use isolated::{serve_case, ScratchDir};
pub use matrix::{run_suite, Matrix, Outcome};

use beamline::{Pipeline, PipelineOptions, PipelineResult};

/// A capability category, named as Beam's ValidatesRunner categories where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Impulse and Create.
    Impulse,
    /// ParDo, Map, FlatMap, Filter and friends.
    ParDo,
    /// setup / start_bundle / finish_bundle / teardown.
    ParDoLifecycle,
    /// Additional tagged outputs.
    MultipleOutputs,
    /// Side inputs of every view kind.
    SideInputs,
    /// GroupByKey.
    GroupByKey,
    /// CoGroupByKey.
    CoGroupByKey,
    /// Flatten.
    Flatten,
    /// Combine globally and per key (lifted).
    Combine,
    /// Partition, Reshuffle, Distinct and other composites.
    Composites,
    /// Fixed, sliding and global windows, timestamps.
    Windowing,
    /// Session windows (merging).
    MergingWindows,
    /// Timestamp combiners of grouped outputs.
    TimestampCombiners,
    /// Triggers and pane info.
    Triggers,
    /// Late data and allowed lateness.
    AllowedLateness,
    /// TestStream.
    TestStream,
    /// Unbounded sources.
    UnboundedPCollections,
    /// Stateful ParDo (value, bag, combining state).
    StatefulParDo,
    /// Map state.
    MapState,
    /// Set state.
    SetState,
    /// Ordered list state.
    OrderedListState,
    /// Event-time timers.
    TimersInParDo,
    /// Processing-time timers.
    ProcessingTimeTimers,
    /// Timers that set themselves again.
    LoopingTimer,
    /// On-window-expiration callbacks.
    OnWindowExpiration,
    /// Key of a stateful ParDo.
    KeyInParDo,
    /// Counters, distributions, gauges.
    Metrics,
    /// Keys and values larger than 1 MiB.
    LargeKeys,
    /// More than a million keys.
    ManyKeys,
    /// One key holding most of the data.
    SkewedKeys,
    /// Empty inputs.
    EmptyInputs,
    /// Text files.
    TextIO,
    /// Bad input: each expected error.
    BadInput,
}

/// What a case expects from running its pipeline.
#[derive(Clone, Copy)]
pub enum Expect {
    /// The job succeeds (its in-pipeline assertions hold).
    Success,
    /// The job succeeds and its result passes this check.
    Result(fn(&PipelineResult) -> Result<(), String>),
    /// The job fails with an error containing this text.
    Failure(&'static str),
}

/// A conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Unique name.
    pub name: &'static str,
    /// Categories it exercises.
    pub categories: &'static [Category],
    /// Builds the pipeline (with its assertions) on `p`.
    pub build: fn(&Pipeline),
    /// What running it must give.
    pub expect: Expect,
}

/// A runner of the matrix: a registered runner plus options, and what it skips.
#[derive(Clone, Copy, Debug)]
pub struct RunnerEntry {
    /// Column name in the matrix.
    pub name: &'static str,
    /// `--runner` value.
    pub runner: &'static str,
    /// Extra options (`name`, `value`).
    pub options: &'static [(&'static str, &'static str)],
    /// Categories it does not support, with the reason.
    pub skips: &'static [(Category, &'static str)],
    /// Whether each case runs in a process of its own: the runner re-executes the program
    /// (see [`serve_case`]).
    pub own_process: bool,
    /// Whether the runner submits to Beam Python's job service ([`beam_service`]), whose
    /// address becomes `--job-endpoint`.
    pub beam_job_service: bool,
}

impl RunnerEntry {
    /// Options for a pipeline run on this runner.
    ///
    /// # Errors
    /// A job service this runner needs did not start.
    pub fn pipeline_options(&self) -> Result<PipelineOptions, String> {
        // Quiet: a summary per case would bury the matrix.
        let mut o = PipelineOptions::default()
            .set("runner", self.runner)
            .set("quiet", true);
        for (k, v) in self.options {
            o = o.set(k, v);
        }
        if self.beam_job_service {
            o = o.set("job_endpoint", beam_service::endpoint()?);
        }
        Ok(o)
    }
}

/// The runners every case runs on. Adding a runner is one line.
pub const RUNNERS: &[RunnerEntry] = &[
    RunnerEntry {
        name: "local",
        runner: "local",
        options: &[],
        skips: &[],
        own_process: false,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "local (1 thread)",
        runner: "local",
        options: &[("threads", "1")],
        skips: &[],
        own_process: false,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "local --memory-budget=1B (spills everything)",
        runner: "local",
        options: &[("memory_budget", "1B")],
        skips: &[],
        own_process: false,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "local --streaming",
        runner: "local",
        options: &[("streaming", "true")],
        skips: &[],
        own_process: false,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "local --streaming --memory-budget=1B (state spills)",
        runner: "local",
        options: &[("streaming", "true"), ("memory_budget", "1B")],
        skips: &[],
        own_process: false,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "distributed (2 processes)",
        runner: "distributed",
        options: &[("processes", "2")],
        skips: &[],
        own_process: true,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "distributed (2 processes x 2 threads)",
        runner: "distributed",
        options: &[("processes", "2"), ("threads_per_process", "2")],
        skips: &[],
        own_process: true,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "distributed --streaming",
        runner: "distributed",
        options: &[("processes", "2"), ("streaming", "true")],
        skips: &[],
        own_process: true,
        beam_job_service: false,
    },
    RunnerEntry {
        name: "portable (Beam Python job service)",
        runner: "portable",
        options: &[],
        skips: PORTABLE_SKIPS,
        own_process: false,
        beam_job_service: true,
    },
];

/// What Beam Python's local job service (its FnApiRunner) cannot run.
const PORTABLE_SKIPS: &[(Category, &str)] = &[
    (
        Category::TestStream,
        "Beam Python's local job service runs bounded pipelines only: it has no TestStream",
    ),
    (
        Category::UnboundedPCollections,
        "Beam Python's local job service runs bounded pipelines only: no unbounded sources",
    ),
];
