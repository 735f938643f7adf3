//! The planner: fusion of ParDo chains into stages, the sinks stages end in (with the
//! lifting of each combine), and a run order.

use super::rules::{lifting, Lift, Panes};
use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, NodeKind, PcId};
use std::collections::{HashMap, HashSet};

/// Where an element goes inside a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// To the op at this index of the stage.
    Op(usize),
    /// Into the sink at this index of the stage.
    Sink(usize),
}

/// One fused transform of a stage.
#[derive(Clone, Debug)]
pub struct OpPlan {
    /// The graph node it runs.
    pub node: usize,
    /// Targets per output tag.
    pub outputs: Vec<Vec<Target>>,
    /// The side inputs it reads.
    pub side_inputs: Vec<PcId>,
}

/// Where a stage's results go.
#[derive(Clone, Debug)]
pub enum SinkPlan {
    /// Keep the PCollection's elements for later readers.
    Materialize(PcId),
    /// Feed the exchange by key of a GroupByKey, CombinePerKey or stateful ParDo node.
    Shuffle {
        /// The node reading the exchange.
        node: usize,
        /// The coder of the keys.
        key_coder: Coder,
        /// The coder of the values.
        value_coder: Coder,
        /// For a lifted CombinePerKey: inputs are folded into accumulators per key and
        /// window before the exchange.
        lift: Option<Lift>,
    },
}

/// A fused stage: a root PCollection pushed through ops into sinks, on one thread.
#[derive(Clone, Debug)]
pub struct StagePlan {
    /// The PCollection the stage reads.
    pub root: PcId,
    /// Where the root's elements go.
    pub root_targets: Vec<Target>,
    /// The fused transforms, each after the ones it reads from.
    pub ops: Vec<OpPlan>,
    /// Where the stage's results go.
    pub sinks: Vec<SinkPlan>,
}

impl StagePlan {
    /// The ops that form one line from the root: each the only reader of its
    /// predecessor's single output, without side inputs; and the one sink that line feeds
    /// alone, if any. A scheduler can run such a line where the root is produced (the
    /// streaming scheduler runs it on a source's worker threads).
    pub fn line(&self) -> (Vec<usize>, Option<&SinkPlan>) {
        let mut line = Vec::new();
        let mut targets = &self.root_targets;
        loop {
            match targets.as_slice() {
                [Target::Op(i)] if self.ops[*i].side_inputs.is_empty() => {
                    line.push(*i);
                    match self.ops[*i].outputs.as_slice() {
                        [next] => targets = next,
                        _ => return (line, None),
                    }
                }
                [Target::Sink(s)] => return (line, Some(&self.sinks[*s])),
                _ => return (line, None),
            }
        }
    }
}

/// A schedulable unit of the batch scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Run a stage.
    Stage(usize),
    /// Run a node that is not fused (Impulse, a grouping's output, Flatten, Reshuffle, a
    /// stateful ParDo).
    Node(usize),
}

/// How to plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// How groupings fire (decides which combines are lifted). Unbounded sources and
    /// TestStream are stage roots only with [`Panes::Triggered`].
    pub panes: Panes,
    /// A Flatten read only by a GroupByKey is not materialized: each of its inputs writes
    /// into the GroupByKey's exchange from the stage that computes it (Beam runners'
    /// "flatten unzipping").
    pub unzip_flattens: bool,
}

/// The plan of a graph: stages, and the order units run in.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The fused stages.
    pub stages: Vec<StagePlan>,
    /// The run order of a scheduler that runs one unit after another.
    pub order: Vec<Unit>,
    /// How many units read each materialized PCollection.
    pub readers: HashMap<PcId, usize>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidPipeline(msg.into())
}

struct Builder<'g> {
    graph: &'g Graph,
    producer: Vec<Option<usize>>,
    /// For fusable nodes: (stage, op index).
    placed: Vec<Option<(usize, usize)>>,
    stages: Vec<StagePlan>,
    root_stage: HashMap<PcId, usize>,
    materialized: HashSet<PcId>,
    readers: HashMap<PcId, usize>,
    /// Flattens whose inputs feed their consumer's shuffle directly (never materialized).
    unzipped: HashSet<usize>,
    options: PlanOptions,
}

impl Plan {
    /// Plans `graph`.
    ///
    /// # Errors
    /// [`EngineError::InvalidPipeline`] for a malformed graph (see
    /// [`Graph::topological_order`]), a node with the wrong number of inputs, a grouping
    /// over input that is not key/value, or an unbounded source planned for one-pane
    /// groupings.
    pub fn build(graph: &Graph, options: PlanOptions) -> Result<Plan> {
        let producer = graph.producers()?;
        for node in &graph.nodes {
            let wanted_inputs = match node.kind {
                NodeKind::Impulse | NodeKind::TestStream { .. } | NodeKind::Source { .. } => {
                    Some(0)
                }
                NodeKind::Flatten => None,
                _ => Some(1),
            };
            if let Some(n) = wanted_inputs {
                if node.inputs.len() != n {
                    return Err(invalid(format!(
                        "{} '{}' needs {n} main input(s), has {}",
                        node.kind.label(),
                        node.name,
                        node.inputs.len()
                    )));
                }
            }
            if node.outputs.is_empty() && !matches!(node.kind, NodeKind::ParDo { .. }) {
                return Err(invalid(format!("'{}' has no output", node.name)));
            }
        }
        let mut b = Builder {
            graph,
            producer,
            placed: vec![None; graph.nodes.len()],
            stages: Vec::new(),
            root_stage: HashMap::new(),
            materialized: HashSet::new(),
            readers: HashMap::new(),
            unzipped: HashSet::new(),
            options,
        };
        let topo = graph.topological_order()?;
        for &n in &topo {
            b.place(n)?;
        }
        let order = b.unit_order()?;
        Ok(Plan {
            stages: b.stages,
            order,
            readers: b.readers,
        })
    }
}

impl Builder<'_> {
    fn deps(&self, n: usize) -> Vec<PcId> {
        self.graph.nodes[n].reads().collect()
    }

    fn is_fusable_producer(&self, pc: PcId) -> bool {
        self.producer[pc]
            .map(|p| self.graph.nodes[p].kind.is_fusable())
            .unwrap_or(false)
    }

    fn new_stage(&mut self, root: PcId) -> usize {
        self.stages.push(StagePlan {
            root,
            root_targets: Vec::new(),
            ops: Vec::new(),
            sinks: Vec::new(),
        });
        *self.readers.entry(root).or_insert(0) += 1;
        self.need_materialized(root);
        self.stages.len() - 1
    }

    fn root_stage_of(&mut self, pc: PcId) -> usize {
        if let Some(&s) = self.root_stage.get(&pc) {
            return s;
        }
        let s = self.new_stage(pc);
        self.root_stage.insert(pc, s);
        s
    }

    /// Makes `pc` materialized: a sink in its producing stage when fused.
    fn need_materialized(&mut self, pc: PcId) {
        if !self.is_fusable_producer(pc) || !self.materialized.insert(pc) {
            return;
        }
        let sink = SinkPlan::Materialize(pc);
        self.add_sink_for(pc, sink);
    }

    /// Adds a sink fed by `pc` in the stage where `pc` is streamed.
    fn add_sink_for(&mut self, pc: PcId, sink: SinkPlan) {
        let (stage, target_list) = self.stream_location(pc);
        let st = &mut self.stages[stage];
        st.sinks.push(sink);
        let t = Target::Sink(st.sinks.len() - 1);
        match target_list {
            None => st.root_targets.push(t),
            Some((op, tag)) => st.ops[op].outputs[tag].push(t),
        }
    }

    /// The stage where `pc` flows, and which op output (or the root) carries it.
    fn stream_location(&mut self, pc: PcId) -> (usize, Option<(usize, usize)>) {
        let p = self.producer[pc].expect("checked in topo order");
        if let Some((stage, op)) = self.placed[p] {
            let tag = self.graph.nodes[p]
                .outputs
                .iter()
                .position(|&o| o == pc)
                .expect("pc is an output of its producer");
            (stage, Some((op, tag)))
        } else {
            (self.root_stage_of(pc), None)
        }
    }

    /// True if `pc` is computed from anything inside stage `s` (so `s` cannot read it).
    fn depends_on_stage(&self, pc: PcId, s: usize) -> bool {
        let mut seen = HashSet::new();
        let mut todo = vec![pc];
        while let Some(x) = todo.pop() {
            if !seen.insert(x) {
                continue;
            }
            if let Some(p) = self.producer[x] {
                if matches!(self.placed[p], Some((st, _)) if st == s) {
                    return true;
                }
                todo.extend(self.deps(p));
            }
        }
        false
    }

    fn place(&mut self, n: usize) -> Result<()> {
        let node = &self.graph.nodes[n];
        match &node.kind {
            NodeKind::ParDo { stateful: None, .. } | NodeKind::WindowInto { .. } => {
                let main = node.inputs[0];
                let side = self.deps(n)[1..].to_vec();
                let (mut stage, mut from) = self.stream_location(main);
                if side.iter().any(|&pc| self.depends_on_stage(pc, stage)) {
                    // Fusion break: the side input is computed from this stage's output.
                    self.need_materialized(main);
                    stage = self.new_stage(main);
                    from = None;
                }
                for &pc in &side {
                    *self.readers.entry(pc).or_insert(0) += 1;
                    self.need_materialized(pc);
                }
                let st = &mut self.stages[stage];
                st.ops.push(OpPlan {
                    node: n,
                    outputs: vec![Vec::new(); node.outputs.len()],
                    side_inputs: side,
                });
                let op = st.ops.len() - 1;
                match from {
                    None => st.root_targets.push(Target::Op(op)),
                    Some((src, tag)) => st.ops[src].outputs[tag].push(Target::Op(op)),
                }
                self.placed[n] = Some((stage, op));
            }
            NodeKind::ParDo {
                stateful: Some(_),
                side_inputs,
                ..
            } => {
                // Elements go to the ParDo's key partitions, like a GroupByKey's.
                for &pc in side_inputs {
                    *self.readers.entry(pc).or_insert(0) += 1;
                    self.need_materialized(pc);
                }
                let sink = self.shuffle_sink(n)?;
                self.add_sink_for(node.inputs[0], sink);
            }
            NodeKind::GroupByKey | NodeKind::CombinePerKey { .. } => {
                let sink = self.shuffle_sink(n)?;
                for pc in self.shuffle_feeds(node.inputs[0]) {
                    self.add_sink_for(pc, sink.clone());
                }
            }
            NodeKind::Flatten if self.unzippable(n) => {
                self.unzipped.insert(n);
            }
            NodeKind::Flatten | NodeKind::Reshuffle => {
                for &pc in &node.inputs {
                    *self.readers.entry(pc).or_insert(0) += 1;
                    self.need_materialized(pc);
                }
            }
            NodeKind::Impulse => {}
            NodeKind::TestStream { .. } | NodeKind::Source { .. }
                if self.options.panes == Panes::Triggered => {}
            NodeKind::TestStream { .. } | NodeKind::Source { .. } => {
                return Err(invalid(format!(
                    "'{}' is unbounded: run the pipeline in streaming mode",
                    node.name
                )))
            }
        }
        Ok(())
    }

    /// The shuffle sink feeding node `n` (a GroupByKey, CombinePerKey or stateful ParDo),
    /// whose input must be key/value.
    fn shuffle_sink(&self, n: usize) -> Result<SinkPlan> {
        let node = &self.graph.nodes[n];
        let info = &self.graph.pcollections[node.inputs[0]];
        let crate::coder::Coder::Kv(key_coder, value_coder) = &info.coder else {
            let what = match node.kind {
                NodeKind::ParDo { .. } => "stateful ParDo",
                _ => node.kind.label(),
            };
            return Err(invalid(format!(
                "{what} '{}' needs key/value input, but '{}' has coder {}",
                node.name, info.name, info.coder
            )));
        };
        Ok(SinkPlan::Shuffle {
            node: n,
            key_coder: (**key_coder).clone(),
            value_coder: (**value_coder).clone(),
            lift: lifting(self.graph, n, self.options.panes),
        })
    }

    /// Whether Flatten `n` can be unzipped: its output is read by one GroupByKey only.
    fn unzippable(&self, n: usize) -> bool {
        if !self.options.unzip_flattens {
            return false;
        }
        let out = self.graph.nodes[n].outputs[0];
        let mut readers = self.graph.nodes.iter().filter(|m| {
            m.inputs.contains(&out)
                || matches!(&m.kind, NodeKind::ParDo { side_inputs, .. } if side_inputs.contains(&out))
        });
        matches!(
            (readers.next(), readers.next()),
            (Some(m), None) if matches!(m.kind, NodeKind::GroupByKey) && m.inputs == [out]
        )
    }

    /// The PCollections whose elements go into a shuffle reading `pc`: `pc` itself, or the
    /// inputs of the unzipped flattens producing it.
    fn shuffle_feeds(&self, pc: PcId) -> Vec<PcId> {
        match self.producer[pc] {
            Some(p) if self.unzipped.contains(&p) => self.graph.nodes[p]
                .inputs
                .iter()
                .flat_map(|&i| self.shuffle_feeds(i))
                .collect(),
            _ => vec![pc],
        }
    }

    fn unit_of(&self, pc: PcId) -> Unit {
        let p = self.producer[pc].expect("validated");
        match self.placed[p] {
            Some((s, _)) => Unit::Stage(s),
            None => Unit::Node(p),
        }
    }

    fn unit_deps(&self, u: Unit) -> Vec<Unit> {
        match u {
            Unit::Stage(s) => {
                let st = &self.stages[s];
                let mut v = vec![self.unit_of(st.root)];
                for op in &st.ops {
                    v.extend(op.side_inputs.iter().map(|&pc| self.unit_of(pc)));
                }
                v.retain(|&d| d != u);
                v
            }
            Unit::Node(n) => {
                let node = &self.graph.nodes[n];
                match &node.kind {
                    NodeKind::GroupByKey
                    | NodeKind::CombinePerKey { .. }
                    | NodeKind::ParDo { .. } => {
                        // The stages writing the shuffle, and (stateful ParDo) side inputs.
                        let mut v: Vec<Unit> = self
                            .shuffle_feeds(node.inputs[0])
                            .into_iter()
                            .map(|pc| {
                                Unit::Stage(
                                    match self.placed[self.producer[pc].expect("validated")] {
                                        Some((s, _)) => s,
                                        None => self.root_stage[&pc],
                                    },
                                )
                            })
                            .collect();
                        if let NodeKind::ParDo { side_inputs, .. } = &node.kind {
                            v.extend(side_inputs.iter().map(|&pc| self.unit_of(pc)));
                        }
                        v
                    }
                    _ => node.inputs.iter().map(|&pc| self.unit_of(pc)).collect(),
                }
            }
        }
    }

    fn unit_order(&self) -> Result<Vec<Unit>> {
        let mut units: Vec<Unit> = (0..self.stages.len()).map(Unit::Stage).collect();
        for (i, node) in self.graph.nodes.iter().enumerate() {
            if !node.kind.is_fusable() && !self.unzipped.contains(&i) {
                units.push(Unit::Node(i));
            }
        }
        let mut state: HashMap<Unit, u8> = HashMap::new();
        let mut out = Vec::with_capacity(units.len());
        for &start in &units {
            if state.contains_key(&start) {
                continue;
            }
            let mut stack = vec![(start, self.unit_deps(start), 0usize)];
            state.insert(start, 1);
            while let Some((u, deps, i)) = stack.last_mut() {
                let u = *u;
                let next = deps.get(*i).copied();
                *i += 1;
                match next {
                    Some(d) => match state.get(&d) {
                        None => {
                            state.insert(d, 1);
                            let dd = self.unit_deps(d);
                            stack.push((d, dd, 0));
                        }
                        Some(1) => return Err(invalid(
                            "cycle between stages (a side input computed from its own consumer?)",
                        )),
                        _ => {}
                    },
                    None => {
                        state.insert(u, 2);
                        out.push(u);
                        stack.pop();
                    }
                }
            }
        }
        Ok(out)
    }
}
