//! A watched job: a thread samples any runner's job handle, shows progress on stderr,
//! keeps the job UI's view current, and prints the summary when the job ends.

use crate::directory;
use crate::error::Result;
use crate::facts::PipelineFacts;
use crate::summary::summary;
use crate::terminal::Terminal;
use crate::ui;
use crate::view::{JobView, Sampler};
use beamline_engine::job::{JobHandle, JobState};
use beamline_engine::metrics::MetricResults;
use beamline_engine::progress::ProgressSnapshot;
use beamline_engine::EngineError;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the monitor samples the job.
const TICK: Duration = Duration::from_millis(250);

/// How often a job with `--ui` publishes its view to the job directory.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Jobs this process watched (the `N` of job ids `PID-N`).
static WATCHED: AtomicUsize = AtomicUsize::new(0);

/// How to watch a job.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// The job's name (shown everywhere).
    pub name: String,
    /// The runner's name.
    pub runner: String,
    /// No progress, status lines or summary.
    pub quiet: bool,
    /// Serve the job UI at this address (`true`: the default one).
    pub ui: Option<String>,
}

/// A job with its monitor: a [`JobHandle`] that, once the job ended and someone waited
/// for it, has printed the summary.
pub struct Watched {
    inner: Arc<dyn JobHandle>,
    view: Arc<Mutex<JobView>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    summarized: AtomicBool,
    quiet: bool,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("job", &self.view.lock().id)
            .field("state", &self.inner.state())
            .finish()
    }
}

/// Starts watching `handle`, a job of the encoded `pipeline`.
///
/// # Errors
/// [`crate::Error::Ui`] when the job UI cannot be served (the job keeps running; the
/// caller decides whether to cancel it).
pub fn watch(
    handle: Box<dyn JobHandle>,
    pipeline: &[u8],
    opts: WatchOptions,
) -> Result<Arc<Watched>> {
    let inner: Arc<dyn JobHandle> = Arc::from(handle);
    let n = WATCHED.fetch_add(1, Ordering::SeqCst);
    let view = Arc::new(Mutex::new(JobView {
        id: format!("{}-{n}", std::process::id()),
        name: opts.name.clone(),
        runner: opts.runner.clone(),
        state: JobState::Running.name().into(),
        pid: std::process::id(),
        ..Default::default()
    }));
    tracing::info!(job = %opts.name, runner = %opts.runner, "job started");
    let mut sampler = Sampler::new(PipelineFacts::of_encoded(pipeline));
    sample(&mut sampler, &view, &*inner);
    let publish = match &opts.ui {
        Some(spec) => {
            let (jobs, url) = ui::in_process(spec)?;
            view.lock().ui = Some(url.clone());
            jobs.add(view.clone(), inner.clone());
            if !opts.quiet {
                eprintln!("beamline: job UI at {url}");
            }
            Some(directory::jobs_dir())
        }
        None => None,
    };
    let watched = Arc::new(Watched {
        inner: inner.clone(),
        view: view.clone(),
        thread: Mutex::new(None),
        summarized: AtomicBool::new(false),
        quiet: opts.quiet,
    });
    let quiet = opts.quiet;
    let thread = std::thread::Builder::new()
        .name("beamline-monitor".into())
        .spawn(move || run(sampler, view, inner, quiet, publish))
        .map_err(|e| crate::Error::Ui(format!("cannot start the monitor thread: {e}")))?;
    *watched.thread.lock() = Some(thread);
    Ok(watched)
}

fn sample(sampler: &mut Sampler, view: &Mutex<JobView>, job: &dyn JobHandle) -> JobState {
    let state = job.state();
    let (progress, metrics) = (job.progress(), job.metrics());
    sampler.sample(&mut view.lock(), state, &progress, &metrics);
    state
}

/// The monitor thread: samples until the job ends, then once more with its error.
fn run(
    mut sampler: Sampler,
    view: Arc<Mutex<JobView>>,
    job: Arc<dyn JobHandle>,
    quiet: bool,
    publish: Option<std::path::PathBuf>,
) {
    let mut terminal = Terminal::new(quiet);
    // Published at the first sample.
    let mut published = Instant::now()
        .checked_sub(PUBLISH_EVERY)
        .unwrap_or_else(Instant::now);
    let id = view.lock().id.clone();
    loop {
        let state = sample(&mut sampler, &view, &*job);
        if state.is_terminal() {
            break;
        }
        terminal.update(&view.lock());
        if let Some(dir) = &publish {
            if published.elapsed() >= PUBLISH_EVERY {
                published = Instant::now();
                if directory::cancel_requested(dir, &id) {
                    tracing::info!(job = id, "cancel requested from `beamline ui`");
                    job.cancel();
                }
                if let Err(e) = directory::publish(dir, &view.lock()) {
                    tracing::debug!("cannot publish the job to {}: {e}", dir.display());
                }
            }
        }
        // The job's own wait is the sleep: it returns at once when the job ends.
        let _ = job.wait_until_finish(Some(TICK));
    }
    terminal.finish();
    if let Err(e) = job.wait_until_finish(Some(Duration::ZERO)) {
        let message = match &e {
            EngineError::Failed(inner) => inner.to_string(),
            other => other.to_string(),
        };
        sampler.fail(&mut view.lock(), message);
    }
    {
        let v = view.lock();
        tracing::info!(job = %v.name, state = %v.state, seconds = v.elapsed_sec, "job ended");
    }
    if let Some(dir) = &publish {
        let _ = directory::publish(dir, &view.lock());
        // Listing prunes the oldest finished jobs, so the directory does not grow.
        let _ = directory::list(dir);
    }
}

impl Watched {
    /// The job's view now (what the UI shows).
    pub fn view(&self) -> JobView {
        self.view.lock().clone()
    }

    /// Waits for the monitor's last sample and prints the summary (once).
    fn finish(&self) {
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        if !self.quiet && !self.summarized.swap(true, Ordering::SeqCst) {
            eprint!("{}", summary(&self.view.lock()));
        }
    }
}

impl JobHandle for Watched {
    fn state(&self) -> JobState {
        self.inner.state()
    }

    fn wait_until_finish(&self, timeout: Option<Duration>) -> beamline_engine::Result<JobState> {
        let r = self.inner.wait_until_finish(timeout);
        if r.as_ref().map_or(true, |s| s.is_terminal()) {
            self.finish();
        }
        r
    }

    fn cancel(&self) {
        self.inner.cancel()
    }

    fn drain(&self) {
        self.inner.drain()
    }

    fn metrics(&self) -> MetricResults {
        self.inner.metrics()
    }

    fn progress(&self) -> ProgressSnapshot {
        self.inner.progress()
    }

    fn ends_program(&self) -> bool {
        self.inner.ends_program()
    }
}
