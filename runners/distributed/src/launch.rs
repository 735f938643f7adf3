//! Starting a job's worker processes on this machine and owning them until they end.
//!
//! Every process is a child of the launcher; the launcher reads each one's standard error
//! (passing it through, prefixed with the process id) for the worker protocol of
//! [`crate::worker`]. The job fails at the first failure, with the failing process's
//! original error, and the others are killed and reaped at once: no process outlives
//! [`Supervisor::wait`], which never hangs (a process that does not report ready within the
//! connect timeout is a failure too, and so is a ready one that then says nothing for the
//! silence timeout: a worker reports its progress every second while it runs).

use crate::worker::{parse_report, Report, PROCESSES_ENV, PROCESS_ID_ENV};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Why a job's processes failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// A worker process could not be started.
    #[error("cannot start worker process {process}: {reason}")]
    Start {
        /// Its process id.
        process: usize,
        /// The operating system's reason.
        reason: String,
    },
    /// A worker reported an error (the original one: transform name and message).
    #[error("process {process} failed: {error}")]
    Failed {
        /// Its process id.
        process: usize,
        /// Its error.
        error: String,
    },
    /// A worker ended with a failure status without reporting an error.
    #[error("process {process} exited with {status}{}", last_words(.stderr))]
    Exited {
        /// Its process id.
        process: usize,
        /// How it ended (exit code or signal).
        status: String,
        /// The last lines it wrote to standard error.
        stderr: Vec<String>,
    },
    /// A worker ended well without ever joining the job: it ran none of it (its program
    /// did not start the same pipelines in the same order as the launcher's).
    #[error(
        "process {process} ended without running its share of the job: every process must \
         start the same pipelines, in the same order, as the launching program"
    )]
    NoShare {
        /// Its process id.
        process: usize,
    },
    /// The job was cancelled; every process was killed.
    #[error("the job was cancelled")]
    Cancelled,
    /// A ready worker wrote nothing for the silence timeout: it is frozen.
    #[error("process {process} sent nothing for {timeout:?}: it is frozen (--peer-timeout)")]
    Silent {
        /// Its process id.
        process: usize,
        /// The timeout.
        timeout: Duration,
    },
    /// A worker did not report ready within the connect timeout.
    #[error("process {process} did not connect within {seconds} s (--connect-timeout)")]
    ConnectTimeout {
        /// Its process id.
        process: usize,
        /// The timeout.
        seconds: u64,
    },
}

fn last_words(lines: &[String]) -> String {
    match lines.last() {
        Some(l) => format!("; its last words: {l}"),
        None => String::new(),
    }
}

/// How to start a job's processes.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// How many processes.
    pub processes: usize,
    /// How long each may take to report ready.
    pub connect_timeout: Duration,
    /// How long a ready process may write nothing before the job fails (a worker of the
    /// distributed runner reports its progress every second).
    pub silence_timeout: Duration,
    /// Environment variables every process gets besides the worker protocol's.
    pub env: Vec<(String, String)>,
}

/// Lines of standard error kept per process for error messages.
const KEPT_LINES: usize = 20;

enum Event {
    Line(usize, String),
    Closed(usize),
}

/// The running processes of a job.
#[derive(Debug)]
pub struct Supervisor {
    children: Vec<Option<Child>>,
    events: mpsc::Receiver<Event>,
    /// Where each process listens for its peers, as it said (sent to every process once
    /// all did).
    listening: Vec<Option<String>>,
    ready: Vec<bool>,
    /// When each process last wrote a line.
    heard: Vec<Instant>,
    started: Instant,
    connect_timeout: Duration,
    silence_timeout: Duration,
    stderr: Vec<Vec<String>>,
    /// Processes whose standard error is still open.
    open: usize,
    /// What the processes reported of their metrics (JSON lines).
    metrics: Vec<String>,
    /// A process that failed because a peer went away, and when: the peer's own error
    /// (or exit) is the job's error if it comes within [`ORIGINAL_ERROR_GRACE`].
    peer_lost: Option<(Instant, usize, String)>,
    /// Who takes the processes' progress reports (process, JSON line).
    observer: Option<Observer>,
}

/// What takes reports: called with a process's index and its report's JSON.
type ReportFn = dyn FnMut(usize, &str) + Send;

/// Takes a process's progress report: its index and the report's JSON.
pub struct Observer(Box<ReportFn>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// How long a failure caused by a lost peer waits for that peer's own error.
const ORIGINAL_ERROR_GRACE: Duration = Duration::from_secs(2);

/// Starts `opts.processes` copies of `program` with `args`, each with its process id and
/// the number of processes in the environment ([`PROCESS_ID_ENV`], [`PROCESSES_ENV`]).
///
/// # Errors
/// [`LaunchError::Start`] when a process cannot be started; those already started are
/// killed and reaped first.
pub fn launch<S: AsRef<std::ffi::OsStr>>(
    program: &std::path::Path,
    args: &[S],
    opts: &LaunchOptions,
) -> Result<Supervisor, LaunchError> {
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<Option<Child>> = Vec::with_capacity(opts.processes);
    for process in 0..opts.processes {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(PROCESS_ID_ENV, process.to_string())
            .env(PROCESSES_ENV, opts.processes.to_string())
            // The child's standard input stays open as long as this process lives: a
            // worker ends when it closes (see `worker::end_with_launcher`), so no worker
            // outlives a launcher that died without reaping it.
            .stdin(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                for c in children.iter_mut().flatten() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(LaunchError::Start {
                    process,
                    reason: e.to_string(),
                });
            }
        };
        let stderr = child.stderr.take().expect("piped above");
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("beamline-stderr-{process}"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Event::Line(process, line)).is_err() {
                        break;
                    }
                }
                let _ = tx.send(Event::Closed(process));
            })
            .map_err(|e| LaunchError::Start {
                process,
                reason: format!("cannot read its output: {e}"),
            })?;
        children.push(Some(child));
    }
    Ok(Supervisor {
        listening: vec![None; opts.processes],
        ready: vec![false; opts.processes],
        heard: vec![Instant::now(); opts.processes],
        stderr: vec![Vec::new(); opts.processes],
        open: opts.processes,
        metrics: Vec::new(),
        peer_lost: None,
        observer: None,
        children,
        events: rx,
        started: Instant::now(),
        connect_timeout: opts.connect_timeout,
        silence_timeout: opts.silence_timeout,
    })
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("signal {sig}{name}");
        }
    }
    match status.code() {
        Some(c) => format!("exit code {c}"),
        None => status.to_string(),
    }
}

impl Supervisor {
    /// How many processes the job has.
    pub fn processes(&self) -> usize {
        self.children.len()
    }

    /// Hands every progress report of a process (see [`crate::worker::progress`]) to
    /// `observer` while the job runs.
    pub fn observe(mut self, observer: impl FnMut(usize, &str) + Send + 'static) -> Self {
        self.observer = Some(Observer(Box::new(observer)));
        self
    }

    /// Kills every process still running and reaps them all.
    pub fn kill_all(&mut self) {
        for c in self.children.iter_mut() {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Writes every process's address, one line, to each process's standard input (see
    /// [`crate::worker::addresses_from_launcher`]). A process that cannot take it is gone:
    /// its exit is the job's error.
    fn send_addresses(&mut self) {
        let line = self
            .listening
            .iter()
            .map(|a| a.as_deref().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",");
        for child in self.children.iter_mut().flatten() {
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
            }
        }
    }

    /// Handles one line of process `p`'s standard error: a report, or passed through.
    fn line(&mut self, p: usize, line: String) -> Result<(), LaunchError> {
        self.heard[p] = Instant::now();
        match parse_report(&line) {
            Some(Report::Listening(address)) => {
                self.listening[p] = Some(address);
                if self.listening.iter().all(Option::is_some) {
                    self.send_addresses();
                }
            }
            Some(Report::Ready) => self.ready[p] = true,
            Some(Report::Metrics(json)) => self.metrics.push(json),
            Some(Report::Progress(json)) => {
                if let Some(o) = &mut self.observer {
                    (o.0)(p, &json);
                }
            }
            Some(Report::Error(error)) => {
                if error.contains(crate::worker::PEER_LOST) {
                    if self.peer_lost.is_none() {
                        self.peer_lost = Some((Instant::now(), p, error));
                    }
                    return Ok(());
                }
                return Err(LaunchError::Failed { process: p, error });
            }
            None => {
                eprintln!("[process {p}] {line}");
                let kept = &mut self.stderr[p];
                if kept.len() == KEPT_LINES {
                    kept.remove(0);
                }
                kept.push(line);
            }
        }
        Ok(())
    }

    /// Waits until every process ended successfully; returns the metrics they reported
    /// (one JSON line each, see [`crate::worker::metrics`]).
    ///
    /// # Errors
    /// The first failure: a process's reported error, a failure exit or a signal (naming
    /// the process), or a process not ready within the connect timeout. Every other
    /// process is killed before this returns.
    pub fn wait(self) -> Result<Vec<String>, LaunchError> {
        self.wait_unless(|| false)
    }

    /// As [`Supervisor::wait`], but kills every process and returns
    /// [`LaunchError::Cancelled`] as soon as `cancelled` says so (checked every few
    /// milliseconds).
    ///
    /// # Errors
    /// As [`Supervisor::wait`], and [`LaunchError::Cancelled`].
    pub fn wait_unless(mut self, cancelled: impl Fn() -> bool) -> Result<Vec<String>, LaunchError> {
        let r = self.supervise(&cancelled);
        self.kill_all();
        r.map(|()| std::mem::take(&mut self.metrics))
    }

    fn supervise(&mut self, cancelled: &dyn Fn() -> bool) -> Result<(), LaunchError> {
        loop {
            if cancelled() {
                return Err(LaunchError::Cancelled);
            }
            // Reports and output first: a failing process's error line comes before its
            // exit status, and is the better message.
            loop {
                match self.events.recv_timeout(Duration::from_millis(20)) {
                    Ok(Event::Line(p, line)) => self.line(p, line)?,
                    Ok(Event::Closed(_)) => self.open = self.open.saturating_sub(1),
                    Err(_) => break,
                }
            }
            let mut running = 0;
            for p in 0..self.children.len() {
                let Some(child) = self.children[p].as_mut() else {
                    continue;
                };
                match child.try_wait() {
                    Ok(Some(status)) => {
                        self.children[p] = None;
                        if status.success() && !self.ready[p] {
                            // Its report may still be on its way.
                            self.drain_output(p)?;
                            if !self.ready[p] {
                                return Err(LaunchError::NoShare { process: p });
                            }
                        }
                        if !status.success() {
                            self.drain_output(p)?;
                            if self.peer_lost.as_ref().is_some_and(|(_, q, _)| *q == p) {
                                // It said why; its peer's reason is the better one.
                                continue;
                            }
                            return Err(LaunchError::Exited {
                                process: p,
                                status: describe(status),
                                stderr: std::mem::take(&mut self.stderr[p]),
                            });
                        }
                    }
                    Ok(None) => {
                        running += 1;
                        if !self.ready[p] && self.started.elapsed() > self.connect_timeout {
                            return Err(LaunchError::ConnectTimeout {
                                process: p,
                                seconds: self.connect_timeout.as_secs(),
                            });
                        }
                        if self.ready[p] && self.heard[p].elapsed() > self.silence_timeout {
                            return Err(LaunchError::Silent {
                                process: p,
                                timeout: self.silence_timeout,
                            });
                        }
                    }
                    Err(e) => {
                        return Err(LaunchError::Exited {
                            process: p,
                            status: format!("unknown status ({e})"),
                            stderr: std::mem::take(&mut self.stderr[p]),
                        })
                    }
                }
            }
            if let Some((since, process, error)) = &self.peer_lost {
                if running == 0 || since.elapsed() >= ORIGINAL_ERROR_GRACE {
                    return Err(LaunchError::Failed {
                        process: *process,
                        error: error.clone(),
                    });
                }
            }
            if running == 0 {
                // Everything ended well; pass the last output through.
                let deadline = Instant::now() + Duration::from_secs(1);
                while self.open > 0 && Instant::now() < deadline {
                    match self.events.recv_timeout(Duration::from_millis(20)) {
                        Ok(Event::Line(p, line)) => self.line(p, line)?,
                        Ok(Event::Closed(_)) => self.open -= 1,
                        Err(_) => {}
                    }
                }
                return Ok(());
            }
        }
    }

    /// Reads what process `p` still wrote before it ended (its error report, if any).
    fn drain_output(&mut self, p: usize) -> Result<(), LaunchError> {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match self.events.recv_timeout(Duration::from_millis(20)) {
                Ok(Event::Line(q, line)) => self.line(q, line)?,
                Ok(Event::Closed(q)) => {
                    self.open = self.open.saturating_sub(1);
                    if q == p {
                        return Ok(());
                    }
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.kill_all();
    }
}
