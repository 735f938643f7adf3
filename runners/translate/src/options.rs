//! The options of Beamline's engine, declared once for every runner that drives it.

use beamline_engine::checkpoint::{CheckpointOptions, Restore, DEFAULT_FULL_EVERY};
use beamline_engine::options::{parse_duration_ms, parse_size, OptionKind, OptionSpec};
use beamline_engine::restart::{Restarts, DEFAULT_RESTART_DELAY};
use beamline_engine::EngineError;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Most worker threads per core that `--threads` accepts: past it threads only contend
/// (`--threads=5000` on a small input spent minutes switching between idle workers).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The options the engine's executors read, with their types, defaults and help
/// (`--streaming`, which every runner reads, is the SDK's).
pub fn engine_options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::new(
            "threads",
            OptionKind::Integer,
            "worker threads (0: one per core); at most 4 per core",
        )
        .default_value(0),
        OptionSpec::new(
            "memory-budget",
            OptionKind::Size,
            "spill to disk past this size (batch: grouping state, materialized data; streaming and batch: the keyed state of stateful DoFns)",
        ),
        OptionSpec::new(
            "spill-dir",
            OptionKind::Text,
            "where spill files go (default: the system's temporary directory)",
        ),
        OptionSpec::new(
            "max-bundle-size",
            OptionKind::Integer,
            "streaming: most elements a source reads into one bundle",
        )
        .default_value(beamline_engine::stream::DEFAULT_MAX_BUNDLE_SIZE),
    ]
    .into_iter()
    .chain(checkpoint_options())
    .collect()
}

/// The checkpoint options (`--checkpoint-dir` and its companions), for runners that take
/// checkpoints.
pub fn checkpoint_options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::new(
            "checkpoint-dir",
            OptionKind::Text,
            "streaming: keep checkpoints here; a job started again with it resumes from the newest",
        ),
        OptionSpec::new(
            "checkpoint-interval",
            OptionKind::Duration,
            "streaming: time between checkpoints (with --checkpoint-dir)",
        )
        .default_value("10s"),
        OptionSpec::new(
            "restore",
            OptionKind::Text,
            "with --checkpoint-dir: 'latest' resumes from the newest checkpoint, 'none' starts over",
        )
        .default_value("latest"),
        OptionSpec::new(
            "restarts",
            OptionKind::Integer,
            "with --checkpoint-dir: after a failure, start the job again from its newest checkpoint, at most this many times",
        )
        .default_value(0),
        OptionSpec::new(
            "restart-delay",
            OptionKind::Duration,
            "with --restarts: time between a failure and the restart",
        )
        .default_value("1s"),
    ]
}

/// The engine options of one job, checked and typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// `--streaming` was given.
    pub streaming: bool,
    /// Bytes kept in memory before batch grouping state spills (`None`: no limit).
    pub memory_budget: Option<usize>,
    /// Where spill files go.
    pub spill_dir: Option<PathBuf>,
    /// Most elements a streaming source reads into one bundle.
    pub max_bundle_size: usize,
    /// Checkpoints of a streaming job (`--checkpoint-dir` and its companions).
    pub checkpoint: Option<CheckpointOptions>,
    /// How a failed job restarts from its checkpoints (`--restarts`, `--restart-delay`).
    pub restarts: Restarts,
}

fn bad(name: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidPipeline(format!("--{name}: {why}"))
}

impl EngineOptions {
    /// Reads the engine's options from a job's options (names with `_`); others are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use beamline_translate::EngineOptions;
    /// let opts = [("threads".to_string(), "2".to_string())].into_iter().collect();
    /// assert_eq!(EngineOptions::from_options(&opts).unwrap().threads, 2);
    /// ```
    ///
    /// # Errors
    /// [`EngineError::InvalidPipeline`] naming the option whose value is malformed or out
    /// of range (more threads than [`MAX_THREADS_PER_CORE`] per core, a zero bundle size).
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self, EngineError> {
        let threads = match options.get("threads") {
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| bad("threads", format!("'{t}' is not a number of threads")))?,
            None => 0,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max = cores * MAX_THREADS_PER_CORE;
        if threads > max {
            return Err(bad(
                "threads",
                format!(
                    "{threads} is more than {MAX_THREADS_PER_CORE} threads for each of this \
                     machine's {cores} cores (at most {max}; 0 means one per core)"
                ),
            ));
        }
        let streaming = match options.get("streaming").map(String::as_str) {
            None | Some("false" | "False" | "0") => false,
            Some("true" | "True" | "1") => true,
            Some(v) => return Err(bad("streaming", format!("'{v}' is not true or false"))),
        };
        let memory_budget = options
            .get("memory_budget")
            .map(|b| parse_size(b).map_err(|why| bad("memory-budget", why)))
            .transpose()?;
        let max_bundle_size = match options.get("max_bundle_size") {
            Some(n) => n.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| {
                bad(
                    "max-bundle-size",
                    format!("must be a positive number, got '{n}'"),
                )
            })?,
            None => beamline_engine::stream::DEFAULT_MAX_BUNDLE_SIZE,
        };
        let interval = options
            .get("checkpoint_interval")
            .map(|d| parse_duration_ms(d).map_err(|why| bad("checkpoint-interval", why)))
            .transpose()?
            .unwrap_or(10_000);
        if interval == 0 {
            return Err(bad("checkpoint-interval", "must be more than 0"));
        }
        let restore: Restore = options
            .get("restore")
            .map(|r| r.parse().map_err(|why: String| bad("restore", why)))
            .transpose()?
            .unwrap_or(Restore::Latest);
        let checkpoint = options.get("checkpoint_dir").map(|dir| CheckpointOptions {
            dir: PathBuf::from(dir),
            interval: std::time::Duration::from_millis(interval),
            restore,
            full_every: DEFAULT_FULL_EVERY,
        });
        if checkpoint.is_none() {
            for (key, flag) in [
                ("checkpoint_interval", "checkpoint-interval"),
                ("restore", "restore"),
            ] {
                if options.contains_key(key) {
                    return Err(bad(flag, "needs --checkpoint-dir"));
                }
            }
        }
        let restarts = restarts_of(options, checkpoint.is_some())?;
        Ok(EngineOptions {
            restarts,
            threads,
            streaming,
            memory_budget,
            spill_dir: options.get("spill_dir").map(PathBuf::from),
            max_bundle_size,
            checkpoint,
        })
    }
}

/// `--restarts` and `--restart-delay`; `checkpointed`: `--checkpoint-dir` was given.
fn restarts_of(
    options: &BTreeMap<String, String>,
    checkpointed: bool,
) -> Result<Restarts, EngineError> {
    let max = match options.get("restarts") {
        None => 0,
        Some(v) => v
            .parse()
            .ok()
            .filter(|&n: &usize| n <= 1000)
            .ok_or_else(|| bad("restarts", format!("'{v}' is not a number from 0 to 1000")))?,
    };
    let delay = match options.get("restart_delay") {
        None => DEFAULT_RESTART_DELAY,
        Some(v) => std::time::Duration::from_millis(
            parse_duration_ms(v).map_err(|why| bad("restart-delay", why))?,
        ),
    };
    if max > 0 && !checkpointed {
        return Err(bad(
            "restarts",
            "a job restarts from its checkpoints: pass --checkpoint-dir as well",
        ));
    }
    if options.contains_key("restart_delay") && max == 0 {
        return Err(bad("restart-delay", "only with --restarts"));
    }
    Ok(Restarts { max, delay })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn too_many_threads_is_an_error_naming_the_bound() {
        let e = EngineOptions::from_options(&opts(&[("threads", "5000")])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("--threads: 5000 is more than 4 threads"),
            "{msg}"
        );
        assert!(EngineOptions::from_options(&opts(&[("threads", "2")])).is_ok());
    }

    #[test]
    fn malformed_values_name_the_option() {
        for (k, v, needle) in [
            ("threads", "many", "--threads"),
            ("memory_budget", "lots", "--memory-budget"),
            ("max_bundle_size", "0", "--max-bundle-size"),
            ("streaming", "perhaps", "--streaming"),
        ] {
            let e = EngineOptions::from_options(&opts(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
