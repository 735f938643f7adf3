//! The conformance cases, by area.

mod combine;
mod core;
mod errors;
mod parity;
mod scale;
mod side_inputs;
mod state;
mod triggers;
mod windows;

use crate::Case;

/// Every case of the suite.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(core::cases());
    v.extend(combine::cases());
    v.extend(side_inputs::cases());
    v.extend(windows::cases());
    v.extend(triggers::cases());
    v.extend(state::cases());
    v.extend(scale::cases());
    v.extend(errors::cases());
    v.extend(parity::cases());
    v
}

/// Owned strings from string slices.
pub(crate) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A `(String, i64)` pair.
pub(crate) fn kv(k: &str, v: i64) -> (String, i64) {
    (k.to_string(), v)
}
