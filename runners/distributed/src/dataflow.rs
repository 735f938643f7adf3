//! A translated graph as a Timely dataflow on every worker: each transform is the engine's
//! operator ([`beamline_engine::operators::build`]) inside a Timely operator
//! ([`crate::driver`]); keyed transforms read their input exchanged by key hash, side
//! inputs are broadcast, sources run as [`crate::sources`] says.
//!
//! Stateless one-input transforms (ParDo without state or side inputs, WindowInto) run in
//! the operator of the transform before them when they are its only reader (fused: no
//! encoding between them), and a CombinePerKey that lifts ([`lifting`]) receives partial
//! results per key and window, folded by the operator before the exchange.

use crate::adapter::{self, Route, Scope, Stream};
use crate::chain::{Chain, Link};
use crate::driver::Driver;
use crate::member::Member;
use crate::sources::{Emit, Poll, Replay};
use crate::wire::{Arrives, Encoder, Grouping, Leaves, PartialCodec};
use beamline_engine::exec::exchange::{groups_by_runs, RunGrouper, RunWriter};
use beamline_engine::exec::exchange_combine::{combines_by_tables, TableMerger, TableWriter};
use beamline_engine::graph::{Graph, NodeKind};
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::gbk::GbkOp;
use beamline_engine::operators::precombine::{Mailbox, PreCombine};
use beamline_engine::plan::{lifting, Panes};
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

/// What the workers of one process share: the metrics of finished transforms, and the
/// live counts of its chains.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    metrics: Mutex<MetricResults>,
    /// The launcher started this process (errors go to it in the worker protocol).
    launched: bool,
    /// What every chain and source read and emitted so far.
    pub(crate) meters: crate::progress::ProcessMeters,
}

impl Shared {
    /// Shared state of a process the launcher started (`launched`) or the user did.
    pub(crate) fn new(launched: bool) -> Self {
        Shared {
            metrics: Mutex::default(),
            launched,
            meters: Default::default(),
        }
    }

    /// A transform failed: the worker process reports the error and ends at once, so no
    /// other process can finish the job (and commit output) without this one's share;
    /// the launcher (or, over several machines, the lost connections) stops the others.
    pub(crate) fn fail(&self, e: EngineError) -> ! {
        if self.launched {
            crate::worker::fail(&e.to_string());
        } else {
            eprintln!("error: {e}");
        }
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
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    /// This worker's index, of `workers`.
    pub worker: usize,
    /// Worker threads in the whole job.
    pub workers: usize,
    /// How processing time passes.
    pub clock: Clock,
    /// Most elements an unbounded source reads into one bundle.
    pub max_bundle: usize,
    /// A batch job (bounded input, default triggers, not `--streaming`): its groupings
    /// fire once per key and window, when their input is complete, as the local runner's
    /// batch executor.
    pub batch: bool,
    /// Under virtual time, the processing time once every TestStream ended (each
    /// transform reaches it before its watermark reaches the end of time, as on the local
    /// runner, even when it saw no data after the last advance).
    pub final_processing_time: i64,
    /// How much keyed state each stateful DoFn keeps in memory (`--memory-budget`).
    pub state_budget: Option<beamline_engine::operators::StateBudget>,
}

/// The processing time once every TestStream of `graph` ended: the sum of their advances
/// (virtual time starts at 0).
pub(crate) fn final_processing_time(graph: &Graph) -> i64 {
    graph
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::TestStream { events } => Some(events),
            _ => None,
        })
        .flatten()
        .map(|e| match e {
            beamline_engine::graph::TestEvent::ProcessingTime(d) => (*d).max(0),
            _ => 0,
        })
        .fold(0i64, i64::saturating_add)
}

/// How transforms are grouped into operators.
struct Fusion {
    /// For each node that starts an operator: the nodes it runs, in order.
    chains: Vec<Vec<usize>>,
    /// For each node: whether it runs in an operator started by another node.
    fused: Vec<bool>,
    /// For each CombinePerKey node: whether it receives partial results.
    lifted: Vec<bool>,
    /// For each GroupByKey of a batch job that groups runs ([`groups_by_runs`]) and each
    /// CombinePerKey of a batch job that merges tables ([`combines_by_tables`]): whether
    /// its producer writes the runs or tables (else it receives elements and writes them
    /// itself).
    grouped: Vec<Option<bool>>,
}

/// A transform that can run in the operator of the transform before it.
fn fusable(graph: &Graph, node: usize) -> bool {
    let n = &graph.nodes[node];
    n.inputs.len() == 1
        && match &n.kind {
            NodeKind::ParDo {
                side_inputs,
                stateful,
                ..
            } => side_inputs.is_empty() && stateful.is_none(),
            NodeKind::WindowInto { .. } => true,
            _ => false,
        }
}

/// A transform that runs in an engine operator driven by [`Driver`].
fn driven(kind: &NodeKind) -> bool {
    !matches!(
        kind,
        NodeKind::Flatten
            | NodeKind::Reshuffle
            | NodeKind::Impulse
            | NodeKind::TestStream { .. }
            | NodeKind::Source { .. }
    )
}

/// Fuses `graph` (`batch`: a batch job's; `budgeted`: run under a memory budget).
fn fuse(graph: &Graph, batch: bool, budgeted: bool) -> Result<Fusion, EngineError> {
    let n = graph.nodes.len();
    let consumers = graph.consumers();
    let producer = graph.producers()?;
    let mut chains: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut head = (0..n).collect::<Vec<_>>();
    let mut fused = vec![false; n];
    for node in graph.topological_order()? {
        let only_reader = |pc: usize| consumers[pc].len() == 1;
        let upstream = graph.nodes[node]
            .inputs
            .first()
            .and_then(|&pc| producer[pc].map(|m| (pc, m)));
        match upstream {
            Some((pc, m))
                if fusable(graph, node)
                    && only_reader(pc)
                    && (driven(&graph.nodes[m].kind)
                        || matches!(graph.nodes[m].kind, NodeKind::Source { .. }))
                    && graph.nodes[m].outputs.len() == 1
                    && chains[head[m]].last() == Some(&m) =>
            {
                head[node] = head[m];
                chains[head[m]].push(node);
                fused[node] = true;
            }
            _ => chains[node].push(node),
        }
    }
    // Whether the main input of `node` is its only reader's, written by the last
    // transform of a driven operator (which can then fold or encode it for `node`).
    let fed_by_chain = |node: usize| {
        let Some(&pc) = graph.nodes[node].inputs.first() else {
            return false;
        };
        let feeds = producer[pc].is_some_and(|m| {
            driven(&graph.nodes[m].kind)
                && graph.nodes[m].outputs.len() == 1
                && chains[head[m]].last() == Some(&m)
        });
        feeds && consumers[pc].len() == 1
    };
    // A CombinePerKey is lifted when it lifts and its input is fed by a chain, which then
    // folds its output.
    let lifted = (0..n)
        .map(|node| fed_by_chain(node) && lifting(graph, node, Panes::Triggered).is_some())
        .collect();
    let grouped = (0..n)
        .map(|node| {
            let g = &graph.nodes[node];
            // Runs and merged tables stay in memory: under a budget, panes that spill.
            let by_runner = !budgeted
                && match g.kind {
                    NodeKind::GroupByKey => groups_by_runs(graph, g),
                    NodeKind::CombinePerKey { .. } => combines_by_tables(graph, g),
                    _ => false,
                };
            (batch && by_runner).then(|| fed_by_chain(node))
        })
        .collect();
    Ok(Fusion {
        chains,
        fused,
        lifted,
        grouped,
    })
}

/// This worker's checkpoints and their interval.
pub(crate) type Checkpointing = (crate::checkpoints::Shared, std::time::Duration);

/// Builds the dataflow of `graph` on this worker (taking part in `checkpoints`, if any).
///
/// # Errors
/// A transform whose operator cannot be built.
pub(crate) fn build<'s>(
    scope: Scope<'s>,
    graph: &Arc<Graph>,
    setup: Setup,
    shared: &Arc<Shared>,
    checkpoints: Option<&Checkpointing>,
) -> Result<(), EngineError> {
    let member = |names: Vec<String>| checkpoints.map(|(c, _)| Member::join(c, names));
    let fusion = fuse(graph, setup.batch, setup.state_budget.is_some())?;
    let consumers = graph.consumers();
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
                let meter = shared.meters.register(vec![node.name.clone()]);
                let mut replay = Replay::new(
                    op,
                    &node.name,
                    encoder,
                    setup.worker == 0,
                    member(vec![node.name.clone()]),
                    shared.clone(),
                )
                .metered(meter);
                adapter::operator(scope, &node.name, Vec::new(), 1, move |p| {
                    replay.activate(p)
                })
            }
            NodeKind::Source { source } => {
                let encoder = encoders.into_iter().next().ok_or_else(|| {
                    EngineError::InvalidPipeline(format!("'{}' has no output", node.name))
                })?;
                // The stateless transforms after a source run in its operator: no
                // encoding between them.
                let chain = &fusion.chains[n];
                let last = &graph.nodes[*chain.last().unwrap_or(&n)];
                let emit = if chain.len() > 1 {
                    let links = chain[1..]
                        .iter()
                        .map(|&m| {
                            Ok(Link {
                                op: beamline_engine::operators::build(graph, &graph.nodes[m])?,
                                name: graph.nodes[m].name.clone(),
                            })
                        })
                        .collect::<Result<Vec<_>, EngineError>>()?;
                    let leaves = last
                        .outputs
                        .iter()
                        .map(|&pc| {
                            leaves_of(graph, &fusion, &consumers, pc, &last.name, setup.workers)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let now = crate::driver::wall_clock_ms();
                    let mut chain = Chain::new(links, leaves, now).holding(setup.batch);
                    chain.checkpoint_overflow =
                        setup.state_budget.as_ref().map(|b| b.checkpoint_overflow());
                    Emit::Chain(Box::new(chain))
                } else {
                    Emit::Encoded(encoder)
                };
                let names: Vec<String> =
                    chain.iter().map(|&m| graph.nodes[m].name.clone()).collect();
                let meter = shared.meters.register(names.clone());
                let mut poll = Poll::new(
                    source.clone(),
                    (setup.worker, setup.workers),
                    &node.name,
                    emit,
                    setup.max_bundle,
                    member(names).zip(checkpoints.map(|(_, every)| *every)),
                    shared.clone(),
                )
                .metered(meter);
                let outs = adapter::operator(
                    scope,
                    &node.name,
                    Vec::new(),
                    last.outputs.len(),
                    move |p| poll.activate(p),
                );
                for (&pc, s) in last.outputs.iter().zip(outs) {
                    streams[pc] = Some(s);
                }
                continue;
            }
            kind => {
                if fusion.fused[n] {
                    // Runs in the operator of the transform before it.
                    continue;
                }
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
                let mut arrives = Vec::new();
                let mut head = beamline_engine::operators::build(graph, node)?;
                if let Some(fed_by_runs) = fusion.grouped[n] {
                    // The runner groups (or combines): the transform passes the output on.
                    head = beamline_engine::operators::pass();
                    let cannot = || {
                        EngineError::InvalidPipeline(format!("'{}' cannot group runs", node.name))
                    };
                    let grouper = match node.kind {
                        NodeKind::CombinePerKey { .. } => {
                            Grouping::Tables(TableMerger::new(graph, node).ok_or_else(cannot)?)
                        }
                        _ => Grouping::Runs(RunGrouper::new(graph, node).ok_or_else(cannot)?),
                    };
                    let coder = graph.pcollections[node.inputs[0]].coder.clone();
                    arrives.push(Arrives::Grouped(
                        (!fed_by_runs).then_some(coder),
                        Some(Box::new(grouper)),
                    ));
                } else if fusion.lifted[n] {
                    let (codec, lift) = partial_codec(graph, n, setup.workers)?;
                    let mailbox = Mailbox::default();
                    let mut op = GbkOp::new(lift.key_coder, lift.windowing, Some(lift.combine_fn))
                        .with_mailbox(mailbox.clone());
                    // What checkpoints encode its state with.
                    if let beamline_engine::coder::Coder::Kv(_, v) =
                        &graph.pcollections[node.inputs[0]].coder
                    {
                        op = op.with_value_coder((**v).clone());
                    }
                    head = Box::new(op);
                    arrives.push(Arrives::Partials(codec, mailbox));
                } else {
                    arrives.push(Arrives::Elements(
                        graph.pcollections[node.inputs[0]].coder.clone(),
                    ));
                }
                for &pc in node.side_inputs() {
                    ins.push((input(pc)?, Route::Everywhere));
                    arrives.push(Arrives::Elements(graph.pcollections[pc].coder.clone()));
                }
                let chain = &fusion.chains[n];
                let mut links = vec![Link {
                    op: head,
                    name: node.name.clone(),
                }];
                for &m in &chain[1..] {
                    links.push(Link {
                        op: beamline_engine::operators::build(graph, &graph.nodes[m])?,
                        name: graph.nodes[m].name.clone(),
                    });
                }
                if let Some(b) = &setup.state_budget {
                    for l in &mut links {
                        l.op.limit_state(b.clone());
                    }
                }
                let last = &graph.nodes[*chain.last().unwrap_or(&n)];
                let leaves = last
                    .outputs
                    .iter()
                    .map(|&pc| leaves_of(graph, &fusion, &consumers, pc, &last.name, setup.workers))
                    .collect::<Result<Vec<_>, _>>()?;
                // Bundles matter to a grouping whose trigger is not the default one
                // (counts, every element) or that fires late panes (one per bundle).
                let bundled = match &node.kind {
                    NodeKind::GroupByKey | NodeKind::CombinePerKey { .. } => {
                        let w = &graph.pcollections[node.inputs[0]].windowing;
                        w.trigger != beamline_engine::trigger::Trigger::Default
                            || w.allowed_lateness > 0
                    }
                    _ => false,
                };
                let names: Vec<String> = links.iter().map(|l| l.name.clone()).collect();
                let meter = shared.meters.register(names.clone());
                let mut driver = Driver::new(
                    links,
                    arrives,
                    leaves,
                    !bundled,
                    &setup,
                    member(names),
                    shared.clone(),
                );
                driver.metered(meter);
                driver.chain.checkpoint_overflow =
                    setup.state_budget.as_ref().map(|b| b.checkpoint_overflow());
                let outs =
                    adapter::operator(scope, &node.name, ins, last.outputs.len(), move |p| {
                        driver.activate(p)
                    });
                for (&pc, s) in last.outputs.iter().zip(outs) {
                    streams[pc] = Some(s);
                }
                continue;
            }
        };
        for (&pc, s) in node.outputs.iter().zip(outs) {
            streams[pc] = Some(s);
        }
    }
    Ok(())
}

/// How CombinePerKey `node`'s partial results cross the exchange to its `workers`, and
/// its lifting.
fn partial_codec(
    graph: &Graph,
    node: usize,
    workers: usize,
) -> Result<(PartialCodec, beamline_engine::plan::Lift), EngineError> {
    let n = &graph.nodes[node];
    let lift = lifting(graph, node, Panes::Triggered);
    let (
        Some(lift),
        NodeKind::CombinePerKey {
            accumulator_coder, ..
        },
    ) = (lift, &n.kind)
    else {
        return Err(EngineError::InvalidPipeline(format!(
            "'{}' is not a CombinePerKey that lifts",
            n.name
        )));
    };
    let codec = PartialCodec {
        name: n.name.clone(),
        key_coder: lift.key_coder.clone(),
        acc_coder: accumulator_coder.clone(),
        combine: lift.combine_fn.clone(),
        workers,
    };
    Ok((codec, lift))
}

/// How PCollection `pc`, written by transform `writer`, leaves its operator (for a job of
/// `workers` worker threads): folded into partial results when its only reader is a
/// lifted CombinePerKey, encoded otherwise.
fn leaves_of(
    graph: &Graph,
    fusion: &Fusion,
    consumers: &[Vec<(usize, usize)>],
    pc: usize,
    writer: &str,
    workers: usize,
) -> Result<Leaves, EngineError> {
    if let [(c, 0)] = consumers[pc].as_slice() {
        if fusion.grouped[*c] == Some(true) {
            let cannot = || EngineError::InvalidPipeline(format!("'{writer}' cannot write runs"));
            let node = &graph.nodes[*c];
            return Ok(match node.kind {
                NodeKind::CombinePerKey { .. } => {
                    Leaves::Tables(Box::new(TableWriter::new(graph, node).ok_or_else(cannot)?))
                }
                _ => Leaves::Runs(Box::new(RunWriter::new(graph, node).ok_or_else(cannot)?)),
            });
        }
        if fusion.lifted[*c] {
            let (codec, lift) = partial_codec(graph, *c, workers)?;
            let pre = PreCombine::new(
                codec.name.clone(),
                lift.key_coder,
                lift.combine_fn,
                Mailbox::default(),
            );
            return Ok(Leaves::Partials(Box::new(pre), codec));
        }
    }
    Ok(Leaves::Elements(Encoder::new(graph, pc, writer)))
}
