//! Flatten: the union of several collections of the same type.

use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_proto::pipeline as pb;
use beamline_proto::urns;

/// Merges a list of collections into one.
///
/// Every element keeps its own window; the output takes the first input's windowing
/// strategy (what a later GroupByKey triggers and merges with), as Beam Python's Flatten
/// does. Inputs may be windowed differently (fixed windows of 10 s and of 5 s, say).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl<T: Element> PTransform<Vec<PCollection<T>>> for Flatten {
    type Output = PCollection<T>;
    fn expand(self, inputs: &Vec<PCollection<T>>) -> PCollection<T> {
        let p = inputs[0].pipeline().clone();
        let windowing = inputs[0].windowing();
        let out: PCollection<T> = p.new_output("out", windowing);
        p.set_primitive(
            pb::FunctionSpec {
                urn: urns::FLATTEN.into(),
                payload: vec![],
            },
            inputs
                .iter()
                .enumerate()
                .map(|(i, pc)| (format!("in{i:04}"), pc.id().to_string()))
                .collect(),
            vec![("out".into(), out.id().to_string())],
            false,
        );
        out
    }
}

impl<T: Element> PCollection<T> {
    /// Flattens this collection with `others`.
    pub fn flatten_with(&self, name: &str, others: &[PCollection<T>]) -> PCollection<T> {
        let mut all = vec![self.clone()];
        all.extend(others.iter().cloned());
        crate::pipeline::apply(&all, name, Flatten)
    }
}
