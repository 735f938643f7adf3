//! Batch or streaming: which executor a translated pipeline needs.

use beamline_engine::graph::Graph;
use beamline_engine::trigger::Trigger;

/// How a job executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bounded input, processed stage by stage.
    Batch,
    /// Event-driven: watermarks, triggers and timers as data arrives.
    Streaming,
}

/// The mode `graph` needs: streaming when asked for, or when the graph has unbounded
/// sources, a TestStream or a non-default trigger; batch otherwise.
pub fn choose_mode(graph: &Graph, streaming_requested: bool) -> Mode {
    let needs_streaming = streaming_requested
        || graph.nodes.iter().any(|n| n.kind.needs_streaming())
        || graph
            .pcollections
            .iter()
            .any(|p| p.windowing.trigger != Trigger::Default);
    if needs_streaming {
        Mode::Streaming
    } else {
        Mode::Batch
    }
}
