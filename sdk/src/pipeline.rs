//! `Pipeline`: builds the portable pipeline proto as transforms are applied, and runs it.

mod construct;

use crate::error::{Error, Result};
use crate::options::PipelineOptions;
use crate::pcollection::{PBegin, PInput, POutput};
use crate::proto_build;
use beamline_engine::graph::Windowing;
use beamline_engine::job::{JobHandle, JobState};
use beamline_engine::metrics::MetricResults;
use beamline_engine::options::{help_text, validate, OptionGroup, OptionSpec};
use beamline_engine::registry::FnRegistry;
use beamline_engine::runner::{available_runners, find_runner, JobContext, RunnerRegistration};
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use beamline_engine::runner::WORKER_JOB_ENV;
pub use beamline_engine::runner::WORKER_PIPELINE_ENV;

/// Pipelines this program started so far (their [`JobContext::job_index`]).
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A transform: expands an input into outputs by applying other transforms.
///
/// Composite transforms implement `expand` with [`PCollection::apply`](crate::pcollection::PCollection::apply) and friends; the
/// primitives (ParDo, GroupByKey, Flatten, Impulse, WindowInto) come with the SDK.
pub trait PTransform<In: PInput> {
    /// What applying the transform returns.
    type Output: POutput;
    /// Builds the transform's parts on `input`.
    fn expand(self, input: &In) -> Self::Output;
}

/// A pipeline under construction; cheap to clone (a shared handle).
///
/// # Examples
///
/// ```
/// use beamline::{Create, Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let words = p.apply("Words", Create::of(vec!["a".to_string(), "b".to_string()]));
/// let _upper = words.map("Upper", |w: String| w.to_uppercase());
/// let result = p.run().unwrap();
/// assert!(result.metrics().counters.is_empty());
/// ```
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) inner: Arc<Mutex<State>>,
}

struct Scope {
    id: String,
    parts: Vec<String>,
    primitive: bool,
}

pub(crate) struct State {
    components: pb::Components,
    roots: Vec<String>,
    scopes: Vec<Scope>,
    names: HashSet<String>,
    pub(crate) fns: FnRegistry,
    options: PipelineOptions,
    coder_ids: HashMap<beamline_engine::coder::Coder, String>,
    windowing_ids: HashMap<Windowing, String>,
    windowing: HashMap<String, Windowing>,
    errors: Vec<String>,
    cleanup: Vec<PathBuf>,
    handle_signals: bool,
}

/// What runs before a distributed job's worker process ends (see
/// [`PipelineResult::wait_until_finish`]).
static BEFORE_WORKER_EXIT: std::sync::Mutex<Vec<fn()>> = std::sync::Mutex::new(Vec::new());

/// Registers `f` to run before a worker process of a distributed job ends its program
/// (a language binding flushes its own output buffers there).
pub fn before_worker_exit(f: fn()) {
    BEFORE_WORKER_EXIT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(f);
}

/// Ends a worker process whose share of the job succeeded, output flushed.
fn end_worker_program() -> ! {
    use std::io::Write;
    let hooks = BEFORE_WORKER_EXIT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for f in hooks {
        f();
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(0);
}

/// The program's name: its file name without extension (`wordcount`).
fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "beamline".into())
}

/// A started or finished job, as Beam's PipelineResult: its state, a wait, cancellation
/// and metrics readable while it runs. Cheap to clone (a shared handle).
///
/// # Examples
///
/// ```
/// use beamline::{Create, JobState, Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// p.apply("Numbers", Create::of(vec![1i64, 2, 3]));
/// let job = p.start().unwrap();
/// assert_eq!(job.wait_until_finish(None).unwrap(), JobState::Done);
/// ```
#[derive(Clone, Debug)]
pub struct PipelineResult {
    handle: Arc<dyn JobHandle>,
    /// The job UI's page, when the job runs with `--ui`.
    ui: Option<String>,
}

impl PipelineResult {
    /// The job's state now.
    pub fn state(&self) -> JobState {
        self.handle.state()
    }

    /// Waits until the job ends or `timeout` passes (`None`: no limit); returns its state
    /// then ([`JobState::Running`] if the timeout passed first).
    ///
    /// # Errors
    /// The job's error when it failed.
    ///
    /// In a worker process of a distributed job, the program ends here once its share
    /// succeeded: the code after `run()` runs only where the job was launched.
    pub fn wait_until_finish(&self, timeout: Option<Duration>) -> Result<JobState> {
        let state = self.handle.wait_until_finish(timeout)?;
        if state == JobState::Done && self.handle.ends_program() {
            end_worker_program();
        }
        Ok(state)
    }

    /// Stops the job at the next bundle: it ends [`JobState::Cancelled`], its output is
    /// not committed and its temporary files are removed.
    pub fn cancel(&self) {
        self.handle.cancel()
    }

    /// Drains a streaming job: sources stop, watermarks advance to the end, pending panes
    /// fire and output is committed (what Ctrl-C does). A batch job runs to its end.
    pub fn drain(&self) {
        self.handle.drain()
    }

    /// User metrics (counters, distributions, gauges) by transform and name: those
    /// reported so far while the job runs, all of them once it ended.
    pub fn metrics(&self) -> MetricResults {
        self.handle.metrics()
    }

    /// The URL of the job UI's page, when the job runs with `--ui`.
    pub fn ui_url(&self) -> Option<&str> {
        self.ui.as_deref()
    }
}

impl Pipeline {
    /// An empty pipeline with these options.
    pub fn new(options: PipelineOptions) -> Pipeline {
        let mut components = pb::Components::default();
        components.environments.insert(
            proto_build::RUST_ENV.to_string(),
            pb::Environment {
                urn: beamline_proto::urns::ENV_RUST.into(),
                ..Default::default()
            },
        );
        Pipeline {
            inner: Arc::new(Mutex::new(State {
                components,
                roots: Vec::new(),
                scopes: Vec::new(),
                names: HashSet::new(),
                fns: FnRegistry::default(),
                options,
                coder_ids: HashMap::new(),
                windowing_ids: HashMap::new(),
                windowing: HashMap::new(),
                errors: Vec::new(),
                cleanup: Vec::new(),
                handle_signals: true,
            })),
        }
    }

    /// A pipeline whose options come from the command line. With `--help`, prints the
    /// SDK's and the runner's options and exits; the program's own options are checked
    /// when it runs (see [`Pipeline::from_env_with`] to declare them for `--help`).
    ///
    /// # Errors
    /// When the command line has malformed options.
    pub fn from_env() -> Result<Pipeline> {
        Self::from_env_with(Vec::new())
    }

    /// A pipeline whose options come from the command line, with the program's options
    /// declared: `--help` prints them with the SDK's and the runner's and exits, and an
    /// unknown option or a malformed value prints one line naming it (and the closest
    /// known option) and exits with status 2, as command-line parsers do.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use beamline::{OptionKind, OptionSpec, Pipeline};
    /// let p = Pipeline::from_env_with(vec![
    ///     OptionSpec::new("input", OptionKind::Text, "text files to read (a glob)"),
    /// ]).unwrap();
    /// ```
    ///
    /// # Errors
    /// Malformed command lines (an empty option name) and an unknown `--runner`.
    pub fn from_env_with(program: Vec<OptionSpec>) -> Result<Pipeline> {
        let mut options = PipelineOptions::from_env()?;
        let declaring = !program.is_empty();
        for spec in program {
            options = options.declare(spec);
        }
        let p = Pipeline::new(options);
        let o = p.options();
        if o.wants_help() {
            let program_name = std::env::args().next().unwrap_or_else(|| "pipeline".into());
            print!("{}", p.help_text(&program_name)?);
            if !declaring {
                println!(
                    "\nThis program's own options are not declared here; see its documentation."
                );
            }
            std::process::exit(0);
        }
        if declaring {
            match p.check_options() {
                Err(Error::Usage(line)) => {
                    eprintln!("error: {line}");
                    std::process::exit(2);
                }
                other => other?,
            }
        }
        Ok(p)
    }

    /// Help text listing the program's, the SDK's and the chosen runner's options.
    ///
    /// # Errors
    /// [`Error::UnknownRunner`] when `--runner` names no linked runner.
    pub fn help_text(&self, program_name: &str) -> Result<String> {
        let groups = self.option_groups()?;
        Ok(help_text(&format!("{program_name} [OPTIONS]"), &groups))
    }

    /// Checks every given option against the program's (declared or read), the SDK's and
    /// the chosen runner's.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the first unknown option (with the closest known one) or
    /// malformed value; [`Error::UnknownRunner`].
    pub fn check_options(&self) -> Result<()> {
        let groups = self.option_groups()?;
        let options = self.options();
        validate(options.values(), &groups).map_err(Error::Usage)
    }

    fn option_groups(&self) -> Result<Vec<OptionGroup>> {
        let options = self.options();
        let (reg, runner) = self.runner()?;
        Ok(vec![
            OptionGroup {
                title: "Program options".into(),
                options: options.program_options(),
            },
            OptionGroup {
                title: format!(
                    "Pipeline options (runners: {})",
                    available_runners()
                        .iter()
                        .map(|r| r.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                options: crate::options::sdk_options(),
            },
            OptionGroup {
                title: format!("Options of the {} runner ({})", reg.name, reg.description),
                options: runner.options(),
            },
        ])
    }

    /// The registration and an instance of the runner `--runner` names.
    fn runner(
        &self,
    ) -> Result<(
        &'static RunnerRegistration,
        Box<dyn beamline_engine::runner::Runner>,
    )> {
        crate::link_runners();
        let name = self.options().runner().to_string();
        let reg = find_runner(&name).ok_or_else(|| Error::UnknownRunner {
            name: name.clone(),
            available: available_runners()
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        Ok((reg, (reg.create)()))
    }

    /// Whether the runner may handle SIGINT and SIGTERM itself (default: yes). A host
    /// that handles them (the Python package) turns this off and cancels through the
    /// [`PipelineResult`].
    #[doc(hidden)]
    pub fn set_handle_signals(&self, on: bool) {
        self.inner.lock().handle_signals = on;
    }

    /// The options.
    pub fn options(&self) -> PipelineOptions {
        self.inner.lock().options.clone()
    }

    /// Applies a root transform (Create, a source, Impulse).
    pub fn apply<T: PTransform<PBegin>>(&self, name: &str, t: T) -> T::Output {
        apply(&PBegin(self.clone()), name, t)
    }

    /// The portable pipeline proto as built so far.
    pub fn to_proto(&self) -> pb::Pipeline {
        let st = self.inner.lock();
        pb::Pipeline {
            components: Some(st.components.clone()),
            root_transform_ids: st.roots.clone(),
            ..Default::default()
        }
    }

    /// Runs the pipeline on the runner named by `--runner` and waits for it to finish.
    ///
    /// In worker mode (environment variable [`WORKER_PIPELINE_ENV`] set), the pipeline
    /// proto in that file is executed instead, with this binary's closures.
    ///
    /// # Errors
    /// Construction errors (duplicate names), [`Error::UnknownRunner`], unknown options
    /// ([`Error::Usage`]), and any failure of the job; on failure, temporary output files
    /// are removed.
    pub fn run(&self) -> Result<PipelineResult> {
        let job = self.start()?;
        match job.wait_until_finish(None)? {
            JobState::Cancelled => Err(beamline_engine::EngineError::Cancelled.into()),
            _ => Ok(job),
        }
    }

    /// Starts the pipeline on the runner named by `--runner` and returns at once, with a
    /// handle on the running job.
    ///
    /// # Errors
    /// What stops the job from starting (as for [`Pipeline::run`]); failures while it
    /// runs come from [`PipelineResult::wait_until_finish`].
    pub fn start(&self) -> Result<PipelineResult> {
        let index = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bytes = match std::env::var_os(WORKER_PIPELINE_ENV) {
            Some(path) => {
                let target = std::env::var(WORKER_JOB_ENV)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok());
                if target.is_some_and(|t| index < t) {
                    // A run before the one this worker process is for: the launcher's
                    // program ran it already.
                    return Ok(PipelineResult {
                        handle: Arc::new(beamline_engine::job::ThreadJob::spawn(
                            "skipped",
                            beamline_engine::job::JobControl::default(),
                            |_| Ok(()),
                            || {},
                        )?),
                        ui: None,
                    });
                }
                std::fs::read(&path).map_err(|source| Error::Io {
                    context: format!("reading worker pipeline {}", PathBuf::from(path).display()),
                    source,
                })?
            }
            None => self.to_proto().encode_to_vec(),
        };
        self.start_encoded(&bytes, index)
    }

    /// The closures registered so far, by transform name (what runners resolve them from).
    pub fn closures(&self) -> FnRegistry {
        self.inner.lock().fns.clone()
    }

    /// Runs another pipeline proto with this pipeline's closures and options.
    ///
    /// Closures resolve by transform name, so `proto` may be this pipeline's proto as
    /// built by another run of the same program (how workers execute), or an edited one.
    ///
    /// # Errors
    /// As [`Pipeline::run`].
    pub fn run_proto(&self, proto: &pb::Pipeline) -> Result<PipelineResult> {
        let index = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let job = self.start_encoded(&proto.encode_to_vec(), index)?;
        job.wait_until_finish(None)?;
        Ok(job)
    }

    fn start_encoded(&self, bytes: &[u8], job_index: usize) -> Result<PipelineResult> {
        let (functions, options, cleanup, handle_signals) = {
            let st = self.inner.lock();
            if !st.errors.is_empty() {
                return Err(Error::Construction(st.errors.join("; ")));
            }
            (
                Arc::new(st.fns.clone()),
                st.options.clone(),
                st.cleanup.clone(),
                st.handle_signals,
            )
        };
        self.check_options()?;
        let (_, runner) = self.runner()?;
        #[cfg(feature = "mimalloc")]
        if options.get::<String>("memory_budget")?.is_none() {
            crate::alloc::keep_freed_memory();
        }
        let job = JobContext {
            functions,
            options: options.values().clone(),
            cleanup: cleanup.clone(),
            handle_signals,
            job_index,
        };
        let worker = std::env::var_os(WORKER_PIPELINE_ENV).is_some();
        let level = options.get::<String>("log_level")?;
        if let Some(l) = level.as_deref().filter(|l| !crate::logging::valid_level(l)) {
            return Err(Error::Usage(format!(
                "--log-level={l}: expected one of error, warn, info, debug, trace, off"
            )));
        }
        crate::logging::init(level.as_deref());
        // Worker processes of a distributed job stay quiet: their launcher reports.
        let ui = options.get::<String>("ui")?.filter(|_| !worker);
        let watch = beamline_monitor::WatchOptions {
            name: options
                .get::<String>("job_name")?
                .unwrap_or_else(program_name),
            runner: options.runner().to_string(),
            quiet: worker || options.flag("quiet"),
            ui: ui.clone(),
        };
        if let Some(spec) = &ui {
            // Before the job starts: a UI address that cannot be served is a usage error.
            beamline_monitor::ui::in_process(spec).map_err(|e| Error::Usage(e.to_string()))?;
        }
        match runner.start(bytes, job) {
            // A worker process's share reports to its launcher, which watches the job.
            Ok(handle) if worker => Ok(PipelineResult {
                handle: Arc::from(handle),
                ui: None,
            }),
            Ok(handle) => {
                let watched = beamline_monitor::watch(handle, bytes, watch)
                    .map_err(|e| Error::Usage(e.to_string()))?;
                Ok(PipelineResult {
                    ui: watched.view().ui,
                    handle: watched,
                })
            }
            Err(e) => {
                for dir in &cleanup {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(e.into())
            }
        }
    }
}

/// Applies `t` to `input` under `name` (the transform's unique name is its path).
pub(crate) fn apply<In: PInput, T: PTransform<In>>(input: &In, name: &str, t: T) -> T::Output {
    let p = input.pipeline();
    p.enter(name);
    let out = t.expand(input);
    p.exit(input.pcollection_ids(), out.pcollection_ids());
    out
}
