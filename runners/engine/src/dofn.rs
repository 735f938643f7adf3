//! The DoFn invoker trait through which the engine calls user code, and its context.

use crate::error::{EngineError, UserError};
use crate::metrics::MetricsContainer;
use crate::state::KeyedState;
use crate::value::Value;
use crate::window::{Window, WindowFn, WindowedValue};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::sync::OnceLock;

/// User code of a ParDo, as the engine sees it: element in, tagged outputs out.
///
/// One instance runs on one thread at a time. `setup` is called once before the first
/// bundle, `teardown` once after the last; `start_bundle` / `finish_bundle` bracket each
/// bundle. Output tags are indices into the ParDo's ordered list of outputs.
pub trait DoFnInvoker: Send {
    /// Called once per instance before any bundle.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn setup(&mut self) -> Result<(), UserError> {
        Ok(())
    }
    /// Called at the start of every bundle.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn start_bundle(&mut self, _ctx: &mut Context<'_>) -> Result<(), UserError> {
        Ok(())
    }
    /// Processes one element.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn process(&mut self, element: WindowedValue, ctx: &mut Context<'_>) -> Result<(), UserError>;
    /// Processes a batch of elements in order, leaving `elements` empty.
    ///
    /// The batch executor hands elements over in batches so that the per-call work
    /// (dispatch, panic guard, context) is paid once per batch. The default calls
    /// [`DoFnInvoker::process`] for each element, and stops at the first failure.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn process_batch(
        &mut self,
        elements: &mut Vec<WindowedValue>,
        ctx: &mut Context<'_>,
    ) -> Result<(), UserError> {
        for wv in elements.drain(..) {
            ctx.set_window(wv.window);
            self.process(wv, ctx)?;
            if ctx.failed() {
                break;
            }
        }
        Ok(())
    }
    /// Called at the end of every bundle; may emit windowed outputs.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn finish_bundle(&mut self, _ctx: &mut Context<'_>) -> Result<(), UserError> {
        Ok(())
    }
    /// Called once when the instance is discarded.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn teardown(&mut self) -> Result<(), UserError> {
        Ok(())
    }
    /// Called when a timer of a stateful DoFn fires; the context holds the key's state,
    /// the timer's window, and its output timestamp.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn on_timer(&mut self, timer: &str, _ctx: &mut Context<'_>) -> Result<(), UserError> {
        Err(format!("timer '{timer}' fired but the DoFn does not handle timers").into())
    }
    /// Called when a window of a stateful DoFn expires, before its state is dropped.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn on_window_expiration(&mut self, _ctx: &mut Context<'_>) -> Result<(), UserError> {
        Ok(())
    }
    /// The DoFn makes output visible outside the job only through
    /// [`DoFnInvoker::prepare_commit`] and [`DoFnInvoker::commit`] (a sink). A job with
    /// checkpoints runs such a DoFn where checkpoints reach it (not in a source's
    /// read-ahead threads).
    fn commits(&self) -> bool {
        false
    }
    /// The job takes checkpoints (called once, before any bundle): output the DoFn makes
    /// visible outside the job waits for [`DoFnInvoker::commit`]. `instance` tells the
    /// transform's parallel instances apart (a distributed job's worker; 0 otherwise),
    /// for what must differ between them (a Kafka transactional id).
    fn commits_enabled(&mut self, _instance: usize) {}
    /// A checkpoint is being taken (between bundles): finish what the instance wrote
    /// since the last one (close files, say) and return a record of it to commit once the
    /// checkpoint is durable; `None` when there is nothing to commit. `last`: the job's
    /// input ended and this is its last checkpoint.
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn prepare_commit(
        &mut self,
        _checkpoint: u64,
        _last: bool,
    ) -> Result<Option<Vec<u8>>, UserError> {
        Ok(None)
    }
    /// Makes what `record` (from [`DoFnInvoker::prepare_commit`]) describes visible; also
    /// called after a restart for the checkpoint restored, so it must be idempotent.
    /// `metrics` are the transform's (what was committed: files, say).
    ///
    /// # Errors
    /// A failure fails the job, naming the transform.
    fn commit(
        &mut self,
        _record: &[u8],
        _metrics: &mut crate::metrics::MetricsContainer,
    ) -> Result<(), UserError> {
        Ok(())
    }
}

/// Where a DoFn's outputs go.
pub trait Emitter {
    /// Delivers `wv` to the consumers of output `tag`.
    ///
    /// # Errors
    /// Errors of downstream transforms propagate back through here.
    fn emit(&mut self, tag: usize, wv: WindowedValue) -> Result<(), EngineError>;

    /// A buffer with room for one more output of `tag`, if the emitter buffers outputs;
    /// pushing into it is the same as [`Emitter::emit`].
    ///
    /// Returning the buffer lets the caller build the element in place instead of moving
    /// it through a call, which matters at millions of elements per second.
    ///
    /// # Errors
    /// Errors of downstream transforms (handed a full buffer) propagate back through here.
    fn buffer(&mut self, _tag: usize) -> Result<Option<&mut Vec<WindowedValue>>, EngineError> {
        Ok(None)
    }
}

/// What a DoFn can reach while it runs: outputs, side inputs, metrics.
pub struct Context<'a> {
    emitter: &'a mut dyn Emitter,
    side_inputs: &'a [SideInputData],
    metrics: &'a mut MetricsContainer,
    window: Window,
    error: Option<EngineError>,
    keyed: Option<KeyedState<'a>>,
    timestamp: i64,
}

impl<'a> Context<'a> {
    /// A context whose side-input lookups use `window` (the current element's).
    pub fn new(
        emitter: &'a mut dyn Emitter,
        side_inputs: &'a [SideInputData],
        metrics: &'a mut MetricsContainer,
        window: Window,
    ) -> Self {
        Context {
            emitter,
            side_inputs,
            metrics,
            window,
            error: None,
            keyed: None,
            timestamp: crate::time::MIN_TIMESTAMP,
        }
    }

    /// Gives the context the state of the current key and window (stateful DoFns), and
    /// the timestamp timer callbacks output at.
    pub fn with_state(mut self, keyed: KeyedState<'a>, timestamp: i64) -> Self {
        self.keyed = Some(keyed);
        self.timestamp = timestamp;
        self
    }

    /// State and timers of the current key and window.
    ///
    /// # Errors
    /// When the DoFn is not stateful (declares no state or timers).
    pub fn state(&mut self) -> Result<&mut KeyedState<'a>, UserError> {
        self.keyed.as_mut().ok_or_else(|| {
            "state and timers need a stateful ParDo (declare them on the ParDo)".into()
        })
    }

    /// Output timestamp for timer callbacks (the timer's output timestamp).
    pub fn timer_timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Emits `wv` on output `tag`. A downstream failure is kept and reported after the
    /// current call returns; later outputs are then dropped as the job is failing.
    #[inline(always)]
    pub fn output(&mut self, tag: usize, wv: WindowedValue) {
        if self.error.is_none() {
            let r = match self.emitter.buffer(tag) {
                Ok(Some(buf)) => {
                    buf.push(wv);
                    Ok(())
                }
                Ok(None) => self.emitter.emit(tag, wv),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                self.error = Some(e);
            }
        }
    }

    /// Emits the element `make` builds on output `tag`, building it only once the output
    /// buffer is at hand: an element built before that call into the emitter is stored
    /// field by field across the call and read back whole, a store-forwarding stall per
    /// element.
    #[inline(always)]
    pub fn output_with(&mut self, tag: usize, make: impl FnOnce() -> WindowedValue) {
        if self.error.is_none() {
            let r = match self.emitter.buffer(tag) {
                Ok(Some(buf)) => {
                    // Room first, then the element written in place (`push` builds it
                    // before its own growth check, in a temporary, and copies it over).
                    buf.extend(std::iter::once_with(make));
                    Ok(())
                }
                Ok(None) => self.emitter.emit(tag, make()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                self.error = Some(e);
            }
        }
    }

    /// Emits every element of `batch` on output `tag`, leaving it empty: a buffering
    /// emitter takes the whole buffer when it holds nothing yet, so a transform that
    /// rewrote its input in place hands it on without a copy.
    pub fn output_batch(&mut self, tag: usize, batch: &mut Vec<WindowedValue>) {
        if self.error.is_some() {
            batch.clear();
            return;
        }
        let r = match self.emitter.buffer(tag) {
            Ok(Some(buf)) if buf.is_empty() => {
                std::mem::swap(buf, batch);
                Ok(())
            }
            Ok(Some(buf)) => {
                buf.append(batch);
                Ok(())
            }
            Ok(None) => batch
                .drain(..)
                .try_for_each(|wv| self.emitter.emit(tag, wv)),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            batch.clear();
            self.error = Some(e);
        }
    }

    /// Metrics of the running transform.
    pub fn metrics(&mut self) -> &mut MetricsContainer {
        self.metrics
    }

    /// The window of the element being processed (global outside `process`).
    pub fn window(&self) -> Window {
        self.window
    }

    /// Sets the window used for side-input lookups.
    pub fn set_window(&mut self, window: Window) {
        self.window = window;
    }

    /// Side input `index` as seen from the current window.
    ///
    /// # Errors
    /// When the DoFn declared fewer side inputs than `index + 1`.
    pub fn side_input(&self, index: usize) -> Result<&SideWindowData, UserError> {
        let side = self.side_inputs.get(index).ok_or_else(|| {
            format!(
                "side input #{index} requested but only {} declared",
                self.side_inputs.len()
            )
        })?;
        Ok(side.for_main_window(&self.window))
    }

    /// Whether a downstream failure was recorded by [`Context::output`] (later outputs are
    /// dropped, so callers can stop early).
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Takes the downstream error recorded by [`Context::output`], if any.
    pub fn take_error(&mut self) -> Option<EngineError> {
        self.error.take()
    }
}

/// A materialized side input: its values per window.
#[derive(Debug, Default)]
pub struct SideInputData {
    window_fn: WindowFn,
    by_window: FxHashMap<Window, SideWindowData>,
    empty: SideWindowData,
}

impl SideInputData {
    /// Groups `values` by window; lookups map main windows through `window_fn`.
    pub fn new(window_fn: WindowFn, values: impl IntoIterator<Item = WindowedValue>) -> Self {
        let mut by_window: FxHashMap<Window, SideWindowData> = FxHashMap::default();
        for wv in values {
            by_window
                .entry(wv.window)
                .or_default()
                .values
                .push(wv.value);
        }
        SideInputData {
            window_fn,
            by_window,
            empty: SideWindowData::default(),
        }
    }

    /// Adds one more value (streaming side inputs fill up as data arrives).
    pub fn push(&mut self, wv: WindowedValue) {
        let w = self.by_window.entry(wv.window).or_default();
        w.values.push(wv.value);
        // A view built before this value is stale.
        w.view = OnceLock::new();
    }

    /// Every window with its values (for checkpoints).
    pub fn windows(&self) -> impl Iterator<Item = (&Window, &[Value])> + '_ {
        self.by_window.iter().map(|(w, d)| (w, d.values.as_slice()))
    }

    /// The side-input window that main window `main` maps to.
    pub fn window_for(&self, main: &Window) -> Window {
        self.window_fn.side_input_window(main)
    }

    /// The values in the side-input window that `main` maps to.
    pub fn for_main_window(&self, main: &Window) -> &SideWindowData {
        let w = self.window_fn.side_input_window(main);
        self.by_window.get(&w).unwrap_or(&self.empty)
    }
}

/// The side input's values in one window, plus a slot for an SDK-built typed view.
#[derive(Debug, Default)]
pub struct SideWindowData {
    values: Vec<Value>,
    view: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl SideWindowData {
    /// The raw values.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// A view built once from the values and shared by every thread afterwards.
    ///
    /// # Errors
    /// When `build` fails, or a view of another type was built before.
    pub fn view<T: Any + Send + Sync>(
        &self,
        build: impl FnOnce(&[Value]) -> Result<T, UserError>,
    ) -> Result<&T, UserError> {
        if self.view.get().is_none() {
            let built = build(&self.values)?;
            // Another thread may have won the race; both built the same view.
            let _ = self.view.set(Box::new(built));
        }
        self.view
            .get()
            .and_then(|b| b.downcast_ref::<T>())
            .ok_or_else(|| "side input view requested with two different types".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers outputs (like the executors) or takes them one by one, failing on `fail_at`.
    struct Sink {
        buffered: bool,
        out: Vec<WindowedValue>,
        fail_at: Option<i64>,
    }

    impl Emitter for Sink {
        fn emit(&mut self, _tag: usize, wv: WindowedValue) -> Result<(), EngineError> {
            if matches!((&wv.value, self.fail_at), (Value::I64(x), Some(f)) if *x == f) {
                return Err(EngineError::user("Next", "refused"));
            }
            self.out.push(wv);
            Ok(())
        }
        fn buffer(&mut self, _tag: usize) -> Result<Option<&mut Vec<WindowedValue>>, EngineError> {
            Ok(self.buffered.then_some(&mut self.out))
        }
    }

    fn numbers(r: std::ops::Range<i64>) -> Vec<WindowedValue> {
        r.map(|i| WindowedValue::in_global_window(Value::I64(i)))
            .collect()
    }

    fn values(v: &[WindowedValue]) -> Vec<Value> {
        v.iter().map(|wv| wv.value.clone()).collect()
    }

    fn output_batch(sink: &mut Sink, batch: &mut Vec<WindowedValue>) -> Option<EngineError> {
        let mut metrics = MetricsContainer::default();
        let mut ctx = Context::new(sink, &[], &mut metrics, Window::Global);
        ctx.output_batch(0, batch);
        ctx.take_error()
    }

    #[test]
    fn a_batch_output_moves_the_buffer_or_appends_or_emits_each_element() {
        let mut sink = Sink {
            buffered: true,
            out: Vec::new(),
            fail_at: None,
        };
        let mut batch = numbers(0..3);
        let buffer = batch.as_ptr();
        assert!(output_batch(&mut sink, &mut batch).is_none());
        assert!(batch.is_empty());
        assert_eq!(
            sink.out.as_ptr(),
            buffer,
            "an empty buffer takes the batch whole"
        );
        let mut more = numbers(3..5);
        assert!(output_batch(&mut sink, &mut more).is_none());
        assert_eq!(values(&sink.out), values(&numbers(0..5)));

        let mut one_by_one = Sink {
            buffered: false,
            out: Vec::new(),
            fail_at: None,
        };
        assert!(output_batch(&mut one_by_one, &mut numbers(0..4)).is_none());
        assert_eq!(values(&one_by_one.out), values(&numbers(0..4)));
    }

    #[test]
    fn a_downstream_failure_in_a_batch_output_is_kept_for_the_caller() {
        let mut sink = Sink {
            buffered: false,
            out: Vec::new(),
            fail_at: Some(2),
        };
        let mut batch = numbers(0..4);
        let err = output_batch(&mut sink, &mut batch).expect("the failure is reported");
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(batch.is_empty());
        assert_eq!(values(&sink.out), values(&numbers(0..2)));
    }
}
