//! Sources and sinks.

pub mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod parquet;
pub mod text;
