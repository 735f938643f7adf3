//! Reshuffle: redistributes elements across workers (and breaks fusion).

use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_proto::pipeline as pb;
use beamline_proto::urns;
use std::marker::PhantomData;

/// Redistributes elements evenly into new bundles.
///
/// Runners that know `beam:transform:reshuffle:v1` do this natively; the expansion
/// (random keys, GroupByKey, drop keys) is what others run.
pub struct Reshuffle<T>(PhantomData<fn(T)>);

impl<T> Reshuffle<T> {
    /// The transform.
    pub fn new() -> Self {
        Reshuffle(PhantomData)
    }
}

impl<T> Default for Reshuffle<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> PTransform<PCollection<T>> for Reshuffle<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> PCollection<T> {
        input.pipeline().set_composite_spec(pb::FunctionSpec {
            urn: urns::RESHUFFLE.into(),
            payload: vec![],
        });
        input
            .map("AddRandomKeys", |x: T| (rand::random::<u32>() as i64, x))
            .group_by_key("GroupByKey")
            .flat_map("RemoveRandomKeys", |(_, xs): (i64, Vec<T>)| xs)
    }
}
