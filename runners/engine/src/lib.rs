//! Beamline's execution engine: elements, coders, windows, user-code traits and the batch executor.
//!
//! The engine knows nothing of protobuf, gRPC, Python or the SDK's typed API. Runners
//! translate a portable pipeline into a [`graph::Graph`] and hand it to
//! [`exec::execute`]; user code reaches the engine through the traits in [`dofn`] and
//! [`combine`], found by id in a [`registry::FnRegistry`] or by name in the `inventory`
//! registrations of [`registry`].

pub mod checkpoint;
pub mod coder;
pub mod combine;
pub mod dofn;
pub mod element_codec;
mod error;
pub mod exec;
pub mod graph;
pub mod job;
pub mod metrics;
pub mod operators;
pub mod options;
pub mod orphans;
pub mod plan;
pub mod program;
pub mod progress;
pub mod registry;
pub mod restart;
pub mod runner;
pub mod source;
pub mod spec;
pub mod state;
pub mod state_codec;
pub mod stream;
pub mod time;
pub mod trigger;
pub mod value;
pub mod window;
pub mod windowed_coder;

pub use error::{EngineError, Result, UserError};
pub use value::{opaque_type, OpaqueType, OpaqueValue, Value};
pub use window::{PaneInfo, Timing, Window, WindowFn, WindowedValue};

#[doc(hidden)]
pub use inventory;
