//! Files a sink commits with checkpoints (`WriteToText`, `WriteToParquet`): the files a
//! bundle writer closed since the last checkpoint, the commit record that renames them to
//! `PREFIX-cNNNNNN[-wW]-XXXX[SUFFIX]` once the checkpoint is durable, and the clean-up of
//! temporary directories once the job's last checkpoint is committed.

use crate::dofn::CommitContext;
use crate::io::IO_NAMESPACE;
use beamline_engine::UserError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The checkpoint side of a file sink's bundle writer: files closed since the last
/// checkpoint, and which instance of the sink it is.
#[derive(Debug, Default)]
pub(crate) struct CommittedFiles {
    /// Files closed since the last checkpoint.
    pub(crate) closed: Vec<String>,
    /// Which parallel instance of the sink this is (a distributed job's worker).
    instance: usize,
    /// The job takes checkpoints (they commit the files).
    pub(crate) checkpointed: bool,
}

impl CommittedFiles {
    /// The job takes checkpoints; this is sink instance `instance`.
    pub(crate) fn enable(&mut self, instance: usize) {
        self.instance = instance;
        self.checkpointed = true;
    }

    /// Before a file is opened in `temp_dir`: with checkpoints, marks the directory (the
    /// end of the job must not publish files the checkpoints commit).
    pub(crate) fn opening(&self, temp_dir: &str) -> Result<(), UserError> {
        if self.checkpointed {
            mark_checkpointed(temp_dir)?;
        }
        Ok(())
    }

    /// The commit record of checkpoint `checkpoint` (`last`: the job's last) for the
    /// files closed since the one before, and `current` (the open file, just closed).
    pub(crate) fn prepare(
        &mut self,
        (temp_dir, prefix, suffix): (&str, &str, &str),
        checkpoint: u64,
        last: bool,
        current: Option<String>,
    ) -> Result<Option<Vec<u8>>, UserError> {
        self.closed.extend(current);
        if !self.closed.is_empty() {
            mark_checkpointed(temp_dir)?;
        }
        renames_record(
            &mut self.closed,
            checkpoint,
            (prefix, suffix),
            self.instance,
            temp_dir,
            last,
        )
        .map(Some)
    }
}

/// The directory of an output prefix (`.` when it has none) and its file-name part.
pub(crate) fn dir_and_stem(prefix: &str) -> Option<(PathBuf, String)> {
    let path = Path::new(prefix);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = path.file_name()?.to_string_lossy().into_owned();
    Some((dir, stem))
}

/// A file in a sink's temporary directory saying that checkpoints commit its files (the
/// end of the job must leave them to the last checkpoint).
const CHECKPOINTED: &str = "CHECKPOINTED";

/// What a checkpoint of a file sink commits: temporary files and their final names. Its
/// commit also removes files of later checkpoints (`PREFIX-cNNNNNN-*`, `NNNNNN` past
/// `checkpoint`): a job restarted from an earlier checkpoint than its newest (damaged)
/// one writes their contents again.
#[derive(Serialize, Deserialize)]
struct Renames {
    checkpoint: u64,
    /// The sink instance that wrote the files (a distributed job's worker).
    #[serde(default)]
    instance: usize,
    prefix: String,
    suffix: String,
    files: Vec<(String, String)>,
    /// The sink's temporary directory.
    #[serde(default)]
    temp_dir: Option<String>,
    /// The job's last checkpoint: once committed, the temporary directories go.
    #[serde(default)]
    last: bool,
}

/// Removes `PREFIX-cNNNNNN-*[SUFFIX]` files with `NNNNNN` past `checkpoint`.
/// The part of a committed file's name that says which sink instance wrote it: nothing for
/// the first (the local runner's only one), `-wN` for worker `N` of a distributed job.
fn instance_tag(instance: usize) -> String {
    match instance {
        0 => String::new(),
        i => format!("-w{i}"),
    }
}

/// Removes the files sink instance `instance` committed under checkpoints after
/// `checkpoint` (a job restored from an earlier one writes their data again).
fn remove_later_checkpoints(
    prefix: &str,
    suffix: &str,
    checkpoint: u64,
    instance: usize,
) -> Result<(), UserError> {
    let Some((dir, stem)) = dir_and_stem(prefix) else {
        return Ok(());
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name
            .strip_prefix(&stem)
            .and_then(|r| r.strip_prefix("-c"))
            .filter(|r| r.ends_with(suffix))
            // Another instance's files are its own to remove.
            .filter(|r| {
                let rest = r.get(6..).unwrap_or("");
                match instance {
                    0 => !rest.starts_with("-w"),
                    i => rest.starts_with(&format!("{}-", instance_tag(i))),
                }
            })
            .and_then(|r| r.get(..6))
            .and_then(|d| d.parse::<u64>().ok());
        if id.is_some_and(|id| id > checkpoint) {
            std::fs::remove_file(entry.path())
                .map_err(|e| format!("removing {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// A new temporary file of a sink in `temp_dir`: `bundle-RANDOM-pPID`, with the id of the
/// process writing it (processes of one job share the directory; see [`remove_if_done`]).
pub(crate) fn bundle_path(temp_dir: &str) -> String {
    format!(
        "{temp_dir}/bundle-{:016x}-p{}",
        rand::random::<u64>(),
        std::process::id()
    )
}

/// Removes temporary directory `dir` (of a job whose input ended) when it holds nothing
/// but its marker: another instance of the sink may still have files in it to commit.
/// Files written by processes that are gone go first: a job restarted by its launcher
/// (`--restarts`) keeps its temporary directory, and what a killed process wrote after
/// its last checkpoint is no checkpoint's (those it listed were committed on restore).
fn remove_if_done(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<_> = entries.flatten().collect();
    for e in &entries {
        let name = e.file_name();
        let pid = name
            .to_str()
            .filter(|n| n.starts_with("bundle-"))
            .and_then(|n| n.rsplit_once("-p"))
            .and_then(|(_, p)| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && process_gone(p)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    if entries
        .flatten()
        .all(|e| e.file_name().to_str() == Some(CHECKPOINTED))
    {
        let _ = std::fs::remove_file(dir.join(CHECKPOINTED));
        // Fails (and is left) if a file appeared meanwhile.
        let _ = std::fs::remove_dir(dir);
    }
}

/// Whether process `pid` is gone (known only where `/proc` lists processes).
fn process_gone(pid: u32) -> bool {
    Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary directories of earlier runs of a job with checkpoints writing
/// `prefix` whose process is gone (`PREFIX.beamline-temp-PID-*` with the checkpoint
/// marker, or empty, other than `own`): a run killed after its last checkpoint left them
/// with what it wrote since, which no checkpoint commits (the run restored from that
/// checkpoint committed what the checkpoint listed when it started). A directory that
/// cannot be removed is left with a warning: it holds no output.
fn remove_orphaned_temp_dirs(prefix: &str, own: &str) {
    let Some((dir, stem)) = dir_and_stem(prefix) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let own = Path::new(own).file_name();
    for e in entries.flatten() {
        let name = e.file_name();
        if Some(name.as_os_str()) == own {
            continue;
        }
        let name = name.to_string_lossy();
        let pid = name
            .strip_prefix(&stem)
            .and_then(|r| r.strip_prefix(".beamline-temp-"))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        let path = e.path();
        // An empty one too: a run killed between creating it and its marker.
        let empty = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
        if (empty || path.join(CHECKPOINTED).exists()) && process_gone(pid) {
            // What is left after a failure is only garbage, not output.
            match std::fs::remove_dir_all(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("could not remove {}: {err}", path.display());
                }
                _ => {}
            }
        }
    }
}

/// The temporary files of `temps` that checkpoints commit (their directory says so).
pub(crate) fn committed_by_checkpoints(temp: &str) -> bool {
    Path::new(temp)
        .parent()
        .is_some_and(|d| d.join(CHECKPOINTED).exists())
}

/// Marks a sink's temporary directory as one whose files checkpoints commit.
pub(crate) fn mark_checkpointed(temp_dir: &str) -> Result<(), UserError> {
    let marker = Path::new(temp_dir).join(CHECKPOINTED);
    if !marker.exists() {
        std::fs::create_dir_all(temp_dir)
            .and_then(|()| File::create(&marker).map(drop))
            .map_err(|e| format!("creating {}: {e}", marker.display()))?;
    }
    Ok(())
}

/// The commit record of checkpoint `checkpoint` for the temporary files in `closed`
/// (taken), written by sink instance `instance`: each is renamed to
/// `PREFIX-cNNNNNN[-wW]-XXXX[SUFFIX]` by [`commit_renames`].
fn renames_record(
    closed: &mut Vec<String>,
    checkpoint: u64,
    (prefix, suffix): (&str, &str),
    instance: usize,
    temp_dir: &str,
    last: bool,
) -> Result<Vec<u8>, UserError> {
    let mut renames = Vec::new();
    for temp in closed.drain(..) {
        // Gone: the end of a job published it before checkpoints started.
        if !Path::new(&temp).exists() {
            continue;
        }
        let tag = temp.rsplit("bundle-").next().unwrap_or("0");
        // Without the writer's process id.
        let tag = tag.split("-p").next().unwrap_or(tag);
        let target = format!(
            "{prefix}-c{checkpoint:06}{}-{tag}{suffix}",
            instance_tag(instance),
        );
        renames.push((temp, target));
    }
    Ok(serde_json::to_vec(&Renames {
        checkpoint,
        instance,
        prefix: prefix.to_string(),
        suffix: suffix.to_string(),
        files: renames,
        temp_dir: Some(temp_dir.to_string()),
        last,
    })?)
}

/// Publishes what a [`renames_record`] lists (idempotent: a file renamed before stays),
/// after removing the files of later checkpoints; counts the files it renamed. After the
/// job's last checkpoint it removes the temporary directories: its own once empty, and
/// those killed runs left.
pub(crate) fn commit_renames(record: &[u8], ctx: &mut CommitContext<'_>) -> Result<(), UserError> {
    let r: Renames = serde_json::from_slice(record)?;
    remove_later_checkpoints(&r.prefix, &r.suffix, r.checkpoint, r.instance)?;
    // Counts the files this call published (not those a run before published).
    let mut published = 0;
    let dirs: std::collections::BTreeSet<PathBuf> = r
        .files
        .iter()
        .filter_map(|(t, _)| Path::new(t).parent().map(Path::to_path_buf))
        .chain(r.temp_dir.as_deref().map(PathBuf::from))
        .collect();
    for (temp, target) in r.files {
        if Path::new(&temp).exists() {
            if let Some(dir) = Path::new(&target).parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            std::fs::rename(&temp, &target)
                .map_err(|e| format!("renaming {temp} to {target}: {e}"))?;
            published += 1;
        } else if !Path::new(&target).exists() {
            return Err(
                format!("cannot commit {target}: its temporary file {temp} is gone").into(),
            );
        }
    }
    ctx.inc_counter(IO_NAMESPACE, "filesWritten", published);
    if r.last {
        // Every restore's commit is done (the last checkpoint is whole): what earlier,
        // killed runs left is no checkpoint's any more.
        for d in dirs {
            remove_if_done(&d);
        }
        // One instance does it: several removing one directory at once trip over each
        // other's removals.
        if let (Some(own), 0) = (&r.temp_dir, r.instance) {
            remove_orphaned_temp_dirs(&r.prefix, own);
        }
    }
    Ok(())
}
