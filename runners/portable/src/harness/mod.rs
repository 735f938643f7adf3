//! The SDK harness: a worker the Beam engine starts through the worker pool. It connects
//! to the engine's control service, registers the fused stages it is sent
//! (ProcessBundleDescriptors) and runs their bundles with Beamline's operators, reading and
//! writing elements over the data service and side inputs over the state service.
//!
//! - [`data`]: the data streams (elements and timers, by instruction and transform).
//! - [`state`]: the state stream (side inputs, user state), request by request.
//! - [`logging`]: the logging stream (bundle failures, in the engine's logs).
//! - [`monitoring`]: user metrics as the MonitoringInfos a bundle reports.
//! - [`user_state`]: stateful ParDos' state through the state API, their timers in Beam's
//!   timer encoding.
//! - [`stage`]: a descriptor as operators, and one bundle run through them.
//! - [`phases`]: what the Fn API adds to Beamline's operators: the lifted combine's phases,
//!   side inputs fetched per window, Beam's identity DoFn.

pub mod data;
pub mod logging;
pub mod monitoring;
pub mod phases;
pub mod progress;
pub mod stage;
pub mod state;
pub mod user_state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beamline_engine::job::JobControl;
use beamline_engine::registry::FnRegistry;
use beamline_engine::EngineError;
use beamline_proto::fn_execution as fe;
use fe::beam_fn_control_client::BeamFnControlClient;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use crate::grpc::{connect, runtime, status_text, with_worker_id, MAX_MESSAGE};
use crate::{Error, Result};

/// What every harness of a job shares: the program's functions, the job's control
/// (metrics, cancellation), and the first error a bundle met.
#[derive(Clone, Debug)]
pub struct HarnessContext {
    functions: Arc<FnRegistry>,
    control: JobControl,
    /// The stages the engine ran here, with their counts (the job's live progress).
    live: Arc<progress::LiveStages>,
    first_error: Arc<Mutex<Option<Arc<EngineError>>>>,
}

impl HarnessContext {
    /// A context for harnesses resolving functions in `functions` and reporting to
    /// `control`.
    pub fn new(functions: Arc<FnRegistry>, control: JobControl) -> Self {
        HarnessContext {
            functions,
            live: Arc::new(progress::LiveStages::new(
                control.clone(),
                progress::Upstream::new(),
            )),
            control,
            first_error: Arc::default(),
        }
    }

    /// The same context, its live progress joining stages through `pipeline` (the
    /// encoded pipeline proto the engine runs).
    pub fn with_pipeline(mut self, pipeline: &[u8]) -> Self {
        self.live = Arc::new(progress::LiveStages::new(
            self.control.clone(),
            progress::upstream_of(pipeline),
        ));
        self
    }

    /// Keeps `e` when it is the job's first error.
    pub fn record_error(&self, e: EngineError) {
        let mut first = self.first_error.lock().expect("first error");
        if first.is_none() {
            *first = Some(Arc::new(e));
        }
    }

    /// The first error a bundle of this job met, as the local runner would report it.
    pub fn first_error(&self) -> Option<EngineError> {
        self.first_error
            .lock()
            .expect("first error")
            .clone()
            .map(EngineError::Failed)
    }
}

/// One worker: its control client, registered descriptors, data and state streams.
pub(crate) struct Worker {
    pub(crate) context: HarnessContext,
    descriptors: Mutex<HashMap<String, Arc<stage::StageDef>>>,
    pub(crate) data: data::DataPlanes,
    pub(crate) state: state::StatePlanes,
    logger: logging::Logger,
    client: BeamFnControlClient<Channel>,
}

/// How long connecting to one of the engine's services may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a harness until the engine closes its control stream or the worker is stopped.
///
/// # Errors
/// The control service cannot be reached, or its stream fails.
pub(crate) async fn run(
    context: HarnessContext,
    worker_id: String,
    control_url: String,
    logging_url: Option<String>,
    mut pool_stop: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let channel = connect(&control_url, "Beam control service", CONNECT_TIMEOUT).await?;
    let client = BeamFnControlClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<fe::InstructionResponse>(256);
    let mut inbound = client
        .clone()
        .control(with_worker_id(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &worker_id,
        ))
        .await
        .map_err(|s| Error::Call(format!("control stream: {}", status_text(&s))))?
        .into_inner();
    let worker = Arc::new(Worker {
        context,
        descriptors: Mutex::default(),
        data: data::DataPlanes::new(worker_id.clone()),
        logger: logging::Logger::open(logging_url, &worker_id),
        state: state::StatePlanes::new(worker_id),
        client,
    });
    let result = loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(request)) => handle(&worker, request, &tx).await,
                Ok(None) => break Ok(()),
                Err(s) => break Err(Error::Call(format!("control stream: {}", status_text(&s)))),
            },
            _ = pool_stop.changed() => break Ok(()),
            _ = stopped.changed() => break Ok(()),
        }
    };
    worker.data.close_all("the SDK worker stopped");
    worker.state.close_all("the SDK worker stopped");
    result
}

async fn handle(
    worker: &Arc<Worker>,
    request: fe::InstructionRequest,
    tx: &mpsc::Sender<fe::InstructionResponse>,
) {
    use fe::instruction_request::Request as Rq;
    use fe::instruction_response::Response as Rs;
    let id = request.instruction_id.clone();
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            "[harness] {id}: {:?}",
            request.request.as_ref().map(|r| match r {
                Rq::Register(d) => format!(
                    "register {:?}",
                    d.process_bundle_descriptor
                        .iter()
                        .map(|d| (
                            d.id.clone(),
                            d.transforms
                                .values()
                                .map(|t| (
                                    t.unique_name.clone(),
                                    t.spec.as_ref().map(|s| s.urn.clone())
                                ))
                                .collect::<Vec<_>>()
                        ))
                        .collect::<Vec<_>>()
                ),
                other => format!("{other:?}").chars().take(300).collect(),
            })
        );
    }
    let reply = move |response: std::result::Result<Rs, String>| reply_to(&id, response);
    let response = match request.request {
        Some(Rq::Register(r)) => {
            let mut result = Ok(Rs::Register(fe::RegisterResponse {}));
            for d in r.process_bundle_descriptor {
                if let Err(e) = worker.register(d) {
                    result = Err(e);
                }
            }
            reply(result)
        }
        Some(Rq::ProcessBundle(pb)) => {
            // Bundles run user code: on a thread of their own, not on the runtime.
            let (worker, bundle_tx) = (worker.clone(), tx.clone());
            let id = request.instruction_id.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("beamline-bundle-{id}"))
                .spawn(move || {
                    let result = worker.process_bundle(&id, &pb).map(Rs::ProcessBundle);
                    let _ = bundle_tx.blocking_send(reply(result));
                });
            if let Err(e) = spawned {
                let _ = tx
                    .send(fe::InstructionResponse {
                        instruction_id: request.instruction_id,
                        error: format!("cannot start a bundle thread: {e}"),
                        response: None,
                    })
                    .await;
            }
            return;
        }
        Some(Rq::ProcessBundleProgress(_)) => reply(Ok(Rs::ProcessBundleProgress(
            fe::ProcessBundleProgressResponse::default(),
        ))),
        // Bundles are not split: the whole input stays the primary.
        Some(Rq::ProcessBundleSplit(_)) => reply(Ok(Rs::ProcessBundleSplit(
            fe::ProcessBundleSplitResponse::default(),
        ))),
        Some(Rq::FinalizeBundle(_)) => reply(Ok(Rs::FinalizeBundle(fe::FinalizeBundleResponse {}))),
        Some(Rq::MonitoringInfos(_)) => reply(Ok(Rs::MonitoringInfos(
            fe::MonitoringInfosMetadataResponse::default(),
        ))),
        Some(Rq::HarnessMonitoringInfos(_)) => reply(Ok(Rs::HarnessMonitoringInfos(
            fe::HarnessMonitoringInfosResponse::default(),
        ))),
        None => reply(Err(
            "an instruction this SDK harness does not know (newer Fn API?)".into(),
        )),
    };
    let _ = tx.send(response).await;
}

fn reply_to(
    id: &str,
    response: std::result::Result<fe::instruction_response::Response, String>,
) -> fe::InstructionResponse {
    match response {
        Ok(r) => fe::InstructionResponse {
            instruction_id: id.into(),
            error: String::new(),
            response: Some(r),
        },
        Err(error) => fe::InstructionResponse {
            instruction_id: id.into(),
            error,
            response: None,
        },
    }
}

impl Worker {
    fn register(&self, d: fe::ProcessBundleDescriptor) -> std::result::Result<(), String> {
        let id = d.id.clone();
        let def = stage::StageDef::new(d, &self.context.functions).map_err(|e| {
            let text = e.to_string();
            self.context.record_error(e);
            text
        })?;
        self.descriptors
            .lock()
            .expect("descriptors")
            .insert(id, Arc::new(def));
        Ok(())
    }

    fn descriptor(&self, id: &str) -> std::result::Result<Arc<stage::StageDef>, String> {
        if let Some(d) = self.descriptors.lock().expect("descriptors").get(id) {
            return Ok(d.clone());
        }
        let mut client = self.client.clone();
        let request = fe::GetProcessBundleDescriptorRequest {
            process_bundle_descriptor_id: id.into(),
        };
        let d = runtime()
            .block_on(client.get_process_bundle_descriptor(request))
            .map_err(|s| format!("GetProcessBundleDescriptor {id}: {}", status_text(&s)))?
            .into_inner();
        self.register(d)?;
        self.descriptors
            .lock()
            .expect("descriptors")
            .get(id)
            .cloned()
            .ok_or_else(|| format!("descriptor {id} was not registered"))
    }

    fn process_bundle(
        &self,
        instruction_id: &str,
        request: &fe::ProcessBundleRequest,
    ) -> std::result::Result<fe::ProcessBundleResponse, String> {
        let def = self.descriptor(&request.process_bundle_descriptor_id)?;
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        if debug {
            tracing::debug!("[harness] {instruction_id}: running {def:?}");
        }
        let r = stage::run::run_bundle(self, &def, instruction_id, request);
        if debug {
            tracing::debug!("[harness] {instruction_id}: done {:?}", r.as_ref().err());
        }
        match r {
            Ok(response) => Ok(response),
            Err(e) => {
                let text = e.to_string();
                self.logger.log(
                    logging::Severity::Error,
                    format!("bundle failed: {text}"),
                    instruction_id,
                );
                self.context.record_error(e);
                Err(text)
            }
        }
    }
}
