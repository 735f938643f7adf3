//! The typed `DoFn` trait, its contexts, and the adapter the engine calls.

use crate::element::Element;
use crate::side_input::SideInput;
use beamline_engine::dofn::{Context, DoFnInvoker};
use beamline_engine::metrics::MetricsContainer;
use beamline_engine::time::Timestamp;
use beamline_engine::{PaneInfo, UserError, Window, WindowedValue};
use std::any::Any;
use std::marker::PhantomData;

/// User code of a ParDo: called for every element, with Beam's lifecycle.
///
/// Each worker thread gets its own clone of the DoFn; `setup` runs once per clone,
/// `start_bundle` / `finish_bundle` around every bundle, `teardown` when the clone is
/// discarded. Return an error (or panic) to fail the job; the error names the transform.
///
/// # Examples
///
/// ```
/// use beamline::{DoFn, ProcessContext, UserError};
///
/// #[derive(Clone)]
/// struct Lengths;
/// impl DoFn for Lengths {
///     type In = String;
///     type Out = i64;
///     fn process(&mut self, word: String, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
///         ctx.inc_counter("demo", "words", 1);
///         ctx.output(word.len() as i64);
///         Ok(())
///     }
/// }
/// ```
pub trait DoFn: Clone + Send + Sync + 'static {
    /// Input element type.
    type In: Element;
    /// Main output element type.
    type Out: Element;

    /// Called once per instance before its first bundle.
    ///
    /// # Errors
    /// Fails the job.
    fn setup(&mut self) -> Result<(), UserError> {
        Ok(())
    }
    /// Called at the start of every bundle.
    ///
    /// # Errors
    /// Fails the job.
    fn start_bundle(
        &mut self,
        _ctx: &mut BundleContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Processes one element.
    ///
    /// # Errors
    /// Fails the job.
    fn process(
        &mut self,
        element: Self::In,
        ctx: &mut ProcessContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError>;
    /// Runs `batch`, which processes a batch of elements; override to hold a resource for
    /// the whole batch instead of per element (the Python harness holds the interpreter
    /// lock). The default just runs it.
    ///
    /// # Errors
    /// What `batch` returns.
    fn around_batch(
        &mut self,
        batch: &mut dyn FnMut(&mut Self) -> Result<(), UserError>,
    ) -> Result<(), UserError> {
        batch(self)
    }
    /// Called at the end of every bundle; may emit with [`BundleContext::output_at`].
    ///
    /// # Errors
    /// Fails the job.
    fn finish_bundle(
        &mut self,
        _ctx: &mut BundleContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Called once when the instance is discarded.
    ///
    /// # Errors
    /// Fails the job.
    fn teardown(&mut self) -> Result<(), UserError> {
        Ok(())
    }
    /// Called when a timer declared with [`ParDo::with_timer`](crate::ParDo::with_timer)
    /// fires, with the state of its key and window.
    ///
    /// # Errors
    /// Fails the job.
    fn on_timer(
        &mut self,
        timer: &str,
        _ctx: &mut TimerContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError> {
        Err(format!("timer '{timer}' fired but the DoFn does not implement on_timer").into())
    }
    /// Called when a window expires (its allowed lateness passed), before its state is
    /// dropped; enable it with [`ParDo::with_window_expiration`](crate::ParDo::with_window_expiration).
    ///
    /// # Errors
    /// Fails the job.
    fn on_window_expiration(
        &mut self,
        _ctx: &mut TimerContext<'_, '_, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// True for a sink that makes its output visible only through
    /// [`DoFn::prepare_commit`] and [`DoFn::commit`] (the runner then keeps it where
    /// checkpoints reach it).
    fn commits(&self) -> bool {
        false
    }
    /// The job takes checkpoints (called once, before any bundle): a sink then holds
    /// back what it writes until [`DoFn::commit`]. `instance` tells the transform's
    /// parallel instances apart (a distributed job's worker; 0 otherwise), for what must
    /// differ between them (a Kafka transactional id).
    fn commits_enabled(&mut self, _instance: usize) {}
    /// A streaming job with checkpoints is taking checkpoint `checkpoint` (between
    /// bundles): finish what was written since the last one (close files) and return a
    /// record of it; [`DoFn::commit`] gets the record once the checkpoint is durable.
    /// This is how a sink writes exactly once: output becomes visible only with a
    /// checkpoint, and what a failed run wrote after its last one is never committed.
    /// `last`: the job's input ended and this is its last checkpoint (a sink may clean up
    /// once it is committed).
    ///
    /// # Errors
    /// Fails the job.
    fn prepare_commit(
        &mut self,
        _checkpoint: u64,
        _last: bool,
    ) -> Result<Option<Vec<u8>>, UserError> {
        Ok(None)
    }
    /// Makes what a record of [`DoFn::prepare_commit`] describes visible. Called again
    /// with the same record after a restart from that checkpoint: must be idempotent.
    /// `ctx` reports metrics (count only what this call made visible).
    ///
    /// # Errors
    /// Fails the job.
    fn commit(&mut self, _record: &[u8], _ctx: &mut CommitContext<'_>) -> Result<(), UserError> {
        Ok(())
    }
}

/// Context of [`DoFn::commit`]: the transform's metrics.
#[derive(Debug)]
pub struct CommitContext<'a> {
    metrics: &'a mut MetricsContainer,
}

impl CommitContext<'_> {
    /// Adds `delta` to a counter.
    pub fn inc_counter(&mut self, namespace: &str, name: &str, delta: i64) {
        self.metrics.inc_counter(namespace, name, delta);
    }

    /// Reports a value to a distribution.
    pub fn update_distribution(&mut self, namespace: &str, name: &str, value: i64) {
        self.metrics.update_distribution(namespace, name, value);
    }
}

/// Context of a timer callback or window expiration: outputs, state, metrics.
pub struct TimerContext<'a, 'b, O> {
    inner: &'a mut Context<'b>,
    names: &'a Names,
    _o: PhantomData<fn(O)>,
}

/// The metric methods every DoFn context has (counters, distributions, gauges).
macro_rules! metric_methods {
    () => {
        /// Adds `delta` to a counter.
        pub fn inc_counter(&mut self, namespace: &str, name: &str, delta: i64) {
            self.inner.metrics().inc_counter(namespace, name, delta);
        }

        /// Reports a value to a distribution.
        pub fn update_distribution(&mut self, namespace: &str, name: &str, value: i64) {
            self.inner
                .metrics()
                .update_distribution(namespace, name, value);
        }

        /// Sets a gauge.
        pub fn set_gauge(&mut self, namespace: &str, name: &str, value: i64) {
            self.inner.metrics().set_gauge(namespace, name, value);
        }
    };
}

impl<'b, O: Element> TimerContext<'_, 'b, O> {
    /// Emits to the main output at the timer's output timestamp, in its window.
    pub fn output(&mut self, value: O) {
        let ts = self.inner.timer_timestamp();
        let window = self.inner.window();
        self.inner.output(
            0,
            WindowedValue {
                value: value.into_value(),
                timestamp: ts,
                window,
                pane: PaneInfo::NO_FIRING,
            },
        );
    }

    /// Emits to an additional output at the timer's output timestamp.
    ///
    /// # Errors
    /// When the tag was not declared with `with_outputs`.
    pub fn output_to<U: Element>(&mut self, tag: &TupleTag<U>, value: U) -> Result<(), UserError> {
        let i = self.names.tag_index(&tag.name)?;
        let ts = self.inner.timer_timestamp();
        let window = self.inner.window();
        self.inner.output(
            i,
            WindowedValue {
                value: value.into_value(),
                timestamp: ts,
                window,
                pane: PaneInfo::NO_FIRING,
            },
        );
        Ok(())
    }

    /// The window of the timer.
    pub fn window(&self) -> Window {
        self.inner.window()
    }

    /// The timer's output timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.inner.timer_timestamp()
    }

    /// State and timers of the timer's key and window.
    ///
    /// # Errors
    /// When the ParDo is not stateful.
    pub fn state(&mut self) -> Result<crate::state::State<'_, 'b>, UserError> {
        Ok(crate::state::State {
            inner: self.inner.state()?,
        })
    }

    metric_methods!();
}

/// Names an additional output of a ParDo and its element type.
pub struct TupleTag<T> {
    name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for TupleTag<T> {
    fn clone(&self) -> Self {
        TupleTag {
            name: self.name.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Element> TupleTag<T> {
    /// A tag called `name` (unique among the ParDo's outputs; `main` is reserved).
    pub fn new(name: &str) -> Self {
        TupleTag {
            name: name.to_string(),
            _t: PhantomData,
        }
    }

    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag without its type, for [`ParDo::with_outputs`](crate::transforms::ParDo::with_outputs).
    pub fn erased(&self) -> ErasedTag {
        ErasedTag {
            name: self.name.clone(),
            coder: T::coder(),
        }
    }
}

/// A tag name with its element coder.
#[derive(Clone, Debug)]
pub struct ErasedTag {
    pub(crate) name: String,
    pub(crate) coder: beamline_engine::coder::Coder,
}

/// Metadata of the element being processed, and where outputs go.
pub struct ProcessContext<'a, 'b, O> {
    inner: &'a mut Context<'b>,
    timestamp: Timestamp,
    window: Window,
    pane: PaneInfo,
    names: &'a Names,
    _o: PhantomData<fn(O)>,
}

/// Output tags and side-input ids of one ParDo, in engine order.
#[derive(Debug, Default)]
pub(crate) struct Names {
    pub(crate) tags: Vec<String>,
    pub(crate) sides: Vec<String>,
}

impl Names {
    /// The output number of tag `name`.
    fn tag_index(&self, name: &str) -> Result<usize, UserError> {
        self.tags
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| format!("output tag '{name}' was not declared on this ParDo").into())
    }
}

impl<'b, O: Element> ProcessContext<'_, 'b, O> {
    /// Emits to the main output with the input's timestamp and window.
    #[inline]
    pub fn output(&mut self, value: O) {
        self.emit(0, value, self.timestamp);
    }

    /// Emits to the main output with another timestamp.
    pub fn output_with_timestamp(&mut self, value: O, timestamp: Timestamp) {
        self.emit(0, value, timestamp);
    }

    /// Emits to an additional output.
    ///
    /// # Errors
    /// When the tag was not declared with `with_outputs`.
    pub fn output_to<U: Element>(&mut self, tag: &TupleTag<U>, value: U) -> Result<(), UserError> {
        let i = self.names.tag_index(&tag.name)?;
        self.emit(i, value, self.timestamp);
        Ok(())
    }

    /// Emits to the main output with another timestamp and window (the input's pane):
    /// what an SDK whose outputs are re-windowed by their new timestamp needs (Beam Python).
    pub fn output_at(&mut self, value: O, timestamp: Timestamp, window: Window) {
        let pane = self.pane;
        self.inner.output_with(0, move || WindowedValue {
            value: value.into_value(),
            timestamp,
            window,
            pane,
        });
    }

    /// Emits a fully specified element on output number `tag` (SDK-internal transforms).
    pub(crate) fn emit_raw(&mut self, tag: usize, wv: WindowedValue) {
        self.inner.output(tag, wv);
    }

    /// Emits `value` on output `tag`, converted once the output buffer is at hand.
    #[inline(always)]
    fn emit<U: Element>(&mut self, tag: usize, value: U, timestamp: Timestamp) {
        let (window, pane) = (self.window, self.pane);
        self.inner.output_with(tag, move || WindowedValue {
            value: value.into_value(),
            timestamp,
            window,
            pane,
        });
    }

    /// Event timestamp of the element.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Window of the element.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Pane of the element.
    pub fn pane(&self) -> PaneInfo {
        self.pane
    }

    /// The value of a side input in the window the element maps to.
    ///
    /// # Errors
    /// When the side input was not attached to this ParDo or its view cannot be built
    /// (e.g. a singleton over an empty or multi-element collection).
    pub fn side_input<V: Any + Send + Sync>(&self, view: &SideInput<V>) -> Result<&V, UserError> {
        let i = self
            .names
            .sides
            .iter()
            .position(|s| *s == view.local_name())
            .ok_or_else(|| {
                format!(
                    "side input '{}' was not attached to this ParDo",
                    view.pcollection()
                )
            })?;
        self.inner.side_input(i)?.view(|values| view.build(values))
    }

    /// All values of side input number `index` (in attachment order) in the window the
    /// element maps to; for [`NamedDoFn`]s, which cannot hold a [`SideInput`] handle.
    ///
    /// # Errors
    /// When there is no such side input or a value is not a `T`.
    pub fn side_input_at<T: Element>(&self, index: usize) -> Result<Vec<T>, UserError> {
        self.inner
            .side_input(index)?
            .values()
            .iter()
            .map(|v| T::from_value(v.clone()).map_err(Into::into))
            .collect()
    }

    /// State and timers of the element's key and window (stateful ParDos).
    ///
    /// # Errors
    /// When the ParDo declares no state or timers.
    pub fn state(&mut self) -> Result<crate::state::State<'_, 'b>, UserError> {
        Ok(crate::state::State {
            inner: self.inner.state()?,
        })
    }

    metric_methods!();
}

/// Context of `start_bundle` / `finish_bundle`: explicit windowed outputs and metrics.
pub struct BundleContext<'a, 'b, O> {
    inner: &'a mut Context<'b>,
    _o: PhantomData<fn(O)>,
}

impl<O: Element> BundleContext<'_, '_, O> {
    /// Emits to the main output with an explicit timestamp and window.
    pub fn output_at(&mut self, value: O, timestamp: Timestamp, window: Window) {
        self.inner.output(
            0,
            WindowedValue {
                value: value.into_value(),
                timestamp,
                window,
                pane: PaneInfo::NO_FIRING,
            },
        );
    }

    metric_methods!();
}

/// Converts one element to the DoFn's input type and processes it.
#[inline]
fn process_one<F: DoFn>(
    f: &mut F,
    names: &Names,
    wv: WindowedValue,
    ctx: &mut Context<'_>,
) -> Result<(), UserError> {
    let WindowedValue {
        value,
        timestamp,
        window,
        pane,
    } = wv;
    let element = F::In::from_value(value)?;
    let mut pc = ProcessContext {
        inner: ctx,
        timestamp,
        window,
        pane,
        names,
        _o: PhantomData,
    };
    f.process(element, &mut pc)
}

/// Rewrites each element's value in place: the batch path of a DoFn that emits exactly
/// one main output per element, with the element's timestamp, window and pane (a Map).
pub(crate) type ValueMap<F> = fn(&mut F, &mut [WindowedValue]) -> Result<(), UserError>;

/// Runs a typed [`DoFn`] behind the engine's [`DoFnInvoker`] interface.
pub(crate) struct DoFnAdapter<F> {
    f: F,
    names: Names,
    value_map: Option<ValueMap<F>>,
}

impl<F: DoFn> DoFnAdapter<F> {
    pub(crate) fn new(f: F, tags: Vec<String>, sides: Vec<String>) -> Self {
        DoFnAdapter {
            f,
            names: Names { tags, sides },
            value_map: None,
        }
    }

    /// Processes batches with `map` instead of element by element (see [`ValueMap`]).
    pub(crate) fn with_value_map(mut self, map: Option<ValueMap<F>>) -> Self {
        self.value_map = map;
        self
    }
}

impl<F: DoFn> DoFnInvoker for DoFnAdapter<F> {
    fn setup(&mut self) -> Result<(), UserError> {
        self.f.setup()
    }
    fn start_bundle(&mut self, ctx: &mut Context<'_>) -> Result<(), UserError> {
        self.f.start_bundle(&mut BundleContext {
            inner: ctx,
            _o: PhantomData,
        })
    }
    fn process(&mut self, wv: WindowedValue, ctx: &mut Context<'_>) -> Result<(), UserError> {
        process_one(&mut self.f, &self.names, wv, ctx)
    }
    fn process_batch(
        &mut self,
        elements: &mut Vec<WindowedValue>,
        ctx: &mut Context<'_>,
    ) -> Result<(), UserError> {
        let names = &self.names;
        if let Some(map) = self.value_map {
            // No element is moved out and back: each value is replaced where it lies.
            return self.f.around_batch(&mut |f| {
                map(f, elements)?;
                ctx.output_batch(0, elements);
                Ok(())
            });
        }
        self.f.around_batch(&mut |f| {
            for wv in elements.drain(..) {
                ctx.set_window(wv.window);
                process_one(f, names, wv, ctx)?;
                if ctx.failed() {
                    break;
                }
            }
            Ok(())
        })
    }
    fn finish_bundle(&mut self, ctx: &mut Context<'_>) -> Result<(), UserError> {
        self.f.finish_bundle(&mut BundleContext {
            inner: ctx,
            _o: PhantomData,
        })
    }
    fn teardown(&mut self) -> Result<(), UserError> {
        self.f.teardown()
    }
    fn on_timer(&mut self, timer: &str, ctx: &mut Context<'_>) -> Result<(), UserError> {
        self.f.on_timer(
            timer,
            &mut TimerContext {
                inner: ctx,
                names: &self.names,
                _o: PhantomData,
            },
        )
    }
    fn on_window_expiration(&mut self, ctx: &mut Context<'_>) -> Result<(), UserError> {
        self.f.on_window_expiration(&mut TimerContext {
            inner: ctx,
            names: &self.names,
            _o: PhantomData,
        })
    }
    fn commits(&self) -> bool {
        self.f.commits()
    }
    fn commits_enabled(&mut self, instance: usize) {
        self.f.commits_enabled(instance)
    }
    fn prepare_commit(
        &mut self,
        checkpoint: u64,
        last: bool,
    ) -> Result<Option<Vec<u8>>, UserError> {
        self.f.prepare_commit(checkpoint, last)
    }
    fn commit(&mut self, record: &[u8], metrics: &mut MetricsContainer) -> Result<(), UserError> {
        self.f.commit(record, &mut CommitContext { metrics })
    }
}

/// A DoFn that any Beamline binary linking it can run from the pipeline proto alone.
///
/// Register it with [`register_dofn!`](crate::register_dofn) and apply it with
/// [`ParDo::named`](crate::transforms::ParDo::named); its fields are its configuration,
/// serialized into the proto with serde.
pub trait NamedDoFn: DoFn + serde::Serialize + serde::de::DeserializeOwned {
    /// Globally unique name, e.g. `"myapp.ParseLine"`.
    const NAME: &'static str;
}

/// Builds a [`NamedDoFn`] from its JSON config (used by [`register_dofn!`](crate::register_dofn)).
///
/// # Errors
/// When the config does not deserialize.
pub fn build_named<F: NamedDoFn>(
    config: &str,
    tags: &[String],
    sides: &[String],
) -> Result<Box<dyn DoFnInvoker>, UserError> {
    let f: F = serde_json::from_str(config)?;
    Ok(Box::new(DoFnAdapter::new(f, tags.to_vec(), sides.to_vec())))
}

/// Registers a [`NamedDoFn`] so that runners can build it by name from the proto.
///
/// # Examples
///
/// ```
/// use beamline::{DoFn, NamedDoFn, ProcessContext, UserError};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct AddN { n: i64 }
/// impl DoFn for AddN {
///     type In = i64;
///     type Out = i64;
///     fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
///         ctx.output(x + self.n);
///         Ok(())
///     }
/// }
/// impl NamedDoFn for AddN { const NAME: &'static str = "doc.AddN"; }
/// beamline::register_dofn!(AddN);
/// ```
#[macro_export]
macro_rules! register_dofn {
    ($t:ty) => {
        $crate::engine::inventory::submit! {
            $crate::engine::registry::NamedDoFn {
                name: <$t as $crate::NamedDoFn>::NAME,
                build: $crate::dofn::build_named::<$t>,
            }
        }
    };
}
