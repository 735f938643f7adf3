//! The `beamline` command (see `beamline --help`).

fn main() -> std::process::ExitCode {
    beamline_cli::main(std::env::args_os())
}
