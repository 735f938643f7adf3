//! The engine's pipeline graph: what runners translate a portable pipeline into.

use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::error::{EngineError, Result};
use crate::registry::DoFnFactory;
use crate::state::{StateKind, TimeDomain};
use crate::trigger::Trigger;
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

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidPipeline(msg)
}

impl Graph {
    /// The node producing each PCollection (`None` for none), by PCollection index.
    ///
    /// # Errors
    /// A node reading or writing a PCollection that does not exist, or a PCollection that
    /// two nodes produce.
    pub fn producers(&self) -> Result<Vec<Option<usize>>> {
        let npc = self.pcollections.len();
        let mut producer = vec![None; npc];
        for (i, node) in self.nodes.iter().enumerate() {
            for pc in node.reads().chain(node.outputs.iter().copied()) {
                if pc >= npc {
                    return Err(invalid(format!(
                        "transform '{}' refers to an unknown PCollection #{pc}",
                        node.name
                    )));
                }
            }
            for &pc in &node.outputs {
                if let Some(other) = producer[pc].replace(i) {
                    return Err(invalid(format!(
                        "PCollection '{}' is produced by both '{}' and '{}'",
                        self.pcollections[pc].name, self.nodes[other].name, node.name
                    )));
                }
            }
        }
        Ok(producer)
    }

    /// The readers of each PCollection, by PCollection index: `(node, slot)` with slot 0
    /// for a main input and `1 + i` for side input `i`.
    pub fn consumers(&self) -> Vec<Vec<(usize, usize)>> {
        let mut consumers = vec![Vec::new(); self.pcollections.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &pc in &node.inputs {
                consumers[pc].push((i, 0));
            }
            for (s, &pc) in node.side_inputs().iter().enumerate() {
                consumers[pc].push((i, s + 1));
            }
        }
        consumers
    }

    /// The nodes in an order where every node comes after the producers of what it reads
    /// (main and side inputs).
    ///
    /// # Errors
    /// As [`Graph::producers`]; a PCollection read but never produced; a cycle.
    pub fn topological_order(&self) -> Result<Vec<usize>> {
        let producer = self.producers()?;
        let n = self.nodes.len();
        let mut state = vec![0u8; n];
        let mut out = Vec::with_capacity(n);
        for start in 0..n {
            if state[start] != 0 {
                continue;
            }
            // Iterative depth-first search: (node, its reads, next read to visit).
            let reads = |i: usize| self.nodes[i].reads().collect::<Vec<_>>();
            let mut stack = vec![(start, reads(start), 0usize)];
            state[start] = 1;
            while let Some((node, deps, next)) = stack.last_mut() {
                let Some(&pc) = deps.get(*next) else {
                    state[*node] = 2;
                    out.push(*node);
                    stack.pop();
                    continue;
                };
                *next += 1;
                let Some(p) = producer[pc] else {
                    return Err(invalid(format!(
                        "PCollection '{}' read by '{}' has no producer",
                        self.pcollections[pc].name, self.nodes[*node].name
                    )));
                };
                match state[p] {
                    0 => {
                        state[p] = 1;
                        stack.push((p, reads(p), 0));
                    }
                    1 => return Err(invalid(format!("cycle through '{}'", self.nodes[p].name))),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
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

/// The windowing strategy of a PCollection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Windowing {
    /// Assigns (and merges) windows.
    pub window_fn: WindowFn,
    /// Timestamp of grouped outputs.
    pub timestamp_combiner: TimestampCombiner,
    /// When grouped panes fire.
    pub trigger: Trigger,
    /// Later panes include the elements of earlier ones.
    pub accumulating: bool,
    /// How long after the end of a window late data is still accepted (ms).
    pub allowed_lateness: i64,
}

impl Windowing {
    /// Windowing with `window_fn` and defaults for everything else.
    pub fn new(window_fn: WindowFn) -> Self {
        Windowing {
            window_fn,
            ..Default::default()
        }
    }
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

impl Node {
    /// The side inputs of a ParDo (none for other nodes).
    pub fn side_inputs(&self) -> &[PcId] {
        match &self.kind {
            NodeKind::ParDo { side_inputs, .. } => side_inputs,
            _ => &[],
        }
    }

    /// Everything the node reads: its main inputs, then its side inputs.
    pub fn reads(&self) -> impl Iterator<Item = PcId> + '_ {
        self.inputs.iter().chain(self.side_inputs()).copied()
    }
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
        /// State and timers, for stateful DoFns (input must be key/value).
        stateful: Option<Arc<StatefulSpec>>,
    },
    /// Replays a fixed sequence of elements, watermark and processing-time advances.
    TestStream {
        /// The events, in order.
        events: Vec<TestEvent>,
    },
    /// Reads an unbounded source.
    Source {
        /// Creates the source reader.
        source: SourceFactory,
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
        /// How its accumulators encode (what crosses a process boundary or reaches disk).
        accumulator_coder: Coder,
    },
    /// Concatenates its inputs.
    Flatten,
    /// Redistributes elements into new bundles (a fusion break).
    Reshuffle,
}

/// One step of a TestStream.
#[derive(Clone, Debug)]
pub enum TestEvent {
    /// Emit these elements (value, timestamp ms) as one bundle.
    Elements(Vec<(crate::Value, i64)>),
    /// Advance the watermark to this timestamp.
    Watermark(i64),
    /// Advance processing time by this many ms.
    ProcessingTime(i64),
}

/// Creates readers of an unbounded source.
pub type SourceFactory = Arc<
    dyn Fn() -> Result<Box<dyn crate::source::UnboundedSource>, crate::UserError> + Send + Sync,
>;

/// State cells and timers a stateful DoFn declares.
#[derive(Clone, Default)]
pub struct StatefulSpec {
    /// State cells by name.
    pub states: Vec<StateDecl>,
    /// Timers: name and time domain.
    pub timers: Vec<(String, TimeDomain)>,
    /// Call the DoFn when a window expires.
    pub on_window_expiration: bool,
}

/// One declared state cell.
#[derive(Clone)]
pub struct StateDecl {
    /// The cell's name.
    pub name: String,
    /// What it holds.
    pub kind: StateKind,
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
            NodeKind::TestStream { .. } => "TestStream",
            NodeKind::Source { .. } => "Source",
        }
    }

    /// True for nodes fused with their producer (run on the same thread, on its output
    /// as it is made): stateless ParDos and WindowInto. A stateful ParDo reads its input
    /// exchanged by key, so it is not.
    pub fn is_fusable(&self) -> bool {
        matches!(
            self,
            NodeKind::ParDo { stateful: None, .. } | NodeKind::WindowInto { .. }
        )
    }

    /// True for nodes only the streaming executor runs (unbounded sources, TestStream).
    /// Stateful ParDos run in both: the batch executor shuffles their input by key and
    /// fires their timers once the input is complete.
    pub fn needs_streaming(&self) -> bool {
        matches!(self, NodeKind::TestStream { .. } | NodeKind::Source { .. })
    }
}
