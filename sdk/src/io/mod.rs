//! Sources and sinks.

pub mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod parquet;
pub mod text;

/// Annotation of a source's composite transform: what it reads (`text: PATTERN`), for the
/// end-of-job summary and the job UI.
pub const SOURCE_ANNOTATION: &str = "beamline:io:source";

/// Annotation of a sink's composite transform: what it writes
/// (`text: PREFIX-SSSSS-of-NNNNN`).
pub const SINK_ANNOTATION: &str = "beamline:io:sink";

/// Namespace of the counters sources and sinks report: `elementsRead`, `bytesRead`,
/// `bytesTotal`, `elementsWritten`, `filesWritten` (monitors show progress from them).
pub const IO_NAMESPACE: &str = "beamline.io";
