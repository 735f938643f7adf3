//! Sharded file sinks (text, Parquet): `PREFIX-SSSSS-of-NNNNN[SUFFIX]` files written
//! through temporary files and renamed once all are written.

use crate::dofn::{DoFn, NamedDoFn, ProcessContext};
use crate::io::file_commits::{committed_by_checkpoints, dir_and_stem};
use crate::io::{IO_NAMESPACE, SINK_ANNOTATION};
use crate::pcollection::PCollection;
use crate::transforms::{Impulse, ParDo, WindowInto};
use beamline_engine::UserError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// A temporary directory beside `prefix`, named after this process and the moment.
pub(crate) fn temp_dir_for(prefix: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    PathBuf::from(format!(
        "{prefix}.beamline-temp-{}-{nanos}",
        std::process::id()
    ))
}

/// A buffered writer of a new file at `path`, creating its directory.
///
/// # Errors
/// The directory or the file cannot be created.
pub(crate) fn create_writer(path: &Path) -> Result<BufWriter<File>, UserError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let f = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    // 64 KiB: few system calls, and small enough for the allocator to reuse when
    // streaming writes a file per bundle.
    Ok(BufWriter::with_capacity(1 << 16, f))
}

/// What a fixed number of shards writes for a shard that received no element.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) enum EmptyShard {
    /// An empty file (text).
    #[default]
    Blank,
    /// A file with these bytes (a Parquet file with a schema and no rows).
    Contents(Vec<u8>),
    /// A Parquet file with no rows, the schema of another shard and this codec; failing
    /// with this message when no shard has rows.
    ParquetLikeSibling {
        /// The codec's name.
        codec: String,
        /// The error when there is no sibling to take the schema from.
        no_sibling: String,
    },
    /// Fail the job with this message (the format cannot write an empty file).
    Fail(String),
}

/// Renames the temporary files to their final names once all are written.
#[derive(Clone, Serialize, Deserialize)]
struct Finalize {
    prefix: String,
    suffix: String,
    num_shards: usize,
    temp_dir: String,
    #[serde(default)]
    empty_shard: EmptyShard,
}

impl DoFn for Finalize {
    type In = ();
    type Out = String;
    fn process(
        &mut self,
        _: (),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        // Side input 0: the paths of all temporary files. Those of a job with checkpoints
        // are committed by its checkpoints (the last one when the job ends).
        let all: Vec<String> = ctx.side_input_at(0)?;
        let (checkpointed, mut temps): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|t| committed_by_checkpoints(t));
        if temps.is_empty() && !checkpointed.is_empty() {
            return Ok(());
        }
        temps.sort();
        let n = if self.num_shards > 0 {
            self.num_shards
        } else {
            temps.len().max(1)
        };
        let name = |i: usize| format!("{}-{i:05}-of-{n:05}{}", self.prefix, self.suffix);
        let mut finals = Vec::with_capacity(n);
        let mut by_shard: Vec<Option<String>> = vec![None; n];
        if self.num_shards > 0 {
            for t in temps {
                let idx: usize = t
                    .rsplit("shard-")
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("unexpected temporary file {t}"))?;
                by_shard[idx] = Some(t);
            }
        } else {
            for (i, t) in temps.into_iter().enumerate() {
                by_shard[i] = Some(t);
            }
        }
        let mut empty_shard = self.empty_shard.clone();
        if let EmptyShard::ParquetLikeSibling { codec, no_sibling } = &empty_shard {
            empty_shard = match by_shard.iter().flatten().next() {
                Some(sibling) => {
                    EmptyShard::Contents(crate::io::parquet::empty_file_like(sibling, codec)?)
                }
                None => EmptyShard::Fail(no_sibling.clone()),
            };
        }
        for (i, temp) in by_shard.into_iter().enumerate() {
            let target = name(i);
            if let Some(dir) = Path::new(&target).parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            match temp {
                Some(t) => std::fs::rename(&t, &target)
                    .map_err(|e| format!("renaming {t} to {target}: {e}"))?,
                None => match &empty_shard {
                    EmptyShard::Blank => {
                        File::create(&target).map_err(|e| format!("creating {target}: {e}"))?;
                    }
                    EmptyShard::Contents(bytes) => std::fs::write(&target, bytes)
                        .map_err(|e| format!("writing {target}: {e}"))?,
                    EmptyShard::Fail(msg) => return Err(format!("shard {i}: {msg}").into()),
                    EmptyShard::ParquetLikeSibling { .. } => unreachable!("resolved above"),
                },
            }
            finals.push(target);
        }
        if checkpointed.is_empty() {
            let _ = std::fs::remove_dir_all(&self.temp_dir);
        }
        remove_stale_shards(&self.prefix, &self.suffix, n)?;
        ctx.inc_counter(IO_NAMESPACE, "filesWritten", finals.len() as i64);
        for f in finals {
            ctx.output(f);
        }
        Ok(())
    }
}

/// Removes shards of an earlier run with another shard count: files named
/// `PREFIX-SSSSS-of-MMMMM[SUFFIX]` with `MMMMM` other than `n` (reading `PREFIX-*` would
/// otherwise mix both runs' output). Shards of this run's count were just replaced.
///
/// # Errors
/// When the directory cannot be listed or a stale shard cannot be removed.
pub(crate) fn remove_stale_shards(prefix: &str, suffix: &str, n: usize) -> Result<(), UserError> {
    let Some((dir, stem)) = dir_and_stem(prefix) else {
        return Ok(());
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => return Err(format!("listing {}: {e}", dir.display()).into()),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(total) = shard_total(&name, &stem, suffix) else {
            continue;
        };
        if total != n {
            let stale = entry.path();
            std::fs::remove_file(&stale)
                .map_err(|e| format!("removing stale shard {}: {e}", stale.display()))?;
        }
    }
    Ok(())
}

/// The shard count `MMMMM` of `STEM-SSSSS-of-MMMMM[SUFFIX]`, if `name` is such a shard.
fn shard_total(name: &str, stem: &str, suffix: &str) -> Option<usize> {
    let rest = name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(suffix)?;
    let (index, total) = rest.split_once("-of-")?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(total) {
        return None;
    }
    total.parse().ok()
}

impl NamedDoFn for Finalize {
    const NAME: &'static str = "beamline.io.FinalizeText";
}
crate::register_dofn!(Finalize);

/// A sink writing `PREFIX-SSSSS-of-NNNNN[SUFFIX]` files through temporary files: one per
/// bundle (runner-chosen shards) or one per shard (fixed number, elements spread at
/// random), renamed once all are written.
pub(crate) struct ShardedSink {
    pub(crate) prefix: String,
    pub(crate) suffix: String,
    pub(crate) num_shards: usize,
    pub(crate) empty_shard: EmptyShard,
    /// The bundle writer commits its files with checkpoints (`PREFIX-cNNNNNN-*`).
    pub(crate) checkpoint_files: bool,
}

impl ShardedSink {
    /// Writes `input` with the DoFn writing a bundle's elements, or the one writing a
    /// shard's, both made for the temporary directory; returns the final file names.
    pub(crate) fn write<T, B, S>(
        self,
        input: &PCollection<T>,
        bundle_writer: impl FnOnce(&str) -> B,
        shard_writer: impl FnOnce(&str) -> S,
    ) -> PCollection<String>
    where
        T: crate::Element,
        B: NamedDoFn<In = T, Out = String>,
        S: NamedDoFn<In = (i64, Vec<T>), Out = String>,
    {
        let p = input.pipeline().clone();
        // With checkpoints (streaming) each checkpoint commits files of its own.
        let checkpointed = p.options().values().contains_key("checkpoint_dir");
        let shards = match self.num_shards {
            0 if self.checkpoint_files && checkpointed => "cNNNNNN-*".to_string(),
            0 => "SSSSS-of-NNNNN".to_string(),
            n => format!("SSSSS-of-{n:05}"),
        };
        p.annotate(
            SINK_ANNOTATION,
            &format!("{}-{shards}{}", self.prefix, self.suffix),
        );
        let temp_dir = temp_dir_for(&self.prefix);
        p.cleanup_on_failure(temp_dir.clone());
        let temp_dir = temp_dir.to_string_lossy().into_owned();
        // Shards are files of the whole collection, whatever its windows.
        let input = input.apply("GlobalWindow", WindowInto::global());
        let temps = if self.num_shards > 0 {
            let n = self.num_shards as u64;
            // Round robin from a random start (as Beam's WriteFiles does): every shard gets
            // an element when there are as many as shards, and none gets more than one
            // more than another.
            let next =
                std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rand::random::<u64>() % n));
            input
                .map("AssignShard", move |x: T| {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    ((i % n) as i64, x)
                })
                .group_by_key("GroupShards")
                .apply("WriteShards", ParDo::named(shard_writer(&temp_dir)))
        } else {
            input.apply("WriteBundles", ParDo::named(bundle_writer(&temp_dir)))
        };
        let files = FileNames {
            prefix: self.prefix,
            suffix: self.suffix,
            num_shards: self.num_shards,
            temp_dir,
        };
        finalize(&temps, files, self.empty_shard)
    }
}

/// Final and temporary names of a sharded file sink.
pub(crate) struct FileNames {
    pub(crate) prefix: String,
    pub(crate) suffix: String,
    pub(crate) num_shards: usize,
    pub(crate) temp_dir: String,
}

/// Renames the temporary files listed in `temps` (`shard-NNNNN` files when the number of
/// shards is fixed) to `PREFIX-SSSSS-of-NNNNN[SUFFIX]`; returns the final names.
pub(crate) fn finalize(
    temps: &PCollection<String>,
    files: FileNames,
    empty_shard: EmptyShard,
) -> PCollection<String> {
    // Runs once, after every temporary file is written, even when there are none.
    let written = temps.as_iter();
    temps.pipeline().apply("FinalizeImpulse", Impulse).apply(
        "Finalize",
        ParDo::named(Finalize {
            prefix: files.prefix,
            suffix: files.suffix,
            num_shards: files.num_shards,
            temp_dir: files.temp_dir,
            empty_shard,
        })
        .with_side_input(&written),
    )
}
