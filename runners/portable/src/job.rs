//! The Job API client: prepares the pipeline on a Beam job service, stages artifacts when
//! asked, runs it, follows its state and messages, cancels it; behind a [`ThreadJob`].

use std::sync::Arc;
use std::time::Duration;

use beamline_engine::job::{JobControl, ThreadJob};
use beamline_engine::runner::JobContext;
use beamline_engine::EngineError;
use beamline_proto::job_management as jm;
use beamline_proto::prost_types::{value::Kind, Struct, Value};
use jm::artifact_staging_service_client::ArtifactStagingServiceClient;
use jm::job_service_client::JobServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::grpc::{connect, runtime, status_text, MAX_MESSAGE};
use crate::harness::HarnessContext;
use crate::worker_pool::WorkerPool;
use crate::{submit, Error, PortableOptions, Result};

/// How long a cancelled job may take to reach a final state before we stop waiting.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// Starts the job: a thread that serves the worker pool, submits, and follows the job.
pub(crate) fn start(
    pipeline: &[u8],
    job: JobContext,
    options: PortableOptions,
) -> Result<ThreadJob, EngineError> {
    let control = JobControl::default();
    let pipeline = pipeline.to_vec();
    let cleanup = job.cleanup.clone();
    let body = move |control: &JobControl| -> Result<(), EngineError> {
        let harness =
            HarnessContext::new(job.functions.clone(), control.clone()).with_pipeline(&pipeline);
        let pool = WorkerPool::serve(&options.worker_address, harness.clone())?;
        let submitted = submit::for_submission(&pipeline, pool.address())?;
        let outcome = runtime().block_on(run_job(submitted, &job, &options, control));
        pool.shutdown();
        if control.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        match outcome {
            Ok(()) => Ok(()),
            // The harness's own error names the transform exactly as the local runner
            // would; the service's text is what it made of it.
            Err(e) => Err(harness.first_error().unwrap_or_else(|| e.into())),
        }
    };
    let on_failure = move || {
        for dir in &cleanup {
            let _ = std::fs::remove_dir_all(dir);
        }
    };
    ThreadJob::spawn("portable", control, body, on_failure)
}

/// The pipeline options as Beam's Job API carries them: `beam:option:NAME:v1` keys.
pub fn pipeline_options(job: &JobContext) -> Struct {
    let mut fields = std::collections::BTreeMap::new();
    for (name, value) in &job.options {
        let key = format!("beam:option:{name}:v1");
        fields.insert(
            key,
            Value {
                kind: Some(Kind::StringValue(value.clone())),
            },
        );
    }
    Struct { fields }
}

/// `PrepareJobRequest` with the pipeline as the bytes it is (field for field Beam's
/// message): what Beamline does not declare in it reaches the service.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPrepareJobRequest {
    #[prost(bytes = "vec", tag = "1")]
    pipeline: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pipeline_options: Option<Struct>,
    #[prost(string, tag = "3")]
    job_name: String,
}

/// Calls JobService/Prepare with the pipeline's bytes.
async fn prepare(
    channel: Channel,
    request: RawPrepareJobRequest,
) -> std::result::Result<jm::PrepareJobResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/org.apache.beam.model.job_management.v1.JobService/Prepare",
    );
    let codec = tonic_prost::ProstCodec::<RawPrepareJobRequest, jm::PrepareJobResponse>::default();
    grpc.unary(tonic::Request::new(request), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

async fn run_job(
    pipeline: Vec<u8>,
    job: &JobContext,
    options: &PortableOptions,
    control: &JobControl,
) -> Result<()> {
    let channel = connect(
        &options.job_endpoint,
        "Beam job service",
        options.connect_timeout,
    )
    .await?;
    let mut client = JobServiceClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let prepared = prepare(
        channel,
        RawPrepareJobRequest {
            pipeline,
            pipeline_options: Some(pipeline_options(job)),
            job_name: format!("beamline-{}", std::process::id()),
        },
    )
    .await
    .map_err(|s| Error::Call(format!("Prepare: {}", status_text(&s))))?;
    if let Some(endpoint) = prepared
        .artifact_staging_endpoint
        .as_ref()
        .filter(|e| !e.url.is_empty())
    {
        stage_artifacts(&endpoint.url, &prepared.staging_session_token, options).await?;
    }
    let job_id = client
        .run(jm::RunJobRequest {
            preparation_id: prepared.preparation_id.clone(),
            retrieval_token: prepared.staging_session_token.clone(),
        })
        .await
        .map_err(|s| Error::Call(format!("Run: {}", status_text(&s))))?
        .into_inner()
        .job_id;
    follow(&mut client, &job_id, control).await
}

/// Answers the service's artifact requests: Beamline's environment has no dependencies
/// to stage (the code is this binary), so every resolve returns the artifacts unchanged.
async fn stage_artifacts(url: &str, token: &str, options: &PortableOptions) -> Result<()> {
    let channel = connect(url, "artifact staging service", options.connect_timeout).await?;
    let mut client = ArtifactStagingServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let send = |m: jm::ArtifactResponseWrapper| {
        let tx = tx.clone();
        async move {
            tx.send(m)
                .await
                .map_err(|_| Error::Protocol("artifact staging stream closed".into()))
        }
    };
    send(jm::ArtifactResponseWrapper {
        staging_token: token.into(),
        ..Default::default()
    })
    .await?;
    let mut requests = client
        .reverse_artifact_retrieval_service(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| Error::Call(format!("artifact staging: {}", status_text(&s))))?
        .into_inner();
    while let Some(request) = requests.next().await {
        let request =
            request.map_err(|s| Error::Call(format!("artifact staging: {}", status_text(&s))))?;
        use jm::artifact_request_wrapper::Request;
        use jm::artifact_response_wrapper::Response;
        let response = match request.request {
            Some(Request::ResolveArtifact(r)) => {
                Response::ResolveArtifactResponse(jm::ResolveArtifactsResponse {
                    replacements: r.artifacts,
                })
            }
            Some(Request::GetArtifact(r)) => {
                return Err(Error::Protocol(format!(
                    "the job service asked for artifact {:?}, but Beamline stages none",
                    r.artifact.map(|a| a.type_urn)
                )))
            }
            None => continue,
        };
        send(jm::ArtifactResponseWrapper {
            staging_token: token.into(),
            is_last: true,
            response: Some(response),
        })
        .await?;
    }
    Ok(())
}

fn is_final(state: jm::job_state::Enum) -> bool {
    use jm::job_state::Enum as S;
    matches!(
        state,
        S::Done | S::Failed | S::Cancelled | S::Drained | S::Updated
    )
}

/// Follows the job's message stream (state changes and messages) until a final state;
/// cancels it on the service when the handle is cancelled.
async fn follow(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
    control: &JobControl,
) -> Result<()> {
    use jm::job_message::MessageImportance as Importance;
    use jm::job_state::Enum as S;
    let mut stream = client
        .get_message_stream(jm::JobMessagesRequest {
            job_id: job_id.into(),
        })
        .await
        .map_err(|s| Error::Call(format!("GetMessageStream: {}", status_text(&s))))?
        .into_inner();
    let errors: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut cancel_sent: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            item = stream.next() => {
                let Some(item) = item else {
                    // The stream ended without a final state: ask once more.
                    let state = client
                        .get_state(jm::GetJobStateRequest { job_id: job_id.into() })
                        .await
                        .map_err(|s| Error::Call(format!("GetState: {}", status_text(&s))))?
                        .into_inner()
                        .state();
                    return outcome(state, &errors.lock().expect("errors"));
                };
                // A broken stream is most often a job service that went away.
                let item = item.map_err(|s| {
                    Error::Call(format!(
                        "lost the Beam job service's messages for job {job_id}: {}",
                        status_text(&s)
                    ))
                })?;
                match item.response {
                    Some(jm::job_messages_response::Response::MessageResponse(m)) => {
                        let importance = m.importance();
                        if importance == Importance::JobMessageError {
                            errors.lock().expect("errors").push(m.message_text.clone());
                        }
                        if importance >= Importance::JobMessageWarning {
                            tracing::warn!("beam job service: {}", m.message_text.trim_end());
                        }
                    }
                    Some(jm::job_messages_response::Response::StateResponse(s)) => {
                        let state = s.state();
                        if is_final(state) {
                            return outcome(state, &errors.lock().expect("errors"));
                        }
                    }
                    None => {}
                }
            }
            _ = tick.tick() => {
                if control.is_cancelled() || control.is_draining() {
                    match cancel_sent {
                        None => {
                            cancel_sent = Some(tokio::time::Instant::now());
                            client
                                .cancel(jm::CancelJobRequest { job_id: job_id.into() })
                                .await
                                .map_err(|s| Error::Call(format!("Cancel: {}", status_text(&s))))?;
                        }
                        Some(at) if at.elapsed() > CANCEL_GRACE => {
                            return outcome(S::Cancelled, &[]);
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

fn outcome(state: jm::job_state::Enum, errors: &[String]) -> Result<()> {
    use jm::job_state::Enum as S;
    match state {
        S::Done | S::Drained => Ok(()),
        S::Cancelled => Err(Error::Call("the job was cancelled".into())),
        other => Err(Error::JobFailed(if errors.is_empty() {
            format!("it ended in state {other:?}")
        } else {
            errors.join("\n")
        })),
    }
}
