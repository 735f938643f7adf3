//! The job UI's web server: the static app (shipped in the crate) and its JSON API, over
//! the jobs of this process (`--ui`) or of the job directory (`beamline ui`).
//!
//! API: `GET /api/jobs` (`{"jobs": [view...]}`), `GET /api/jobs/ID` (one view),
//! `POST /api/jobs/ID/cancel` (202 when asked, 404 unknown, 409 already ended).

use crate::directory;
use crate::error::{Error, Result};
use crate::view::JobView;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use beamline_engine::job::JobHandle;
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Default address of `--ui` without one (the next free port up to 20 further is taken
/// when it is busy).
pub const DEFAULT_UI_ADDR: &str = "127.0.0.1:8686";

const INDEX: &str = include_str!("assets/index.html");
const APP: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// Where a UI's jobs come from.
pub trait JobSource: Send + Sync + 'static {
    /// Every job's view, newest first.
    fn list(&self) -> Vec<serde_json::Value>;
    /// One job's view.
    fn get(&self, id: &str) -> Option<serde_json::Value>;
    /// Asks job `id` to cancel.
    fn cancel(&self, id: &str) -> Cancel;
}

/// What a cancel request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// The job was asked to stop.
    Requested,
    /// No such job.
    NotFound,
    /// The job had already ended.
    Ended,
}

/// A job of this process: its view (kept current by its monitor) and its handle.
type Entry = (Arc<Mutex<JobView>>, Arc<dyn JobHandle>);

/// The jobs of this process that run with `--ui`.
#[derive(Default)]
pub struct InProcessJobs {
    jobs: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for InProcessJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessJobs")
            .field("jobs", &self.jobs.lock().len())
            .finish()
    }
}

impl InProcessJobs {
    /// Adds a job: its view (kept up to date by its monitor) and its handle.
    pub fn add(&self, view: Arc<Mutex<JobView>>, handle: Arc<dyn JobHandle>) {
        self.jobs.lock().push((view, handle));
    }
}

fn to_json(v: &JobView) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

impl JobSource for InProcessJobs {
    fn list(&self) -> Vec<serde_json::Value> {
        let mut v: Vec<_> = self
            .jobs
            .lock()
            .iter()
            .map(|(v, _)| to_json(&v.lock()))
            .collect();
        v.reverse();
        v
    }

    fn get(&self, id: &str) -> Option<serde_json::Value> {
        let jobs = self.jobs.lock();
        let (v, _) = jobs.iter().find(|(v, _)| v.lock().id == id)?;
        let json = to_json(&v.lock());
        Some(json)
    }

    fn cancel(&self, id: &str) -> Cancel {
        let jobs = self.jobs.lock();
        let Some((_, h)) = jobs.iter().find(|(v, _)| v.lock().id == id) else {
            return Cancel::NotFound;
        };
        if h.state().is_terminal() {
            return Cancel::Ended;
        }
        tracing::info!(job = id, "cancel requested from the job UI");
        h.cancel();
        Cancel::Requested
    }
}

/// The jobs published in a job directory (by processes started with `--ui`).
#[derive(Debug)]
pub struct DirectoryJobs {
    dir: std::path::PathBuf,
}

impl DirectoryJobs {
    /// The jobs of `dir`.
    pub fn new(dir: std::path::PathBuf) -> Self {
        DirectoryJobs { dir }
    }
}

impl JobSource for DirectoryJobs {
    fn list(&self) -> Vec<serde_json::Value> {
        directory::list(&self.dir)
            .iter()
            .filter_map(|v| directory::raw(&self.dir, &v.id))
            .collect()
    }

    fn get(&self, id: &str) -> Option<serde_json::Value> {
        directory::raw(&self.dir, id)
    }

    fn cancel(&self, id: &str) -> Cancel {
        match directory::raw(&self.dir, id) {
            None => Cancel::NotFound,
            Some(v) if v["state"] != "RUNNING" => Cancel::Ended,
            Some(_) => match directory::request_cancel(&self.dir, id) {
                Ok(()) => Cancel::Requested,
                Err(_) => Cancel::NotFound,
            },
        }
    }
}

/// A running UI server.
#[derive(Debug)]
pub struct UiServer {
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UiServer {
    /// Serves the UI over `jobs` at `addr` (`HOST:PORT`, or a port alone on loopback).
    ///
    /// # Errors
    /// [`Error::Ui`] when the address is malformed or cannot be listened on.
    pub fn start(addr: &str, jobs: Arc<dyn JobSource>) -> Result<UiServer> {
        let listener = bind(addr)?;
        Self::on(listener, jobs)
    }

    fn on(listener: TcpListener, jobs: Arc<dyn JobSource>) -> Result<UiServer> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Ui(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Ui(e.to_string()))?;
        let app = router(jobs);
        let thread = std::thread::Builder::new()
            .name("beamline-ui".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("job UI: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            if let Err(e) = axum::serve(l, app).await {
                                tracing::error!("job UI stopped: {e}");
                            }
                        }
                        Err(e) => tracing::error!("job UI: {e}"),
                    }
                });
            })
            .map_err(|e| Error::Ui(format!("cannot start the server thread: {e}")))?;
        Ok(UiServer {
            addr,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of its page.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until the process ends.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Listens on `spec`: `true` (from a bare `--ui`) means [`DEFAULT_UI_ADDR`] or the next
/// free port; a port alone means loopback.
fn bind(spec: &str) -> Result<TcpListener> {
    let (text, fallback) = match spec {
        "" | "true" => (DEFAULT_UI_ADDR.to_string(), 20),
        p if p.parse::<u16>().is_ok() => (format!("127.0.0.1:{p}"), 0),
        a => (a.to_string(), 0),
    };
    let addr: SocketAddr = text.parse().map_err(|_| {
        Error::Ui(format!(
            "'{spec}' is not an address to serve the job UI on (HOST:PORT, or PORT)"
        ))
    })?;
    let mut last = None;
    for i in 0..=fallback {
        let mut a = addr;
        a.set_port(addr.port().saturating_add(i));
        match TcpListener::bind(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some((a, e)),
        }
    }
    let (a, e) = last.expect("tried at least once");
    Err(Error::Ui(format!("cannot listen on {a}: {e}")))
}

fn router(jobs: Arc<dyn JobSource>) -> Router {
    let asset = |body: &'static str, kind: &'static str| {
        move || async move { ([(header::CONTENT_TYPE, kind)], body) }
    };
    Router::new()
        .route("/", get(asset(INDEX, "text/html; charset=utf-8")))
        .route("/app.js", get(asset(APP, "text/javascript; charset=utf-8")))
        .route("/style.css", get(asset(STYLE, "text/css; charset=utf-8")))
        .route("/api/jobs", get(list))
        .route("/api/jobs/{id}", get(one))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .with_state(jobs)
}

async fn list(State(jobs): State<Arc<dyn JobSource>>) -> Response {
    Json(serde_json::json!({ "jobs": jobs.list() })).into_response()
}

async fn one(State(jobs): State<Arc<dyn JobSource>>, Path(id): Path<String>) -> Response {
    match jobs.get(&id) {
        Some(v) => Json(v).into_response(),
        None => not_found(&id),
    }
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no job '{id}'") })),
    )
        .into_response()
}

async fn cancel(State(jobs): State<Arc<dyn JobSource>>, Path(id): Path<String>) -> Response {
    match jobs.cancel(&id) {
        Cancel::Requested => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "cancel": "requested" })),
        )
            .into_response(),
        Cancel::NotFound => not_found(&id),
        Cancel::Ended => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": format!("job '{id}' already ended") })),
        )
            .into_response(),
    }
}

/// This process's UI servers, by the address asked for: the jobs of a program that runs
/// several pipelines with the same `--ui` share one page.
static SERVERS: Mutex<Vec<(String, Arc<InProcessJobs>, String)>> = Mutex::new(Vec::new());

/// The in-process jobs served at `spec` (started on first use); returns them and the
/// page's URL.
///
/// # Errors
/// As [`UiServer::start`].
pub fn in_process(spec: &str) -> Result<(Arc<InProcessJobs>, String)> {
    let mut servers = SERVERS.lock();
    if let Some((_, jobs, url)) = servers.iter().find(|(s, _, _)| s == spec) {
        return Ok((jobs.clone(), url.clone()));
    }
    let jobs = Arc::new(InProcessJobs::default());
    let server = UiServer::start(spec, jobs.clone())?;
    let url = server.url();
    // The server lives as long as the process: dropping it detaches its thread.
    drop(server);
    servers.push((spec.to_string(), jobs.clone(), url.clone()));
    Ok((jobs, url))
}
