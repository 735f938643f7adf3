//! The floor every Beamline runner stands on: proto -> engine graph, mode, options.
//!
//! A runner receives an encoded portable pipeline (`org.apache.beam.model.pipeline.v1`)
//! and its options. [`prepare`] decodes it, translates it into the engine's
//! [`beamline_engine::graph::Graph`] (resolving user functions through the job's
//! function registry and the `inventory` registrations), reads the engine's options
//! ([`EngineOptions`], declared by [`engine_options`]) and chooses batch or streaming
//! ([`Mode`]). The runner then drives the engine's operators with its own scheduler.
//!
//! This is a crate of its own, not an engine module, because it reads protobuf and the
//! engine must not (so another front end, or a scheduler inside Beam's Fn API harness,
//! can use the engine without it).
//!
//! # Examples
//!
//! ```
//! use beamline_engine::runner::JobContext;
//! use beamline_proto::pipeline::Pipeline;
//! use beamline_proto::prost::Message;
//! let empty = Pipeline { components: Some(Default::default()), ..Default::default() };
//! let job = beamline_translate::prepare(&empty.encode_to_vec(), &JobContext::default()).unwrap();
//! assert_eq!(job.mode, beamline_translate::Mode::Batch);
//! ```

mod components;
mod graph;
mod mode;
mod options;

pub use components::{coder, trigger, window_fn, windowing};
pub use graph::{to_fragment, to_graph};
pub use mode::{choose_mode, Mode};
pub use options::{checkpoint_options, engine_options, EngineOptions, MAX_THREADS_PER_CORE};

use beamline_engine::graph::Graph;
use beamline_engine::runner::JobContext;
use beamline_engine::EngineError;
use beamline_proto::pipeline::Pipeline;
use beamline_proto::prost::Message;

/// `Result` with the engine's error.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidPipeline(msg.into())
}

/// A job ready for a scheduler: its graph, mode and engine options.
pub struct PreparedJob {
    /// The translated pipeline.
    pub graph: Graph,
    /// Batch or streaming.
    pub mode: Mode,
    /// The engine's options for this job.
    pub options: EngineOptions,
}

impl std::fmt::Debug for PreparedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedJob")
            .field("nodes", &self.graph.nodes.len())
            .field("mode", &self.mode)
            .field("options", &self.options)
            .finish()
    }
}

impl PreparedJob {
    /// Fails when the job asks for checkpoints from `runner`, which does not take them.
    ///
    /// # Errors
    /// [`EngineError::InvalidPipeline`] saying so, when `--checkpoint-dir` was given.
    pub fn refuse_checkpoints(&self, runner: &str) -> Result<()> {
        match &self.options.checkpoint {
            Some(c) => Err(invalid(format!(
                "--checkpoint-dir={}: the {runner} runner does not take checkpoints yet; \
                 run the job on the local runner (the default) to checkpoint it",
                c.dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// True when the graph reads an unbounded source (it then runs on real time).
    pub fn has_unbounded_sources(&self) -> bool {
        self.graph
            .nodes
            .iter()
            .any(|n| matches!(n.kind, beamline_engine::graph::NodeKind::Source { .. }))
    }
}

/// Decodes, translates and plans the mode of an encoded pipeline.
///
/// # Errors
/// A malformed proto, dangling ids, URNs the engine does not know (naming the transform
/// or coder), unresolvable functions, malformed engine options.
pub fn prepare(pipeline: &[u8], job: &JobContext) -> Result<PreparedJob> {
    let proto = Pipeline::decode(pipeline)
        .map_err(|e| invalid(format!("malformed pipeline proto: {e}")))?;
    let options = EngineOptions::from_options(&job.options)?;
    let graph = to_graph(&proto, &job.functions)?;
    let mode = choose_mode(&graph, options.streaming);
    Ok(PreparedJob {
        graph,
        mode,
        options,
    })
}
