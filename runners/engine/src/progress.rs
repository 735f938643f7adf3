//! Live progress of a running job: its stages and, per stage, elements in and out,
//! watermarks and backlog, counted by the executors and read by monitors while it runs.
//!
//! An executor describes its stages once ([`Progress::start`]) and gets [`StageMeters`]:
//! lock-free counters it adds to in batches (never per element). A monitor (a progress
//! bar, the job UI) takes a [`ProgressSnapshot`] whenever it likes.

use crate::graph::{Graph, NodeKind};
use crate::plan::{Plan, Unit};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// What a stage does, for pictures and summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// Reads data: Impulse, a source, TestStream (with the transforms fused after it).
    Source,
    /// Fused element-wise transforms (ParDo, WindowInto).
    Fused,
    /// GroupByKey or CombinePerKey: what it emits are panes.
    Grouping,
    /// Anything else run on its own: Flatten, Reshuffle, a stateful ParDo.
    Other,
}

impl StageKind {
    /// A lower-case name (`source`, `fused`, `grouping`, `other`).
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Source => "source",
            StageKind::Fused => "fused",
            StageKind::Grouping => "grouping",
            StageKind::Other => "other",
        }
    }
}

/// One stage of a job as a scheduler runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageInfo {
    /// A short name (its first transform's).
    pub name: String,
    /// What it does.
    pub kind: StageKind,
    /// The transforms it runs, by unique name, in order.
    pub transforms: Vec<String>,
    /// The stages it reads from (indexes into the job's stages).
    pub inputs: Vec<usize>,
}

/// The stages of a plan, and which stage runs each graph node.
#[derive(Clone, Debug, Default)]
pub struct StageLayout {
    /// The stages, in run order.
    pub stages: Vec<StageInfo>,
    /// The stage of each graph node.
    pub node_stage: Vec<usize>,
    /// Per node: whether it reads from another stage (its input counts as the stage's).
    pub entry: Vec<bool>,
    /// Per node: whether its output leaves the stage (or leaves the pipeline).
    pub exit: Vec<bool>,
}

impl StageLayout {
    /// The stages of `plan`: one per fused stage and one per node run on its own. With
    /// `fuse_sources`, a source node joins the stage rooted at its output (as the
    /// streaming executor runs them: on the source's threads).
    pub fn of(graph: &Graph, plan: &Plan, fuse_sources: bool) -> StageLayout {
        let n = graph.nodes.len();
        let mut node_stage = vec![usize::MAX; n];
        let mut members: Vec<Vec<usize>> = Vec::new();
        for unit in &plan.order {
            let nodes: Vec<usize> = match *unit {
                Unit::Stage(s) => plan.stages[s].ops.iter().map(|o| o.node).collect(),
                Unit::Node(x) => vec![x],
            };
            for &x in &nodes {
                node_stage[x] = members.len();
            }
            members.push(nodes);
        }
        // Nodes no unit runs get a stage each.
        for (x, stage) in node_stage.iter_mut().enumerate() {
            if *stage == usize::MAX {
                *stage = members.len();
                members.push(vec![x]);
            }
        }
        // A source joins the stage rooted at its output (the streaming executor runs
        // that stage's line on the source's threads).
        if fuse_sources {
            for x in 0..n {
                if !matches!(graph.nodes[x].kind, NodeKind::Source { .. }) {
                    continue;
                }
                let Some(&out) = graph.nodes[x].outputs.first() else {
                    continue;
                };
                let Some(first) = plan
                    .stages
                    .iter()
                    .find(|s| s.root == out)
                    .and_then(|s| s.ops.first())
                else {
                    continue;
                };
                let (from, into) = (node_stage[x], node_stage[first.node]);
                if from != into && members[from] == [x] {
                    members[into].insert(0, x);
                    members[from].clear();
                    node_stage[x] = into;
                }
            }
            // Renumber without the emptied stages, keeping the order.
            let mut renumber = vec![usize::MAX; members.len()];
            let mut kept = Vec::with_capacity(members.len());
            for (u, m) in members.into_iter().enumerate() {
                if !m.is_empty() {
                    renumber[u] = kept.len();
                    kept.push(m);
                }
            }
            members = kept;
            for s in &mut node_stage {
                *s = renumber[*s];
            }
        }
        let mut producer = vec![usize::MAX; graph.pcollections.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for &pc in &node.outputs {
                producer[pc] = i;
            }
        }
        let consumers = graph.consumers();
        let mut entry = vec![false; n];
        let mut exit = vec![false; n];
        let mut stages = Vec::with_capacity(members.len());
        for (u, nodes) in members.iter().enumerate() {
            let mut inputs = Vec::new();
            for &x in nodes {
                for &pc in &graph.nodes[x].inputs {
                    let p = producer[pc];
                    if p != usize::MAX && node_stage[p] != u {
                        entry[x] = true;
                        if !inputs.contains(&node_stage[p]) {
                            inputs.push(node_stage[p]);
                        }
                    }
                }
                exit[x] = graph.nodes[x].outputs.iter().any(|&pc| {
                    consumers[pc].is_empty()
                        || consumers[pc].iter().any(|&(c, _)| node_stage[c] != u)
                });
            }
            let kind = match nodes.first().map(|&x| &graph.nodes[x].kind) {
                Some(NodeKind::Impulse | NodeKind::Source { .. } | NodeKind::TestStream { .. }) => {
                    StageKind::Source
                }
                Some(NodeKind::GroupByKey | NodeKind::CombinePerKey { .. }) => StageKind::Grouping,
                Some(NodeKind::ParDo {
                    stateful: Some(_), ..
                })
                | Some(NodeKind::Flatten | NodeKind::Reshuffle) => StageKind::Other,
                _ => StageKind::Fused,
            };
            let transforms: Vec<String> =
                nodes.iter().map(|&x| graph.nodes[x].name.clone()).collect();
            stages.push(StageInfo {
                name: transforms.first().cloned().unwrap_or_default(),
                kind,
                transforms,
                inputs,
            });
        }
        StageLayout {
            stages,
            node_stage,
            entry,
            exit,
        }
    }
}

/// The counters of one stage.
#[derive(Debug)]
struct Counters {
    elements_in: AtomicU64,
    elements_out: AtomicU64,
    input_watermark: AtomicI64,
    output_watermark: AtomicI64,
    backlog: AtomicU64,
    done: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            elements_in: AtomicU64::new(0),
            elements_out: AtomicU64::new(0),
            input_watermark: AtomicI64::new(i64::MIN),
            output_watermark: AtomicI64::new(i64::MIN),
            backlog: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }
}

/// The counters an executor adds to, one set per stage. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StageMeters {
    counters: Arc<Vec<Counters>>,
}

impl StageMeters {
    /// Counts `n` elements into stage `s` (nothing for a stage out of range).
    pub fn add_in(&self, s: usize, n: usize) {
        if let Some(c) = self.counters.get(s) {
            c.elements_in.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Counts `n` elements out of stage `s`.
    pub fn add_out(&self, s: usize, n: usize) {
        if let Some(c) = self.counters.get(s) {
            c.elements_out.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Sets stage `s`'s counts (a runner that sums counts from elsewhere).
    pub fn set_counts(&self, s: usize, elements_in: u64, elements_out: u64) {
        if let Some(c) = self.counters.get(s) {
            c.elements_in.store(elements_in, Ordering::Relaxed);
            c.elements_out.store(elements_out, Ordering::Relaxed);
        }
    }

    /// Sets stage `s`'s input and output watermarks (milliseconds since the epoch).
    pub fn set_watermarks(&self, s: usize, input: i64, output: i64) {
        if let Some(c) = self.counters.get(s) {
            c.input_watermark.store(input, Ordering::Relaxed);
            c.output_watermark.store(output, Ordering::Relaxed);
        }
    }

    /// Sets how many elements wait to enter stage `s` (streaming), or how many will enter
    /// it in all (batch: its backlog is what did not enter yet).
    pub fn set_backlog(&self, s: usize, n: u64) {
        if let Some(c) = self.counters.get(s) {
            c.backlog.store(n, Ordering::Relaxed);
        }
    }

    /// Marks stage `s` finished (a batch stage that ran to its end).
    pub fn set_done(&self, s: usize) {
        if let Some(c) = self.counters.get(s) {
            c.done.store(true, Ordering::Relaxed);
            c.backlog.store(0, Ordering::Relaxed);
        }
    }
}

/// A job's live progress: shared by its executor (which counts) and its monitors.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    inner: Arc<Mutex<Option<Described>>>,
}

/// What an executor described: its stages, their meters, and whether it streams.
#[derive(Clone, Debug)]
struct Described {
    stages: Arc<Vec<StageInfo>>,
    meters: StageMeters,
    streaming: bool,
}

/// One stage's progress at a moment.
#[derive(Clone, Debug, PartialEq)]
pub struct StageProgress {
    /// What the stage is.
    pub info: StageInfo,
    /// Elements that entered it.
    pub elements_in: u64,
    /// Elements it emitted to other stages (or out of the pipeline).
    pub elements_out: u64,
    /// Its input watermark (`None`: not known, as in batch).
    pub input_watermark: Option<i64>,
    /// Its output watermark.
    pub output_watermark: Option<i64>,
    /// Elements waiting to enter it.
    pub backlog: u64,
    /// True once it finished (batch).
    pub done: bool,
}

/// A job's progress at a moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// Whether the job runs in streaming mode.
    pub streaming: bool,
    /// Its stages (empty until the executor started, or for a runner that does not count).
    pub stages: Vec<StageProgress>,
}

impl Progress {
    /// Describes the job's stages; returns the meters to count with. A later call
    /// replaces the stages (a job that plans again).
    pub fn start(&self, stages: Vec<StageInfo>, streaming: bool) -> StageMeters {
        let meters = StageMeters {
            counters: Arc::new((0..stages.len()).map(|_| Counters::default()).collect()),
        };
        *self.inner.lock() = Some(Described {
            stages: Arc::new(stages),
            meters: meters.clone(),
            streaming,
        });
        meters
    }

    /// The progress now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let Some(Described {
            stages,
            meters,
            streaming,
        }) = self.inner.lock().clone()
        else {
            return ProgressSnapshot::default();
        };
        let wm = |a: &AtomicI64| Some(a.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN);
        ProgressSnapshot {
            streaming,
            stages: stages
                .iter()
                .zip(meters.counters.iter())
                .map(|(info, c)| StageProgress {
                    info: info.clone(),
                    elements_in: c.elements_in.load(Ordering::Relaxed),
                    elements_out: c.elements_out.load(Ordering::Relaxed),
                    input_watermark: if streaming {
                        wm(&c.input_watermark)
                    } else {
                        None
                    },
                    output_watermark: if streaming {
                        wm(&c.output_watermark)
                    } else {
                        None
                    },
                    backlog: if streaming {
                        c.backlog.load(Ordering::Relaxed)
                    } else {
                        c.backlog
                            .load(Ordering::Relaxed)
                            .saturating_sub(c.elements_in.load(Ordering::Relaxed))
                    },
                    done: c.done.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_show_in_snapshots_and_ignore_unknown_stages() {
        let p = Progress::default();
        assert!(p.snapshot().stages.is_empty());
        let info = StageInfo {
            name: "Read".into(),
            kind: StageKind::Source,
            transforms: vec!["Read".into()],
            inputs: vec![],
        };
        let m = p.start(vec![info.clone()], true);
        m.add_in(0, 3);
        m.add_out(0, 5);
        m.add_out(7, 5);
        m.set_watermarks(0, i64::MIN, 42);
        m.set_backlog(0, 9);
        let s = p.snapshot();
        assert!(s.streaming);
        assert_eq!(s.stages[0].info, info);
        assert_eq!((s.stages[0].elements_in, s.stages[0].elements_out), (3, 5));
        assert_eq!(s.stages[0].input_watermark, None);
        assert_eq!(s.stages[0].output_watermark, Some(42));
        assert_eq!(s.stages[0].backlog, 9);
    }
}
