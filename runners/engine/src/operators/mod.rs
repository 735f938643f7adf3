//! The operators: what every scheduler (batch, streaming, a distributed or Fn API one)
//! drives to run a graph's transforms with Beam's semantics.
//!
//! - [`op`]: the [`Op`] interface (batches in and out, bundle ends, watermarks,
//!   processing time, holds) and [`build`], the operator of a graph node.
//! - [`pardo`]: ParDo (DoFn lifecycle, side inputs, tagged outputs; with state and timers
//!   per key and window for stateful DoFns, kept by `keyed_states` in memory and beyond
//!   a budget in `state_spill`'s store on disk) and [`stateful_batch`], a stateful DoFn
//!   run over a bounded, key-partitioned input.
//! - [`gbk`]: GroupByKey and CombinePerKey with windows, merging, triggers, panes, allowed
//!   lateness and timestamp combiners ([`pane`] holds a window's pane state).
//! - [`precombine`]: a lifted CombinePerKey's pre-combining (partial results per key and
//!   window before the exchange) and the rule of when lifting is exact.
//! - [`simple`]: Impulse, TestStream, WindowInto, Flatten.
//! - [`partition`]: the stable key hash and the partition of a key.
//! - [`guard`]: calls into user code, with errors and panics naming the transform.
//!
//! Sources with worker threads are a scheduling concern and live with the streaming
//! scheduler ([`crate::stream`]); the batch scheduler ([`crate::exec`]) runs ParDo chains
//! through its own fused stages and shuffles, and stateful ParDos through
//! [`stateful_batch`].

mod bloom;
pub(crate) mod due;
pub mod gbk;
pub mod guard;
pub(crate) mod key_table;
mod keyed_states;
pub mod op;
pub mod pane;
mod pane_codec;
mod pane_spill;
pub mod pardo;
mod pardo_codec;
pub mod partition;
pub mod precombine;
pub mod simple;
mod slot_table;
pub mod state_backend;
mod state_size;
mod state_spill;
pub mod stateful_batch;

pub use op::{call_bounded, forward, Op, OpCx, SourceStep, StateBudget, END_OF_TIME};

use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, NodeKind};

/// The operator of ParDo `node` of `graph`, keeping its state and timers in `backend`
/// (see [`state_backend::StateBackend`]).
///
/// # Errors
/// As [`build`]; a node that is not a ParDo.
pub fn build_with_backend(
    graph: &Graph,
    node: &Node,
    backend: Box<dyn state_backend::StateBackend>,
) -> Result<Box<dyn Op>> {
    let NodeKind::ParDo {
        dofn,
        side_inputs,
        stateful,
    } = &node.kind
    else {
        return Err(EngineError::InvalidPipeline(format!(
            "'{}' is not a ParDo: it has no state backend",
            node.name
        )));
    };
    Ok(Box::new(
        pardo::ParDoOp::new(graph, node, dofn, side_inputs, stateful.as_ref())?
            .with_backend(backend),
    ))
}

/// An operator that forwards its input unchanged: what runs in place of a transform
/// whose work the runner does itself (a GroupByKey it groups from
/// [`crate::exec::exchange`] runs, above all).
pub fn pass() -> Box<dyn Op> {
    Box::new(simple::PassOp)
}

/// The operator of `node` of `graph`.
///
/// # Errors
/// [`EngineError::InvalidPipeline`] for a grouping whose input is not key/value, or an
/// unbounded source (the streaming scheduler runs those on worker threads of its own);
/// failures to create a DoFn.
pub fn build(graph: &Graph, node: &Node) -> Result<Box<dyn Op>> {
    if let Some(op) = simple::for_node(&node.kind) {
        return Ok(op);
    }
    Ok(match &node.kind {
        NodeKind::GroupByKey | NodeKind::CombinePerKey { .. } => {
            let input = &graph.pcollections[node.inputs[0]];
            let Coder::Kv(key_coder, value_coder) = &input.coder else {
                return Err(EngineError::InvalidPipeline(format!(
                    "{} '{}' needs key/value input, but '{}' has coder {}",
                    node.kind.label(),
                    node.name,
                    input.name,
                    input.coder
                )));
            };
            let combine = match &node.kind {
                NodeKind::CombinePerKey { combine_fn, .. } => Some(combine_fn.clone()),
                _ => None,
            };
            Box::new(
                gbk::GbkOp::new((**key_coder).clone(), input.windowing.clone(), combine)
                    .with_value_coder((**value_coder).clone()),
            )
        }
        NodeKind::ParDo {
            dofn,
            side_inputs,
            stateful,
        } => Box::new(pardo::ParDoOp::new(
            graph,
            node,
            dofn,
            side_inputs,
            stateful.as_ref(),
        )?),
        NodeKind::Source { .. } => {
            return Err(EngineError::InvalidPipeline(format!(
                "source '{}' is run by the streaming scheduler",
                node.name
            )))
        }
        _ => unreachable!("simple operators are built above"),
    })
}
