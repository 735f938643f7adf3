//! The `distributed` runner: a launcher process starts the job's worker processes, each
//! runs its share of the pipeline on Timely Dataflow.
//!
//! SPMD: every worker is the user's own program re-executed, which rebuilds the pipeline
//! (so its closures resolve by transform name) and executes the proto the launcher wrote
//! (so every process runs the same pipeline, temporary file names included).

use crate::checkpoints::Checkpoints;
use crate::dataflow::{self, Clock, Setup, Shared};
use crate::heartbeat::Heartbeats;
use crate::launch::{launch, LaunchError, LaunchOptions};
use crate::plan::Plan;
use crate::progress::{LiveProgress, Shape};
use crate::worker::{self, WorkerEnv};
use beamline_engine::job::{JobControl, JobHandle, ThreadJob};
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::StateBudget;
use beamline_engine::options::{parse_duration_ms, OptionKind, OptionSpec};
use beamline_engine::restart::{Failure, Restarts};
use beamline_engine::runner::{
    JobContext, Runner, RunnerRegistration, WORKER_JOB_ENV, WORKER_PIPELINE_ENV,
};
use beamline_engine::EngineError;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The distributed runner.
#[derive(Debug, Default, Clone, Copy)]
pub struct DistributedRunner;

/// This runner's options, parsed.
#[derive(Debug, Clone, Copy)]
struct Options {
    processes: usize,
    threads: usize,
    connect_timeout: Duration,
    /// How long a peer may send no heartbeat before the job fails.
    peer_timeout: Duration,
}

fn bad(name: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidPipeline(format!("--{name}: {why}"))
}

impl Options {
    fn parse(job: &JobContext) -> Result<Options, EngineError> {
        let number = |key: &str, name: &str, default: usize| -> Result<usize, EngineError> {
            match job.options.get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| (1..=256).contains(&n))
                    .ok_or_else(|| bad(name, format!("'{v}' is not a number from 1 to 256"))),
            }
        };
        let duration = |key: &str, name: &str| -> Result<Duration, EngineError> {
            match job.options.get(key) {
                None => Ok(Duration::from_secs(30)),
                Some(v) => {
                    let ms = parse_duration_ms(v).map_err(|why| bad(name, why))?;
                    if ms == 0 {
                        return Err(bad(name, format!("'{v}' is no time at all")));
                    }
                    Ok(Duration::from_millis(ms))
                }
            }
        };
        Ok(Options {
            processes: number("processes", "processes", 2)?,
            threads: number("threads_per_process", "threads-per-process", 1)?,
            connect_timeout: duration("connect_timeout", "connect-timeout")?,
            peer_timeout: duration("peer_timeout", "peer-timeout")?,
        })
    }
}

impl Runner for DistributedRunner {
    fn options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new(
                "processes",
                OptionKind::Integer,
                "worker processes on this machine",
            )
            .default_value(2),
            OptionSpec::new(
                "threads-per-process",
                OptionKind::Integer,
                "Timely worker threads in each process",
            )
            .default_value(1),
            OptionSpec::new(
                "connect-timeout",
                OptionKind::Duration,
                "how long every process may take to join the job",
            )
            .default_value("30s"),
            OptionSpec::new(
                "peer-timeout",
                OptionKind::Duration,
                "how long a process may send no heartbeat (frozen, or cut off) before the job \
                 fails",
            )
            .default_value("30s"),
            OptionSpec::new(
                "hosts",
                OptionKind::Text,
                "a job over several machines: a file of host:port, one per process (start one \
                 process per line, each with --process-id)",
            ),
            OptionSpec::new(
                "process-id",
                OptionKind::Integer,
                "with --hosts: this process's line of the hosts file, from 0",
            ),
            OptionSpec::new(
                "memory-budget",
                OptionKind::Size,
                "per process: keyed state of stateful DoFns past this size spills to disk",
            ),
            OptionSpec::new(
                "spill-dir",
                OptionKind::Text,
                "where spilled state goes (default: the system's temporary directory)",
            ),
        ]
        .into_iter()
        // The engine options its streaming operators read.
        .chain(
            beamline_translate::engine_options()
                .into_iter()
                .filter(|o| o.name == "max-bundle-size"),
        )
        .chain(beamline_translate::checkpoint_options())
        .collect()
    }

    fn start(&self, pipeline: &[u8], job: JobContext) -> Result<Box<dyn JobHandle>, EngineError> {
        let opts = Options::parse(&job)?;
        let prepared = beamline_translate::prepare(pipeline, &job)?;
        check_checkpoints(&prepared)?;
        if let Some(env) = worker::worker_env().map_err(EngineError::InvalidPipeline)? {
            let (listener, addresses) = rendezvous(env)?;
            worker::end_with_launcher();
            let threads = std::env::var("BEAMLINE_THREADS_PER_PROCESS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(opts.threads);
            let peers = Peers {
                addresses,
                listener: Some(listener),
            };
            return start_worker(env, peers, threads, true, prepared, opts);
        }
        match job.options.get("hosts") {
            Some(_) if prepared.options.restarts.max > 0 => Err(bad(
                "restarts",
                "the processes of a job over several machines are started by you (or by \
                 Kubernetes): restart them there, with the same --checkpoint-dir",
            )),
            Some(file) => {
                let (env, addresses) = from_hosts_file(file, job.options.get("process_id"))?;
                let peers = Peers {
                    addresses,
                    listener: None,
                };
                start_worker(env, peers, opts.threads, false, prepared, opts)
            }
            None if job.options.contains_key("process_id") => Err(EngineError::InvalidPipeline(
                "--process-id: only with --hosts (a job over several machines)".into(),
            )),
            None => {
                let checkpointed = prepared.options.checkpoint.is_some();
                let shape = Shape::of(
                    &prepared.graph,
                    prepared.mode != beamline_translate::Mode::Batch,
                );
                let restarts = prepared.options.restarts;
                start_launcher(pipeline, job, opts, restarts, checkpointed, shape)
            }
        }
    }
}

/// Checkpoints are of streaming jobs that read unbounded sources (on the wall clock).
fn check_checkpoints(prepared: &beamline_translate::PreparedJob) -> Result<(), EngineError> {
    let Some(c) = &prepared.options.checkpoint else {
        return Ok(());
    };
    let dir = c.dir.display();
    if prepared.mode == beamline_translate::Mode::Batch {
        return Err(EngineError::InvalidPipeline(format!(
            "--checkpoint-dir={dir}: checkpoints are taken of streaming jobs; this one runs in \
             batch (pass --streaming to run it as a stream)"
        )));
    }
    let test_stream = prepared
        .graph
        .nodes
        .iter()
        .find(|n| matches!(n.kind, beamline_engine::graph::NodeKind::TestStream { .. }));
    if let Some(n) = test_stream {
        return Err(EngineError::InvalidPipeline(format!(
            "--checkpoint-dir={dir}: '{}' is a TestStream, which runs on virtual time; the \
             distributed runner checkpoints jobs that read unbounded sources",
            n.name
        )));
    }
    if !prepared.has_unbounded_sources() {
        return Err(EngineError::InvalidPipeline(format!(
            "--checkpoint-dir={dir}: the distributed runner checkpoints jobs that read \
             unbounded sources; this one reads none"
        )));
    }
    Ok(())
}

/// A launched worker's listener, on a port of its own, and every process's address, as
/// the launcher sends them once each one said where it listens.
fn rendezvous(env: WorkerEnv) -> Result<(std::net::TcpListener, Vec<String>), EngineError> {
    let err = |e: String| EngineError::Runner(format!("process {}: {e}", env.process_id));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| err(format!("cannot listen on the loopback interface: {e}")))?;
    let me = listener
        .local_addr()
        .map_err(|e| err(format!("cannot listen on the loopback interface: {e}")))?
        .to_string();
    worker::listening(&me);
    let addresses = worker::addresses_from_launcher(env.processes).map_err(err)?;
    if addresses[env.process_id] != me {
        return Err(err(format!(
            "the launcher says it listens on {}, not {me}",
            addresses[env.process_id]
        )));
    }
    Ok((listener, addresses))
}

fn start_launcher(
    pipeline: &[u8],
    job: JobContext,
    opts: Options,
    restarts: Restarts,
    checkpointed: bool,
    shape: Shape,
) -> Result<Box<dyn JobHandle>, EngineError> {
    let io = |context: &str| {
        let context = context.to_string();
        move |source| EngineError::Io { context, source }
    };
    let (program, args) =
        beamline_engine::program::as_started().map_err(io("finding this program"))?;
    // Pipelines of launchers that were killed (one that ends removes its own).
    beamline_engine::orphans::remove_orphans(&std::env::temp_dir(), "beamline-job-", ".pb");
    let proto = std::env::temp_dir().join(format!(
        "beamline-job-{}-{}.pb",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::write(&proto, pipeline).map_err(io("writing the pipeline for the workers"))?;
    let proto_path = proto.clone();
    let job_index = job.job_index;
    // Each start's workers listen on ports of their own (a killed run's may linger).
    let launch_opts = move || -> Result<LaunchOptions, EngineError> {
        Ok(LaunchOptions {
            processes: opts.processes,
            connect_timeout: opts.connect_timeout,
            silence_timeout: opts.peer_timeout,
            env: vec![
                (
                    WORKER_PIPELINE_ENV.to_string(),
                    proto_path.to_string_lossy().into_owned(),
                ),
                (
                    "BEAMLINE_THREADS_PER_PROCESS".to_string(),
                    opts.threads.to_string(),
                ),
                (WORKER_JOB_ENV.to_string(), job_index.to_string()),
            ],
        })
    };
    // A failed job's temporary files go, unless checkpoints hold them (a restart from the
    // last checkpoint commits or replaces them).
    let cleanup = if checkpointed {
        Vec::new()
    } else {
        job.cleanup.clone()
    };
    let body = move |control: &JobControl| -> Result<(), EngineError> {
        let live = Arc::new(Mutex::new(LiveProgress::new(shape, control.clone())));
        let run = || -> Result<Vec<String>, LaunchError> {
            let live = live.clone();
            let launch_opts = launch_opts().map_err(|e| LaunchError::Start {
                process: 0,
                reason: e.to_string(),
            })?;
            launch(&program, &args, &launch_opts).and_then(|s| {
                s.observe(move |p, json| {
                    live.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .update(p, json);
                })
                .wait_unless(|| control.is_cancelled())
            })
        };
        // A process that failed, was lost or did not connect may pass in a new run.
        let r = restarts.run(control, |_| {
            run().map_err(|e| match e {
                LaunchError::Cancelled => Failure::Final(EngineError::Cancelled),
                LaunchError::Failed { .. }
                | LaunchError::Exited { .. }
                | LaunchError::ConnectTimeout { .. } => {
                    Failure::Restartable(EngineError::Runner(e.to_string()))
                }
                other => Failure::Final(EngineError::Runner(other.to_string())),
            })
        });
        let _ = std::fs::remove_file(&proto);
        let reports = r?;
        for json in reports {
            control.report_results(MetricResults::from_json(&json).map_err(EngineError::Runner)?);
        }
        Ok(())
    };
    let on_failure = move || {
        for dir in &cleanup {
            let _ = std::fs::remove_dir_all(dir);
        }
    };
    Ok(Box::new(ThreadJob::spawn(
        "distributed",
        JobControl::default(),
        body,
        on_failure,
    )?))
}

/// This process's place in a job over several machines, from `--hosts` and
/// `--process-id`.
fn from_hosts_file(
    file: &str,
    process_id: Option<&String>,
) -> Result<(WorkerEnv, Vec<String>), EngineError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| bad("hosts", format!("cannot read '{file}': {e}")))?;
    let hosts = crate::hosts::parse_hosts(&text).map_err(|e| bad("hosts", e))?;
    let id = process_id.ok_or_else(|| {
        bad(
            "process-id",
            "a job over several machines needs this process's line of the hosts file",
        )
    })?;
    let process_id = id
        .parse::<usize>()
        .ok()
        .filter(|&i| i < hosts.len())
        .ok_or_else(|| {
            bad(
                "process-id",
                format!(
                    "'{id}' is not a line of the hosts file (0 to {})",
                    hosts.len() - 1
                ),
            )
        })?;
    let env = WorkerEnv {
        process_id,
        processes: hosts.len(),
    };
    Ok((env, hosts.iter().map(|h| h.to_string()).collect()))
}

/// How a worker process reaches the job's others.
struct Peers {
    /// Every process's address, by process id.
    addresses: Vec<String>,
    /// Where this process listens, bound already (a launched worker chose its port);
    /// `None`: it binds its address from `addresses` (a hosts file's job).
    listener: Option<std::net::TcpListener>,
}

/// Runs this process's share of the job: `threads` workers joining the processes of
/// `peers` (with heartbeats), `launched` when the launcher started it (it then reports to
/// it).
fn start_worker(
    env: WorkerEnv,
    Peers {
        addresses,
        listener,
    }: Peers,
    threads: usize,
    launched: bool,
    prepared: beamline_translate::PreparedJob,
    opts: Options,
) -> Result<Box<dyn JobHandle>, EngineError> {
    // Real time for unbounded sources; virtual (deterministic) time otherwise, as the
    // local runner.
    let clock = if prepared.has_unbounded_sources() {
        Clock::Wall
    } else {
        Clock::Virtual
    };
    let batch = prepared.mode == beamline_translate::Mode::Batch;
    let max_bundle = prepared.options.max_bundle_size;
    let final_processing_time = dataflow::final_processing_time(&prepared.graph);
    let state_budget = prepared.options.memory_budget.and_then(|b| {
        StateBudget::share(
            &prepared.graph,
            b,
            threads,
            prepared.options.spill_dir.as_deref(),
        )
    });
    let checkpoint = prepared.options.checkpoint.clone();
    let fingerprint = beamline_engine::checkpoint::fingerprint(&prepared.graph);
    let graph = Arc::new(prepared.graph);
    let workers = env.processes * threads;
    let body = move |control: &JobControl| -> Result<(), EngineError> {
        let shared = Arc::new(Shared::new(launched));
        let (g, s) = (graph.clone(), shared.clone());
        // What to restore, decided before connecting: no process writes a checkpoint
        // until all are connected.
        let plan = match &checkpoint {
            Some(c) => Plan::make(c, workers)?,
            None => Plan::default(),
        };
        let deadline = std::time::Instant::now() + opts.connect_timeout;
        end_on_timely_panics(launched);
        let process = env.process_id;
        let in_process = |e: String| EngineError::Runner(format!("process {process}: {e}"));
        let connected = crate::connect::connect_all(&addresses, process, listener, deadline)
            .map_err(in_process)?;
        let heartbeats = Heartbeats::start(
            connected.beats,
            &addresses,
            opts.peer_timeout,
            move |error| end_process(launched, &error),
        )
        .map_err(|e| in_process(format!("heartbeats: {e}")))?;
        let guards = crate::adapter::execute(process, connected.data, threads, move |w| {
            let setup = Setup {
                worker: w.index(),
                workers,
                clock,
                batch,
                max_bundle,
                final_processing_time,
                state_budget: state_budget.clone(),
            };
            // A panic here is a bug (user code runs guarded): it ends the process
            // with a clear error rather than leaving the other workers waiting.
            let checkpoints = checkpoint.as_ref().map(|c| {
                match Checkpoints::open(c, &plan, w.index(), workers, fingerprint.clone()) {
                    Ok(cp) => (Rc::new(RefCell::new(cp)), c.interval),
                    Err(e) => s.fail(e),
                }
            });
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::adapter::dataflow(w, |scope| {
                    if let Err(e) = dataflow::build(scope, &g, setup, &s, checkpoints.as_ref()) {
                        s.fail(e);
                    }
                });
                crate::adapter::run_to_end(w);
                if let Some((c, _)) = &checkpoints {
                    s.add_metrics(c.borrow().metrics());
                }
            }));
            if let Err(payload) = run {
                s.fail(EngineError::Runner(format!(
                    "a worker thread panicked: {}",
                    panic_message(&*payload)
                )));
            }
        })
        .map_err(in_process)?;
        if launched {
            worker::ready();
        }
        // The launcher shows the job's progress from what every process reports.
        let reporter = launched.then(|| Reporter::start(shared.clone()));
        // A transform's failure ends this process (see `Shared::fail`): joining the
        // workers is reaching the end of the job.
        drop(guards);
        drop(heartbeats);
        if let Some(r) = reporter {
            r.stop();
        }
        let metrics = shared.take_metrics();
        if launched {
            worker::metrics(&metrics.to_json());
        }
        control.report_results(metrics);
        Ok(())
    };
    let job = ThreadJob::spawn("distributed-worker", JobControl::default(), body, || {})?;
    Ok(Box::new(WorkerJob { job, launched }))
}

/// A worker process's share of a job; in a process the launcher started, the program
/// ends with it (see [`JobHandle::ends_program`]).
#[derive(Debug)]
struct WorkerJob {
    job: ThreadJob,
    launched: bool,
}

impl JobHandle for WorkerJob {
    fn state(&self) -> beamline_engine::job::JobState {
        self.job.state()
    }
    fn wait_until_finish(
        &self,
        timeout: Option<Duration>,
    ) -> Result<beamline_engine::job::JobState, EngineError> {
        self.job.wait_until_finish(timeout)
    }
    fn cancel(&self) {
        self.job.cancel()
    }
    fn drain(&self) {
        self.job.drain()
    }
    fn metrics(&self) -> MetricResults {
        self.job.metrics()
    }
    fn ends_program(&self) -> bool {
        self.launched
    }
}

/// Sends this process's live counts to the launcher every [`REPORT_EVERY`] until stopped,
/// and once more then.
struct Reporter {
    /// Dropped to stop the thread at once (its wait ends when the channel closes).
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    shared: Arc<Shared>,
}

/// How often a worker process reports its progress.
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl Reporter {
    fn start(shared: Arc<Shared>) -> Reporter {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(REPORT_EVERY)
            {
                worker::progress(&s.meters.to_json());
            }
        });
        Reporter {
            stop,
            thread,
            shared,
        }
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
        worker::progress(&self.shared.meters.to_json());
    }
}

/// The message of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Makes a panic on one of Timely's network threads end this process with a clear error:
/// a peer process that is gone makes them panic, and the workers would then wait for it
/// forever (a hang) or cascade panics.
fn end_on_timely_panics(launched: bool) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        if !(thread.starts_with("timely:send") || thread.starts_with("timely:recv")) {
            return previous(info);
        }
        let msg = panic_message(info.payload());
        end_process(launched, &format!("{} ({msg})", worker::PEER_LOST));
    }));
}

/// Ends this process with `error`: reported to the launcher when it started the process,
/// on standard error otherwise (a process of a hosts file's job).
fn end_process(launched: bool, error: &str) -> ! {
    if launched {
        worker::fail(error);
    } else {
        eprintln!("error: {error}");
    }
    std::process::exit(1);
}

inventory::submit! {
    RunnerRegistration {
        name: "distributed",
        description: "several processes on Timely Dataflow (--processes=N, --threads-per-process=T)",
        create: || Box::new(DistributedRunner),
    }
}

/// Makes sure this crate (and its runner registration) is linked into the binary.
pub fn link() {}
