//! Live progress of a distributed job: each worker process counts what its chains (fused
//! transforms) and sources read and emit, reports it to the launcher every second, and
//! the launcher sums the processes' reports into the job's stages.

use beamline_engine::graph::{Graph, NodeKind};
use beamline_engine::job::JobControl;
use beamline_engine::progress::{StageInfo, StageKind, StageMeters};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The counts of one chain on one worker thread.
#[derive(Debug)]
pub(crate) struct ChainMeter {
    elements_in: AtomicU64,
    elements_out: AtomicU64,
    input_watermark: AtomicI64,
    output_watermark: AtomicI64,
}

impl ChainMeter {
    /// Counts `n` elements in.
    pub(crate) fn add_in(&self, n: usize) {
        self.elements_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` elements out.
    pub(crate) fn add_out(&self, n: usize) {
        self.elements_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Sets the chain's input and output watermarks.
    pub(crate) fn set_watermarks(&self, input: i64, output: i64) {
        self.input_watermark.store(input, Ordering::Relaxed);
        self.output_watermark.store(output, Ordering::Relaxed);
    }
}

/// The meters of this process's chains, one per chain and worker thread.
#[derive(Debug, Default)]
pub(crate) struct ProcessMeters {
    chains: Mutex<Vec<(Vec<String>, Arc<ChainMeter>)>>,
}

impl ProcessMeters {
    /// A meter for a chain of `transforms` on one worker thread.
    pub(crate) fn register(&self, transforms: Vec<String>) -> Arc<ChainMeter> {
        let m = Arc::new(ChainMeter {
            elements_in: AtomicU64::new(0),
            elements_out: AtomicU64::new(0),
            input_watermark: AtomicI64::new(i64::MIN),
            output_watermark: AtomicI64::new(i64::MIN),
        });
        self.chains
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((transforms, m.clone()));
        m
    }

    /// The counts as one line of JSON: `[[transforms, in, out, input wm, output wm], ...]`,
    /// the threads of a chain summed (watermarks: the least).
    pub(crate) fn to_json(&self) -> String {
        let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let mut by: Vec<ChainReport> = Vec::new();
        for (t, m) in chains.iter() {
            let r = ChainReport {
                transforms: t.clone(),
                elements_in: m.elements_in.load(Ordering::Relaxed),
                elements_out: m.elements_out.load(Ordering::Relaxed),
                input_watermark: m.input_watermark.load(Ordering::Relaxed),
                output_watermark: m.output_watermark.load(Ordering::Relaxed),
            };
            match by.iter_mut().find(|b| b.transforms == r.transforms) {
                Some(b) => b.absorb(&r),
                None => by.push(r),
            }
        }
        serde_json::Value::Array(
            by.iter()
                .map(|r| {
                    serde_json::json!([
                        r.transforms,
                        r.elements_in,
                        r.elements_out,
                        r.input_watermark,
                        r.output_watermark
                    ])
                })
                .collect(),
        )
        .to_string()
    }
}

/// A chain's counts in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainReport {
    transforms: Vec<String>,
    elements_in: u64,
    elements_out: u64,
    input_watermark: i64,
    output_watermark: i64,
}

/// The least of two watermarks, an unset one (`i64::MIN`) not counting.
fn least(a: i64, b: i64) -> i64 {
    match (a, b) {
        (i64::MIN, x) | (x, i64::MIN) => x,
        (a, b) => a.min(b),
    }
}

impl ChainReport {
    fn absorb(&mut self, o: &ChainReport) {
        self.elements_in += o.elements_in;
        self.elements_out += o.elements_out;
        self.input_watermark = least(self.input_watermark, o.input_watermark);
        self.output_watermark = least(self.output_watermark, o.output_watermark);
    }
}

/// Reads a report written by [`ProcessMeters::to_json`].
fn parse(json: &str) -> Option<Vec<ChainReport>> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.as_array()?
        .iter()
        .map(|r| {
            Some(ChainReport {
                transforms: r
                    .get(0)?
                    .as_array()?
                    .iter()
                    .map(|t| t.as_str().map(String::from))
                    .collect::<Option<_>>()?,
                elements_in: r.get(1)?.as_u64()?,
                elements_out: r.get(2)?.as_u64()?,
                input_watermark: r.get(3)?.as_i64()?,
                output_watermark: r.get(4)?.as_i64()?,
            })
        })
        .collect()
}

/// What the launcher knows of each transform: its kind and the transforms it reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    nodes: HashMap<String, (StageKind, Vec<String>)>,
    streaming: bool,
}

impl Shape {
    /// The shape of `graph`, run in streaming mode or not.
    pub(crate) fn of(graph: &Graph, streaming: bool) -> Shape {
        let mut producer = HashMap::new();
        for n in &graph.nodes {
            for &pc in &n.outputs {
                producer.insert(pc, n.name.clone());
            }
        }
        let nodes = graph
            .nodes
            .iter()
            .map(|n| {
                let kind = match &n.kind {
                    NodeKind::Impulse | NodeKind::Source { .. } | NodeKind::TestStream { .. } => {
                        StageKind::Source
                    }
                    NodeKind::GroupByKey | NodeKind::CombinePerKey { .. } => StageKind::Grouping,
                    NodeKind::ParDo {
                        stateful: Some(_), ..
                    }
                    | NodeKind::Flatten
                    | NodeKind::Reshuffle => StageKind::Other,
                    _ => StageKind::Fused,
                };
                let mut reads: Vec<PcReads> = n.inputs.clone();
                if let NodeKind::ParDo { side_inputs, .. } = &n.kind {
                    reads.extend(side_inputs);
                }
                let inputs = reads
                    .iter()
                    .filter_map(|pc| producer.get(pc).cloned())
                    .collect();
                (n.name.clone(), (kind, inputs))
            })
            .collect();
        Shape { nodes, streaming }
    }
}

type PcReads = beamline_engine::graph::PcId;

/// The launcher's view of the job's progress: the latest report of every process, summed
/// into the job's stages (one per chain).
#[derive(Debug)]
pub(crate) struct LiveProgress {
    shape: Shape,
    control: JobControl,
    latest: HashMap<usize, Vec<ChainReport>>,
    stages: Vec<Vec<String>>,
    meters: Option<StageMeters>,
}

impl LiveProgress {
    /// Progress of a job of this shape, shown through `control`.
    pub(crate) fn new(shape: Shape, control: JobControl) -> Self {
        LiveProgress {
            shape,
            control,
            latest: HashMap::new(),
            stages: Vec::new(),
            meters: None,
        }
    }

    /// Takes process `p`'s report (a malformed one is ignored: progress is only shown).
    pub(crate) fn update(&mut self, p: usize, json: &str) {
        let Some(report) = parse(json) else {
            return;
        };
        let mut grew = false;
        for r in &report {
            if !self.stages.contains(&r.transforms) {
                self.stages.push(r.transforms.clone());
                grew = true;
            }
        }
        self.latest.insert(p, report);
        if grew || self.meters.is_none() {
            self.meters = Some(
                self.control
                    .progress()
                    .start(self.infos(), self.shape.streaming),
            );
        }
        let Some(meters) = &self.meters else {
            return;
        };
        let infos = self.infos();
        let mut outs = vec![0u64; self.stages.len()];
        for (s, transforms) in self.stages.iter().enumerate() {
            let mut sum: Option<ChainReport> = None;
            for r in self.latest.values().flatten() {
                if &r.transforms == transforms {
                    match &mut sum {
                        Some(t) => t.absorb(r),
                        None => sum = Some(r.clone()),
                    }
                }
            }
            if let Some(mut t) = sum {
                // A grouping fed pre-combined partials reads what its inputs emitted
                // (folded before the exchange, they are not elements when they arrive).
                if t.elements_in == 0 && infos[s].kind == StageKind::Grouping {
                    t.elements_in = infos[s].inputs.iter().map(|&i| outs[i]).sum();
                }
                outs[s] = t.elements_out;
                meters.set_counts(s, t.elements_in, t.elements_out);
                meters.set_watermarks(s, t.input_watermark, t.output_watermark);
            }
        }
    }

    /// The stages: one per chain, reading from the chains of the transforms it reads.
    fn infos(&self) -> Vec<StageInfo> {
        let stage_of = |name: &str| self.stages.iter().position(|s| s.iter().any(|t| t == name));
        self.stages
            .iter()
            .enumerate()
            .map(|(i, transforms)| {
                let first = transforms.first().cloned().unwrap_or_default();
                let kind = self
                    .shape
                    .nodes
                    .get(&first)
                    .map_or(StageKind::Fused, |(k, _)| *k);
                let mut inputs = Vec::new();
                for t in transforms {
                    for from in self
                        .shape
                        .nodes
                        .get(t)
                        .map(|(_, i)| i.as_slice())
                        .unwrap_or(&[])
                    {
                        if let Some(s) = stage_of(from).filter(|&s| s != i) {
                            if !inputs.contains(&s) {
                                inputs.push(s);
                            }
                        }
                    }
                }
                StageInfo {
                    name: first,
                    kind,
                    transforms: transforms.clone(),
                    inputs,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_sum_over_threads_and_processes_into_stages() {
        let a = ProcessMeters::default();
        let t1 = a.register(vec!["Read".into(), "Split".into()]);
        let t2 = a.register(vec!["Read".into(), "Split".into()]);
        let g = a.register(vec!["Count".into()]);
        t1.add_in(3);
        t2.add_in(4);
        t1.add_out(10);
        t1.set_watermarks(5, 4);
        t2.set_watermarks(7, 6);
        g.add_in(10);
        let json = a.to_json();
        let r = parse(&json).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].elements_in, r[0].elements_out), (7, 10));
        assert_eq!((r[0].input_watermark, r[0].output_watermark), (5, 4));
        let mut shape = Shape::default();
        shape
            .nodes
            .insert("Read".into(), (StageKind::Source, Vec::new()));
        shape
            .nodes
            .insert("Count".into(), (StageKind::Grouping, vec!["Split".into()]));
        let control = JobControl::default();
        let mut live = LiveProgress::new(shape, control.clone());
        live.update(0, &json);
        live.update(1, &json);
        live.update(1, "not json");
        let snap = control.progress().snapshot();
        assert_eq!(snap.stages.len(), 2);
        assert_eq!(snap.stages[0].elements_in, 14);
        assert_eq!(snap.stages[0].info.kind, StageKind::Source);
        assert_eq!(snap.stages[1].info.inputs, vec![0]);
        assert_eq!(snap.stages[1].elements_in, 20);
    }
}
