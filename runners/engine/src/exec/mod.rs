//! The batch executor: fuses the graph into stages and runs them on a thread pool.
//!
//! Planning: ParDo and WindowInto nodes fuse with their producer into a *stage*, rooted
//! at a materialized PCollection (the output of Impulse, GroupByKey, CombinePerKey,
//! Flatten, Reshuffle or a stateful ParDo). Inside a stage elements go from one DoFn to the
//! next in batches of a few hundred (one dispatch, panic guard and context per batch;
//! outputs are built in place in the next op's buffer). PCollections read by a shuffle, a Flatten or as a side
//! input end in a *sink* of the stage that produces them: grouped by key hash for
//! GroupByKey (as encoded runs when values have standard coders), pre-combined per key for
//! CombinePerKey (combiner lifting), or materialized. A Flatten read only by a GroupByKey
//! is not materialized: its inputs write into the shuffle directly. A stateful ParDo is
//! not fused either: its input is shuffled by key like a GroupByKey's, then every key
//! partition runs through its own DoFn instance (`stateful`).
//!
//! Determinism: bundles are cut by data size, never by thread count, and partial results
//! are merged in bundle order, so results do not depend on the number of threads. A
//! lifted combine pre-combines across the bundles of each of a fixed number of lanes
//! (bundles dealt round robin, each lane's in order), merged in lane order.

mod combine_table;
pub mod exchange;
pub mod exchange_combine;
mod grouped;
mod push;
mod shuffle;
mod spill;
mod stage;
mod stateful;

use crate::error::{EngineError, Result};
use crate::graph::{Graph, NodeKind, PcId};
use crate::job::JobControl;
use crate::metrics::MetricResults;
use crate::plan::{Panes, Plan, PlanOptions, SinkPlan, Unit};
use crate::progress::StageMeters;
use crate::window::WindowedValue;
use std::collections::HashMap;

/// Largest bundle a Reshuffle produces.
const MAX_RESHUFFLE_BUNDLE: usize = 8192;

/// How to execute.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Bytes of data to keep in memory before spilling grouping state and materialized
    /// PCollections to disk (`None`: no limit).
    pub memory_budget: Option<usize>,
    /// Where spill files go (default: the system's temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Cancellation requests and live metrics, shared with the job's handle.
    pub control: JobControl,
}

use spill::Bundles;

/// Runs a bounded pipeline to completion and returns its metrics (also reported to
/// `opts.control` as bundles finish, so they can be read while the job runs).
///
/// # Errors
/// The first failure of any transform (user code error or panic, coder mismatch, I/O),
/// naming the transform; [`EngineError::InvalidPipeline`] for a malformed graph;
/// [`EngineError::Cancelled`] when `opts.control` was cancelled (checked between bundles).
pub fn execute(graph: &Graph, opts: &ExecOptions) -> Result<MetricResults> {
    // Under a memory budget each shuffle spills from one stage: no flatten unzipping.
    let plan = Plan::build(
        graph,
        PlanOptions {
            panes: Panes::Once,
            unzip_flattens: opts.memory_budget.is_none(),
        },
    )?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("beamline-worker-{i}"))
        .build()
        .map_err(|e| EngineError::InvalidPipeline(format!("cannot start worker threads: {e}")))?;
    let budget = opts.memory_budget.map(|bytes| spill::Budget {
        bytes,
        dir: opts.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        spilled: Default::default(),
    });
    let spilled = budget.as_ref().map(|b| b.spilled.clone());
    let control = &opts.control;
    let layout = crate::progress::StageLayout::of(graph, &plan, false);
    let meters = control.progress().start(layout.stages, false);
    let metrics = pool.install(|| {
        Executor::new(graph, &plan, budget, control, (meters, layout.node_stage)).run()
    })?;
    control.report_results(metrics);
    if let Some(s) = spilled {
        let bytes = s.load(std::sync::atomic::Ordering::Relaxed);
        let mut c = crate::metrics::MetricsContainer::default();
        c.inc_counter("beamline", "spilledBytes", bytes as i64);
        control.report("(local runner)", &mut c);
    }
    Ok(control.metrics())
}

struct Executor<'g> {
    graph: &'g Graph,
    plan: &'g Plan,
    store: HashMap<PcId, Bundles>,
    readers_left: HashMap<PcId, usize>,
    shuffles: HashMap<usize, shuffle::input::ShuffleInput>,
    metrics: MetricResults,
    budget: Option<spill::Budget>,
    control: &'g JobControl,
    /// Live counts per unit of the plan's order, and the unit of each node.
    meters: StageMeters,
    node_unit: Vec<usize>,
}

impl<'g> Executor<'g> {
    fn new(
        graph: &'g Graph,
        plan: &'g Plan,
        budget: Option<spill::Budget>,
        control: &'g JobControl,
        (meters, node_unit): (StageMeters, Vec<usize>),
    ) -> Self {
        Executor {
            graph,
            plan,
            store: HashMap::new(),
            readers_left: plan.readers.clone(),
            shuffles: HashMap::new(),
            metrics: MetricResults::default(),
            budget,
            control,
            meters,
            node_unit,
        }
    }

    fn run(mut self) -> Result<MetricResults> {
        for (i, unit) in self.plan.order.iter().enumerate() {
            self.control.check()?;
            match *unit {
                Unit::Stage(s) => self.run_stage(s, i)?,
                Unit::Node(n) => self.run_node(n, i)?,
            }
            self.meters.set_done(i);
        }
        Ok(self.metrics)
    }

    /// The bundles of `pc` for one reader: moved out for the last reader, cloned otherwise.
    fn read(&mut self, pc: PcId) -> Bundles {
        let left = self.readers_left.entry(pc).or_insert(1);
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.store.remove(&pc).unwrap_or_default()
        } else {
            self.store.get(&pc).cloned().unwrap_or_default()
        }
    }

    fn put(&mut self, pc: PcId, bundles: Bundles) {
        if self.readers_left.get(&pc).copied().unwrap_or(0) > 0 {
            self.store.entry(pc).or_default().extend(bundles);
        }
    }

    fn run_stage(&mut self, s: usize, unit: usize) -> Result<()> {
        let sp = &self.plan.stages[s];
        let input = self.read(sp.root);
        self.meters
            .set_backlog(unit, input.iter().map(|b| b.len() as u64).sum());
        let mut side = Vec::with_capacity(sp.ops.len());
        for op in &sp.ops {
            let mut data = Vec::new();
            for &pc in &op.side_inputs {
                let window_fn = self.graph.pcollections[pc].windowing.window_fn;
                let mut values = Vec::new();
                for b in self.read(pc) {
                    values.extend(b.load()?);
                }
                data.push(crate::dofn::SideInputData::new(window_fn, values));
            }
            side.push(data);
        }
        let out = stage::run_stage(
            self.graph,
            sp,
            input,
            side,
            &mut self.metrics,
            self.budget.as_ref(),
            stage::Meters {
                control: self.control,
                meters: &self.meters,
                unit,
                node_unit: &self.node_unit,
            },
        )?;
        for (sink, result) in sp.sinks.iter().zip(out) {
            match (sink, result) {
                (SinkPlan::Materialize(pc), stage::SinkOutput::Bundles(b)) => self.put(*pc, b),
                (SinkPlan::Shuffle { node, .. }, stage::SinkOutput::Shuffle(data)) => {
                    // Unzipped flattens feed one shuffle from several stages, in order.
                    match self.shuffles.remove(node) {
                        Some(mut earlier) => {
                            earlier.append(data);
                            self.shuffles.insert(*node, earlier);
                        }
                        None => {
                            self.shuffles.insert(*node, data);
                        }
                    }
                }
                _ => unreachable!("sink kinds and outputs line up"),
            }
        }
        Ok(())
    }

    fn run_node(&mut self, n: usize, unit: usize) -> Result<()> {
        let node = &self.graph.nodes[n];
        let bundles = match &node.kind {
            NodeKind::ParDo {
                stateful: Some(_),
                side_inputs,
                ..
            } => {
                let input = self.shuffles.remove(&n).unwrap_or_default();
                let mut sides = Vec::with_capacity(side_inputs.len());
                for &pc in side_inputs {
                    let mut values = Vec::new();
                    for b in self.read(pc) {
                        values.extend(b.load()?);
                    }
                    sides.push(values);
                }
                let outs = stateful::run(
                    self.graph,
                    n,
                    input.into_keyed(),
                    sides,
                    &mut self.metrics,
                    self.budget.as_ref(),
                    self.control,
                )?;
                for (&pc, bundles) in node.outputs.iter().zip(outs) {
                    self.meters
                        .add_out(unit, bundles.iter().map(spill::Bundle::len).sum());
                    self.put(pc, bundles);
                }
                return Ok(());
            }
            NodeKind::Impulse => vec![spill::Bundle::Mem(vec![WindowedValue::in_global_window(
                crate::Value::Bytes(Vec::new()),
            )])],
            NodeKind::GroupByKey | NodeKind::CombinePerKey { .. } => {
                let input = self.shuffles.remove(&n).unwrap_or_default();
                let windowing = self.graph.pcollections[node.inputs[0]].windowing.clone();
                let out_coder = &self.graph.pcollections[node.outputs[0]].coder;
                shuffle::input::finish(node, input, windowing, out_coder)?
            }
            NodeKind::Flatten => {
                let mut all = Vec::new();
                for &pc in &node.inputs {
                    all.extend(self.read(pc));
                }
                all
            }
            NodeKind::Reshuffle => {
                let input = self.read(node.inputs[0]);
                if input.iter().any(|b| matches!(b, spill::Bundle::Spilled(_))) {
                    // Spilled bundles are already cut by size; loading them would defeat
                    // the budget.
                    input
                } else {
                    let mut elements: Vec<WindowedValue> = Vec::new();
                    for b in input {
                        elements.extend(b.load()?);
                    }
                    reshuffle(elements)
                }
            }
            NodeKind::ParDo { .. }
            | NodeKind::WindowInto { .. }
            | NodeKind::TestStream { .. }
            | NodeKind::Source { .. } => {
                unreachable!(
                    "fusable nodes run inside stages; unbounded ones are rejected by the plan"
                )
            }
        };
        let bundles: Bundles = bundles.into_iter().filter(|b| !b.is_empty()).collect();
        let out = bundles.iter().map(spill::Bundle::len).sum();
        // A grouping's input was counted as it was written into its shuffle.
        if !matches!(
            node.kind,
            NodeKind::GroupByKey | NodeKind::CombinePerKey { .. }
        ) {
            self.meters.add_in(unit, out);
        }
        self.meters.add_out(unit, out);
        self.put(node.outputs[0], bundles);
        Ok(())
    }
}

/// Cuts elements into up to 64 bundles (each at most [`MAX_RESHUFFLE_BUNDLE`] elements).
fn reshuffle(elements: Vec<WindowedValue>) -> Bundles {
    let size = elements.len().div_ceil(64).clamp(1, MAX_RESHUFFLE_BUNDLE);
    let mut out = Vec::with_capacity(elements.len() / size + 1);
    let mut it = elements.into_iter().peekable();
    while it.peek().is_some() {
        out.push(spill::Bundle::Mem(it.by_ref().take(size).collect()));
    }
    out
}
