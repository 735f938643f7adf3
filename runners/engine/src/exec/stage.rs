//! Running one fused stage: DoFn instances per worker, elements pushed op to op into sinks.

use super::grouped::{gbk_groups_encoded, groups_encoded};
use super::push::{call_op, deliver, flush, Call, OpInstance, OpKind, SinkInstance, BATCH};
use super::shuffle::input::{ShuffleInput, ShuffleSpill};
use super::shuffle::{ShuffleBuffers, ShuffleWriter};
use super::spill::Bundles;
use super::spill::{self, Budget, Bundle, SpillFile};
use crate::coder::Coder;
use crate::dofn::SideInputData;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, NodeKind};
use crate::job::JobControl;
use crate::metrics::{MetricResults, MetricsContainer};
use crate::operators::guard::guarded;
use crate::plan::{SinkPlan, StagePlan};
use crate::progress::StageMeters;
use crate::window::WindowedValue;
use parking_lot::Mutex;

/// What a stage produced for one of its sinks.
pub(crate) enum SinkOutput {
    Bundles(Bundles),
    Shuffle(ShuffleInput),
}

/// Batches between checks for cancellation and reports of metrics within a bundle.
const REPORT_BATCHES: u32 = 64;

/// Encoded bytes decoded into one batch at most (grouped elements expand ~10x decoded).
const BATCH_BYTES: usize = 8 << 10;

/// Per-bundle output of every sink (`None`: a lane kept the sink's pre-combine tables).
type BundleOutput = Vec<Option<SinkInstance>>;

/// Bundles are dealt round robin to this many lanes. A lane keeps the pre-combine tables
/// of a lifted CombinePerKey from one of its bundles to the next, so a key seen in many
/// bundles is merged across the shuffle a few times instead of once per bundle, and
/// tables are not allocated afresh per bundle (combine-mean 0.86 -> 0.66 s). The number is
/// fixed, not the thread count, and a lane's bundles are added in order, so results do not
/// depend on the number of threads; it also caps how many bundles of such a stage run at
/// once. Eight lanes were slower than four on two cores (twice the tables' fresh pages).
const LANES: usize = 4;

/// Entries a lane's pre-combine tables hold at most between bundles: past it they are
/// handed to the merge with the bundle that filled them (bounds memory by lanes times
/// this, whatever the number of keys).
const LANE_ENTRIES: usize = 1 << 18;

/// The pre-combining writers a lane keeps between its bundles, by sink.
type Lane = Vec<Option<Box<ShuffleWriter>>>;

/// The job a stage runs in: stop requests and live metrics, and where it counts its
/// progress (its unit's meters, and the unit of every node: a shuffle's reader counts what
/// the stage writes into it).
pub(crate) struct Meters<'a> {
    pub(crate) control: &'a JobControl,
    pub(crate) meters: &'a StageMeters,
    pub(crate) unit: usize,
    pub(crate) node_unit: &'a [usize],
}

struct Instance {
    ops: Vec<OpInstance>,
    /// Buffers of the last bundle's shuffle writers, reused by the next bundle's.
    spare: Vec<Option<ShuffleBuffers>>,
}

/// Data shared read-only by all instances of a stage.
struct Shared<'a> {
    graph: &'a Graph,
    plan: &'a StagePlan,
    side: Vec<Vec<SideInputData>>,
    budget: Option<&'a Budget>,
    /// Lanes, when the stage pre-combines and has no memory budget (kept tables would not
    /// be accounted).
    lanes: Option<Vec<Mutex<Lane>>>,
    control: &'a JobControl,
    progress: Meters<'a>,
    /// The unit reading each sink (a shuffle's node), if one.
    sink_units: Vec<Option<usize>>,
}

impl Instance {
    fn new(shared: &Shared<'_>) -> Result<Instance> {
        let mut ops = Vec::with_capacity(shared.plan.ops.len());
        for op in &shared.plan.ops {
            let node = &shared.graph.nodes[op.node];
            let kind = match &node.kind {
                NodeKind::ParDo { dofn, .. } => {
                    let mut inv = guarded(&node.name, || Ok(dofn()))?;
                    guarded(&node.name, || inv.setup())?;
                    OpKind::ParDo(inv)
                }
                NodeKind::WindowInto { window_fn } => OpKind::WindowInto(*window_fn),
                _ => unreachable!("only fusable nodes are ops"),
            };
            ops.push(OpInstance {
                name: node.name.clone(),
                kind,
                outputs: op.outputs.clone(),
                metrics: MetricsContainer::default(),
                pending: op.outputs.iter().map(|_| Vec::new()).collect(),
            });
        }
        Ok(Instance {
            ops,
            spare: Vec::new(),
        })
    }

    /// The sinks of a bundle: the lane's kept writers, new ones for the rest.
    fn new_sinks(&mut self, shared: &Shared<'_>, lane: &mut Lane) -> Vec<SinkInstance> {
        let mut spare = std::mem::take(&mut self.spare).into_iter();
        shared
            .plan
            .sinks
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                SinkPlan::Materialize(_) => SinkInstance::Materialize(Vec::new()),
                SinkPlan::Shuffle { .. } if lane.get(i).is_some_and(Option::is_some) => {
                    // Spare buffers go by sink position: skip this sink's.
                    spare.next();
                    SinkInstance::Shuffle(lane[i].take().expect("checked"))
                }
                SinkPlan::Shuffle {
                    node,
                    key_coder,
                    value_coder,
                    lift,
                } => {
                    let n = &shared.graph.nodes[*node];
                    let windowing = shared.graph.pcollections[n.inputs[0]].windowing.clone();
                    let encoded = match n.kind {
                        NodeKind::GroupByKey => {
                            gbk_groups_encoded(shared.graph, n, key_coder, value_coder)
                        }
                        // A stateful ParDo's elements are kept encoded when nothing is lost.
                        NodeKind::ParDo { .. } => {
                            groups_encoded(key_coder) && groups_encoded(value_coder)
                        }
                        _ => false,
                    }
                    .then(|| value_coder.clone());
                    SinkInstance::Shuffle(Box::new(ShuffleWriter::new(
                        n,
                        lift.is_some(),
                        key_coder.clone(),
                        windowing,
                        shared.budget.is_some(),
                        spare.next().flatten(),
                        encoded,
                    )))
                }
            })
            .collect()
    }

    /// Runs bundle `index`: its elements go through the ops a batch at a time, in order.
    fn run_bundle(
        &mut self,
        shared: &Shared<'_>,
        index: usize,
        bundle: spill::BundleReader,
    ) -> Result<BundleOutput> {
        let Some(lanes) = &shared.lanes else {
            let sinks = self.run_sinks(shared, bundle, &mut Vec::new())?;
            return Ok(sinks.into_iter().map(Some).collect());
        };
        let mut lane = lanes[index % LANES].lock();
        let sinks = self.run_sinks(shared, bundle, &mut lane)?;
        lane.resize_with(sinks.len(), || None);
        Ok(sinks
            .into_iter()
            .zip(lane.iter_mut())
            .map(|(sink, kept)| match sink {
                SinkInstance::Shuffle(w) if w.pre_combined().is_some_and(|n| n <= LANE_ENTRIES) => {
                    *kept = Some(w);
                    None
                }
                other => Some(other),
            })
            .collect())
    }

    /// Runs a bundle into sinks that start from `lane`'s kept writers.
    fn run_sinks(
        &mut self,
        shared: &Shared<'_>,
        mut bundle: spill::BundleReader,
        lane: &mut Lane,
    ) -> Result<Vec<SinkInstance>> {
        let mut sinks = self.new_sinks(shared, lane);
        // Progress is counted per bundle (bundles are large): no shared counter per batch.
        let p = &shared.progress;
        p.meters.add_in(p.unit, bundle.remaining());
        let n = self.ops.len();
        for i in 0..n {
            call_op(&mut self.ops, i, &mut sinks, &shared.side, Call::Start)?;
        }
        self.flush_all(&mut sinks, shared)?;
        let mut batch = Vec::with_capacity(BATCH.min(bundle.remaining()));
        let mut batches = 0u32;
        loop {
            bundle.next_batch(&mut batch, BATCH, BATCH_BYTES)?;
            if batch.is_empty() {
                break;
            }
            // A long bundle still stops soon after a cancel and shows its metrics.
            batches = batches.wrapping_add(1);
            if batches.is_multiple_of(REPORT_BATCHES) {
                shared.control.check()?;
                self.report(shared.control);
            }
            deliver(
                &mut self.ops,
                0,
                &mut sinks,
                &shared.side,
                &shared.plan.root_targets,
                &mut batch,
            )?;
            self.flush_all(&mut sinks, shared)?;
        }
        // Each op finishes after everything upstream of it was delivered.
        for i in 0..n {
            call_op(&mut self.ops, i, &mut sinks, &shared.side, Call::Finish)?;
            flush(&mut self.ops, i, &mut sinks, &shared.side)?;
        }
        let mut out = 0;
        for (s, sink) in sinks.iter_mut().enumerate() {
            let n = match sink {
                SinkInstance::Materialize(v) => v.len(),
                SinkInstance::Shuffle(w) => w.take_written(),
            };
            if let Some(u) = shared.sink_units[s] {
                p.meters.add_in(u, n);
            }
            out += n;
        }
        p.meters.add_out(p.unit, out);
        for sink in &mut sinks {
            self.spare.push(match sink {
                SinkInstance::Shuffle(w) => Some(w.close()),
                SinkInstance::Materialize(_) => None,
            });
        }
        Ok(sinks)
    }

    /// Hands every op's pending outputs downstream, upstream ops first.
    fn flush_all(&mut self, sinks: &mut [SinkInstance], shared: &Shared<'_>) -> Result<()> {
        for i in 0..self.ops.len() {
            flush(&mut self.ops, i, sinks, &shared.side)?;
        }
        Ok(())
    }

    /// Reports the metrics of the bundles run so far, so they can be read while the job runs.
    fn report(&mut self, control: &JobControl) {
        for op in &mut self.ops {
            control.report(&op.name, &mut op.metrics);
        }
    }

    fn teardown(mut self, metrics: &mut MetricResults) -> Result<()> {
        let mut first_err = None;
        for op in &mut self.ops {
            metrics.merge_container(&op.name, &op.metrics);
            if let OpKind::ParDo(inv) = &mut op.kind {
                if let Err(e) = guarded(&op.name, || inv.teardown()) {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Spilling of one materialized sink's bundles past its share of the budget.
struct MaterializeSpill {
    budget: Budget,
    coder: crate::coder::Coder,
    name: String,
    mem_bytes: usize,
    file: Option<std::sync::Arc<SpillFile>>,
}

impl MaterializeSpill {
    fn keep(&mut self, v: Vec<WindowedValue>) -> Result<Bundle> {
        if self.file.is_none() {
            self.mem_bytes += v.iter().map(spill::windowed_size).sum::<usize>();
            if self.mem_bytes <= self.budget.materialized_bytes() {
                return Ok(Bundle::Mem(v));
            }
            self.file = Some(SpillFile::create(&self.budget)?);
        }
        let file = self.file.as_ref().expect("created above");
        Bundle::spill(&v, &self.coder, file, &self.name)
    }
}

/// Merges per-bundle sink outputs in bundle order.
struct Merger {
    next: usize,
    waiting: std::collections::BTreeMap<usize, BundleOutput>,
    outputs: Vec<SinkOutput>,
    spills: Vec<Option<MaterializeSpill>>,
    error: Option<EngineError>,
}

impl Merger {
    fn drain(&mut self) -> Result<()> {
        while let Some(bundle_out) = self.waiting.remove(&self.next) {
            self.next += 1;
            for ((out, sink), spill) in self
                .outputs
                .iter_mut()
                .zip(bundle_out)
                .zip(&mut self.spills)
            {
                let Some(sink) = sink else {
                    continue;
                };
                match (out, sink) {
                    (SinkOutput::Bundles(b), SinkInstance::Materialize(v)) => {
                        if !v.is_empty() {
                            b.push(match spill {
                                Some(s) => s.keep(v)?,
                                None => Bundle::Mem(v),
                            })
                        }
                    }
                    (SinkOutput::Shuffle(s), SinkInstance::Shuffle(w)) => s.absorb(*w)?,
                    _ => unreachable!("sink kinds line up"),
                }
            }
        }
        Ok(())
    }
}

/// Runs a stage over its input bundles in parallel; returns one output per sink.
///
/// Workers take bundles in order and run at most one bundle per worker ahead of the
/// oldest unfinished one, so outputs waiting to be merged in order stay few.
pub(crate) fn run_stage(
    graph: &Graph,
    plan: &StagePlan,
    input: Bundles,
    side: Vec<Vec<SideInputData>>,
    metrics: &mut MetricResults,
    budget: Option<&Budget>,
    progress: Meters<'_>,
) -> Result<Vec<SinkOutput>> {
    let control = progress.control;
    // A lifted combine's writer pre-combines.
    let pre_combines = plan.sinks.iter().any(|s| match s {
        SinkPlan::Shuffle { lift, .. } => lift.is_some(),
        SinkPlan::Materialize(_) => false,
    });
    let lanes = (pre_combines && budget.is_none())
        .then(|| (0..LANES).map(|_| Mutex::new(Lane::new())).collect());
    let shared = Shared {
        graph,
        plan,
        side,
        budget,
        lanes,
        control,
        sink_units: plan
            .sinks
            .iter()
            .map(|s| match s {
                SinkPlan::Shuffle { node, .. } => progress.node_unit.get(*node).copied(),
                SinkPlan::Materialize(_) => None,
            })
            .collect(),
        progress,
    };
    let pool: Mutex<Vec<Instance>> = Mutex::new(Vec::new());
    let outputs: Vec<SinkOutput> = plan
        .sinks
        .iter()
        .map(|s| match s {
            SinkPlan::Materialize(_) => SinkOutput::Bundles(Vec::new()),
            SinkPlan::Shuffle {
                node,
                key_coder,
                value_coder,
                ..
            } => SinkOutput::Shuffle(ShuffleInput::with_spill(budget.map(|b| {
                // A stateful ParDo's shuffle spills whole elements.
                let coder = match graph.nodes[*node].kind {
                    NodeKind::ParDo { .. } => {
                        Coder::Kv(Box::new(key_coder.clone()), Box::new(value_coder.clone()))
                    }
                    _ => value_coder.clone(),
                };
                ShuffleSpill::new(b.clone(), &graph.nodes[*node].name, coder)
            }))),
        })
        .collect();
    let spills = plan
        .sinks
        .iter()
        .map(|s| match (s, budget) {
            (SinkPlan::Materialize(pc), Some(b)) => Some(MaterializeSpill {
                budget: b.clone(),
                coder: graph.pcollections[*pc].coder.clone(),
                name: graph.pcollections[*pc].name.clone(),
                mem_bytes: 0,
                file: None,
            }),
            _ => None,
        })
        .collect();
    let merger = Mutex::new(Merger {
        next: 0,
        waiting: std::collections::BTreeMap::new(),
        outputs,
        spills,
        error: None,
    });
    let merged = parking_lot::Condvar::new();
    let queue = Mutex::new(input.into_iter().enumerate());
    let workers = rayon::current_num_threads().max(1);
    // Bundles of one lane must run one after the other, in order.
    let in_flight = if shared.lanes.is_some() {
        workers.min(LANES)
    } else {
        workers
    };
    let work = || loop {
        let Some((i, bundle)) = queue.lock().next() else {
            return;
        };
        {
            let mut m = merger.lock();
            while m.error.is_none() && i >= m.next + in_flight {
                merged.wait(&mut m);
            }
            if m.error.is_some() {
                return;
            }
            if let Err(e) = shared.control.check() {
                m.error.get_or_insert(e);
                merged.notify_all();
                return;
            }
        }
        let r = bundle.reader().and_then(|bundle| {
            let inst = pool.lock().pop();
            match inst {
                Some(inst) => Ok(inst),
                None => Instance::new(&shared),
            }
            .and_then(|mut inst| {
                let r = inst.run_bundle(&shared, i, bundle);
                inst.report(shared.control);
                // An instance that failed mid-bundle is still torn down, with the others.
                pool.lock().push(inst);
                r
            })
        });
        let mut m = merger.lock();
        match r {
            Ok(out) => {
                m.waiting.insert(i, out);
                if let Err(e) = m.drain() {
                    m.error.get_or_insert(e);
                }
            }
            Err(e) => {
                m.error.get_or_insert(e);
            }
        }
        merged.notify_all();
    };
    rayon::scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| work());
        }
    });
    let mut teardown_err = None;
    for inst in pool.into_inner() {
        if let Err(e) = inst.teardown(metrics) {
            teardown_err.get_or_insert(e);
        }
    }
    let mut m = merger.into_inner();
    if let Some(e) = m.error.or(teardown_err) {
        return Err(e);
    }
    // What the lanes kept is merged last, lane by lane.
    for lane in shared.lanes.into_iter().flatten() {
        for (out, kept) in m.outputs.iter_mut().zip(lane.into_inner()) {
            if let (SinkOutput::Shuffle(s), Some(w)) = (out, kept) {
                s.absorb(*w)?;
            }
        }
    }
    Ok(m.outputs)
}
