//! Files a sink commits with checkpoints (`WriteToText`, `WriteToParquet`): the files a
//! bundle writer closed since the last checkpoint, the commit record that renames them to
//! `PREFIX-cNNNNNN[-wW]-XXXX[SUFFIX]` once the checkpoint is durable, and the clean-up of
//! temporary directories once the job's last checkpoint is committed.

use crate::dofn::CommitContext;
use crate::io::IO_NAMESPACE;
use beamline_engine::orphans::process_gone;
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
    /// This instance's number among the sink instances this process ever ran (see
    /// [`Incarnations`]), once checkpoints are enabled.
    incarnation: Option<u64>,
}

/// The sink instances of this process that are alive, by a number each got when its job
/// enabled checkpoints: a job restarted in its process (`--restarts` on the local runner)
/// tells the temporary files of its failed run (whose instances are gone) from a live
/// instance's in the same directory.
struct Incarnations {
    next: u64,
    live: std::collections::BTreeSet<u64>,
}

static INCARNATIONS: std::sync::Mutex<Incarnations> = std::sync::Mutex::new(Incarnations {
    next: 0,
    live: std::collections::BTreeSet::new(),
});

/// Whether sink instance `incarnation` of this process is alive.
fn is_live(incarnation: u64) -> bool {
    INCARNATIONS
        .lock()
        .map_or(true, |i| i.live.contains(&incarnation))
}

impl Drop for CommittedFiles {
    fn drop(&mut self) {
        if let (Some(n), Ok(mut i)) = (self.incarnation, INCARNATIONS.lock()) {
            i.live.remove(&n);
        }
    }
}

impl CommittedFiles {
    /// The job takes checkpoints; this is sink instance `instance`.
    pub(crate) fn enable(&mut self, instance: usize) {
        self.instance = instance;
        self.checkpointed = true;
        if self.incarnation.is_none() {
            if let Ok(mut i) = INCARNATIONS.lock() {
                let n = i.next;
                i.next += 1;
                i.live.insert(n);
                self.incarnation = Some(n);
            }
        }
    }

    /// A new temporary file in `temp_dir`: `bundle-RANDOM-pPID[-eINCARNATION]`, with the
    /// id of the process writing it and, with checkpoints, the instance's incarnation
    /// (processes of one job share the directory, and so do a job's restarts in one
    /// process; see [`remove_if_done`]).
    pub(crate) fn bundle_path(&self, temp_dir: &str) -> String {
        let incarnation = self
            .incarnation
            .map(|n| format!("-e{n}"))
            .unwrap_or_default();
        format!(
            "{temp_dir}/bundle-{:016x}-p{}{incarnation}",
            rand::random::<u64>(),
            std::process::id()
        )
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

/// Removes temporary directory `dir` (of a job whose input ended) when it holds nothing
/// but its marker: another instance of the sink may still have files in it to commit.
/// Files written by processes or sink instances that are gone go first: a job restarted
/// (`--restarts`) keeps its temporary directory, and what a failed run wrote after its
/// last checkpoint is no checkpoint's (those it listed were committed on restore).
fn remove_if_done(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<_> = entries.flatten().collect();
    for e in &entries {
        let name = e.file_name();
        let gone = match name.to_str().and_then(writer_of) {
            Some((pid, _)) if pid != std::process::id() => process_gone(pid),
            Some((_, Some(incarnation))) => !is_live(incarnation),
            _ => false,
        };
        if gone {
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

/// The process id and sink incarnation (if any) in a temporary file's name
/// ([`CommittedFiles::bundle_path`]).
fn writer_of(name: &str) -> Option<(u32, Option<u64>)> {
    let (_, writer) = name.strip_prefix("bundle-")?.rsplit_once("-p")?;
    match writer.split_once("-e") {
        Some((pid, n)) => Some((pid.parse().ok()?, Some(n.parse().ok()?))),
        None => Some((writer.parse().ok()?, None)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_name_their_writer() {
        let mut files = CommittedFiles::default();
        let plain = files.bundle_path("/t");
        let name = plain.strip_prefix("/t/").unwrap();
        assert_eq!(writer_of(name), Some((std::process::id(), None)));
        files.enable(3);
        let name = files
            .bundle_path("/t")
            .strip_prefix("/t/")
            .unwrap()
            .to_string();
        let Some((pid, Some(n))) = writer_of(&name) else {
            panic!("{name}")
        };
        assert_eq!(pid, std::process::id());
        assert!(is_live(n));
        // A second enable keeps the number; another instance gets another one.
        files.enable(3);
        assert!(files.bundle_path("/t").ends_with(&format!("-e{n}")));
        let mut other = CommittedFiles::default();
        other.enable(0);
        assert_ne!(other.incarnation, Some(n));
        drop(files);
        assert!(!is_live(n), "a dropped instance is gone");
        assert!(is_live(other.incarnation.unwrap()));
        for bad in [
            "part-0",
            "bundle-abc",
            "bundle-abc-pxyz",
            "bundle-abc-p12-ex",
        ] {
            assert_eq!(writer_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn files_of_instances_that_are_gone_are_removed_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("out.beamline-temp-1-2");
        std::fs::create_dir(&temp).unwrap();
        let t = temp.to_str().unwrap();
        // A failed run's instance (dropped), a live one, and a file of no instance.
        let mut failed = CommittedFiles::default();
        failed.enable(0);
        let mut live = CommittedFiles::default();
        live.enable(0);
        let (gone_file, live_file) = (failed.bundle_path(t), live.bundle_path(t));
        let plain = CommittedFiles::default().bundle_path(t);
        for f in [&gone_file, &live_file, &plain] {
            std::fs::write(f, "x").unwrap();
        }
        mark_checkpointed(t).unwrap();
        drop(failed);
        remove_if_done(&temp);
        assert!(
            !Path::new(&gone_file).exists(),
            "the failed run's file stays"
        );
        assert!(Path::new(&live_file).exists() && Path::new(&plain).exists());
        // Once the live instance's file went (committed), the directory goes too.
        std::fs::remove_file(&live_file).unwrap();
        std::fs::remove_file(&plain).unwrap();
        remove_if_done(&temp);
        assert!(!temp.exists());
    }
}
