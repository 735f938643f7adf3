//! Watching Beamline jobs on any runner: live progress on stderr, the summary every job
//! ends with, and the job UI (a small web app with a JSON API).
//!
//! The SDK wraps every job it starts with [`watch`]; `beamline ui` serves the UI over the
//! jobs other processes publish ([`directory`]).

pub mod directory;
mod error;
pub mod facts;
pub mod format;
pub mod summary;
pub mod terminal;
pub mod ui;
pub mod view;
mod watch;

pub use error::{Error, Result};
pub use view::JobView;
pub use watch::{watch, WatchOptions, Watched};
