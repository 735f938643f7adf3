//! Sources and sinks.

pub mod text;
