//! GroupByKey and CoGroupByKey.

use super::ParDo;
use crate::dofn::{DoFn, ProcessContext};
use crate::element::{Bytes, Element};
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::UserError;
use beamline_proto::pipeline as pb;
use beamline_proto::urns;
use std::marker::PhantomData;

/// Groups `(K, V)` pairs into `(K, Vec<V>)` per key and window.
///
/// Keys are compared by their encoded bytes, as in Beam, so the key coder must be
/// deterministic.
pub struct GroupByKey<K, V>(PhantomData<fn(K, V)>);

impl<K, V> GroupByKey<K, V> {
    /// The transform.
    pub fn new() -> Self {
        GroupByKey(PhantomData)
    }
}

impl<K, V> Default for GroupByKey<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Element, V: Element> PTransform<PCollection<(K, V)>> for GroupByKey<K, V> {
    type Output = PCollection<(K, Vec<V>)>;
    fn expand(self, input: &PCollection<(K, V)>) -> PCollection<(K, Vec<V>)> {
        let p = input.pipeline().clone();
        let out: PCollection<(K, Vec<V>)> = p.new_output("out", input.windowing());
        p.set_primitive(
            pb::FunctionSpec {
                urn: urns::GROUP_BY_KEY.into(),
                payload: vec![],
            },
            vec![("input".into(), input.id().to_string())],
            vec![("out".into(), out.id().to_string())],
            false,
        );
        out
    }
}

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// Shorthand for applying [`GroupByKey`].
    pub fn group_by_key(&self, name: &str) -> PCollection<(K, Vec<V>)> {
        self.apply(name, GroupByKey::new())
    }
}

/// Joins two keyed collections: `(K, (all A values, all B values))` per key.
pub struct CoGroupByKey<K, A, B>(PhantomData<fn(K, A, B)>);

impl<K, A, B> CoGroupByKey<K, A, B> {
    /// The transform.
    pub fn new() -> Self {
        CoGroupByKey(PhantomData)
    }
}

impl<K, A, B> Default for CoGroupByKey<K, A, B> {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits grouped union values back into the two typed lists.
#[derive(Clone)]
struct Untag<K, A, B>(PhantomData<fn(K, A, B)>);

impl<K: Element, A: Element, B: Element> DoFn for Untag<K, A, B> {
    type In = (K, Vec<(i64, Bytes)>);
    type Out = (K, (Vec<A>, Vec<B>));
    fn process(
        &mut self,
        (key, tagged): Self::In,
        ctx: &mut ProcessContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError> {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, Bytes(bytes)) in tagged {
            let mut input = bytes.as_slice();
            match i {
                0 => a.push(A::from_value(A::coder().decode(&mut input, false)?)?),
                _ => b.push(B::from_value(B::coder().decode(&mut input, false)?)?),
            }
        }
        ctx.output((key, (a, b)));
        Ok(())
    }
}

/// Encodes a value of either input as (input index, encoded bytes): a union coder.
fn encode_tagged<V: Element>(i: i64, v: V) -> (i64, Bytes) {
    let bytes = V::coder()
        .encode_to_vec(&v.into_value())
        .expect("a value encodes with its own type's coder");
    (i, Bytes(bytes))
}

impl<K: Element, A: Element, B: Element> PTransform<(PCollection<(K, A)>, PCollection<(K, B)>)>
    for CoGroupByKey<K, A, B>
{
    type Output = PCollection<(K, (Vec<A>, Vec<B>))>;
    fn expand(self, input: &(PCollection<(K, A)>, PCollection<(K, B)>)) -> Self::Output {
        let ta = input
            .0
            .map("TagA", |(k, a): (K, A)| (k, encode_tagged(0, a)));
        let tb = input
            .1
            .map("TagB", |(k, b): (K, B)| (k, encode_tagged(1, b)));
        ta.flatten_with("Flatten", &[tb])
            .apply("GroupByKey", GroupByKey::new())
            .apply("Untag", ParDo::of(Untag(PhantomData)))
    }
}
