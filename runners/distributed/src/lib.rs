//! Beamline's distributed runner: `--runner=distributed --processes=N` runs a bounded
//! pipeline on N processes of this machine, on Timely Dataflow ([`runner`]).
//!
//! The runner is SPMD: the user's program is started once per process; each rebuilds the
//! pipeline and runs its share. [`launch::launch`] starts the processes of one machine
//! and owns them: the first failure ends the job with that process's original error, every
//! other process is killed, none outlives the launcher's wait, and a process that does not
//! connect in time is an error. [`hosts`] reads the hosts file of a job spread over
//! machines.

mod adapter;
mod chain;
mod checkpoints;
mod connect;
mod dataflow;
mod driver;
mod heartbeat;
pub mod hosts;
pub mod launch;
mod member;
mod plan;
mod progress;
pub mod runner;
mod source_state;
mod sources;
mod wire;
pub mod worker;

pub use launch::{launch, LaunchError, LaunchOptions, Supervisor};
pub use runner::{link, DistributedRunner};
