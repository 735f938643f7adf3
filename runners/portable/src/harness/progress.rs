//! Live progress of a job on a Beam engine: the stages the engine sends this harness
//! (its process bundle descriptors), with the elements each read from and wrote to the
//! engine, shown through the job's control like any runner's.

use beamline_engine::job::JobControl;
use beamline_engine::progress::{StageInfo, StageKind, StageMeters};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// For each PCollection of the pipeline, the inputs of the transform producing it: how a
/// stage's input is traced back through what the engine runs itself (groupings, Impulse,
/// Flatten) to the stage that wrote it.
pub type Upstream = HashMap<String, Vec<String>>;

/// What identifies a stage and draws it: its transforms and the engine's PCollections it
/// reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageShape {
    /// The transforms it runs, by unique name.
    pub transforms: Vec<String>,
    /// The PCollections (the engine's ids) it reads from the engine.
    pub reads: Vec<String>,
    /// The PCollections it writes to the engine.
    pub writes: Vec<String>,
    /// It runs a grouping (a combine's phases).
    pub groups: bool,
}

/// The [`Upstream`] of an encoded pipeline (empty if it does not decode).
pub fn upstream_of(pipeline: &[u8]) -> Upstream {
    use beamline_proto::pipeline as pb;
    use beamline_proto::prost::Message;
    let Ok(p) = pb::Pipeline::decode(pipeline) else {
        return Upstream::new();
    };
    let mut up = Upstream::new();
    for t in p.components.iter().flat_map(|c| c.transforms.values()) {
        if !t.subtransforms.is_empty() {
            continue;
        }
        let inputs: Vec<String> = t.inputs.values().cloned().collect();
        for out in t.outputs.values() {
            up.insert(out.clone(), inputs.clone());
        }
    }
    up
}

#[derive(Debug)]
struct Entry {
    shape: StageShape,
    elements_in: u64,
    elements_out: u64,
}

/// The stages seen so far and their counts.
#[derive(Debug)]
pub struct LiveStages {
    control: JobControl,
    upstream: Upstream,
    inner: Mutex<(Vec<Entry>, Option<StageMeters>)>,
}

impl LiveStages {
    /// Stages shown through `control`, joined through `upstream`.
    pub fn new(control: JobControl, upstream: Upstream) -> Self {
        LiveStages {
            control,
            upstream,
            inner: Mutex::new((Vec::new(), None)),
        }
    }

    /// Adds a bundle's counts to the stage of `shape` (new stages extend the picture).
    pub fn add(&self, shape: &StageShape, elements_in: usize, elements_out: usize) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, meters) = &mut *inner;
        let i = match entries.iter().position(|e| &e.shape == shape) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    shape: shape.clone(),
                    elements_in: 0,
                    elements_out: 0,
                });
                let m = self
                    .control
                    .progress()
                    .start(infos(entries, &self.upstream), false);
                for (s, e) in entries.iter().enumerate() {
                    m.set_counts(s, e.elements_in, e.elements_out);
                }
                *meters = Some(m);
                entries.len() - 1
            }
        };
        let e = &mut entries[i];
        e.elements_in += elements_in as u64;
        e.elements_out += elements_out as u64;
        if let Some(m) = meters {
            m.set_counts(i, e.elements_in, e.elements_out);
        }
    }
}

/// The stages as pictures: a stage reads from the stages that wrote what it reads, found
/// through the transforms the engine ran between them.
fn infos(entries: &[Entry], upstream: &Upstream) -> Vec<StageInfo> {
    let writer = |pc: &str| {
        entries
            .iter()
            .position(|o| o.shape.writes.iter().any(|w| w == pc))
    };
    entries
        .iter()
        .enumerate()
        .map(|(me, e)| {
            let mut inputs = Vec::new();
            let mut seen: HashSet<&str> = HashSet::new();
            let mut todo: Vec<&str> = e.shape.reads.iter().map(String::as_str).collect();
            while let Some(pc) = todo.pop() {
                if !seen.insert(pc) {
                    continue;
                }
                match writer(pc).filter(|&w| w != me) {
                    Some(w) => {
                        if !inputs.contains(&w) {
                            inputs.push(w);
                        }
                    }
                    None => todo.extend(upstream.get(pc).into_iter().flatten().map(String::as_str)),
                }
            }
            // A lifted combine's grouping is the engine's own, between its Precombine and
            // its Merge (Beam's names for the phases): what it reads comes from there.
            for t in &e.shape.transforms {
                let Some(combine) = t.strip_suffix("/Merge") else {
                    continue;
                };
                let pre = format!("{combine}/Precombine");
                if let Some(w) = entries
                    .iter()
                    .position(|o| o.shape.transforms.contains(&pre))
                    .filter(|&w| w != me && !inputs.contains(&w))
                {
                    inputs.push(w);
                }
            }
            inputs.sort_unstable();
            let kind = if e.shape.groups {
                StageKind::Grouping
            } else if inputs.is_empty() {
                StageKind::Source
            } else {
                StageKind::Fused
            };
            StageInfo {
                name: e.shape.transforms.first().cloned().unwrap_or_default(),
                kind,
                transforms: e.shape.transforms.clone(),
                inputs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_add_up_per_stage_and_stages_join_by_pcollections() {
        let control = JobControl::default();
        // pc1 -> (the engine's grouping) -> pc2.
        let upstream = Upstream::from([("pc2".to_string(), vec!["pc1".to_string()])]);
        let live = LiveStages::new(control.clone(), upstream);
        let read = StageShape {
            transforms: vec!["Read".into()],
            reads: vec!["impulse".into()],
            writes: vec!["pc1".into()],
            ..Default::default()
        };
        let count = StageShape {
            transforms: vec!["Count".into()],
            reads: vec!["pc2".into()],
            groups: true,
            ..Default::default()
        };
        live.add(&read, 0, 5);
        live.add(&read, 0, 7);
        live.add(&count, 12, 3);
        let s = control.progress().snapshot();
        assert_eq!(s.stages.len(), 2);
        assert_eq!(s.stages[0].elements_out, 12);
        assert_eq!(s.stages[0].info.kind, StageKind::Source);
        assert_eq!(s.stages[1].info.inputs, vec![0]);
        assert_eq!((s.stages[1].elements_in, s.stages[1].elements_out), (12, 3));
    }
}
