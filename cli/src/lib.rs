//! The `beamline` command: run a pipeline proto, list the runners, run the conformance
//! matrix, serve the job UI. A library too, so the Python package's `beamline` console
//! script is the same command.
//!
//! Errors are `anyhow` here: this crate is the command's body, not a library API.

mod proto_run;
mod runners;
mod serve;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

/// Beamline: run Beam pipelines on the local, distributed or portable runner.
#[derive(Debug, Parser)]
#[command(name = "beamline", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a pipeline proto written by a Beamline program (`beamline::worker::write_proto`).
    ///
    /// Named functions (the SDK's IO, transforms and coders, and any `register_dofn!`ed
    /// DoFn linked into this binary) resolve from the registry; a proto with closures
    /// must run in the program that built it.
    #[command(
        after_help = "Pipeline options (--runner=NAME, --job-name, --quiet, --ui[=HOST:PORT], \
the runner's own): `beamline runners` lists them."
    )]
    Run {
        /// The encoded `Pipeline` proto.
        pipeline: std::path::PathBuf,
        /// Pipeline options, as `--name=value`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "OPTIONS"
        )]
        options: Vec<String>,
    },
    /// Lists the runners linked into this binary: their options and capabilities.
    Runners,
    /// Runs the validates-runner suite on every runner and prints the capability matrix.
    Matrix {
        /// Only the runner columns whose name contains this text.
        #[arg(long)]
        column: Option<String>,
        /// Only the cases whose name contains this text.
        #[arg(long)]
        case: Option<String>,
    },
    /// Serves the job UI for the jobs started with `--ui` (on this machine, by this user).
    Ui {
        /// Where to listen (loopback by default).
        #[arg(long, default_value = "127.0.0.1:8680")]
        addr: String,
        /// The job directory (default: $BEAMLINE_JOBS_DIR, else ~/.beamline/jobs).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Runs the command with `args` (the first is the program name).
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(run(args))
}

/// Runs the command with `args` (the first is the program name) and returns its exit
/// code: 0 success, 1 failure, 2 usage error. Usage errors and failures print one line
/// on stderr.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    #[cfg(feature = "matrix")]
    runners::serve_matrix_case();
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with success; mistakes are one message.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let r = match cli.command {
        Command::Run { pipeline, options } => proto_run::run(&pipeline, options),
        Command::Runners => runners::list(),
        Command::Matrix { column, case } => runners::matrix(column, case),
        Command::Ui { addr, dir } => serve::ui(&addr, dir),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
