//! Sources and sinks.

mod file_commits;
pub mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod parquet;
mod sharded;
pub mod text;
pub mod watch_text;

pub use beamline_monitor::facts::{IO_NAMESPACE, SINK_ANNOTATION, SOURCE_ANNOTATION};
