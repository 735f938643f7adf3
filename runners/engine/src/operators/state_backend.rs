//! What a stateful ParDo keeps its state and timers in when a runner owns them.

use crate::error::Result;
use crate::state::{StateCell, StateKind, TimeDomain};
use crate::value::Value;
use crate::window::Window;

/// Where a stateful ParDo's state and timers live when the engine does not keep them: a
/// runner that owns them (an SDK harness over Beam's Fn API reads and writes state through
/// the runner's state service and hands timers to it).
///
/// With a backend, a ParDo loads a key and window's cells on their first use in a bundle,
/// stores every cell it loaded when the bundle ends and forgets them, and reports timer
/// changes instead of firing timers itself; the runner fires them with
/// [`Op::fire_timer`](crate::operators::Op::fire_timer).
pub trait StateBackend: Send {
    /// The cells of `key` (its encoding with the key coder) in `window`, one per
    /// declaration, in declaration order ([`StateCell::Empty`] where nothing is stored).
    ///
    /// # Errors
    /// The runner's state cannot be read or decoded.
    fn load(
        &mut self,
        key: &[u8],
        window: &Window,
        decls: &[(String, StateKind)],
    ) -> Result<Vec<StateCell>>;
    /// Stores the cells of `key` in `window` (one per declaration).
    ///
    /// # Errors
    /// The runner's state cannot be written.
    fn store(
        &mut self,
        key: &[u8],
        window: &Window,
        decls: &[(String, StateKind)],
        cells: &[StateCell],
    ) -> Result<()>;
    /// Timer `name` of `key` in `window` was set to fire at `fire` (outputs at `output`),
    /// or cleared (`None`).
    ///
    /// # Errors
    /// The change cannot be sent.
    fn timer(
        &mut self,
        key: &Value,
        window: &Window,
        name: &str,
        domain: TimeDomain,
        change: Option<(i64, i64)>,
    ) -> Result<()>;
}
