//! The rule of when a CombinePerKey is lifted (inputs folded into accumulators before the
//! exchange), for one-pane and for triggered groupings.

use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::graph::{Graph, NodeKind, Windowing};
use crate::window::TimestampCombiner;
use std::sync::Arc;

/// How a grouping's panes fire, which decides when lifting is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panes {
    /// Bounded input: one pane per key and window, when the input is complete (batch).
    Once,
    /// Panes fire as triggers say while data arrives (streaming).
    Triggered,
}

/// What a lifted CombinePerKey needs to fold inputs before the exchange.
#[derive(Clone)]
pub struct Lift {
    /// The coder of the input's keys (partial results are per encoded key).
    pub key_coder: Coder,
    /// The input's windowing.
    pub windowing: Windowing,
    /// The combine.
    pub combine_fn: Arc<dyn CombineFnInvoker>,
}

impl std::fmt::Debug for Lift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lift")
            .field("key_coder", &self.key_coder)
            .field("windowing", &self.windowing)
            .finish_non_exhaustive()
    }
}

/// Whether a combine over input windowed by `windowing` may be lifted when panes fire as
/// `panes` says: only where it is exact. Never with merging windows (a window's
/// accumulator is not known until sessions merge); when triggered, only with output
/// timestamps at the end of the window or the latest input (a partial result keeps the
/// latest timestamp: the earliest one a watermark hold needs is lost), and for
/// accumulating panes only with accumulators that can be copied (each pane re-reads them).
pub fn lifts(windowing: &Windowing, combine_fn: &dyn CombineFnInvoker, panes: Panes) -> bool {
    if windowing.window_fn.is_merging() {
        return false;
    }
    match panes {
        Panes::Once => true,
        Panes::Triggered => {
            let exact_timestamps = matches!(
                windowing.timestamp_combiner,
                TimestampCombiner::EndOfWindow | TimestampCombiner::Latest
            );
            let copyable =
                !windowing.accumulating || combine_fn.create_accumulator().try_clone().is_some();
            exact_timestamps && copyable
        }
    }
}

/// The lifting of node `node` of `graph`, when it is a CombinePerKey that [`lifts`].
pub fn lifting(graph: &Graph, node: usize, panes: Panes) -> Option<Lift> {
    let n = &graph.nodes[node];
    let NodeKind::CombinePerKey { combine_fn, .. } = &n.kind else {
        return None;
    };
    let input = &graph.pcollections[*n.inputs.first()?];
    let Coder::Kv(key_coder, _) = &input.coder else {
        return None;
    };
    lifts(&input.windowing, &**combine_fn, panes).then(|| Lift {
        key_coder: (**key_coder).clone(),
        windowing: input.windowing.clone(),
        combine_fn: combine_fn.clone(),
    })
}
