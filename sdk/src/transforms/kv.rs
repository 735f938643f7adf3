//! Keys, Values and KvSwap over key/value collections.

use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;

/// The keys of a `PCollection<(K, V)>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys;

/// The values of a `PCollection<(K, V)>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Values;

/// Swaps keys and values.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvSwap;

impl<K: Element, V: Element> PTransform<PCollection<(K, V)>> for Keys {
    type Output = PCollection<K>;
    fn expand(self, input: &PCollection<(K, V)>) -> PCollection<K> {
        input.map("Keys", |(k, _): (K, V)| k)
    }
}

impl<K: Element, V: Element> PTransform<PCollection<(K, V)>> for Values {
    type Output = PCollection<V>;
    fn expand(self, input: &PCollection<(K, V)>) -> PCollection<V> {
        input.map("Values", |(_, v): (K, V)| v)
    }
}

impl<K: Element, V: Element> PTransform<PCollection<(K, V)>> for KvSwap {
    type Output = PCollection<(V, K)>;
    fn expand(self, input: &PCollection<(K, V)>) -> PCollection<(V, K)> {
        input.map("Swap", |(k, v): (K, V)| (v, k))
    }
}
