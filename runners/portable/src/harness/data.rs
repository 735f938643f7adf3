//! The data streams: one bidirectional `BeamFnData` stream per endpoint (and named data
//! stream), shared by the bundles of a worker; what arrives is routed by instruction id.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use beamline_proto::fn_execution as fe;
use fe::beam_fn_data_client::BeamFnDataClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::CONNECT_TIMEOUT;
use crate::grpc::{connect, runtime, status_text, with_worker_id, MAX_MESSAGE};
use crate::{Error, Result};

/// Something the engine sent for a bundle.
#[derive(Debug)]
pub enum Inbound {
    /// Encoded elements for the runner-source transform `transform_id`.
    Data {
        /// The transform the data is for.
        transform_id: String,
        /// Encoded elements.
        data: Vec<u8>,
        /// No more data for this transform in this bundle.
        is_last: bool,
    },
    /// Encoded timers for a transform's timer family.
    Timers {
        /// The transform the timers are for.
        transform_id: String,
        /// The timer family.
        family: String,
        /// Encoded timers.
        data: Vec<u8>,
        /// No more timers of this family in this bundle.
        is_last: bool,
    },
    /// The stream ended: why.
    Closed(String),
}

enum Inbox {
    /// Arrived before the bundle started reading.
    Buffered(Vec<Inbound>),
    Open(std_mpsc::Sender<Inbound>),
}

#[derive(Default)]
struct Routes {
    inboxes: HashMap<String, Inbox>,
    closed: Option<String>,
}

/// One data stream.
#[derive(Debug)]
pub struct DataChannel {
    out: mpsc::Sender<fe::Elements>,
    routes: Arc<Mutex<Routes>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("instructions", &self.inboxes.len())
            .field("closed", &self.closed)
            .finish()
    }
}

fn deliver(routes: &mut Routes, instruction_id: &str, item: Inbound) {
    match routes
        .inboxes
        .entry(instruction_id.to_owned())
        .or_insert_with(|| Inbox::Buffered(Vec::new()))
    {
        Inbox::Buffered(items) => items.push(item),
        Inbox::Open(tx) => {
            let _ = tx.send(item);
        }
    }
}

impl DataChannel {
    /// Starts receiving for `instruction_id` (what arrived earlier comes first).
    pub fn register(&self, instruction_id: &str) -> std_mpsc::Receiver<Inbound> {
        let (tx, rx) = std_mpsc::channel();
        let mut routes = self.routes.lock().expect("routes");
        if let Some(Inbox::Buffered(items)) = routes.inboxes.remove(instruction_id) {
            for item in items {
                let _ = tx.send(item);
            }
        }
        if let Some(why) = &routes.closed {
            let _ = tx.send(Inbound::Closed(why.clone()));
        }
        routes
            .inboxes
            .insert(instruction_id.to_owned(), Inbox::Open(tx));
        rx
    }

    /// Stops routing for a finished bundle.
    pub fn unregister(&self, instruction_id: &str) {
        self.routes
            .lock()
            .expect("routes")
            .inboxes
            .remove(instruction_id);
    }

    /// Sends elements to the engine (blocks while the stream is full).
    ///
    /// # Errors
    /// When the stream has ended.
    pub fn send(&self, elements: fe::Elements) -> Result<()> {
        self.out.blocking_send(elements).map_err(|_| {
            let why = self.routes.lock().expect("routes").closed.clone();
            Error::Call(format!(
                "data stream closed: {}",
                why.unwrap_or_else(|| "by the engine".into())
            ))
        })
    }

    fn close(&self, why: &str) {
        let mut routes = self.routes.lock().expect("routes");
        close_routes(&mut routes, why);
    }
}

fn close_routes(routes: &mut Routes, why: &str) {
    if routes.closed.is_none() {
        routes.closed = Some(why.to_owned());
    }
    for inbox in routes.inboxes.values() {
        if let Inbox::Open(tx) = inbox {
            let _ = tx.send(Inbound::Closed(why.to_owned()));
        }
    }
}

/// The data streams of one worker, opened on first use.
#[derive(Debug)]
pub struct DataPlanes {
    worker_id: String,
    channels: Mutex<HashMap<(String, String), Arc<DataChannel>>>,
}

impl DataPlanes {
    pub(crate) fn new(worker_id: String) -> Self {
        DataPlanes {
            worker_id,
            channels: Mutex::default(),
        }
    }

    /// The stream to `url` (with the named `stream_id`, or the default one), opening it.
    ///
    /// # Errors
    /// The data service cannot be reached.
    pub fn channel(&self, url: &str, stream_id: &str) -> Result<Arc<DataChannel>> {
        let key = (url.to_owned(), stream_id.to_owned());
        let mut channels = self.channels.lock().expect("channels");
        if let Some(c) = channels.get(&key) {
            return Ok(c.clone());
        }
        let c = Arc::new(runtime().block_on(open(url, stream_id, &self.worker_id))?);
        channels.insert(key, c.clone());
        Ok(c)
    }

    pub(crate) fn close_all(&self, why: &str) {
        for c in self.channels.lock().expect("channels").values() {
            c.close(why);
        }
    }
}

async fn open(url: &str, stream_id: &str, worker_id: &str) -> Result<DataChannel> {
    let channel = connect(url, "Beam data service", CONNECT_TIMEOUT).await?;
    let mut client = BeamFnDataClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (out, rx) = mpsc::channel::<fe::Elements>(64);
    let mut request = with_worker_id(tokio_stream::wrappers::ReceiverStream::new(rx), worker_id);
    if !stream_id.is_empty() {
        if let Ok(v) = stream_id.parse() {
            request.metadata_mut().insert("data_stream_id", v);
        }
    }
    let routes: Arc<Mutex<Routes>> = Arc::default();
    let reader = routes.clone();
    let url = url.to_owned();
    // Beam's services answer a stream's headers with its first message: the call is
    // awaited here, while output already queues up.
    tokio::spawn(async move {
        let why = match client.data(request).await {
            Err(s) => format!("data stream to {url}: {}", status_text(&s)),
            Ok(response) => route(response.into_inner(), &reader).await,
        };
        close_routes(&mut reader.lock().expect("routes"), &why);
    });
    Ok(DataChannel { out, routes })
}

/// Routes what arrives until the stream ends; returns why it ended.
async fn route(mut inbound: tonic::Streaming<fe::Elements>, reader: &Mutex<Routes>) -> String {
    loop {
        match inbound.next().await {
            Some(Ok(elements)) => {
                let mut routes = reader.lock().expect("routes");
                for d in elements.data {
                    let item = Inbound::Data {
                        transform_id: d.transform_id,
                        data: d.data,
                        is_last: d.is_last,
                    };
                    deliver(&mut routes, &d.instruction_id, item);
                }
                for t in elements.timers {
                    let item = Inbound::Timers {
                        transform_id: t.transform_id,
                        family: t.timer_family_id,
                        data: t.timers,
                        is_last: t.is_last,
                    };
                    deliver(&mut routes, &t.instruction_id, item);
                }
            }
            Some(Err(s)) => return format!("data stream failed: {}", status_text(&s)),
            None => return "the engine closed the data stream".to_owned(),
        }
    }
}
