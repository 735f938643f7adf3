//! The SDK's error type.

use beamline_engine::EngineError;

/// `Result` with the SDK's [`Error`] as default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors building or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job failed while running.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `--runner` named a runner not linked into this binary.
    #[error("unknown runner '{name}'; available runners: {available}")]
    UnknownRunner {
        /// The requested name.
        name: String,
        /// Comma-separated names of the runners that are available.
        available: String,
    },
    /// A value could not be converted to the Rust type a transform expects.
    #[error("type mismatch: expected {expected}, got {found}")]
    TypeMismatch {
        /// The Rust type.
        expected: &'static str,
        /// What arrived.
        found: String,
    },
    /// Pipeline construction was invalid (duplicate names, bad arguments...).
    #[error("invalid pipeline: {0}")]
    Construction(String),
    /// A pipeline option was malformed.
    #[error("invalid option --{name}: {reason}")]
    Option {
        /// Option name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The command line names an option nobody declared, or gives one a bad value; the
    /// message is one line saying which and what to do.
    #[error("{0}")]
    Usage(String),
    /// A worker process failed.
    #[error("worker process failed: {0}")]
    Worker(String),
    /// Arrow could not encode or decode a record batch.
    #[error("arrow: {0}")]
    Arrow(String),
    /// File or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}
