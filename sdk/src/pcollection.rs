//! `PCollection<T>` and the input/output traits transforms are applied to.

use crate::element::Element;
use crate::pipeline::{apply, PTransform, Pipeline};
use beamline_engine::graph::Windowing;
use std::marker::PhantomData;

/// A distributed collection of `T`s: the input and output of transforms.
pub struct PCollection<T> {
    pipeline: Pipeline,
    id: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for PCollection<T> {
    fn clone(&self) -> Self {
        PCollection {
            pipeline: self.pipeline.clone(),
            id: self.id.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PCollection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PCollection({})", self.id)
    }
}

impl<T> PCollection<T> {
    pub(crate) fn from_id(pipeline: Pipeline, id: String) -> Self {
        PCollection {
            pipeline,
            id,
            _t: PhantomData,
        }
    }

    /// The PCollection's id in the pipeline proto.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pipeline it belongs to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Its windowing strategy.
    pub fn windowing(&self) -> Windowing {
        self.pipeline.windowing_of(&self.id)
    }
}

impl<T: Element> PCollection<T> {
    /// Applies a transform to this collection under `name`.
    pub fn apply<P: PTransform<Self>>(&self, name: &str, t: P) -> P::Output {
        <Self as PInput>::apply(self, name, t)
    }

    /// One output per element: `f(x)`.
    pub fn map<O, F>(&self, name: &str, f: F) -> PCollection<O>
    where
        O: Element,
        F: Fn(T) -> O + Send + Sync + 'static,
    {
        self.apply(name, crate::transforms::Map::new(f))
    }

    /// Any number of outputs per element: everything `f(x)` yields.
    pub fn flat_map<O, I, F>(&self, name: &str, f: F) -> PCollection<O>
    where
        O: Element,
        I: IntoIterator<Item = O> + 'static,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        self.apply(name, crate::transforms::FlatMap::new(f))
    }

    /// The elements for which `f` is true.
    pub fn filter<F>(&self, name: &str, f: F) -> PCollection<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.apply(name, crate::transforms::Filter::new(f))
    }

    /// Runs a DoFn on every element.
    pub fn par_do<D: crate::DoFn<In = T>>(&self, name: &str, dofn: D) -> PCollection<D::Out> {
        self.apply(name, crate::transforms::ParDo::of(dofn))
    }
}

/// The input of root transforms: the pipeline itself.
#[derive(Clone)]
pub struct PBegin(pub(crate) Pipeline);

/// Something transforms can be applied to: a PCollection, a list or pair of them.
///
/// # Examples
///
/// ```
/// use beamline::{Create, Flatten, PInput, Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let a = p.apply("A", Create::of(vec![1i64]));
/// let b = p.apply("B", Create::of(vec![2i64]));
/// let _both = vec![a, b].apply("Both", Flatten);
/// ```
pub trait PInput: Sized {
    /// The pipeline.
    fn pipeline(&self) -> Pipeline;
    /// Ids of the PCollections it consists of.
    fn pcollection_ids(&self) -> Vec<String>;
    /// Applies a transform under `name`.
    fn apply<T: PTransform<Self>>(&self, name: &str, t: T) -> T::Output {
        apply(self, name, t)
    }
}

/// Something transforms return.
pub trait POutput {
    /// Ids of the PCollections it consists of.
    fn pcollection_ids(&self) -> Vec<String>;
}

impl PInput for PBegin {
    fn pipeline(&self) -> Pipeline {
        self.0.clone()
    }
    fn pcollection_ids(&self) -> Vec<String> {
        Vec::new()
    }
}

impl<T> PInput for PCollection<T> {
    fn pipeline(&self) -> Pipeline {
        self.pipeline.clone()
    }
    fn pcollection_ids(&self) -> Vec<String> {
        vec![self.id.clone()]
    }
}

impl<T> POutput for PCollection<T> {
    fn pcollection_ids(&self) -> Vec<String> {
        vec![self.id.clone()]
    }
}

impl<T> PInput for Vec<PCollection<T>> {
    fn pipeline(&self) -> Pipeline {
        self.first()
            .expect("a list of PCollections must not be empty")
            .pipeline
            .clone()
    }
    fn pcollection_ids(&self) -> Vec<String> {
        self.iter().map(|p| p.id.clone()).collect()
    }
}

impl<T> POutput for Vec<PCollection<T>> {
    fn pcollection_ids(&self) -> Vec<String> {
        self.iter().map(|p| p.id.clone()).collect()
    }
}

impl<A, B> PInput for (PCollection<A>, PCollection<B>) {
    fn pipeline(&self) -> Pipeline {
        self.0.pipeline.clone()
    }
    fn pcollection_ids(&self) -> Vec<String> {
        vec![self.0.id.clone(), self.1.id.clone()]
    }
}

impl POutput for () {
    fn pcollection_ids(&self) -> Vec<String> {
        Vec::new()
    }
}
