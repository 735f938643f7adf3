//! Keyed workloads over generated pairs: gbk-sum, combine-mean, cogroup join, dedup.
//!
//! Inputs are generated deterministically from the element index (no files), by the
//! pipelines themselves (in parallel chunks) and by the hand-written references.

use anyhow::Result;
use beamline::{
    CoGroupByKey, DoFn, Impulse, Mean, PCollection, PInput, ParDo, Pipeline, ProcessContext,
    Reshuffle, StateSpec, UserError, WriteToText,
};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The keyed workloads as an Apache Beam Python pipeline (same generated input).
const BEAM_KEYED_SCRIPT: &str = include_str!("../python/beam_keyed.py");

/// Variants, reference first: the word count's (the same references and Beamline runs).
pub const VARIANTS: [&str; 5] = crate::wordcount::VARIANTS;

const CHUNK: u64 = 100_000;

fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 29)
}

/// The i-th pair of stream `s`: (key, value).
fn pair(s: u64, i: u64, keys: u64) -> (i64, i64) {
    let h = mix(i ^ (s << 56));
    ((h % keys) as i64, ((h >> 20) % 1000) as i64)
}

/// Number of elements and keys of a workload at `size` (1 = the size).
pub fn shape(workload: &str, size: f64) -> (u64, u64) {
    let (n, keys) = match workload {
        "gbk-sum" | "combine-mean" => (20_000_000.0, 100_000),
        "cogroup" => (5_000_000.0, 1_000_000),
        _ => (10_000_000.0, 1_000_000),
    };
    ((n * size) as u64, keys)
}

fn generated(p: &Pipeline, name: &str, stream: u64, n: u64, keys: u64) -> PCollection<(i64, i64)> {
    p.apply(&format!("{name}Impulse"), Impulse)
        .flat_map(&format!("{name}Chunks"), move |_: ()| {
            (0..n.div_ceil(CHUNK)).collect::<Vec<u64>>()
        })
        .apply(&format!("{name}Spread"), Reshuffle::new())
        .flat_map(&format!("{name}Pairs"), move |c: u64| {
            (c * CHUNK..((c + 1) * CHUNK).min(n)).map(move |i| pair(stream, i, keys))
        })
}

/// Emits each (key, value) the first time it is seen for its key (a set per key).
#[derive(Clone)]
struct Dedup;

impl DoFn for Dedup {
    type In = (i64, i64);
    type Out = (i64, i64);
    fn process(
        &mut self,
        (k, v): (i64, i64),
        ctx: &mut ProcessContext<'_, '_, (i64, i64)>,
    ) -> Result<(), UserError> {
        if ctx.state()?.set_add("seen", v)? {
            ctx.output((k, v));
        }
        Ok(())
    }
}

fn write_lines(output: &Path, lines: impl Iterator<Item = String>) -> Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(output)?);
    for l in lines {
        writeln!(w, "{l}")?;
    }
    w.flush()?;
    Ok(())
}

/// Runs `variant` of `workload`, writing `key,result` lines under `output`.
pub fn run(
    workload: &str,
    variant: &str,
    size: f64,
    threads: usize,
    memory_budget: Option<&str>,
    output: &Path,
) -> Result<()> {
    let (n, keys) = shape(workload, size);
    if variant == crate::wordcount::BEAM_VARIANT {
        let status = std::process::Command::new(crate::wordcount::beam_python()?)
            .args(["-c", BEAM_KEYED_SCRIPT, workload])
            .arg(n.to_string())
            .arg(keys.to_string())
            .arg(output)
            .env("PYTHONWARNINGS", "ignore")
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "the Beam pipeline failed");
        return Ok(());
    }
    if variant.starts_with("beamline-") {
        let mut opts = crate::variants::beamline_options(variant, threads);
        if let Some(b) = memory_budget {
            opts = opts.set("memory_budget", b);
        }
        let p = Pipeline::new(opts);
        let a = generated(&p, "A", 0, n, keys);
        let lines: PCollection<String> = match workload {
            "gbk-sum" => a
                .group_by_key("Group")
                .map("Sum", |(k, vs): (i64, Vec<i64>)| {
                    format!("{k},{}", vs.iter().sum::<i64>())
                }),
            "combine-mean" => a
                .apply("Mean", Mean::per_key())
                .map("Format", |(k, m): (i64, f64)| format!("{k},{m:.6}")),
            "cogroup" => {
                let b = generated(&p, "B", 1, n, keys);
                (a, b)
                    .apply("Join", CoGroupByKey::new())
                    .map("Pairs", |(k, (x, y)): (i64, (Vec<i64>, Vec<i64>))| {
                        format!("{k},{}", x.len() * y.len())
                    })
            }
            _ => a
                .apply(
                    "Dedup",
                    ParDo::of(Dedup).with_state(StateSpec::set::<i64>("seen")),
                )
                .apply("Count", beamline::Count::per_key())
                .map("Format", |(k, c): (i64, i64)| format!("{k},{c}")),
        };
        lines.apply("Write", WriteToText::new(output.to_string_lossy()));
        p.run()?;
        return Ok(());
    }
    let parallel = variant == "rust-rayon";
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    // Folds stream `s` into per-key accumulators, sequentially or in rayon chunks.
    fn fold<A: Send + Default + Clone>(
        pool: &rayon::ThreadPool,
        parallel: bool,
        s: u64,
        n: u64,
        keys: u64,
        add: impl Fn(&mut A, i64) + Sync + Send,
        merge: impl Fn(&mut A, A) + Sync + Send,
    ) -> FxHashMap<i64, A> {
        let chunk = |c: u64| {
            let mut m: FxHashMap<i64, A> = FxHashMap::default();
            for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                let (k, v) = pair(s, i, keys);
                add(m.entry(k).or_default(), v);
            }
            m
        };
        let combine = |mut a: FxHashMap<i64, A>, b: FxHashMap<i64, A>| {
            for (k, v) in b {
                merge(a.entry(k).or_default(), v);
            }
            a
        };
        let chunks = n.div_ceil(CHUNK);
        if parallel {
            pool.install(|| {
                (0..chunks)
                    .into_par_iter()
                    .map(chunk)
                    .reduce(FxHashMap::default, combine)
            })
        } else {
            (0..chunks).map(chunk).fold(FxHashMap::default(), combine)
        }
    }
    let lines: Vec<String> = match workload {
        "gbk-sum" => fold::<i64>(&pool, parallel, 0, n, keys, |a, v| *a += v, |a, b| *a += b)
            .into_iter()
            .map(|(k, s)| format!("{k},{s}"))
            .collect(),
        "combine-mean" => fold::<(i64, i64)>(
            &pool,
            parallel,
            0,
            n,
            keys,
            |a, v| {
                a.0 += v;
                a.1 += 1
            },
            |a, b| {
                a.0 += b.0;
                a.1 += b.1
            },
        )
        .into_iter()
        .map(|(k, (s, c))| format!("{k},{:.6}", s as f64 / c as f64))
        .collect(),
        "cogroup" => {
            let a = fold::<i64>(&pool, parallel, 0, n, keys, |a, _| *a += 1, |a, b| *a += b);
            let b = fold::<i64>(&pool, parallel, 1, n, keys, |a, _| *a += 1, |a, b| *a += b);
            let mut all: Vec<i64> = a.keys().chain(b.keys()).copied().collect();
            all.sort_unstable();
            all.dedup();
            all.into_iter()
                .map(|k| format!("{k},{}", a.get(&k).unwrap_or(&0) * b.get(&k).unwrap_or(&0)))
                .collect()
        }
        _ => fold::<Vec<i64>>(
            &pool,
            parallel,
            0,
            n,
            keys,
            |a, v| {
                if !a.contains(&v) {
                    a.push(v)
                }
            },
            |a, b| {
                for v in b {
                    if !a.contains(&v) {
                        a.push(v)
                    }
                }
            },
        )
        .into_iter()
        .map(|(k, vs)| format!("{k},{}", vs.len()))
        .collect(),
    };
    write_lines(output, lines.into_iter())
}

/// Reads `key,result` lines of `output` (or its shards) into a sorted list.
pub fn load_output(output: &Path) -> Result<Vec<String>> {
    let dir = output.parent().expect("output has a directory");
    let stem = output
        .file_name()
        .expect("output has a name")
        .to_string_lossy()
        .into_owned();
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == stem || name.starts_with(&format!("{stem}-")) {
            lines.extend(
                std::fs::read_to_string(dir.join(&name))?
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    Ok(lines)
}
