//! Unbounded sources: readers that produce timestamped elements and report a watermark.

use crate::error::UserError;
use crate::value::Value;
use crate::window::{PaneInfo, Window, WindowedValue};

/// What one poll of a source reported besides its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Polled {
    /// No element with a smaller timestamp will follow (ms).
    pub watermark: i64,
    /// The source has nothing more to read.
    pub finished: bool,
}

/// Where a poll puts its elements: each in the global window at its event timestamp.
///
/// Elements are written straight into the batch the pipeline processes, so a source
/// reading millions of elements a second copies none of them again.
pub struct SourceOutput<'a>(&'a mut Vec<WindowedValue>);

impl<'a> SourceOutput<'a> {
    /// Output into `batch`, after what it holds.
    pub fn new(batch: &'a mut Vec<WindowedValue>) -> Self {
        SourceOutput(batch)
    }

    /// Adds an element with its event timestamp (ms).
    #[inline]
    pub fn push(&mut self, value: Value, timestamp: i64) {
        self.0.push(WindowedValue {
            value,
            timestamp,
            window: Window::Global,
            pane: PaneInfo::NO_FIRING,
        });
    }

    /// Adds elements with their event timestamps (ms). Faster than [`SourceOutput::push`]
    /// one by one when the iterator's length is known up front (a mapped range, say):
    /// each element is then written straight into the batch, never built aside and copied.
    ///
    /// # Examples
    /// ```
    /// use beamline_engine::source::SourceOutput;
    /// use beamline_engine::value::Value;
    ///
    /// let mut batch = Vec::new();
    /// SourceOutput::new(&mut batch).extend((0..3).map(|i| (Value::I64(i), i * 1000)));
    /// assert_eq!(batch.len(), 3);
    /// assert_eq!(batch[2].timestamp, 2000);
    /// ```
    #[inline(always)]
    pub fn extend(&mut self, elements: impl IntoIterator<Item = (Value, i64)>) {
        self.0.extend(
            elements
                .into_iter()
                .map(|(value, timestamp)| WindowedValue {
                    value,
                    timestamp,
                    window: Window::Global,
                    pane: PaneInfo::NO_FIRING,
                }),
        );
    }

    /// Elements in the batch.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The batch holds no element.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A reader of an unbounded source, polled by the streaming executor.
pub trait UnboundedSource: Send {
    /// Adds to `out` what is available now, at most about `max` elements; a poll that
    /// adds fewer than `max` says nothing more is available yet.
    ///
    /// # Errors
    /// A failure fails the job, naming the source's transform.
    fn poll(
        &mut self,
        now_ms: i64,
        max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError>;

    /// Readers that together read what this one would, at most `n` of them, for reading
    /// in parallel; empty when the source cannot be split. Called before any poll.
    ///
    /// The executor polls each reader on its own thread, with the transforms fused after
    /// the source, and takes the smallest of their watermarks as the source's.
    fn split(&self, n: usize) -> Vec<Box<dyn UnboundedSource>> {
        let _ = n;
        Vec::new()
    }

    /// Where the reader is now, for a checkpoint: what [`UnboundedSource::restore`]
    /// resumes from (everything polled so far is behind it). `None` (the default): the
    /// source cannot resume, and a job with checkpoints fails saying so.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// Resumes where [`UnboundedSource::position`] of this reader (or of the same part,
    /// when split the same way) was. Called before any poll, after a split.
    ///
    /// # Errors
    /// A position this source cannot resume from.
    fn restore(&mut self, position: &[u8]) -> Result<(), UserError> {
        let _ = position;
        Err("this source cannot resume from a checkpoint".into())
    }

    /// A checkpoint holding `position` (from [`UnboundedSource::position`]) is durable: a
    /// source whose system keeps what was consumed (Kafka's committed offsets) tells it
    /// now. Called on the reader's thread, between polls; may be called again for the
    /// same position after a restart.
    ///
    /// # Errors
    /// A failure fails the job, naming the source's transform.
    fn checkpointed(&mut self, position: &[u8]) -> Result<(), UserError> {
        let _ = position;
        Ok(())
    }
}

/// A source any binary linking it can build from its name and JSON config.
pub struct NamedSource {
    /// Globally unique name.
    pub name: &'static str,
    /// Builds a reader from the JSON config.
    pub build: fn(config: &str) -> Result<Box<dyn UnboundedSource>, UserError>,
}
inventory::collect!(NamedSource);
