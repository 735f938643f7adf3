//! Calls into user code: errors and panics become job errors naming the transform.

use crate::error::{EngineError, Result};

/// Calls user code of transform `name`, turning errors and panics into errors naming it.
///
/// # Errors
/// [`EngineError::UserCode`] naming `name` when `f` fails or panics.
pub fn guarded<T>(
    name: &str,
    f: impl FnOnce() -> std::result::Result<T, crate::UserError>,
) -> Result<T> {
    panics_guarded(name, || f().map_err(|e| EngineError::user(name, e)))
}

/// Runs `f`, which calls user code of transform `name`, turning a panic into an error
/// naming the transform (one guard around many calls costs less than one per call).
///
/// # Errors
/// What `f` returns, or [`EngineError::UserCode`] naming `name` when it panics.
pub fn panics_guarded<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Err(EngineError::user(name, format!("panicked: {msg}")))
        }
    }
}
