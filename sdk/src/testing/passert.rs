//! Assertions inside the pipeline, like Beam's PAssert: a failed assertion fails the job
//! with a diff of expected and actual elements.

use crate::dofn::{DoFn, ProcessContext};
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::side_input::SideInput;
use crate::transforms::{Impulse, ParDo, WindowInto};
use beamline_engine::{Timing, UserError, Window};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where an element was seen: its window and pane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// Window `[start, end)`, `None` for the global window.
    pub window: Option<(i64, i64)>,
    /// 0 early, 1 on time, 2 late, 3 unknown.
    pub timing: u8,
    /// Last pane of its window.
    pub is_last: bool,
    /// Pane index.
    pub index: i64,
}
crate::serde_element!(Seen);

/// Which elements an assertion looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// Every element.
    All,
    /// Elements of one window.
    Window(i64, i64),
    /// The on-time pane of one window.
    OnTimePane(i64, i64),
    /// The final pane of one window.
    FinalPane(i64, i64),
    /// All early panes of one window.
    EarlyPanes(i64, i64),
    /// All late panes of one window.
    LatePanes(i64, i64),
}

impl Scope {
    fn matches(&self, s: &Seen) -> bool {
        let w = |a: i64, b: i64| s.window == Some((a, b));
        match *self {
            Scope::All => true,
            Scope::Window(a, b) => w(a, b),
            Scope::OnTimePane(a, b) => w(a, b) && s.timing == 1,
            Scope::FinalPane(a, b) => w(a, b) && s.is_last,
            Scope::EarlyPanes(a, b) => w(a, b) && s.timing == 0,
            Scope::LatePanes(a, b) => w(a, b) && s.timing == 2,
        }
    }
}

/// What the elements in scope must be.
#[derive(Clone, Debug)]
enum Matcher<T> {
    /// Exactly these, in any order (multiset equality).
    InAnyOrder(Vec<T>),
    /// Nothing.
    Empty,
}

/// An assertion under construction; see [`assert_that`].
pub struct PAssert<T> {
    pcoll: PCollection<T>,
    scope: Scope,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Asserts about the contents of `pcoll`, checked when the pipeline runs.
///
/// # Examples
///
/// ```
/// use beamline::{Create, Pipeline, PipelineOptions};
/// use beamline::testing::assert_that;
/// let p = Pipeline::new(PipelineOptions::default());
/// let xs = p.apply("Xs", Create::of(vec![3i64, 1, 2]));
/// assert_that(&xs).contains_in_any_order(vec![1, 2, 3]);
/// p.run().unwrap();
/// ```
pub fn assert_that<T: Element + std::fmt::Debug>(pcoll: &PCollection<T>) -> PAssert<T> {
    PAssert {
        pcoll: pcoll.clone(),
        scope: Scope::All,
    }
}

impl<T: Element + std::fmt::Debug> PAssert<T> {
    /// Only the elements of window `[start, end)`.
    pub fn in_window(mut self, start: i64, end: i64) -> Self {
        self.scope = Scope::Window(start, end);
        self
    }
    /// Only the on-time pane of window `[start, end)`.
    pub fn in_on_time_pane(mut self, start: i64, end: i64) -> Self {
        self.scope = Scope::OnTimePane(start, end);
        self
    }
    /// Only the final pane of window `[start, end)`.
    pub fn in_final_pane(mut self, start: i64, end: i64) -> Self {
        self.scope = Scope::FinalPane(start, end);
        self
    }
    /// Only the early panes of window `[start, end)`.
    pub fn in_early_panes(mut self, start: i64, end: i64) -> Self {
        self.scope = Scope::EarlyPanes(start, end);
        self
    }
    /// Only the late panes of window `[start, end)`.
    pub fn in_late_panes(mut self, start: i64, end: i64) -> Self {
        self.scope = Scope::LatePanes(start, end);
        self
    }

    /// The elements in scope are exactly `expected`, in any order.
    pub fn contains_in_any_order(self, expected: Vec<T>) {
        self.apply(Matcher::InAnyOrder(expected));
    }

    /// Same as [`contains_in_any_order`](Self::contains_in_any_order) (Beam's `equal_to`).
    pub fn equal_to(self, expected: Vec<T>) {
        self.apply(Matcher::InAnyOrder(expected));
    }

    /// Exactly one element in scope, equal to `expected`.
    pub fn is_singleton(self, expected: T) {
        self.apply(Matcher::InAnyOrder(vec![expected]));
    }

    /// No element in scope.
    pub fn is_empty(self) {
        self.apply(Matcher::Empty);
    }

    fn apply(self, matcher: Matcher<T>) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = self.pcoll.pipeline().clone();
        let name = format!("PAssert{n}({})", self.pcoll.id());
        let seen = self
            .pcoll
            .par_do(
                &format!("{name}/Reify"),
                Reify::<T>(std::marker::PhantomData),
            )
            .apply(&format!("{name}/GlobalWindow"), WindowInto::global());
        let view = seen.as_iter();
        p.apply(&format!("{name}/Impulse"), Impulse).apply(
            &format!("{name}/Check"),
            ParDo::of(Check {
                view: view.clone(),
                scope: self.scope,
                matcher: Arc::new(matcher),
                name: self.pcoll.id().to_string(),
            })
            .with_side_input(&view),
        );
    }
}

/// Pairs every element with its window and pane.
struct Reify<T>(std::marker::PhantomData<fn(T)>);

impl<T> Clone for Reify<T> {
    fn clone(&self) -> Self {
        Reify(std::marker::PhantomData)
    }
}

impl<T: Element> DoFn for Reify<T> {
    type In = T;
    type Out = (Seen, T);
    fn process(
        &mut self,
        x: T,
        ctx: &mut ProcessContext<'_, '_, (Seen, T)>,
    ) -> Result<(), UserError> {
        let pane = ctx.pane();
        let seen = Seen {
            window: match ctx.window() {
                Window::Global => None,
                Window::Interval { start, end } => Some((start, end)),
            },
            timing: match pane.timing {
                Timing::Early => 0,
                Timing::OnTime => 1,
                Timing::Late => 2,
                Timing::Unknown => 3,
            },
            is_last: pane.is_last,
            index: pane.index,
        };
        ctx.output((seen, x));
        Ok(())
    }
}

struct Check<T> {
    view: SideInput<Vec<(Seen, T)>>,
    scope: Scope,
    matcher: Arc<Matcher<T>>,
    name: String,
}

impl<T> Clone for Check<T> {
    fn clone(&self) -> Self {
        Check {
            view: self.view.clone(),
            scope: self.scope.clone(),
            matcher: self.matcher.clone(),
            name: self.name.clone(),
        }
    }
}

fn key_of<T: Element>(x: &T) -> Vec<u8> {
    T::coder()
        .encode_to_vec(&x.clone().into_value())
        .expect("a value encodes with its own type's coder")
}

impl<T: Element + std::fmt::Debug> DoFn for Check<T> {
    type In = ();
    type Out = ();
    fn process(&mut self, _: (), ctx: &mut ProcessContext<'_, '_, ()>) -> Result<(), UserError> {
        let actual: Vec<T> = ctx
            .side_input(&self.view)?
            .iter()
            .filter(|(s, _)| self.scope.matches(s))
            .map(|(_, x)| x.clone())
            .collect();
        let expected: &[T] = match &*self.matcher {
            Matcher::InAnyOrder(e) => e,
            Matcher::Empty => &[],
        };
        let mut missing: Vec<&T> = Vec::new();
        let mut remaining: Vec<(Vec<u8>, &T)> = actual.iter().map(|x| (key_of(x), x)).collect();
        for e in expected {
            let k = key_of(e);
            match remaining.iter().position(|(r, _)| *r == k) {
                Some(i) => {
                    remaining.swap_remove(i);
                }
                None => missing.push(e),
            }
        }
        if missing.is_empty() && remaining.is_empty() {
            return Ok(());
        }
        let show = |v: &[&T]| -> String {
            let mut s: Vec<String> = v.iter().take(20).map(|x| format!("{x:?}")).collect();
            if v.len() > 20 {
                s.push(format!("... {} more", v.len() - 20));
            }
            s.join(", ")
        };
        let unexpected: Vec<&T> = remaining.into_iter().map(|(_, x)| x).collect();
        Err(format!(
            "assertion on '{}' ({:?}) failed: {} expected, {} actual; missing [{}]; unexpected [{}]",
            self.name,
            self.scope,
            expected.len(),
            actual.len(),
            show(&missing),
            show(&unexpected)
        )
        .into())
    }
}
