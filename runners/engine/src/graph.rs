//! The engine's pipeline graph: what runners translate a portable pipeline into.

use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::registry::DoFnFactory;
use crate::window::{TimestampCombiner, WindowFn};
use std::sync::Arc;

/// Index of a PCollection in [`Graph::pcollections`].
pub type PcId = usize;

/// A pipeline ready to execute: PCollections and the transforms between them.
#[derive(Default)]
pub struct Graph {
    /// All PCollections.
    pub pcollections: Vec<PCollectionInfo>,
    /// All leaf transforms (or natively executed composites).
    pub nodes: Vec<Node>,
}

/// What the engine knows about a PCollection.
#[derive(Clone, Debug)]
pub struct PCollectionInfo {
    /// Unique name, for messages.
    pub name: String,
    /// How its elements encode.
    pub coder: Coder,
    /// How it is windowed.
    pub windowing: Windowing,
}

/// The windowing strategy of a PCollection (the batch subset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Windowing {
    /// Assigns (and merges) windows.
    pub window_fn: WindowFn,
    /// Timestamp of grouped outputs.
    pub timestamp_combiner: TimestampCombiner,
}

/// A transform in the graph.
pub struct Node {
    /// The transform's unique name (errors and metrics name it).
    pub name: String,
    /// What it does.
    pub kind: NodeKind,
    /// Main inputs (Flatten: all inputs; others: exactly one or none).
    pub inputs: Vec<PcId>,
    /// Outputs; for ParDo, index = output tag number.
    pub outputs: Vec<PcId>,
}

/// The operation a node performs.
pub enum NodeKind {
    /// Emits one empty byte array in the global window.
    Impulse,
    /// Runs user code on every element.
    ParDo {
        /// Creates DoFn instances.
        dofn: DoFnFactory,
        /// Side-input PCollections, in the order the DoFn reads them.
        side_inputs: Vec<PcId>,
    },
    /// Assigns windows to every element.
    WindowInto {
        /// The window function.
        window_fn: WindowFn,
    },
    /// Groups `KV<K, V>` into `KV<K, Iterable<V>>` per key and window.
    GroupByKey,
    /// Combines values per key and window (lifted before the shuffle).
    CombinePerKey {
        /// The aggregation.
        combine_fn: Arc<dyn CombineFnInvoker>,
    },
    /// Concatenates its inputs.
    Flatten,
    /// Redistributes elements into new bundles (a fusion break).
    Reshuffle,
}

impl NodeKind {
    /// Short name of the kind, for messages.
    pub fn label(&self) -> &'static str {
        match self {
            NodeKind::Impulse => "Impulse",
            NodeKind::ParDo { .. } => "ParDo",
            NodeKind::WindowInto { .. } => "WindowInto",
            NodeKind::GroupByKey => "GroupByKey",
            NodeKind::CombinePerKey { .. } => "CombinePerKey",
            NodeKind::Flatten => "Flatten",
            NodeKind::Reshuffle => "Reshuffle",
        }
    }

    pub(crate) fn is_fusable(&self) -> bool {
        matches!(self, NodeKind::ParDo { .. } | NodeKind::WindowInto { .. })
    }
}
