//! Word count: reads text files, counts every word, writes `word: count` lines.
//!
//! ```text
//! cargo run --release --example wordcount -- --input 'data/*.txt' --output out/counts [--runner=local]
//! ```

use beamline::{Count, OptionKind, OptionSpec, Pipeline, ReadFromText, WriteToText};

fn main() -> std::process::ExitCode {
    beamline::main(run)
}

fn run() -> anyhow::Result<()> {
    // Declared, so `--help` lists them and a misspelt option is an error at once.
    let p = Pipeline::from_env_with(vec![
        OptionSpec::new("input", OptionKind::Text, "text files to read (a glob)"),
        OptionSpec::new("output", OptionKind::Text, "prefix of the output shards"),
    ])?;
    let options = p.options();
    let input: String = options.require("input")?;
    let output: String = options.require("output")?;

    p.apply("Read", ReadFromText::new(input))
        .flat_map("Split", |line: String| {
            beamline_examples::words(&line)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .apply("Count", Count::per_element())
        .map("Format", |(word, n): (String, i64)| format!("{word}: {n}"))
        .apply("Write", WriteToText::new(output));

    // Progress shows on stderr while it runs, and a summary when it ends.
    p.run()?;
    Ok(())
}
