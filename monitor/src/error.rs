//! The monitor's errors.

/// What can go wrong watching a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job UI cannot be served.
    #[error("job UI: {0}")]
    Ui(String),
}

/// A result with the monitor's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
