//! What a monitor reads from the pipeline proto: sources and sinks, the transforms, and
//! a graph to draw when the runner reports no stages of its own.

use beamline_engine::progress::{StageInfo, StageKind};
use beamline_proto::org::apache::beam::model::pipeline::v1 as pb;
use prost::Message;
use std::collections::HashMap;

/// Annotation naming what a source transform reads (set by the SDK's IO transforms).
pub const SOURCE_ANNOTATION: &str = "beamline:io:source";
/// Annotation naming what a sink transform writes.
pub const SINK_ANNOTATION: &str = "beamline:io:sink";
/// Namespace of the IO counters (`elementsRead`, `bytesRead`, `bytesTotal`,
/// `elementsWritten`, `filesWritten`).
pub const IO_NAMESPACE: &str = "beamline.io";

/// A source or a sink of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoFact {
    /// The composite transform's unique name (`Read`).
    pub transform: String,
    /// What it reads or writes (a file pattern, a shard pattern, a topic).
    pub what: String,
}

/// What the monitors need of a pipeline.
#[derive(Clone, Debug, Default)]
pub struct PipelineFacts {
    /// Annotated sources, in name order.
    pub sources: Vec<IoFact>,
    /// Annotated sinks, in name order.
    pub sinks: Vec<IoFact>,
    /// Unique names of every transform (composites too), longest first: an error
    /// message is attributed to the first it quotes.
    pub transforms: Vec<String>,
    /// True when a PCollection is unbounded (the job streams).
    pub unbounded: bool,
    /// One stage per primitive transform, with its inputs: the picture for a runner
    /// that reports no stages.
    pub primitives: Vec<StageInfo>,
}

impl PipelineFacts {
    /// Reads the facts of an encoded `Pipeline`; an undecodable proto gives none (the
    /// runner reports that error itself).
    pub fn of_encoded(bytes: &[u8]) -> PipelineFacts {
        match pb::Pipeline::decode(bytes) {
            Ok(p) => Self::of(&p),
            Err(_) => PipelineFacts::default(),
        }
    }

    /// Reads the facts of a pipeline.
    pub fn of(p: &pb::Pipeline) -> PipelineFacts {
        let Some(c) = &p.components else {
            return PipelineFacts::default();
        };
        let mut facts = PipelineFacts::default();
        let mut ids: Vec<&String> = c.transforms.keys().collect();
        ids.sort();
        let mut producer: HashMap<&str, usize> = HashMap::new();
        let mut leaves: Vec<&pb::PTransform> = Vec::new();
        for id in ids {
            let t = &c.transforms[id];
            let name = if t.unique_name.is_empty() {
                id.clone()
            } else {
                t.unique_name.clone()
            };
            let text = |k: &str| {
                t.annotations
                    .get(k)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            if let Some(what) = text(SOURCE_ANNOTATION) {
                facts.sources.push(IoFact {
                    transform: name.clone(),
                    what,
                });
            }
            if let Some(what) = text(SINK_ANNOTATION) {
                facts.sinks.push(IoFact {
                    transform: name.clone(),
                    what,
                });
            }
            facts.transforms.push(name);
            if t.subtransforms.is_empty() {
                for pc in t.outputs.values() {
                    producer.insert(pc.as_str(), leaves.len());
                }
                leaves.push(t);
            }
        }
        facts.transforms.sort_by_key(|n| std::cmp::Reverse(n.len()));
        facts.unbounded = c
            .pcollections
            .values()
            .any(|pc| pc.is_bounded == pb::is_bounded::Enum::Unbounded as i32);
        for t in &leaves {
            let mut inputs: Vec<usize> = t
                .inputs
                .values()
                .filter_map(|pc| producer.get(pc.as_str()).copied())
                .collect();
            inputs.sort_unstable();
            inputs.dedup();
            let urn = t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or_default();
            let kind = if t.inputs.is_empty() {
                StageKind::Source
            } else if urn.contains("group_by_key") || urn.contains("combine_per_key") {
                StageKind::Grouping
            } else if urn.contains("pardo") || urn.contains("window_into") {
                StageKind::Fused
            } else {
                StageKind::Other
            };
            facts.primitives.push(StageInfo {
                name: t.unique_name.clone(),
                kind,
                transforms: vec![t.unique_name.clone()],
                inputs,
            });
        }
        facts
    }

    /// The transform an error message names (quoted, as the engine's errors do).
    pub fn transform_in(&self, message: &str) -> Option<String> {
        self.transforms
            .iter()
            .find(|t| message.contains(&format!("'{t}'")))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transform(name: &str, urn: &str, ins: &[&str], outs: &[&str]) -> pb::PTransform {
        pb::PTransform {
            unique_name: name.into(),
            spec: Some(pb::FunctionSpec {
                urn: urn.into(),
                ..Default::default()
            }),
            inputs: ins
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("in{i}"), s.to_string()))
                .collect(),
            outputs: outs
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("out{i}"), s.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sources_sinks_and_primitive_edges_come_from_the_proto() {
        let mut read = transform("Read", "", &[], &["a"]);
        read.subtransforms = vec!["Read/Impulse".into()];
        read.annotations
            .insert(SOURCE_ANNOTATION.into(), b"in/*.txt".to_vec());
        let mut c = pb::Components::default();
        c.transforms.insert("Read".into(), read);
        c.transforms.insert(
            "Read/Impulse".into(),
            transform("Read/Impulse", "beam:transform:impulse:v1", &[], &["a"]),
        );
        c.transforms.insert(
            "Group".into(),
            transform("Group", "beam:transform:group_by_key:v1", &["a"], &["b"]),
        );
        let facts = PipelineFacts::of(&pb::Pipeline {
            components: Some(c),
            ..Default::default()
        });
        assert_eq!(
            facts.sources,
            vec![IoFact {
                transform: "Read".into(),
                what: "in/*.txt".into()
            }]
        );
        assert!(facts.sinks.is_empty());
        let group = facts.primitives.iter().find(|s| s.name == "Group").unwrap();
        assert_eq!(group.kind, StageKind::Grouping);
        assert_eq!(facts.primitives[group.inputs[0]].name, "Read/Impulse");
        assert_eq!(
            facts.transform_in("transform 'Read/Impulse' failed: boom"),
            Some("Read/Impulse".into())
        );
    }
}
