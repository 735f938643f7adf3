//! Beamline's benchmark harness: Beamline and reference programs on the same generated
//! input, in one run, with outputs checked against each other.
//!
//! ```text
//! cargo run --release -p beamline-bench -- wordcount [--size 100] [--threads 2]
//! ```
//!
//! Each variant runs in its own child process so that its peak memory (RSS) is its own.

// The allocator is the `beamline` facade's (mimalloc), as in every program built on it;
// references run in this binary, so they use it too (with the same options: see
// `run_variant_at`).

mod clickstream;
mod dedup_stream;
mod keyed;
mod portable;
mod procs;
mod variants;
mod wordcount;

use variants::exchange_note;

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Command line of the harness.
#[derive(Parser, Debug)]
#[command(about = "Beamline benchmarks: Beamline vs references on the same input")]
struct Cli {
    /// Workload to run: wordcount, clickstream, gbk-sum, combine-mean, cogroup, dedup,
    /// dedup-streaming, count-streaming.
    workload: String,
    /// Input size (wordcount: megabytes of text, default 100; clickstream: millions of
    /// events, default 10; keyed workloads: a multiple of the issue's size, default 1).
    #[arg(long)]
    size: Option<f64>,
    /// Scaling matrix: the single-threaded reference and Beamline at 1 and `--threads`
    /// threads, on 1x, 2x and 4x inputs, where 4x is `--size`.
    #[arg(long)]
    scaling: bool,
    /// Worker threads for Beamline (0: all cores).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Directory for inputs and outputs (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Runs of each variant (Apache Beam's: one), in rounds so that a noisy spell of a
    /// shared machine hits every variant alike; the table shows each one's median time.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Do not run the Apache Beam Python reference (wordcount and keyed workloads).
    #[arg(long)]
    skip_beam: bool,
    /// Memory budget of the Beamline variant (keyed workloads), e.g. `700MB`: grouping
    /// state past it spills to disk; the table then reports peak RSS against the budget.
    #[arg(long)]
    memory_budget: Option<String>,
    /// Internal: run one variant in this process and report its peak RSS.
    #[arg(long, hide = true)]
    variant: Option<String>,
    /// Internal: output path of the variant.
    #[arg(long, hide = true)]
    output: Option<PathBuf>,
}

/// One measured variant.
pub(crate) struct Measurement {
    name: String,
    seconds: f64,
    /// Largest peak RSS of one of its processes.
    peak_rss_mb: f64,
    /// CPU time of all its processes (user + system).
    cpu_seconds: f64,
    output: PathBuf,
    /// Lines the variant printed for the report (`note=...`).
    notes: Vec<String>,
}

/// Peak resident set size of this process, in MiB (Linux; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The path of example program `name`: built by cargo next to this harness (`--release`
/// builds of both share `target/release`).
fn example_path(name: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("the harness has a directory")?
        .join("examples")
        .join(name))
}

/// Builds example program `name` with cargo, in the harness's profile (a no-op when it is
/// fresh), before anything is timed.
fn build_example(name: &str) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the harness crate is in the workspace")?;
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--profile",
            profile,
            "-p",
            "beamline-examples",
        ])
        .args(["--example", name])
        .status()
        .context("building the example with cargo")?;
    anyhow::ensure!(status.success(), "building example {name} failed");
    anyhow::ensure!(
        example_path(name)?.exists(),
        "example {name} is not at {}",
        example_path(name)?.display()
    );
    Ok(())
}

/// Runs example program `name` with `args`, as a user would; returns the largest peak
/// RSS of one of its processes (a distributed run's workers included), in MiB.
fn run_example(name: &str, args: &[String]) -> Result<f64> {
    let path = example_path(name)?;
    let mut child = Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let (status, peak) = procs::wait_sampling(&mut child)?;
    anyhow::ensure!(status.success(), "example {name} failed: {status}");
    Ok(peak)
}

/// Runs every variant `--repeat` times, in rounds (Apache Beam's once), and keeps each
/// one's median time and largest peak RSS.
fn run_variants(cli: &Cli, dir: &Path, names: &[&str]) -> Result<Vec<Measurement>> {
    let rounds = cli.repeat.max(1);
    let mut runs: Vec<Vec<Measurement>> = names.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (name, runs) in names.iter().zip(&mut runs) {
            if round > 0 && *name == wordcount::BEAM_VARIANT {
                continue;
            }
            eprintln!("running {name} ({}/{rounds})...", round + 1);
            runs.push(run_variant_at(cli, dir, name, size_of(cli), cli.threads)?);
        }
    }
    Ok(runs.into_iter().map(median).collect())
}

/// How the table's times were taken, when not from one run each.
fn repeat_note(cli: &Cli) -> String {
    if cli.repeat > 1 {
        format!(" (median of {} runs per variant)", cli.repeat)
    } else {
        String::new()
    }
}

/// The run of median time (the mean of the two middle ones for an even count), with the
/// largest peak RSS of all runs.
fn median(mut runs: Vec<Measurement>) -> Measurement {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let peak = runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
    let n = runs.len();
    let seconds = if n.is_multiple_of(2) {
        (runs[n / 2 - 1].seconds + runs[n / 2].seconds) / 2.0
    } else {
        runs[n / 2].seconds
    };
    let mut m = runs.swap_remove(n / 2);
    m.seconds = seconds;
    m.peak_rss_mb = peak;
    m
}

fn run_variant_at(
    cli: &Cli,
    dir: &Path,
    name: &str,
    size: f64,
    threads: usize,
) -> Result<Measurement> {
    // A directory per variant: one variant's name may begin another's, and outputs of an
    // earlier run in the same directory would mix with this one's.
    let out_dir = dir.join(format!("out-{name}"));
    if out_dir.is_dir() {
        std::fs::remove_dir_all(&out_dir)?;
    } else if out_dir.exists() {
        std::fs::remove_file(&out_dir)?;
    }
    std::fs::create_dir_all(&out_dir)?;
    let output = out_dir.join("part");
    let start = Instant::now();
    let mut cmd = Command::new(std::env::current_exe()?);
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        && cli.memory_budget.is_none()
        && !is_streaming_keyed(&cli.workload)
    {
        // Freed memory stays with the process for reuse instead of going back to the OS
        // and being faulted in (and zeroed) again: on these VMs that cost batch workloads
        // 10-16%. Every variant, references included, runs with it; not under a memory
        // budget, where giving memory back is the point.
        cmd.env("MIMALLOC_PURGE_DELAY", "-1");
    }
    cmd.arg(&cli.workload)
        .arg(format!("--size={size}"))
        .arg(format!("--threads={threads}"))
        .arg(format!("--dir={}", dir.display()))
        .arg(format!("--variant={name}"))
        .arg(format!("--output={}", output.display()));
    if let Some(b) = &cli.memory_budget {
        cmd.arg(format!("--memory-budget={b}"));
    }
    let cpu_before = procs::children_cpu_seconds();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting variant {name}"))?;
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let (status, sampled_rss) = procs::wait_sampling(&mut child)?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = procs::children_cpu_seconds() - cpu_before;
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if !status.success() {
        bail!("variant {name} failed: {stderr}");
    }
    let peak_rss_mb = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_mb="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0f64)
        .max(sampled_rss);
    let notes = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("note="))
        .map(str::to_string)
        .collect();
    Ok(Measurement {
        name: name.to_string(),
        seconds,
        peak_rss_mb,
        cpu_seconds,
        output,
        notes,
    })
}

fn size_of(cli: &Cli) -> f64 {
    cli.size.unwrap_or(match cli.workload.as_str() {
        "wordcount" => 100.0,
        "wordcount-portable" => 10.0,
        "clickstream" => 10.0,
        _ => 1.0,
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let temp;
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => {
            temp = std::env::temp_dir().join(format!("beamline-bench-{}", std::process::id()));
            temp.clone()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let size = size_of(&cli);
    if let Some(variant) = &cli.variant {
        let output = cli
            .output
            .clone()
            .context("--output is required with --variant")?;
        let mut child_rss = None;
        match cli.workload.as_str() {
            "wordcount" | "wordcount-portable" => {
                child_rss = wordcount::run(variant, &dir, &output, cli.threads)?
            }
            "clickstream" => clickstream::run(variant, (size * 1e6) as u64, cli.threads, &output)?,
            w @ ("dedup-streaming" | "count-streaming") => {
                dedup_stream::run(w, variant, size, cli.memory_budget.as_deref(), &output)?
            }
            w => keyed::run(
                w,
                variant,
                size,
                cli.threads,
                cli.memory_budget.as_deref(),
                &output,
            )?,
        }
        println!("peak_rss_mb={:.1}", child_rss.unwrap_or_else(peak_rss_mb));
        return Ok(());
    }
    if cli.scaling {
        return run_scaling(&cli, &dir, size);
    }
    match cli.workload.as_str() {
        "wordcount" => {}
        "clickstream" => return run_clickstream(&cli, &dir, size),
        "wordcount-portable" => return portable::run(&cli, &dir, size),
        "gbk-sum" | "combine-mean" | "cogroup" | "dedup" => return run_keyed(&cli, &dir, size),
        "dedup-streaming" | "count-streaming" => return run_dedup_stream(&cli, &dir, size),
        other => bail!(
            "unknown workload '{other}'; available: wordcount, wordcount-portable, clickstream, gbk-sum, combine-mean, cogroup, dedup, dedup-streaming, count-streaming"
        ),
    }

    build_example("wordcount")?;
    let input_mb = wordcount::generate(&dir, size)?;
    eprintln!("input: {input_mb:.1} MB of text in {}", dir.display());
    let mut variants = wordcount::VARIANTS.to_vec();
    if cli.skip_beam {
        eprintln!("Apache Beam DirectRunner skipped (--skip-beam)");
    } else {
        match wordcount::beam_python() {
            Ok(_) => variants.push(wordcount::BEAM_VARIANT),
            Err(e) => eprintln!("Apache Beam DirectRunner skipped: {e}"),
        }
    }
    let results = run_variants(&cli, &dir, &variants)?;
    let reference = wordcount::load_output(&results[0].output)?;
    for r in &results[1..] {
        let got = wordcount::load_output(&r.output)?;
        if got != reference {
            bail!(
                "{} disagrees with {} ({} vs {} words)",
                r.name,
                results[0].name,
                got.len(),
                reference.len()
            );
        }
    }
    let base = results[0].seconds;
    println!(
        "workload: wordcount, input {input_mb:.1} MB, {} distinct words, beamline threads={}{}",
        reference.len(),
        cli.threads,
        repeat_note(&cli)
    );
    println!(
        "| variant | wall time (s) | throughput (MB/s) | CPU (s) | peak RSS per process (MB) | time vs {} |",
        results[0].name
    );
    println!("|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.2} | {:.1} | {:.2} | {:.0} | {:.2}x |",
            r.name,
            r.seconds,
            input_mb / r.seconds,
            r.cpu_seconds,
            r.peak_rss_mb,
            r.seconds / base
        );
    }
    println!("all outputs agree");
    let words: i64 = reference.values().sum();
    exchange_note(&results, words as f64, "word");
    if cli.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Runs every variant, checks that their outputs agree, and prints the table.
fn run_all<T: PartialEq>(
    cli: &Cli,
    dir: &Path,
    variants: &[&str],
    load: fn(&Path) -> Result<T>,
    title: &str,
    unit: &str,
    amount: f64,
) -> Result<()> {
    let results = run_variants(cli, dir, variants)?;
    let reference = load(&results[0].output)?;
    for r in &results[1..] {
        if load(&r.output)? != reference {
            bail!("{} disagrees with {}", r.name, results[0].name);
        }
    }
    let base = results[0].seconds;
    println!("{title}{}", repeat_note(cli));
    println!(
        "| variant | wall time (s) | {unit}/s | CPU (s) | peak RSS per process (MB) | time vs {} |",
        results[0].name
    );
    println!("|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.2} | {:.2}M | {:.2} | {:.0} | {:.2}x |",
            r.name,
            r.seconds,
            amount / r.seconds / 1e6,
            r.cpu_seconds,
            r.peak_rss_mb,
            r.seconds / base
        );
    }
    println!("all outputs agree");
    exchange_note(&results, amount, unit.trim_end_matches('s'));
    for r in &results {
        for n in &r.notes {
            println!("{}: {n}", r.name);
        }
    }
    let find = |name: &str| results.iter().find(|r| r.name == name);
    for (with, without) in [
        (clickstream::CHECKPOINTED, "beamline-streaming"),
        (
            clickstream::DISTRIBUTED_CHECKPOINTED,
            "beamline-distributed",
        ),
    ] {
        if let (Some(c), Some(s)) = (find(with), find(without)) {
            println!(
                "checkpoint overhead: {} {:.2}x the time of {} (target: at most 1.2x)",
                c.name,
                c.seconds / s.seconds,
                s.name
            );
        }
    }
    // The streaming dedup has one variant under a budget (its default unless given).
    let budgeted = |name: &str| match cli.workload.as_str() {
        w if is_streaming_keyed(w) => name.starts_with(dedup_stream::BUDGETED),
        _ => name.starts_with("beamline"),
    };
    let budget = match cli.workload.as_str() {
        w if is_streaming_keyed(w) => Some(
            cli.memory_budget
                .as_deref()
                .unwrap_or(dedup_stream::DEFAULT_BUDGET),
        ),
        _ => cli.memory_budget.as_deref(),
    };
    if let Some(budget) = budget {
        let bytes = beamline_runner_local::parse_size(budget).map_err(anyhow::Error::msg)?;
        let budget_mb = bytes as f64 / (1024.0 * 1024.0);
        for r in results.iter().filter(|r| budgeted(&r.name)) {
            println!(
                "memory budget {budget_mb:.0} MB: {} peak RSS {:.0} MB = {:.2}x the budget",
                r.name,
                r.peak_rss_mb,
                r.peak_rss_mb / budget_mb
            );
        }
    }
    if cli.dir.is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

fn run_clickstream(cli: &Cli, dir: &Path, millions: f64) -> Result<()> {
    let title = format!(
        "workload: clickstream, {millions}M out-of-order events, 1-minute windows (final panes compared)"
    );
    run_all(
        cli,
        dir,
        &clickstream::VARIANTS,
        clickstream::load_output,
        &title,
        "events",
        millions * 1e6,
    )
}

fn run_keyed(cli: &Cli, dir: &Path, size: f64) -> Result<()> {
    let (n, keys) = keyed::shape(&cli.workload, size);
    let title = format!(
        "workload: {} (size x{size}): {n} elements per input, {keys} keys, beamline threads={}",
        cli.workload, cli.threads
    );
    let mut variants = keyed::VARIANTS.to_vec();
    if cli.skip_beam {
        eprintln!("Apache Beam DirectRunner skipped (--skip-beam)");
    } else {
        match wordcount::beam_python() {
            Ok(_) => variants.push(wordcount::BEAM_VARIANT),
            Err(e) => eprintln!("Apache Beam DirectRunner skipped: {e}"),
        }
    }
    run_all(
        cli,
        dir,
        &variants,
        keyed::load_output,
        &title,
        "elements",
        n as f64,
    )
}

/// The streaming workloads of keyed state under a memory budget.
fn is_streaming_keyed(workload: &str) -> bool {
    matches!(workload, "dedup-streaming" | "count-streaming")
}

fn run_dedup_stream(cli: &Cli, dir: &Path, size: f64) -> Result<()> {
    let (keys, events) = dedup_stream::shape(size);
    let what = match cli.workload.as_str() {
        "count-streaming" => "events per key (CombinePerKey)",
        _ => "first event of each key (stateful DoFn)",
    };
    let title = format!(
        "workload: {} (size x{size}): {what}, {events} events over {keys} keys, streaming",
        cli.workload
    );
    run_all(
        cli,
        dir,
        &dedup_stream::VARIANTS,
        keyed::load_output,
        &title,
        "events",
        events as f64,
    )
}

/// Whether two variants' outputs of the current workload agree.
fn outputs_agree(workload: &str, a: &Path, b: &Path) -> Result<bool> {
    Ok(match workload {
        "wordcount" => wordcount::load_output(a)? == wordcount::load_output(b)?,
        "clickstream" => clickstream::load_output(a)? == clickstream::load_output(b)?,
        _ => keyed::load_output(a)? == keyed::load_output(b)?,
    })
}

/// The scaling matrix: reference and Beamline (1 and N threads) at 1x, 2x and 4x input.
fn run_scaling(cli: &Cli, dir: &Path, largest: f64) -> Result<()> {
    let mults = [1.0, 2.0, 4.0];
    if cli.workload == "wordcount" {
        build_example("wordcount")?;
    }
    let beamline = match cli.workload.as_str() {
        "wordcount" => "beamline-local",
        "clickstream" => "beamline-streaming",
        "gbk-sum" | "combine-mean" | "cogroup" | "dedup" => "beamline-local",
        other => bail!("unknown workload '{other}'"),
    };
    let rows: Vec<(String, &str, usize)> = vec![
        ("rust-single-thread".to_string(), "rust-single-thread", 1),
        (format!("{beamline}, 1 thread"), beamline, 1),
        (
            format!("{beamline}, {} threads", cli.threads),
            beamline,
            cli.threads,
        ),
    ];
    let mut times = vec![Vec::new(); rows.len()];
    for (i, m) in mults.iter().enumerate() {
        let size = largest * m / 4.0;
        let sub = dir.join(format!("scale-{i}"));
        std::fs::create_dir_all(&sub)?;
        if cli.workload == "wordcount" {
            wordcount::generate(&sub, size)?;
        }
        let mut outs = Vec::new();
        // With --repeat, each cell is the median of that many runs, taken in rounds.
        let mut runs: Vec<Vec<Measurement>> = (0..rows.len()).map(|_| Vec::new()).collect();
        for round in 0..cli.repeat.max(1) {
            for (r, (label, variant, threads)) in rows.iter().enumerate().skip(1) {
                if round + 1 < cli.repeat.max(1) {
                    eprintln!("running {label} at {m}x ({}/{})...", round + 1, cli.repeat);
                    runs[r].push(run_variant_at(cli, &sub, variant, size, *threads)?);
                }
            }
            eprintln!("running {} at {m}x...", rows[0].0);
            runs[0].push(run_variant_at(cli, &sub, rows[0].1, size, rows[0].2)?);
        }
        for (r, (label, variant, threads)) in rows.iter().enumerate() {
            let meas = if r == 0 {
                median(std::mem::take(&mut runs[0]))
            } else {
                // The last run of a row is the one whose output is checked: the files of
                // earlier runs (another number of shards) must not join it.
                for e in std::fs::read_dir(&sub)? {
                    let e = e?;
                    if e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("out-{variant}"))
                        && e.path().is_file()
                    {
                        std::fs::remove_file(e.path())?;
                    }
                }
                eprintln!("running {label} at {m}x...");
                let mut mine = std::mem::take(&mut runs[r]);
                mine.push(run_variant_at(cli, &sub, variant, size, *threads)?);
                median(mine)
            };
            times[r].push(meas.seconds);
            outs.push(meas.output);
            // Two Beamline rows share a variant name: keep the first one's output.
            if r == 1 {
                let kept = sub.join("out-beamline-1-thread");
                // Files of an earlier run (another number of shards) would join this one's.
                if kept.exists() {
                    std::fs::remove_dir_all(&kept)?;
                }
                std::fs::create_dir_all(&kept)?;
                for e in std::fs::read_dir(&sub)? {
                    let e = e?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with(&format!("out-{variant}")) {
                        std::fs::rename(e.path(), kept.join(&name))?;
                    }
                }
                *outs.last_mut().expect("pushed") =
                    kept.join(format!("out-{variant}")).join("part");
            }
        }
        for (r, out) in outs.iter().enumerate().skip(1) {
            if !outputs_agree(&cli.workload, &outs[0], out)? {
                bail!("{} disagrees with the reference at {m}x", rows[r].0);
            }
        }
    }
    println!(
        "scaling: {} at sizes {:.2} / {:.2} / {:.2} (--size units){}; all outputs agree",
        cli.workload,
        largest / 4.0,
        largest / 2.0,
        largest,
        repeat_note(cli)
    );
    println!("| variant | 1x (s) | 2x (s) | 4x (s) | 4x time / 1x time |");
    println!("|---|---|---|---|---|");
    for ((label, _, _), t) in rows.iter().zip(&times) {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} |",
            t[0],
            t[1],
            t[2],
            t[2] / t[0]
        );
    }
    if cli.dir.is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
