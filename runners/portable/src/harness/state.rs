//! The state stream: side inputs and user state read and written through the engine's
//! `BeamFnState` service, one request at a time per caller, answers matched by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beamline_proto::fn_execution as fe;
use fe::beam_fn_state_client::BeamFnStateClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::CONNECT_TIMEOUT;
use crate::grpc::{connect, runtime, status_text, with_worker_id, MAX_MESSAGE};
use crate::{Error, Result};

/// How long one state request may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

type Pending = Arc<
    Mutex<(
        HashMap<String, std_mpsc::Sender<fe::StateResponse>>,
        Option<String>,
    )>,
>;

/// One state stream.
#[derive(Debug)]
pub struct StateChannel {
    out: mpsc::Sender<fe::StateRequest>,
    pending: Pending,
    next: AtomicU64,
}

impl StateChannel {
    /// Sends `request` (its id is set here) and waits for the answer.
    ///
    /// # Errors
    /// The stream ended, no answer in time, or the engine answered with an error.
    pub fn call(&self, mut request: fe::StateRequest) -> Result<fe::StateResponse> {
        let id = format!("s{}", self.next.fetch_add(1, Ordering::Relaxed));
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!("[harness] state {id}: {request:?}");
        }
        request.id = id.clone();
        let (tx, rx) = std_mpsc::channel();
        {
            let mut pending = self.pending.lock().expect("pending");
            if let Some(why) = &pending.1 {
                return Err(Error::Call(format!("state stream closed: {why}")));
            }
            pending.0.insert(id.clone(), tx);
        }
        if self.out.blocking_send(request).is_err() {
            return Err(Error::Call("state stream closed".into()));
        }
        let response = match rx.recv_timeout(ANSWER_TIMEOUT) {
            Ok(r) => r,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                self.pending.lock().expect("pending").0.remove(&id);
                return Err(Error::Call(format!(
                    "no answer from the state service within {ANSWER_TIMEOUT:?}"
                )));
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                let why = self.pending.lock().expect("pending").1.clone();
                return Err(Error::Call(format!(
                    "state stream closed: {}",
                    why.unwrap_or_default()
                )));
            }
        };
        if !response.error.is_empty() {
            return Err(Error::Call(format!("state service: {}", response.error)));
        }
        Ok(response)
    }

    /// Reads everything under `key` (following continuation tokens).
    ///
    /// # Errors
    /// As [`StateChannel::call`]; an answer that is not a read.
    pub fn get_all(&self, instruction_id: &str, key: &fe::StateKey) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let mut token = Vec::new();
        loop {
            let response = self.call(fe::StateRequest {
                id: String::new(),
                instruction_id: instruction_id.into(),
                state_key: Some(key.clone()),
                request: Some(fe::state_request::Request::Get(fe::StateGetRequest {
                    continuation_token: token,
                })),
            })?;
            let Some(fe::state_response::Response::Get(get)) = response.response else {
                return Err(Error::Protocol("a state read answered with no data".into()));
            };
            data.extend_from_slice(&get.data);
            if get.continuation_token.is_empty() {
                return Ok(data);
            }
            token = get.continuation_token;
        }
    }
}

/// The state streams of one worker, opened on first use.
#[derive(Debug)]
pub struct StatePlanes {
    worker_id: String,
    channels: Mutex<HashMap<String, Arc<StateChannel>>>,
}

impl StatePlanes {
    pub(crate) fn new(worker_id: String) -> Self {
        StatePlanes {
            worker_id,
            channels: Mutex::default(),
        }
    }

    /// The state stream to `url`, opening it.
    ///
    /// # Errors
    /// The state service cannot be reached.
    pub fn channel(&self, url: &str) -> Result<Arc<StateChannel>> {
        let mut channels = self.channels.lock().expect("channels");
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let c = Arc::new(runtime().block_on(open(url, &self.worker_id))?);
        channels.insert(url.to_owned(), c.clone());
        Ok(c)
    }

    pub(crate) fn close_all(&self, why: &str) {
        for c in self.channels.lock().expect("channels").values() {
            let mut pending = c.pending.lock().expect("pending");
            pending.1.get_or_insert_with(|| why.to_owned());
            pending.0.clear();
        }
    }
}

async fn open(url: &str, worker_id: &str) -> Result<StateChannel> {
    let channel = connect(url, "Beam state service", CONNECT_TIMEOUT).await?;
    let mut client = BeamFnStateClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (out, rx) = mpsc::channel::<fe::StateRequest>(64);
    let request = with_worker_id(tokio_stream::wrappers::ReceiverStream::new(rx), worker_id);
    let pending: Pending = Arc::default();
    let reader = pending.clone();
    let url = url.to_owned();
    // Beam's services answer a stream's headers with its first message: the call is
    // awaited here, while requests already queue up.
    tokio::spawn(async move {
        let why = match client.state(request).await {
            Err(s) => format!("state stream to {url}: {}", status_text(&s)),
            Ok(response) => read_answers(response.into_inner(), &reader).await,
        };
        let mut pending = reader.lock().expect("pending");
        pending.1 = Some(why);
        // Dropping the senders wakes every waiter.
        pending.0.clear();
    });
    Ok(StateChannel {
        out,
        pending,
        next: AtomicU64::new(0),
    })
}

async fn read_answers(
    mut inbound: tonic::Streaming<fe::StateResponse>,
    reader: &Pending,
) -> String {
    loop {
        match inbound.next().await {
            Some(Ok(response)) => {
                let waiter = reader.lock().expect("pending").0.remove(&response.id);
                if let Some(tx) = waiter {
                    let _ = tx.send(response);
                }
            }
            Some(Err(s)) => return format!("state stream failed: {}", status_text(&s)),
            None => return "the engine closed the state stream".to_owned(),
        }
    }
}
