//! A translated graph as a Timely dataflow on every worker: each transform is the engine's
//! operator ([`beamline_engine::operators::build`]) inside a Timely operator
//! ([`crate::driver`]); keyed transforms read their input exchanged by key hash, side
//! inputs are broadcast, sources run as [`crate::sources`] says.

use crate::adapter::{self, Route, Scope, Stream};
use crate::driver::Driver;
use crate::sources::{Poll, Replay};
use crate::wire::Encoder;
use beamline_engine::graph::{Graph, NodeKind};
use beamline_engine::metrics::MetricResults;
use beamline_engine::EngineError;
use std::sync::{Arc, Mutex};

/// How processing time passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// Only as a TestStream advances it (deterministic; pipelines without unbounded sources).
    Virtual,
    /// With the wall clock (unbounded sources).
    Wall,
}

/// What the workers of one process share: the metrics of finished transforms.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    metrics: Mutex<MetricResults>,
}

impl Shared {
    /// A transform failed: the worker process reports the error and ends at once, so no
    /// other process can finish the job (and commit output) without this one's share;
    /// the launcher then stops the others.
    pub(crate) fn fail(&self, e: EngineError) -> ! {
        crate::worker::fail(&e.to_string());
        std::process::exit(1);
    }

    /// Adds a finished transform's metrics.
    pub(crate) fn add_metrics(&self, m: MetricResults) {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(m);
    }

    /// The metrics of every finished transform.
    pub(crate) fn take_metrics(&self) -> MetricResults {
        std::mem::take(&mut *self.metrics.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Where a worker is and how it runs the pipeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    /// This worker's index, of `workers`.
    pub worker: usize,
    /// Worker threads in the whole job.
    pub workers: usize,
    /// How processing time passes.
    pub clock: Clock,
    /// Most elements an unbounded source reads into one bundle.
    pub max_bundle: usize,
}

/// Builds the dataflow of `graph` on this worker.
///
/// # Errors
/// A transform whose operator cannot be built.
pub(crate) fn build<'s>(
    scope: Scope<'s>,
    graph: &Arc<Graph>,
    setup: Setup,
    shared: &Arc<Shared>,
) -> Result<(), EngineError> {
    let mut streams: Vec<Option<Stream<'s>>> = vec![None; graph.pcollections.len()];
    for n in graph.topological_order()? {
        let node = &graph.nodes[n];
        let input = |pc: usize| -> Result<Stream<'s>, EngineError> {
            streams[pc].clone().ok_or_else(|| {
                EngineError::InvalidPipeline(format!("'{}' reads a missing input", node.name))
            })
        };
        let encoders: Vec<Encoder> = node
            .outputs
            .iter()
            .map(|&pc| Encoder::new(graph, pc, &node.name))
            .collect();
        let outs: Vec<Stream<'s>> = match &node.kind {
            NodeKind::Flatten => {
                let ins = node
                    .inputs
                    .iter()
                    .map(|&pc| input(pc))
                    .collect::<Result<_, _>>()?;
                vec![adapter::concatenate(scope, ins)]
            }
            NodeKind::Reshuffle => {
                // Spread over every worker, round robin from this worker's position (the
                // file ranges a read expands to, above all).
                vec![adapter::pass(
                    scope,
                    &node.name,
                    input(node.inputs[0])?,
                    Route::Spread(setup.worker as u64),
                )]
            }
            NodeKind::Impulse | NodeKind::TestStream { .. } => {
                let op = beamline_engine::operators::build(graph, node)?;
                let encoder = encoders.into_iter().next().ok_or_else(|| {
                    EngineError::InvalidPipeline(format!("'{}' has no output", node.name))
                })?;
                // One Impulse element, one replay of a TestStream, for the whole job.
                let mut replay =
                    Replay::new(op, &node.name, encoder, setup.worker == 0, shared.clone());
                adapter::operator(scope, &node.name, Vec::new(), 1, move |p| {
                    replay.activate(p)
                })
            }
            NodeKind::Source { source } => {
                let encoder = encoders.into_iter().next().ok_or_else(|| {
                    EngineError::InvalidPipeline(format!("'{}' has no output", node.name))
                })?;
                let mut poll = Poll::new(
                    source.clone(),
                    (setup.worker, setup.workers),
                    &node.name,
                    encoder,
                    setup.max_bundle,
                    shared.clone(),
                );
                adapter::operator(scope, &node.name, Vec::new(), 1, move |p| poll.activate(p))
            }
            kind => {
                let keyed = matches!(
                    kind,
                    NodeKind::GroupByKey
                        | NodeKind::CombinePerKey { .. }
                        | NodeKind::ParDo {
                            stateful: Some(_),
                            ..
                        }
                );
                let mut ins = vec![(
                    input(node.inputs[0])?,
                    if keyed { Route::ByKey } else { Route::Local },
                )];
                let mut in_coders = vec![graph.pcollections[node.inputs[0]].coder.clone()];
                for &pc in node.side_inputs() {
                    ins.push((input(pc)?, Route::Everywhere));
                    in_coders.push(graph.pcollections[pc].coder.clone());
                }
                let op = beamline_engine::operators::build(graph, node)?;
                let mut driver = Driver::new(
                    op,
                    &node.name,
                    in_coders,
                    encoders,
                    setup.clock,
                    shared.clone(),
                );
                adapter::operator(scope, &node.name, ins, node.outputs.len(), move |p| {
                    driver.activate(p)
                })
            }
        };
        for (&pc, s) in node.outputs.iter().zip(outs) {
            streams[pc] = Some(s);
        }
    }
    Ok(())
}
