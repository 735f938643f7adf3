//! Python on the runner's threads: a thread state that lasts as long as the thread, and
//! the metric updates Python code records during a call, reported to its transform.

use beamline::{BundleContext, DynValue, ProcessContext, TimerContext};
use pyo3::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// Metric updates made by Python code during the current call.
    static METRICS: RefCell<Vec<(u8, String, String, i64)>> = const { RefCell::new(Vec::new()) };
}

/// Records a metric update from Python (drained into the engine after the call).
pub fn record_metric(kind: u8, namespace: String, name: String, value: i64) {
    METRICS.with(|m| m.borrow_mut().push((kind, namespace, name, value)));
}

/// Takes the metric updates Python code recorded on this thread.
pub fn take_metrics() -> Vec<(u8, String, String, i64)> {
    METRICS.with(|m| std::mem::take(&mut *m.borrow_mut()))
}

/// A DoFn context that metric updates can be reported to.
pub(crate) trait MetricSink {
    fn report(&mut self, kind: u8, namespace: &str, name: &str, value: i64);
}

macro_rules! metric_sink {
    ($($ctx:ident),*) => {$(
        impl MetricSink for $ctx<'_, '_, DynValue> {
            fn report(&mut self, kind: u8, namespace: &str, name: &str, value: i64) {
                match kind {
                    0 => self.inc_counter(namespace, name, value),
                    1 => self.update_distribution(namespace, name, value),
                    _ => self.set_gauge(namespace, name, value),
                }
            }
        }
    )*};
}
metric_sink!(ProcessContext, BundleContext, TimerContext);

/// Reports the metric updates Python code recorded on this thread to `ctx`'s transform.
pub(crate) fn drain_metrics(ctx: &mut impl MetricSink) {
    for (k, ns, n, v) in take_metrics() {
        ctx.report(k, &ns, &n, v);
    }
}

thread_local! {
    static HAS_THREAD_STATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[allow(unsafe_code)]
extern "C" {
    /// 1 when this thread holds the GIL (in every CPython 3; pyo3's abi3 bindings leave it
    /// out).
    fn PyGILState_Check() -> std::os::raw::c_int;
}

/// Gives a runner worker thread a Python thread state that lives as long as the thread.
///
/// Without it every `Python::attach` on a thread Python does not know creates and destroys
/// a thread state (and its frame stack), which dominated Python stages in profiles.
#[allow(unsafe_code)]
fn keep_thread_state() {
    if HAS_THREAD_STATE.with(|h| h.get()) {
        return;
    }
    // SAFETY: the interpreter is initialized (we are called from a module it loaded).
    // A thread that holds the GIL already (Python's own, calling into Rust while a
    // pipeline is built) has its state; releasing the GIL under the caller would leave it
    // running Python with no thread state (CombineGlobally's default crashed so).
    if unsafe { PyGILState_Check() } == 1 {
        return;
    }
    HAS_THREAD_STATE.with(|h| h.set(true));
    // SAFETY: as above. PyGILState_Ensure creates this thread's state and takes the GIL;
    // PyEval_SaveThread releases the GIL while keeping the state, so later attaches on
    // this thread reuse it.
    unsafe {
        let _ = pyo3::ffi::PyGILState_Ensure();
        let _ = pyo3::ffi::PyEval_SaveThread();
    }
}

/// `Python::attach` for runner worker threads.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    keep_thread_state();
    Python::attach(f)
}
