//! Sources and sinks.

pub mod generator;
pub mod text;
