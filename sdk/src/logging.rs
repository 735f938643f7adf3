//! Logging through `tracing` on stderr: `RUST_LOG` when set, else `--log-level`.

use std::sync::Once;

static INIT: Once = Once::new();

/// Installs the stderr logger once per process (a program that installed its own
/// `tracing` subscriber keeps it).
pub(crate) fn init(level: Option<&str>) {
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("warn")));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    });
}

/// Checks a `--log-level` value.
pub(crate) fn valid_level(level: &str) -> bool {
    matches!(
        level.to_ascii_lowercase().as_str(),
        "error" | "warn" | "info" | "debug" | "trace" | "off"
    )
}

/// Runs a program's body and turns its error into one line on stderr (`error: ...`, its
/// causes after colons) and exit code 1: no backtrace, even with `RUST_BACKTRACE=1`.
///
/// # Examples
///
/// ```no_run
/// fn run() -> anyhow::Result<()> {
///     let p = beamline::Pipeline::from_env()?;
///     p.run()?;
///     Ok(())
/// }
///
/// fn main() -> std::process::ExitCode {
///     beamline::main(run)
/// }
/// ```
pub fn main<E: std::fmt::Display>(body: impl FnOnce() -> Result<(), E>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
