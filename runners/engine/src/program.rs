//! The program this process runs, as it was started: what re-executes it as a worker or
//! as a case of the conformance suite.

use std::ffi::OsString;
use std::path::PathBuf;

/// The program as it was started (`argv[0]`) and its arguments.
///
/// For a Python pipeline `argv[0]` is the interpreter of its virtualenv and the first
/// argument the script: the resolved executable ([`std::env::current_exe`]) would be the
/// base interpreter, without the virtualenv's packages. Falls back to the resolved
/// executable when `argv[0]` is empty.
///
/// # Errors
/// When `argv[0]` is empty and the executable cannot be found.
pub fn as_started() -> std::io::Result<(PathBuf, Vec<OsString>)> {
    let mut args = std::env::args_os();
    let program = match args.next() {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::current_exe()?,
    };
    Ok((program, args.collect()))
}
