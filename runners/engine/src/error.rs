//! The engine's error type.

use crate::coder::CoderError;

/// An error raised by user code (a DoFn, CombineFn or function), boxed.
pub type UserError = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with [`EngineError`] as the default error.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can make a job fail inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// User code returned an error or panicked while running a transform.
    #[error("transform '{transform}' failed: {message}")]
    UserCode {
        /// Unique name of the transform whose code failed.
        transform: String,
        /// What went wrong (error text or panic message).
        message: String,
    },
    /// An element could not be encoded or decoded with its PCollection's coder.
    #[error("transform '{transform}': {source}")]
    Coder {
        /// Unique name of the transform that needed the coder.
        transform: String,
        /// The coder failure.
        #[source]
        source: CoderError,
    },
    /// A user function named in the pipeline is not available in this process.
    #[error("transform '{transform}': cannot resolve function '{function}': {reason}")]
    UnresolvedFunction {
        /// Unique name of the transform.
        transform: String,
        /// The function's id or registered name.
        function: String,
        /// Why it could not be resolved.
        reason: String,
    },
    /// The pipeline graph is malformed (dangling ids, missing inputs, ...).
    #[error("invalid pipeline: {0}")]
    InvalidPipeline(String),
    /// Reading or writing files failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A runner's own failure outside any transform (a worker process that died, a peer
    /// that never connected), said in one line.
    #[error("{0}")]
    Runner(String),
    /// Checkpoints could not be written, read or used (the directory, what was wrong).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The job was cancelled before it finished.
    #[error("the job was cancelled")]
    Cancelled,
    /// A job's failure as seen by one of possibly many waiters on its handle.
    #[error(transparent)]
    Failed(std::sync::Arc<EngineError>),
}

impl EngineError {
    /// Builds a [`EngineError::UserCode`] for `transform` from any displayable error.
    pub fn user(transform: &str, message: impl std::fmt::Display) -> Self {
        EngineError::UserCode {
            transform: transform.to_string(),
            message: message.to_string(),
        }
    }

    /// The error itself, seen through the sharing of [`EngineError::Failed`].
    pub fn root(&self) -> &EngineError {
        match self {
            EngineError::Failed(e) => e.root(),
            e => e,
        }
    }
}
