//! Beamline: the Beam programming model in Rust.
//!
//! Build a [`Pipeline`] of [`PCollection`]s and transforms (ParDo, GroupByKey, Combine,
//! windowing...), then run it on any runner linked into the binary, chosen with
//! `--runner=NAME` (`local` by default). The pipeline is translated to Apache Beam's
//! portable pipeline proto; runners execute the proto.
//!
//! # Examples
//!
//! ```
//! use beamline::{Count, Create, Pipeline, PipelineOptions};
//!
//! let p = Pipeline::new(PipelineOptions::default());
//! let words = p.apply("Words", Create::of(vec!["a", "b", "a"].into_iter().map(String::from)));
//! let counts = words.apply("Count", Count::per_element());
//! let seen = beamline::testing::capture(&counts);
//! p.run().unwrap();
//! assert_eq!(seen.sorted(), vec![("a".to_string(), 2), ("b".to_string(), 1)]);
//! ```

#[cfg(feature = "mimalloc")]
mod alloc;
pub mod arrow;
pub mod dofn;
pub mod element;
mod error;
mod logging;
pub use logging::main;
pub mod io;
mod options;
mod pcollection;
mod pipeline;
mod proto_build;
pub mod side_input;
pub mod state;
pub mod testing;
pub mod transforms;
pub mod worker;

pub use beamline_engine as engine;
pub use beamline_monitor as monitor;
pub use beamline_proto as proto;

pub use dofn::{
    BundleContext, CommitContext, DoFn, NamedDoFn, ProcessContext, TimerContext, TupleTag,
};
pub use element::{Bytes, DynValue, Element};
pub use engine::job::JobState;
pub use engine::metrics::MetricResults;
pub use engine::options::{OptionKind, OptionSpec};
pub use engine::time::{self, Timestamp};
pub use engine::trigger::Trigger;
pub use engine::window::{TimestampCombiner, WindowFn};
pub use engine::{PaneInfo, Timing, UserError, Window};
pub use error::{Error, Result};
pub use io::text::{ReadFromText, WriteToText};
pub use options::PipelineOptions;
pub use pcollection::{PBegin, PCollection, PInput, POutput};
pub use pipeline::{before_worker_exit, PTransform, Pipeline, PipelineResult, WORKER_PIPELINE_ENV};
pub use side_input::{SideInput, ViewKind};
pub use state::{State, StateSpec, TimerSpec};
pub use transforms::{
    CoGroupByKey, CombineFn, CombineGlobally, CombinePerKey, Count, Create, Distinct, Filter,
    FlatMap, Flatten, GroupByKey, Impulse, Keys, KvSwap, Map, Max, Mean, Min, ParDo, Partition,
    Reshuffle, Sample, Sum, TestStream, Top, Values, WindowInto, WithTimestamps,
};

/// Makes sure the runner crates enabled by features are linked (their registrations too).
pub(crate) fn link_runners() {
    #[cfg(feature = "local")]
    beamline_runner_local::link();
    #[cfg(feature = "distributed")]
    beamline_runner_distributed::link();
    #[cfg(feature = "portable")]
    beamline_runner_portable::link();
}

/// The runners linked into this program (what `--runner` accepts), sorted by name.
pub fn runners() -> Vec<&'static beamline_engine::runner::RunnerRegistration> {
    link_runners();
    beamline_engine::runner::available_runners()
}

/// The options every pipeline reads whatever its runner (`--runner`, `--quiet`, `--ui`...).
pub fn sdk_options() -> Vec<OptionSpec> {
    options::sdk_options()
}
