//! The portable workload: the word count on Beam Python's local job service, through
//! Beamline's portable runner (Beamline as the SDK harness) and as Apache Beam Python's own
//! pipeline (its SDK harness in loopback), same input, same service, same run.

use anyhow::{Context, Result};
use beamline_runner_portable::local_service::LocalJobService;
use std::path::Path;
use std::time::Duration;

use crate::{run_variants, wordcount, Cli};

/// Variants, Beam's first (the reference of the ratio).
pub const VARIANTS: [&str; 2] = [BEAM, BEAMLINE];
/// Apache Beam Python's word count on the job service.
pub const BEAM: &str = "beam-python-portable";
/// Beamline's word count example with `--runner=portable`.
pub const BEAMLINE: &str = "beamline-portable";
/// How a variant's process learns the job service's address.
pub const ENDPOINT_ENV: &str = "BEAMLINE_BENCH_JOB_ENDPOINT";

/// Beam Python's word count (the wordcount workload's tokenization) on a job service.
pub const BEAM_SCRIPT: &str = r#"
import re, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
inp, out, endpoint = sys.argv[1], sys.argv[2], sys.argv[3]
word = re.compile(r"[\w']+")
options = PipelineOptions(["--runner=PortableRunner", "--job_endpoint=" + endpoint,
                           "--environment_type=LOOPBACK"])
with beam.Pipeline(options=options) as p:
    (p | beam.io.ReadFromText(inp)
       | beam.FlatMap(lambda line: word.findall(line))
       | beam.combiners.Count.PerElement()
       | beam.Map(lambda wc: "%s: %d" % wc)
       | beam.io.WriteToText(out))
"#;

/// The job service's address, as the parent process set it.
pub fn endpoint() -> Result<String> {
    std::env::var(ENDPOINT_ENV).with_context(|| format!("{ENDPOINT_ENV} is not set"))
}

/// Runs both variants on one job service and prints the table.
pub fn run(cli: &Cli, dir: &Path, size: f64) -> Result<()> {
    crate::build_example("wordcount")?;
    let input_mb = wordcount::generate(dir, size)?;
    let python = wordcount::beam_python()?;
    let service = LocalJobService::start(&python, Duration::from_secs(120))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("Beam job service at {}", service.endpoint());
    std::env::set_var(ENDPOINT_ENV, service.endpoint());
    let results = run_variants(cli, dir, &VARIANTS)?;
    let reference = wordcount::load_output(&results[0].output)?;
    let got = wordcount::load_output(&results[1].output)?;
    anyhow::ensure!(
        got == reference,
        "{} disagrees with {} ({} vs {} words)",
        results[1].name,
        results[0].name,
        got.len(),
        reference.len()
    );
    println!(
        "workload: wordcount on Beam Python 2.77's local job service, input {input_mb:.1} MB, {} distinct words{}",
        reference.len(),
        crate::repeat_note(cli)
    );
    println!("| variant | wall time (s) | throughput (MB/s) | CPU of the submitting process (s) | time vs {BEAM} |");
    println!("|---|---|---|---|---|");
    let base = results[0].seconds;
    for r in &results {
        println!(
            "| {} | {:.2} | {:.1} | {:.2} | {:.2}x |",
            r.name,
            r.seconds,
            input_mb / r.seconds,
            r.cpu_seconds,
            r.seconds / base
        );
    }
    Ok(())
}
