//! gRPC plumbing shared by the Job API client and the SDK harness: one runtime, channels
//! with connect deadlines, message size limits, and the `worker_id` metadata.

use std::sync::OnceLock;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::{Error, Result};

/// Largest gRPC message sent or accepted: Beam's services send bundles and state far past
/// tonic's 4 MiB default.
pub const MAX_MESSAGE: usize = 512 << 20;

/// The process's gRPC runtime (the harness's streams, the worker pool, the job client).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("beamline-grpc")
            .enable_all()
            .build()
            .expect("the gRPC runtime starts")
    })
}

/// `host:port` as Beam writes endpoints, or a full URL, as a URI tonic accepts.
pub(crate) fn uri(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// Connects to `url`, failing after `timeout` when nothing answers.
pub(crate) async fn connect(url: &str, what: &str, timeout: Duration) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(uri(url))
        .map_err(|e| Error::Connect(format!("{what} at '{url}': bad address: {e}")))?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(Error::Connect(format!(
            "{what} at '{url}': {}",
            error_chain(&e)
        ))),
        Err(_) => Err(Error::Connect(format!(
            "{what} at '{url}': no answer within {timeout:?}"
        ))),
    }
}

/// A request carrying the `worker_id` metadata Beam's services route by.
pub(crate) fn with_worker_id<T>(message: T, worker_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(v) = worker_id.parse() {
        request.metadata_mut().insert("worker_id", v);
    }
    request
}

/// An error and its causes on one line (tonic's transport errors hide the reason in
/// their sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// A gRPC status as one line: the code and the service's message.
pub(crate) fn status_text(s: &tonic::Status) -> String {
    if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{:?}: {}", s.code(), s.message())
    }
}
