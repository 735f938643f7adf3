//! The logging stream: what the harness reports to the engine's `BeamFnLogging` service
//! (bundle failures, so they appear in the engine's logs next to its own).

use beamline_proto::fn_execution as fe;
use beamline_proto::prost_types::Timestamp;
use fe::beam_fn_logging_client::BeamFnLoggingClient;
pub use fe::log_entry::severity::Enum as Severity;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::CONNECT_TIMEOUT;
use crate::grpc::{connect, with_worker_id, MAX_MESSAGE};

/// Sends log entries to the engine; a harness without a logging endpoint drops them.
#[derive(Debug, Clone, Default)]
pub struct Logger {
    tx: Option<mpsc::Sender<fe::log_entry::List>>,
}

impl Logger {
    /// Opens the logging stream to `url` (in the background: a service that is not there
    /// only loses the log).
    pub(crate) fn open(url: Option<String>, worker_id: &str) -> Logger {
        let Some(url) = url else {
            return Logger::default();
        };
        let (tx, rx) = mpsc::channel::<fe::log_entry::List>(256);
        let request = with_worker_id(tokio_stream::wrappers::ReceiverStream::new(rx), worker_id);
        tokio::spawn(async move {
            let Ok(channel) = connect(&url, "Beam logging service", CONNECT_TIMEOUT).await else {
                return;
            };
            let mut client = BeamFnLoggingClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            if let Ok(response) = client.logging(request).await {
                let mut controls = response.into_inner();
                while let Some(Ok(_)) = controls.next().await {}
            }
        });
        Logger { tx: Some(tx) }
    }

    /// Logs `message` for `instruction_id` (never blocks: a full stream drops it).
    pub fn log(&self, severity: Severity, message: String, instruction_id: &str) {
        let Some(tx) = &self.tx else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let entry = fe::LogEntry {
            severity: severity as i32,
            timestamp: Some(Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
            }),
            message,
            instruction_id: instruction_id.into(),
            log_location: "beamline.harness".into(),
            ..Default::default()
        };
        let _ = tx.try_send(fe::log_entry::List {
            log_entries: vec![entry],
        });
    }
}
