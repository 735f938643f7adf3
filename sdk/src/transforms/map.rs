//! Map, FlatMap and Filter: ParDos over closures.

use super::ParDo;
use crate::dofn::{DoFn, ProcessContext};
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::{UserError, Value, WindowedValue};
use std::marker::PhantomData;
use std::sync::Arc;

macro_rules! closure_transform {
    ($(#[$doc:meta])* $name:ident < $($g:ident),* > where F: $bound:path) => {
        $(#[$doc])*
        pub struct $name<$($g),*, F> {
            f: Arc<F>,
            _t: PhantomData<fn($($g),*)>,
        }

        impl<$($g),*, F> Clone for $name<$($g),*, F> {
            fn clone(&self) -> Self {
                $name { f: self.f.clone(), _t: PhantomData }
            }
        }

        impl<$($g),*, F> $name<$($g),*, F> {
            /// Wraps the closure.
            pub fn new(f: F) -> Self {
                $name { f: Arc::new(f), _t: PhantomData }
            }
        }
    };
}

closure_transform!(
    /// One output per element: `f(x)`.
    Map<I, O> where F: Fn
);
closure_transform!(
    /// Zero or more outputs per element: everything `f(x)` yields.
    FlatMap<I, O, It> where F: Fn
);
closure_transform!(
    /// Keeps the elements for which `f(&x)` is true.
    Filter<T> where F: Fn
);

impl<I: Element, O: Element, F: Fn(I) -> O + Send + Sync + 'static> DoFn for Map<I, O, F> {
    type In = I;
    type Out = O;
    fn process(&mut self, x: I, ctx: &mut ProcessContext<'_, '_, O>) -> Result<(), UserError> {
        ctx.output((self.f)(x));
        Ok(())
    }
}

impl<I: Element, O: Element, F: Fn(I) -> O + Send + Sync + 'static> Map<I, O, F> {
    /// Replaces each value by `f`'s output for it; the timestamp, window and pane stay.
    fn map_values(&mut self, elements: &mut [WindowedValue]) -> Result<(), UserError> {
        for wv in elements {
            let x = I::from_value(std::mem::replace(&mut wv.value, Value::Null))?;
            // What is replaced is the `Null` put there above: no drop glue to run.
            std::mem::forget(std::mem::replace(&mut wv.value, (self.f)(x).into_value()));
        }
        Ok(())
    }
}

impl<I, O, F> PTransform<PCollection<I>> for Map<I, O, F>
where
    I: Element,
    O: Element,
    F: Fn(I) -> O + Send + Sync + 'static,
{
    type Output = PCollection<O>;
    fn expand(self, input: &PCollection<I>) -> PCollection<O> {
        ParDo::of(self)
            .with_value_map(Self::map_values)
            .expand(input)
    }
}

impl<I, O, It, F> DoFn for FlatMap<I, O, It, F>
where
    I: Element,
    O: Element,
    It: IntoIterator<Item = O> + 'static,
    F: Fn(I) -> It + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    fn process(&mut self, x: I, ctx: &mut ProcessContext<'_, '_, O>) -> Result<(), UserError> {
        for o in (self.f)(x) {
            ctx.output(o);
        }
        Ok(())
    }
}

impl<T: Element, F: Fn(&T) -> bool + Send + Sync + 'static> DoFn for Filter<T, F> {
    type In = T;
    type Out = T;
    fn process(&mut self, x: T, ctx: &mut ProcessContext<'_, '_, T>) -> Result<(), UserError> {
        if (self.f)(&x) {
            ctx.output(x);
        }
        Ok(())
    }
}

macro_rules! pardo_transform {
    ($t:ty, [$($g:tt)*]) => {
        impl<$($g)*> PTransform<PCollection<<$t as DoFn>::In>> for $t
        where
            $t: DoFn,
        {
            type Output = PCollection<<$t as DoFn>::Out>;
            fn expand(self, input: &PCollection<<$t as DoFn>::In>) -> Self::Output {
                ParDo::of(self).expand(input)
            }
        }
    };
}
pardo_transform!(FlatMap<I, O, It, F>, [I, O, It, F]);
pardo_transform!(Filter<T, F>, [T, F]);
