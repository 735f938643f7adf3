//! Side inputs: views of a PCollection (singleton, iterable, map, multimap) read by a ParDo.

use crate::element::Element;
use crate::pcollection::PCollection;
use beamline_engine::{UserError, Value};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// How a side input presents its PCollection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// Exactly one value (or a default when empty).
    Singleton,
    /// All values.
    Iterable,
    /// Key to the single value of that key.
    Map,
    /// Key to all values of that key.
    MultiMap,
}

impl ViewKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ViewKind::Singleton => "singleton",
            ViewKind::Iterable => "iterable",
            ViewKind::Map => "map",
            ViewKind::MultiMap => "multimap",
        }
    }
}

type Builder<V> = Arc<dyn Fn(&[Value]) -> Result<V, UserError> + Send + Sync>;

/// A view of a PCollection that a ParDo reads with
/// [`ProcessContext::side_input`](crate::ProcessContext::side_input).
///
/// The view is built once per window and shared by all workers.
pub struct SideInput<V> {
    pcoll: String,
    kind: ViewKind,
    build: Builder<V>,
}

impl<V> Clone for SideInput<V> {
    fn clone(&self) -> Self {
        SideInput {
            pcoll: self.pcoll.clone(),
            kind: self.kind,
            build: self.build.clone(),
        }
    }
}

impl<V> SideInput<V> {
    /// Id of the viewed PCollection.
    pub fn pcollection(&self) -> &str {
        &self.pcoll
    }

    /// The view kind.
    pub fn kind(&self) -> ViewKind {
        self.kind
    }

    /// The input name under which the ParDo reads it.
    pub(crate) fn local_name(&self) -> String {
        format!("side:{}", self.pcoll)
    }

    pub(crate) fn build(&self, values: &[Value]) -> Result<V, UserError> {
        (self.build)(values)
    }
}

fn decode_all<T: Element>(values: &[Value]) -> Result<Vec<T>, UserError> {
    values
        .iter()
        .map(|v| T::from_value(v.clone()).map_err(|e| e.into()))
        .collect()
}

impl<T: Element> PCollection<T> {
    /// This collection as a single value; empty or multi-element collections are errors.
    pub fn as_singleton(&self) -> SideInput<T> {
        self.singleton_view(None)
    }

    /// This collection as a single value, or `default` when it is empty.
    pub fn as_singleton_or(&self, default: T) -> SideInput<T> {
        self.singleton_view(Some(default))
    }

    fn singleton_view(&self, default: Option<T>) -> SideInput<T> {
        let pcoll = self.id().to_string();
        let name = pcoll.clone();
        SideInput {
            pcoll,
            kind: ViewKind::Singleton,
            build: Arc::new(move |values| match values {
                [one] => Ok(T::from_value(one.clone())?),
                [] => default.clone().ok_or_else(|| {
                    format!("singleton side input '{name}' is empty and has no default").into()
                }),
                many => Err(format!(
                    "singleton side input '{name}' has {} elements; expected one",
                    many.len()
                )
                .into()),
            }),
        }
    }

    /// This collection as a list of all its values.
    pub fn as_iter(&self) -> SideInput<Vec<T>> {
        SideInput {
            pcoll: self.id().to_string(),
            kind: ViewKind::Iterable,
            build: Arc::new(decode_all::<T>),
        }
    }
}

impl<K: Element + Hash + Eq, V: Element> PCollection<(K, V)> {
    /// This collection as a map; a key present twice is an error.
    pub fn as_map(&self) -> SideInput<HashMap<K, V>> {
        let name = self.id().to_string();
        SideInput {
            pcoll: self.id().to_string(),
            kind: ViewKind::Map,
            build: Arc::new(move |values| {
                let mut m = HashMap::with_capacity(values.len());
                for (k, v) in decode_all::<(K, V)>(values)? {
                    if m.insert(k, v).is_some() {
                        return Err(format!("map side input '{name}' has a duplicate key").into());
                    }
                }
                Ok(m)
            }),
        }
    }

    /// This collection as a map from each key to all its values.
    pub fn as_multimap(&self) -> SideInput<HashMap<K, Vec<V>>> {
        SideInput {
            pcoll: self.id().to_string(),
            kind: ViewKind::MultiMap,
            build: Arc::new(|values| {
                let mut m: HashMap<K, Vec<V>> = HashMap::new();
                for (k, v) in decode_all::<(K, V)>(values)? {
                    m.entry(k).or_default().push(v);
                }
                Ok(m)
            }),
        }
    }
}
