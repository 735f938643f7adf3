//! Test helpers: assertions inside the pipeline ([`assert_that`]) and capturing a
//! PCollection's elements into the test process ([`capture`]).

mod passert;

pub use passert::{assert_that, PAssert, Scope, Seen};

use crate::dofn::{DoFn, ProcessContext};
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::transforms::ParDo;
use beamline_engine::UserError;
use parking_lot::Mutex;
use std::sync::Arc;

/// Elements captured by [`capture`], available after the pipeline ran in this process.
pub struct Captured<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T: Clone + Ord> Captured<T> {
    /// The captured elements, sorted.
    pub fn sorted(&self) -> Vec<T> {
        let mut v = self.items.lock().clone();
        v.sort();
        v
    }
}

impl<T: Clone> Captured<T> {
    /// The captured elements in arrival order (which depends on parallelism).
    pub fn items(&self) -> Vec<T> {
        self.items.lock().clone()
    }
}

#[derive(Clone)]
struct CaptureFn<T>(Arc<Mutex<Vec<T>>>);

impl<T: Element> DoFn for CaptureFn<T> {
    type In = T;
    type Out = ();
    fn process(&mut self, x: T, _ctx: &mut ProcessContext<'_, '_, ()>) -> Result<(), UserError> {
        self.0.lock().push(x);
        Ok(())
    }
}

/// Collects every element of `pcoll` into memory of this process (for tests).
///
/// Only meaningful with runners that run in this process, such as `local`.
pub fn capture<T: Element>(pcoll: &PCollection<T>) -> Captured<T> {
    let items = Arc::new(Mutex::new(Vec::new()));
    let name = format!("Capture({})", pcoll.id());
    pcoll.apply(&name, ParDo::of(CaptureFn(items.clone())));
    Captured { items }
}
