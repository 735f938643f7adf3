//! The wordcount workload: Zipf-distributed words; Beamline vs hand-written references.

use anyhow::{Context, Result};
use beamline_examples::words;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Variants, reference first.
pub const VARIANTS: [&str; 5] = [
    "rust-single-thread",
    "rust-rayon",
    "beamline-local",
    "beamline-local-1-thread",
    "beamline-distributed",
];

/// The Apache Beam Python DirectRunner variant (run when a Python with apache-beam exists).
pub const BEAM_VARIANT: &str = "beam-python-directrunner";

const VOCABULARY: usize = 100_000;

/// Writes `size_mb` of Zipf(1.0)-distributed words (seeded); returns the size in MB.
pub fn generate(dir: &Path, size_mb: f64) -> Result<f64> {
    let path = dir.join("input.txt");
    let target = (size_mb * (1u64 << 20) as f64) as u64;
    if std::fs::metadata(&path)
        .map(|m| m.len() >= target)
        .unwrap_or(false)
    {
        return Ok(std::fs::metadata(&path)?.len() as f64 / (1 << 20) as f64);
    }
    let mut cdf = Vec::with_capacity(VOCABULARY);
    let mut total = 0.0;
    for i in 1..=VOCABULARY {
        total += 1.0 / i as f64;
        cdf.push(total);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out = BufWriter::new(std::fs::File::create(&path)?);
    let mut written = 0u64;
    while written < target {
        let mut line = String::new();
        for _ in 0..10 {
            let u: f64 = rng.random::<f64>() * total;
            let rank = cdf.partition_point(|&c| c < u);
            line.push_str(&format!("w{rank} "));
        }
        line.push('\n');
        written += line.len() as u64;
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(written as f64 / (1 << 20) as f64)
}

fn write_counts<'a>(output: &Path, counts: impl Iterator<Item = (&'a str, i64)>) -> Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(output)?);
    for (word, n) in counts {
        writeln!(w, "{word}: {n}")?;
    }
    w.flush()?;
    Ok(())
}

/// Apache Beam Python's word count (same tokenization), run by `python` on the DirectRunner.
const BEAM_SCRIPT: &str = r#"
import re, sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
inp, out = sys.argv[1], sys.argv[2]
word = re.compile(r"[\w']+")
with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
    (p | beam.io.ReadFromText(inp)
       | beam.FlatMap(lambda line: word.findall(line))
       | beam.combiners.Count.PerElement()
       | beam.Map(lambda wc: "%s: %d" % wc)
       | beam.io.WriteToText(out))
"#;

/// A Python with apache-beam 2.77: `$BEAMLINE_BEAM_PYTHON`, or a virtualenv the harness
/// creates under `benches/.venv-beam`.
///
/// # Errors
/// When no such Python exists and the virtualenv cannot be created (no network, no pip).
pub fn beam_python() -> Result<std::path::PathBuf> {
    if let Ok(p) = std::env::var("BEAMLINE_BEAM_PYTHON") {
        return Ok(p.into());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-beam");
    let python = venv.join("bin/python");
    let has_beam = |py: &Path| {
        std::process::Command::new(py)
            .args(["-c", "import apache_beam"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !has_beam(&python) {
        eprintln!(
            "setting up {} with apache-beam==2.77.0 (once)...",
            venv.display()
        );
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
            && std::process::Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "apache-beam==2.77.0"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if !ok || !has_beam(&python) {
            anyhow::bail!("could not set up a Python with apache-beam==2.77.0");
        }
    }
    Ok(python)
}

/// Runs one variant over `dir/input.txt`, writing `word: count` lines under `output`;
/// returns the peak RSS (MiB) of the program it ran, when not this process.
pub fn run(variant: &str, dir: &Path, output: &Path, threads: usize) -> Result<Option<f64>> {
    let input = dir.join("input.txt");
    match variant {
        "rust-single-thread" => {
            let text = std::fs::read_to_string(&input)?;
            let mut counts: HashMap<&str, i64> = HashMap::new();
            for line in text.lines() {
                for w in words(line) {
                    *counts.entry(w).or_insert(0) += 1;
                }
            }
            write_counts(output, counts.into_iter())?;
            Ok(None)
        }
        "rust-rayon" => {
            let text = std::fs::read_to_string(&input)?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let counts = pool.install(|| {
                text.par_lines()
                    .fold(FxHashMap::default, |mut m: FxHashMap<&str, i64>, line| {
                        for w in words(line) {
                            *m.entry(w).or_insert(0) += 1;
                        }
                        m
                    })
                    .reduce(FxHashMap::default, |mut a, b| {
                        for (k, v) in b {
                            *a.entry(k).or_insert(0) += v;
                        }
                        a
                    })
            });
            write_counts(output, counts.into_iter())?;
            Ok(None)
        }
        // The README's main command: the wordcount example binary, as users run it.
        "beamline-local" | "beamline-local-1-thread" | "beamline-distributed" => {
            let mut args = vec![
                format!("--input={}", input.display()),
                format!("--output={}", output.display()),
            ];
            args.extend(crate::variants::beamline_args(variant, threads));
            let peak = crate::run_example("wordcount", &args)?;
            Ok(Some(peak))
        }
        crate::portable::BEAMLINE => {
            let args = vec![
                format!("--input={}", input.display()),
                format!("--output={}", output.display()),
                "--runner=portable".to_string(),
                format!("--job-endpoint={}", crate::portable::endpoint()?),
            ];
            Ok(Some(crate::run_example("wordcount", &args)?))
        }
        crate::portable::BEAM => {
            let status = std::process::Command::new(beam_python()?)
                .args(["-c", crate::portable::BEAM_SCRIPT])
                .arg(&input)
                .arg(output)
                .arg(crate::portable::endpoint()?)
                .env("PYTHONWARNINGS", "ignore")
                .stderr(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "the Beam pipeline failed");
            Ok(None)
        }
        BEAM_VARIANT => {
            let status = std::process::Command::new(beam_python()?)
                .args(["-c", BEAM_SCRIPT])
                .arg(&input)
                .arg(output)
                .env("PYTHONWARNINGS", "ignore")
                .stderr(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "the Beam pipeline failed");
            Ok(None)
        }
        other => anyhow::bail!("unknown variant {other}"),
    }
}

/// Reads `word: count` lines from `output` or its shards.
pub fn load_output(output: &Path) -> Result<HashMap<String, i64>> {
    let dir = output.parent().context("output has a directory")?;
    let stem = output
        .file_name()
        .context("output has a name")?
        .to_string_lossy()
        .into_owned();
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != stem && !name.starts_with(&format!("{stem}-")) {
            continue;
        }
        for line in std::fs::read_to_string(dir.join(&name))?.lines() {
            let (w, n) = line.rsplit_once(": ").context("a `word: count` line")?;
            counts.insert(w.to_string(), n.parse()?);
        }
    }
    Ok(counts)
}
