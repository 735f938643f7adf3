//! The streaming executor: an event loop that pushes elements through the graph as they
//! arrive, advances watermarks and processing time, and fires triggers and timers.
//!
//! Sources (Impulse, TestStream, unbounded sources) produce bundles; each bundle is pushed
//! through every transform before the next, in batches (one call per transform and batch,
//! not per element). After each step, processing-time timers fire
//! and watermarks propagate in topological order: a transform's output watermark is the
//! minimum of its input watermarks and its holds (pending panes and timers). The job ends
//! when every source is finished and every watermark reached the end of time — or, after
//! cancellation, once the sources stopped and everything drained.

mod chain;
mod checkpointing;
mod clock;
mod snapshots;
mod source;
mod source_read;
mod source_state;

pub use checkpointing::CHECKPOINT_STEP;

use crate::checkpoint::{CheckpointOptions, Coordinator};
use crate::error::{EngineError, Result};
use crate::graph::{Graph, NodeKind, PcId};
use crate::job::JobControl;
use crate::metrics::MetricResults;
use crate::operators::op::{Op, OpCx, SourceStep, StateBudget};
use crate::operators::{gbk, precombine};
use crate::plan::{Panes, Plan, PlanOptions, SinkPlan};
use crate::progress::{StageLayout, StageMeters};
use crate::window::WindowedValue;
use clock::{wall_clock_ms, REPORT_EVERY};
use std::collections::VecDeque;

pub use crate::operators::op::END_OF_TIME;

/// How the streaming executor keeps processing time.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Virtual processing time starting at 0 and advanced only by TestStream events
    /// (deterministic tests); otherwise the wall clock.
    pub virtual_time: bool,
    /// Stop requests and live metrics, shared with the job's handle: a drain stops the
    /// sources, advances watermarks to the end and fires every pane; a cancel stops at once.
    pub control: JobControl,
    /// Most elements a source reads into one bundle. Larger bundles cost less per
    /// element; smaller ones fire count triggers and late panes more often.
    pub max_bundle_size: usize,
    /// Worker threads running the stateless transforms after each unbounded source (and
    /// a lifted combine's pre-combining), taking its bundles in turn; 0: one per core, at
    /// most [`DEFAULT_MAX_WORKERS`].
    pub workers: usize,
    /// Checkpoints: where, how often, and whether to resume from the newest (`None`:
    /// no checkpoints).
    pub checkpoint: Option<CheckpointOptions>,
    /// Bytes of keyed state (of stateful DoFns) to keep in memory; the rest is spilled to
    /// disk and read back when used (`None`: no limit). See [`StateBudget::share`].
    pub memory_budget: Option<usize>,
    /// Where spilled state goes (default: the system's temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
}

/// Most emptied batch buffers the executor keeps for reuse.
const MAX_SPARE: usize = 64;

/// Most elements an operator emits in one step of a watermark advance
/// ([`Op::advance_some`]).
const ADVANCE_STEP: usize = 16_384;

/// Most worker threads per source by default: the rest of the pipeline runs on one
/// thread, which more workers would not make faster, while each holds bundles in flight.
pub const DEFAULT_MAX_WORKERS: usize = 4;

/// Default of [`StreamOptions::max_bundle_size`].
pub const DEFAULT_MAX_BUNDLE_SIZE: usize = 32_768;

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            virtual_time: true,
            control: JobControl::default(),
            max_bundle_size: DEFAULT_MAX_BUNDLE_SIZE,
            workers: 0,
            checkpoint: None,
            memory_budget: None,
            spill_dir: None,
        }
    }
}

/// Runs a pipeline (bounded or unbounded) to completion in streaming mode; returns its
/// metrics (also reported to `opts.control` while it runs).
///
/// # Errors
/// The first failure of any transform, naming it; [`EngineError::Cancelled`] when
/// `opts.control` was cancelled.
pub fn execute_streaming(graph: &Graph, opts: &StreamOptions) -> Result<MetricResults> {
    let mut ex = Executor::new(graph, opts)?;
    let r = ex.start_checkpoints(opts).and_then(|()| {
        ex.run()?;
        ex.final_checkpoint()
    });
    ex.report_progress();
    let mut metrics = MetricResults::default();
    let mut teardown_err = None;
    for (i, op) in ex.ops.iter_mut().enumerate() {
        if let Err(e) = op.finish(&graph.nodes[i].name, &mut metrics) {
            teardown_err.get_or_insert(e);
        }
    }
    metrics.merge_container(CHECKPOINT_STEP, &ex.ckpt_metrics);
    opts.control.report_results(metrics);
    r?;
    match teardown_err {
        Some(e) => Err(e),
        None => Ok(opts.control.metrics()),
    }
}

/// The node is a ParDo whose DoFn commits its output with checkpoints (a sink).
fn commits(node: &crate::graph::Node) -> bool {
    matches!(&node.kind, NodeKind::ParDo { dofn, .. } if dofn().commits())
}

struct Executor<'g> {
    graph: &'g Graph,
    ops: Vec<Box<dyn Op>>,
    /// Consumers of each PCollection: (node, input slot; 0 = main, 1.. = side inputs).
    consumers: Vec<Vec<(usize, usize)>>,
    /// Where each node's outputs go: its output PCollections, except for a source with
    /// fused transforms, whose output is the last fused transform's.
    routes: Vec<Vec<PcId>>,
    topo: Vec<usize>,
    pc_wm: Vec<i64>,
    in_wm: Vec<i64>,
    out_wm: Vec<i64>,
    now: i64,
    virtual_time: bool,
    control: JobControl,
    reported: std::time::Instant,
    /// Batches waiting for their consumers.
    queue: VecDeque<(PcId, Vec<WindowedValue>)>,
    /// Output buffers of every node, one per output tag.
    outs: Vec<Vec<Vec<WindowedValue>>>,
    /// Emptied batches, reused so steady streaming does not allocate per batch.
    spare: Vec<Vec<WindowedValue>>,
    /// Further output batches of the operator being called (see [`OpCx::more`]).
    more: Vec<Vec<WindowedValue>>,
    /// Takes the checkpoints, when the job has them.
    /// Where checkpoint entries past memory go (under a memory budget).
    ckpt_overflow: Option<(std::path::PathBuf, usize)>,
    ckpt: Option<Coordinator>,
    /// Checkpoint counts, sizes and times.
    ckpt_metrics: crate::metrics::MetricsContainer,
    /// The stages monitors show (a source with the transforms on its threads is one),
    /// and their live counts.
    layout: StageLayout,
    meters: StageMeters,
    /// Per node: a source without transforms on its threads, so what it emits is what it
    /// read (with them, the chain counts what it reads).
    emits_what_it_reads: Vec<bool>,
}

impl<'g> Executor<'g> {
    fn new(graph: &'g Graph, opts: &StreamOptions) -> Result<Self> {
        let n = graph.nodes.len();
        let mut consumers = graph.consumers();
        let topo = graph.topological_order()?;
        let mut ops = graph
            .nodes
            .iter()
            .map(|node| match &node.kind {
                NodeKind::Source { source } => Ok(Box::new(
                    source::SourceOp::new(source.clone(), opts.max_bundle_size.max(1))
                        .with_checkpoints(opts.checkpoint.is_some()),
                ) as Box<dyn Op>),
                _ => crate::operators::build(graph, node),
            })
            .collect::<Result<Vec<_>>>()?;
        // Stateless transforms right after a source run on its worker threads: the source
        // emits their output, and they receive nothing here.
        let mut routes: Vec<Vec<PcId>> = graph.nodes.iter().map(|n| n.outputs.clone()).collect();
        // A CombinePerKey right after them is lifted: partial results per bundle, key and
        // window are made there too, and the grouping merges them. Both come from the
        // plan: the line of the stage rooted at the source's output, and the sink it feeds.
        let plan = Plan::build(
            graph,
            PlanOptions {
                panes: Panes::Triggered,
                unzip_flattens: false,
            },
        )?;
        let layout = StageLayout::of(graph, &plan, true);
        let meters = opts.control.progress().start(layout.stages.clone(), true);
        for (i, node) in graph.nodes.iter().enumerate() {
            let (NodeKind::Source { source }, &[source_pc]) = (&node.kind, node.outputs.as_slice())
            else {
                continue;
            };
            let Some(stage) = plan.stages.iter().find(|s| s.root == source_pc) else {
                continue;
            };
            let (line, sink) = stage.line();
            let mut fused: Vec<usize> = line.iter().map(|&op| stage.ops[op].node).collect();
            // A sink committing with checkpoints must see them: it runs here, not on the
            // source's threads (which read ahead of the checkpoints), with what follows it.
            let cut = opts.checkpoint.is_some()
                && match fused.iter().position(|&j| commits(&graph.nodes[j])) {
                    Some(at) => {
                        fused.truncate(at);
                        true
                    }
                    None => false,
                };
            let out_pc = fused
                .last()
                .map_or(source_pc, |&last| graph.nodes[last].outputs[0]);
            let lift = match sink {
                _ if cut => None,
                Some(SinkPlan::Shuffle {
                    node: g,
                    lift: Some(l),
                    ..
                }) => Some((
                    *g,
                    (
                        l.key_coder.clone(),
                        l.windowing.clone(),
                        l.combine_fn.clone(),
                    ),
                )),
                _ => None,
            };
            if fused.is_empty() && lift.is_none() {
                continue;
            }
            // One copy of the fused transforms per worker.
            let workers = match opts.workers {
                0 => std::thread::available_parallelism()
                    .map_or(1, |n| n.get().min(DEFAULT_MAX_WORKERS)),
                n => n,
            };
            let mailbox = lift.as_ref().map(|_| precombine::Mailbox::default());
            let mut chains = Vec::with_capacity(workers);
            for _ in 0..workers {
                let links = fused
                    .iter()
                    .map(|&j| chain::link(graph, &graph.nodes[j]))
                    .collect::<Result<Vec<_>>>()?;
                let grouping = lift.as_ref().map(|(g, _)| layout.node_stage[*g]);
                let mut chain = chain::Chain::new(links)
                    .reporting_to(opts.control.clone())
                    .counting_into(meters.clone(), layout.node_stage[i], grouping);
                if let (Some((g, (key_coder, _, combine))), Some(mb)) = (&lift, &mailbox) {
                    chain = chain.with_precombine(precombine::PreCombine::new(
                        graph.nodes[*g].name.clone(),
                        key_coder.clone(),
                        combine.clone(),
                        mb.clone(),
                    ));
                }
                chains.push(chain);
            }
            if let (Some((g, (key_coder, windowing, combine))), Some(mb)) = (lift, &mailbox) {
                let mut op =
                    gbk::GbkOp::new(key_coder, windowing, Some(combine)).with_mailbox(mb.clone());
                if let crate::coder::Coder::Kv(_, v) =
                    &graph.pcollections[graph.nodes[g].inputs[0]].coder
                {
                    op = op.with_value_coder((**v).clone());
                }
                ops[g] = Box::new(op);
            }
            ops[i] = Box::new(
                source::SourceOp::new(source.clone(), opts.max_bundle_size.max(1))
                    .with_checkpoints(opts.checkpoint.is_some())
                    .with_chains(chains, mailbox),
            );
            if !fused.is_empty() {
                consumers[source_pc].clear();
                routes[i] = vec![out_pc];
            }
        }
        // What leaves a stage is what a node hands to routes read in another stage (a
        // source with transforms on its threads hands on the last one's output).
        let mut layout = layout;
        for (i, outs) in routes.iter().enumerate() {
            let stage = layout.node_stage[i];
            layout.exit[i] = outs.iter().any(|&pc| {
                consumers[pc].is_empty()
                    || consumers[pc]
                        .iter()
                        .any(|&(c, _)| layout.node_stage[c] != stage)
            });
        }
        let mut ckpt_overflow = None;
        if let Some(budget) = opts.memory_budget {
            if let Some(each) = StateBudget::share(graph, budget, 1, opts.spill_dir.as_deref()) {
                for op in &mut ops {
                    op.limit_state(each.clone());
                }
                ckpt_overflow = Some(each.checkpoint_overflow());
            }
        }
        let now = if opts.virtual_time {
            0
        } else {
            wall_clock_ms()
        };
        let emits_what_it_reads = graph
            .nodes
            .iter()
            .zip(&routes)
            .map(|(n, r)| n.inputs.is_empty() && *r == n.outputs)
            .collect();
        Ok(Executor {
            graph,
            ops,
            consumers,
            routes,
            topo,
            pc_wm: vec![i64::MIN; graph.pcollections.len()],
            in_wm: vec![i64::MIN; n],
            out_wm: vec![i64::MIN; n],
            now,
            virtual_time: opts.virtual_time,
            control: opts.control.clone(),
            reported: std::time::Instant::now(),
            queue: VecDeque::new(),
            outs: graph
                .nodes
                .iter()
                .map(|n| vec![Vec::new(); n.outputs.len()])
                .collect(),
            spare: Vec::new(),
            more: Vec::new(),
            ckpt: None,
            ckpt_overflow,
            ckpt_metrics: Default::default(),
            emits_what_it_reads,
            layout,
            meters,
        })
    }

    /// Calls operator `node` with a context, then queues what it emitted.
    fn call<R>(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut dyn Op, &mut OpCx<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut cx = OpCx {
            out: &mut self.outs[node],
            more: &mut self.more,
            spare: &mut self.spare,
            now: self.now,
            input_watermark: self.in_wm[node],
            output_watermark: self.out_wm[node],
            name: &self.graph.nodes[node].name,
        };
        let r = f(&mut *self.ops[node], &mut cx);
        self.collect(node);
        r
    }

    /// Moves what node `node` emitted to the front of the queue: a batch goes through all
    /// its consumers before the next source batch, while it is in cache. Order within a
    /// PCollection is kept.
    fn collect(&mut self, node: usize) {
        let (exit, reads) = (self.layout.exit[node], self.emits_what_it_reads[node]);
        if exit || reads {
            let n = self.outs[node].iter().map(Vec::len).sum::<usize>()
                + self.more.iter().map(Vec::len).sum::<usize>();
            let stage = self.layout.node_stage[node];
            if exit {
                self.meters.add_out(stage, n);
            }
            if reads {
                self.meters.add_in(stage, n);
            }
        }
        let outputs = &self.routes[node];
        for (tag, (buf, &pc)) in self.outs[node].iter_mut().zip(outputs).enumerate().rev() {
            if tag == 0 {
                for batch in self.more.drain(..).rev() {
                    self.queue.push_front((pc, batch));
                }
            }
            if !buf.is_empty() {
                let fresh = self.spare.pop().unwrap_or_default();
                self.queue.push_front((pc, std::mem::replace(buf, fresh)));
            }
        }
    }

    /// Pushes queued elements through their consumers until nothing is left, then ends
    /// the bundle of every transform (which may fire count-based triggers, and so on).
    fn drain(&mut self) -> Result<()> {
        loop {
            while let Some((pc, mut batch)) = self.queue.pop_front() {
                let consumers = std::mem::take(&mut self.consumers[pc]);
                let last = consumers.len().saturating_sub(1);
                let mut result = Ok(());
                for (i, &(node, slot)) in consumers.iter().enumerate() {
                    if slot == 0 && self.layout.entry[node] {
                        self.meters
                            .add_in(self.layout.node_stage[node], batch.len());
                    }
                    let mut copy;
                    let b = if i == last {
                        &mut batch
                    } else {
                        copy = batch.clone();
                        &mut copy
                    };
                    result = self.call(node, |op, cx| op.process(slot, b, cx));
                    if result.is_err() {
                        break;
                    }
                }
                self.consumers[pc] = consumers;
                result?;
                // Spare buffers serve operators' outputs, and sources take the rest back
                // to their readers at their next step; beyond the cap they are freed.
                if self.spare.len() < MAX_SPARE {
                    batch.clear();
                    self.spare.push(batch);
                }
            }
            let mut any = false;
            for i in 0..self.topo.len() {
                let node = self.topo[i];
                self.call(node, |op, cx| op.end_bundle(cx))?;
                if !self.queue.is_empty() {
                    any = true;
                    break;
                }
            }
            if !any && self.queue.is_empty() {
                return Ok(());
            }
        }
    }

    fn run(&mut self) -> Result<()> {
        loop {
            self.control.check()?;
            if self.reported.elapsed() >= REPORT_EVERY {
                self.reported = std::time::Instant::now();
                for (i, op) in self.ops.iter_mut().enumerate() {
                    op.report(&self.graph.nodes[i].name, &self.control);
                }
                self.report_progress();
            }
            let cancelled = self.control.is_draining();
            let mut progressed = false;
            let mut all_done = true;
            for i in 0..self.topo.len() {
                let node = self.topo[i];
                if cancelled {
                    self.ops[node].stop();
                }
                match self.call(node, |op, cx| op.step(cx))? {
                    SourceStep::NotASource | SourceStep::Finished => {}
                    SourceStep::Idle => all_done = false,
                    SourceStep::Progressed {
                        advance_processing_time,
                    } => {
                        all_done = false;
                        progressed = true;
                        if self.virtual_time {
                            self.now += advance_processing_time;
                        }
                    }
                }
                self.drain()?;
            }
            if !self.virtual_time {
                self.now = self.now.max(wall_clock_ms());
            }
            self.fire_processing_time()?;
            self.propagate_watermarks()?;
            self.checkpoint_round()?;
            let finished = all_done && self.pc_wm.iter().all(|&w| w == END_OF_TIME);
            if finished {
                return Ok(());
            }
            if !progressed {
                if all_done {
                    // Sources are done but some watermark is held: nothing can release it.
                    return Err(EngineError::InvalidPipeline(
                        "streaming job stalled: sources finished but watermarks are held".into(),
                    ));
                }
                if !self.virtual_time {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }

    /// Sets every stage's watermarks (the least of its entry nodes' input watermarks and
    /// of its exit nodes' output watermarks) and backlog (elements queued for it).
    fn report_progress(&self) {
        let stages = self.layout.stages.len();
        let (mut input, mut output) = (vec![END_OF_TIME; stages], vec![END_OF_TIME; stages]);
        let mut has_entry = vec![false; stages];
        for node in 0..self.graph.nodes.len() {
            let s = self.layout.node_stage[node];
            if self.layout.entry[node] {
                has_entry[s] = true;
                input[s] = input[s].min(self.in_wm[node]);
            }
            if self.layout.exit[node] {
                output[s] = output[s].min(self.out_wm[node]);
            }
        }
        let mut backlog = vec![0u64; stages];
        for (pc, batch) in &self.queue {
            for &(node, _) in &self.consumers[*pc] {
                backlog[self.layout.node_stage[node]] += batch.len() as u64;
            }
        }
        for s in 0..stages {
            let input = if has_entry[s] { input[s] } else { i64::MIN };
            self.meters.set_watermarks(s, input, output[s]);
            self.meters.set_backlog(s, backlog[s]);
        }
    }

    fn fire_processing_time(&mut self) -> Result<()> {
        for i in 0..self.topo.len() {
            let node = self.topo[i];
            self.call(node, |op, cx| op.on_processing_time(cx))?;
            self.drain()?;
        }
        Ok(())
    }

    fn propagate_watermarks(&mut self) -> Result<()> {
        for i in 0..self.topo.len() {
            let node = self.topo[i];
            let n = &self.graph.nodes[node];
            let mut wm = END_OF_TIME;
            for &pc in &n.inputs {
                wm = wm.min(self.pc_wm[pc]);
            }
            if let NodeKind::ParDo { side_inputs, .. } = &n.kind {
                for &pc in side_inputs {
                    wm = wm.min(self.pc_wm[pc]);
                }
            }
            if let NodeKind::ParDo { side_inputs, .. } = &n.kind {
                if !side_inputs.is_empty() {
                    let side: Vec<i64> = side_inputs.iter().map(|&pc| self.pc_wm[pc]).collect();
                    self.ops[node].side_watermarks(&side);
                }
            }
            if wm > self.in_wm[node] || self.in_wm[node] == i64::MIN {
                self.in_wm[node] = wm;
                // In steps: what one step emits goes downstream before the next.
                while !self.call(node, |op, cx| op.advance_some(wm, cx, ADVANCE_STEP))? {
                    self.drain()?;
                }
                self.drain()?;
            }
            let out = self.in_wm[node].min(self.ops[node].hold());
            if out > self.out_wm[node] {
                self.out_wm[node] = out;
            }
            for &pc in &self.graph.nodes[node].outputs {
                self.pc_wm[pc] = self.out_wm[node];
            }
        }
        Ok(())
    }
}
