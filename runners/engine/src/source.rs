//! Unbounded sources: readers that produce timestamped elements and report a watermark.

use crate::error::UserError;
use crate::value::Value;

/// What one poll of a source produced.
#[derive(Debug, Default)]
pub struct SourceBatch {
    /// Elements with their event timestamps (ms).
    pub elements: Vec<(Value, i64)>,
    /// No element with a smaller timestamp will follow (ms).
    pub watermark: i64,
    /// The source has nothing more to read.
    pub finished: bool,
}

/// A reader of an unbounded source, polled by the streaming executor.
pub trait UnboundedSource: Send {
    /// Reads what is available now (at most about `max` elements).
    ///
    /// # Errors
    /// A failure fails the job, naming the source's transform.
    fn poll(&mut self, now_ms: i64, max: usize) -> Result<SourceBatch, UserError>;
}

/// A source any binary linking it can build from its name and JSON config.
pub struct NamedSource {
    /// Globally unique name.
    pub name: &'static str,
    /// Builds a reader from the JSON config.
    pub build: fn(config: &str) -> Result<Box<dyn UnboundedSource>, UserError>,
}
inventory::collect!(NamedSource);
