//! Sources and sinks.

pub mod generator;
pub mod parquet;
pub mod text;
