//! Running jobs: their states, the control a job shares with its handle, and a job on a thread.
//!
//! A runner starts a job and returns a [`JobHandle`] (Beam's PipelineResult): its
//! [`JobState`], a wait with a timeout, cancellation, and metrics readable while it runs.
//! The executors read the stop requests and report metrics through a [`JobControl`];
//! [`ThreadJob`] runs any job body on its own thread behind a handle, which every
//! in-process runner (and a launcher of worker processes) can reuse.

use crate::error::{EngineError, Result};
use crate::metrics::{MetricResults, MetricsContainer};
use crate::progress::{Progress, ProgressSnapshot};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a job is in its life, as Beam's `PipelineResult.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Still running (or starting).
    Running,
    /// Finished successfully; its output is committed.
    Done,
    /// Failed; its error is what [`JobHandle::wait_until_finish`] returns.
    Failed,
    /// Stopped by [`JobHandle::cancel`]; nothing it wrote was committed.
    Cancelled,
}

impl JobState {
    /// True once the job can change no more (done, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        self != JobState::Running
    }

    /// Beam's name of the state (`RUNNING`, `DONE`, `FAILED`, `CANCELLED`).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Done => "DONE",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A started job, as Beam's PipelineResult.
pub trait JobHandle: Send + Sync + std::fmt::Debug {
    /// The job's state now.
    fn state(&self) -> JobState;

    /// Waits until the job ends or `timeout` passes (`None`: no limit); returns the state
    /// then ([`JobState::Running`] if the timeout passed first).
    ///
    /// # Errors
    /// The job's own error when it failed.
    fn wait_until_finish(&self, timeout: Option<Duration>) -> Result<JobState>;

    /// Asks the job to stop as soon as it can (at the next bundle): it ends
    /// [`JobState::Cancelled`], commits no output and removes its temporary files. Does
    /// nothing to a job that already ended.
    fn cancel(&self);

    /// Asks a streaming job to drain: sources stop reading, watermarks advance to the
    /// end, every pending pane fires, output is committed. A batch job runs on to its end.
    fn drain(&self);

    /// Metrics reported so far (all of them once the job ended).
    fn metrics(&self) -> MetricResults;

    /// The job's stages and their live counts (empty for a runner that does not count).
    fn progress(&self) -> ProgressSnapshot {
        ProgressSnapshot::default()
    }

    /// Whether the program ends once this job succeeded: in a worker process a
    /// distributed runner started, the program runs its share of the job and nothing
    /// after it (what follows `run()` runs in the launcher, which holds the job's result).
    fn ends_program(&self) -> bool {
        false
    }
}

/// What a running job shares with its handle: stop requests and the metrics reported so
/// far. Cheap to clone (a shared handle).
#[derive(Clone, Debug, Default)]
pub struct JobControl {
    inner: Arc<ControlInner>,
}

#[derive(Debug, Default)]
struct ControlInner {
    cancel: AtomicBool,
    drain: Arc<AtomicBool>,
    metrics: Mutex<MetricResults>,
    progress: Progress,
}

impl JobControl {
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.inner.cancel.store(true, Ordering::SeqCst);
    }

    /// True once cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.load(Ordering::Relaxed)
    }

    /// [`EngineError::Cancelled`] once cancellation was requested: executors call it
    /// between bundles.
    ///
    /// # Errors
    /// [`EngineError::Cancelled`] when the job was cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Requests a drain (streaming: stop the sources, fire what is pending).
    pub fn drain(&self) {
        self.inner.drain.store(true, Ordering::SeqCst);
    }

    /// The drain flag, for code that watches it (signal handlers, source threads).
    pub fn drain_flag(&self) -> Arc<AtomicBool> {
        self.inner.drain.clone()
    }

    /// True once a drain was requested.
    pub fn is_draining(&self) -> bool {
        self.inner.drain.load(Ordering::Relaxed)
    }

    /// Moves what `container` holds into the job's metrics under `step`, leaving it empty:
    /// executors call it after bundles, so metrics are readable while the job runs.
    pub fn report(&self, step: &str, container: &mut MetricsContainer) {
        if container.is_empty() {
            return;
        }
        self.inner.metrics.lock().merge_container(step, container);
        *container = MetricsContainer::default();
    }

    /// Adds metrics gathered elsewhere (a finished operator's, another process's).
    pub fn report_results(&self, results: MetricResults) {
        self.inner.metrics.lock().merge(results);
    }

    /// A copy of the metrics reported so far.
    pub fn metrics(&self) -> MetricResults {
        self.inner.metrics.lock().clone()
    }

    /// The job's live progress: executors describe their stages and count into it.
    pub fn progress(&self) -> &Progress {
        &self.inner.progress
    }

    /// True when `other` controls the same job (is a clone of this control).
    pub fn same_job(&self, other: &JobControl) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// A job body running on its own thread, behind a [`JobHandle`].
///
/// # Examples
///
/// ```
/// use beamline_engine::job::{JobHandle, JobState, ThreadJob};
/// let job = ThreadJob::spawn("example", Default::default(), |_control| Ok(()), || {}).unwrap();
/// assert_eq!(job.wait_until_finish(None).unwrap(), JobState::Done);
/// ```
pub struct ThreadJob {
    control: JobControl,
    shared: Arc<(Mutex<Outcome>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
enum Outcome {
    Running,
    Done,
    Failed(Arc<EngineError>),
    Cancelled,
}

impl std::fmt::Debug for ThreadJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadJob")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ThreadJob {
    /// Starts `body` on a thread named `beamline-job-NAME`. `on_failure` runs on that
    /// thread when the body fails or is cancelled, before waiters are woken (to remove
    /// temporary output, say).
    ///
    /// # Errors
    /// [`EngineError::InvalidPipeline`] when the thread cannot be started.
    pub fn spawn(
        name: &str,
        control: JobControl,
        body: impl FnOnce(&JobControl) -> Result<()> + Send + 'static,
        on_failure: impl FnOnce() + Send + 'static,
    ) -> Result<ThreadJob> {
        let shared = Arc::new((Mutex::new(Outcome::Running), Condvar::new()));
        let (s, c) = (shared.clone(), control.clone());
        let thread = std::thread::Builder::new()
            .name(format!("beamline-job-{name}"))
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&c)))
                    .unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "non-string panic payload".into());
                        Err(EngineError::InvalidPipeline(format!(
                            "the job panicked: {msg}"
                        )))
                    });
                let outcome = match r {
                    Ok(()) => Outcome::Done,
                    Err(EngineError::Cancelled) => Outcome::Cancelled,
                    Err(_) if c.is_cancelled() => Outcome::Cancelled,
                    Err(e) => Outcome::Failed(Arc::new(e)),
                };
                if !matches!(outcome, Outcome::Done) {
                    on_failure();
                }
                *s.0.lock() = outcome;
                s.1.notify_all();
            })
            .map_err(|e| EngineError::InvalidPipeline(format!("cannot start the job: {e}")))?;
        Ok(ThreadJob {
            control,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The control shared with the running body.
    pub fn control(&self) -> &JobControl {
        &self.control
    }
}

impl JobHandle for ThreadJob {
    fn state(&self) -> JobState {
        match &*self.shared.0.lock() {
            Outcome::Running => JobState::Running,
            Outcome::Done => JobState::Done,
            Outcome::Failed(_) => JobState::Failed,
            Outcome::Cancelled => JobState::Cancelled,
        }
    }

    fn wait_until_finish(&self, timeout: Option<Duration>) -> Result<JobState> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut o = self.shared.0.lock();
        while matches!(*o, Outcome::Running) {
            match deadline {
                Some(d) => {
                    if self.shared.1.wait_until(&mut o, d).timed_out() {
                        break;
                    }
                }
                None => self.shared.1.wait(&mut o),
            }
        }
        let state = match &*o {
            Outcome::Running => return Ok(JobState::Running),
            Outcome::Done => JobState::Done,
            Outcome::Cancelled => JobState::Cancelled,
            Outcome::Failed(e) => return Err(EngineError::Failed(e.clone())),
        };
        drop(o);
        // The body ended: reap its thread (it only has the notification left to do).
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        Ok(state)
    }

    fn cancel(&self) {
        self.control.cancel();
    }

    fn drain(&self) {
        self.control.drain();
    }

    fn metrics(&self) -> MetricResults {
        self.control.metrics()
    }

    fn progress(&self) -> ProgressSnapshot {
        self.control.progress().snapshot()
    }
}
