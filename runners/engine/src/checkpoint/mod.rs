//! Checkpoints of streaming jobs: what operators save, the durable store, and the
//! coordinator that takes a checkpoint every interval and writes it in the background.
//!
//! A scheduler takes a checkpoint at a point where no element is between operators (the
//! streaming executor: between two rounds of its loop). Each operator writes its state
//! into a [`StateOut`] as keyed entries: everything in a job's first checkpoint, what
//! changed since the last one afterwards (every few checkpoints the writer merges them
//! into a full one). The [`Coordinator`] hands the [`Snapshot`] to a writer
//! thread ([`Store`]: one redb file per checkpoint) while processing goes on; once the
//! file is durable, the commit records operators left (files to publish) are committed.
//! A job started again with the same directory restores the newest whole checkpoint.

pub mod codec;
mod coordinator;
mod format;
mod options;
mod reader;
mod state;
mod store;

pub use coordinator::{Completed, Coordinator};
pub use options::{fingerprint, incompatibility, CheckpointOptions, Restore, DEFAULT_FULL_EVERY};
pub use reader::NodeState;
pub use state::{Entry, LaterEntries, Snapshot, StateOut};
pub use store::{Restored, Store};
