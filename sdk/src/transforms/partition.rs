//! Partition: splits a collection into N collections by a function of each element.

use super::ParDo;
use crate::dofn::{DoFn, ErasedTag, ProcessContext};
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::{UserError, WindowedValue};
use std::marker::PhantomData;
use std::sync::Arc;

/// Splits the input into `n` outputs; `f(&x, n)` picks the output of each element.
///
/// An index outside `0..n` fails the job with an error naming the transform.
pub struct Partition<T, F> {
    n: usize,
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> Clone for Partition<T, F> {
    fn clone(&self) -> Self {
        Partition {
            n: self.n,
            f: self.f.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Element, F: Fn(&T, usize) -> usize + Send + Sync + 'static> Partition<T, F> {
    /// `n` partitions chosen by `f`.
    pub fn new(n: usize, f: F) -> Self {
        Partition {
            n,
            f: Arc::new(f),
            _t: PhantomData,
        }
    }
}

/// Emits each element on the output tag its partition index names.
struct PartitionFn<T, F>(Partition<T, F>);

impl<T, F> Clone for PartitionFn<T, F> {
    fn clone(&self) -> Self {
        PartitionFn(self.0.clone())
    }
}

impl<T: Element, F: Fn(&T, usize) -> usize + Send + Sync + 'static> DoFn for PartitionFn<T, F> {
    type In = T;
    type Out = T;
    fn process(&mut self, x: T, ctx: &mut ProcessContext<'_, '_, T>) -> Result<(), UserError> {
        let n = self.0.n;
        let i = (self.0.f)(&x, n);
        if i >= n {
            return Err(format!("partition function returned {i}, not in 0..{n}").into());
        }
        ctx.emit_raw(
            i,
            WindowedValue {
                value: x.into_value(),
                timestamp: ctx.timestamp(),
                window: ctx.window(),
                pane: ctx.pane(),
            },
        );
        Ok(())
    }
}

impl<T: Element, F: Fn(&T, usize) -> usize + Send + Sync + 'static> PTransform<PCollection<T>>
    for Partition<T, F>
{
    type Output = Vec<PCollection<T>>;
    fn expand(self, input: &PCollection<T>) -> Vec<PCollection<T>> {
        let n = self.n;
        let tags: Vec<ErasedTag> = (1..n)
            .map(|i| ErasedTag {
                name: format!("p{i}"),
                coder: T::coder(),
            })
            .collect();
        let outs = ParDo::of(PartitionFn(self))
            .with_outputs(tags)
            .expand(input);
        let mut v = vec![outs.main()];
        for i in 1..n {
            let tag = crate::TupleTag::<T>::new(&format!("p{i}"));
            v.push(outs.get(&tag).expect("declared above"));
        }
        v
    }
}
