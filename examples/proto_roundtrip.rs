//! Writes a pipeline built with closures to a proto file and runs it in a child process
//! re-executed from this binary (how multi-process runners start workers).
//!
//! ```text
//! cargo run --example proto_roundtrip -- --output /tmp/squares
//! ```

use beamline::worker::{is_worker, run_in_child_process, write_proto};
use beamline::{Create, OptionKind, OptionSpec, Pipeline, Sum, WriteToText};

fn build(p: &Pipeline, output: &str) {
    let offset = 1;
    p.apply("Numbers", Create::of(1i64..=10))
        .map("Square", move |x: i64| x * x + offset - 1)
        .apply("Sum", Sum::globally())
        .map("Format", |s: i64| format!("sum of squares: {s}"))
        .apply("Write", WriteToText::new(output).with_num_shards(1));
}

fn main() -> std::process::ExitCode {
    beamline::main(run)
}

fn run() -> anyhow::Result<()> {
    let p = Pipeline::from_env_with(vec![OptionSpec::new(
        "output",
        OptionKind::Text,
        "prefix of the output file",
    )])?;
    let output: String = p.options().require("output")?;
    build(&p, &output);
    if is_worker() {
        // Child: run the proto we were given, with the closures just rebuilt.
        p.run()?;
        return Ok(());
    }
    let proto = std::env::temp_dir().join(format!("beamline-{}.pb", std::process::id()));
    write_proto(&p, &proto)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    run_in_child_process(&proto, &args)?;
    std::fs::remove_file(&proto)?;
    println!(
        "{}",
        std::fs::read_to_string(format!("{output}-00000-of-00001"))?.trim()
    );
    Ok(())
}
