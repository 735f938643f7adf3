//! Which checkpoint a distributed job restores: each worker's store is listed, and the
//! newest checkpoint every worker can read its part of (or ended before) is chosen.

use beamline_engine::checkpoint::{CheckpointOptions, Restore, Store};
use beamline_engine::EngineError;
use std::path::{Path, PathBuf};

/// The store directory of worker `w`.
pub(crate) fn worker_dir(dir: &Path, w: usize) -> PathBuf {
    dir.join(format!("worker-{w}"))
}

/// The marker saying checkpoint `id` is the last its worker wrote in a job that ended.
pub(crate) fn ended_marker(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("ended-{id:012}"))
}

/// What one worker's directory holds: checkpoint ids and the ids marked ended.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) ids: Vec<u64>,
    pub(crate) ended: Vec<u64>,
}

impl Listing {
    pub(crate) fn read(dir: &Path) -> Listing {
        let mut l = Listing::default();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = |prefix: &str, suffix: &str| {
                    name.strip_prefix(prefix)
                        .and_then(|s| s.strip_suffix(suffix))
                        .and_then(|s| s.parse::<u64>().ok())
                };
                if let Some(id) = id("chk-", ".redb") {
                    l.ids.push(id);
                } else if let Some(id) = id("ended-", "") {
                    l.ended.push(id);
                }
            }
        }
        l.ids.sort_unstable();
        l
    }

    /// The worker's checkpoint that stands for the job's checkpoint `n`: `n` itself, or
    /// the last one of the worker's operators when they ended before `n`.
    pub(crate) fn stands_for(&self, n: u64) -> Option<u64> {
        if self.ids.binary_search(&n).is_ok() {
            return Some(n);
        }
        let before = self.ids.iter().rev().find(|&&id| id < n).copied()?;
        self.ended.contains(&before).then_some(before)
    }
}

/// What a job restores, decided by each process before it connects to the others (so
/// before any checkpoint of this run is written): the newest checkpoint on disk (epochs
/// go on after it) and the newest whole one, each worker's part of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    pub(crate) newest: u64,
    /// The job's checkpoint restored (0: none) and, per worker, the checkpoint that
    /// stands for it (empty: none).
    pub(crate) id: u64,
    pub(crate) parts: Vec<u64>,
}

impl Plan {
    /// Looks at the checkpoints of a job of `workers` workers in `opts.dir`.
    ///
    /// # Errors
    /// Checkpoints of a job with more workers.
    pub(crate) fn make(opts: &CheckpointOptions, workers: usize) -> Result<Plan, EngineError> {
        let dir = &opts.dir;
        let listings: Vec<Listing> = (0..workers)
            .map(|w| Listing::read(&worker_dir(dir, w)))
            .collect();
        let newest = listings
            .iter()
            .filter_map(|l| l.ids.last().copied())
            .max()
            .unwrap_or(0);
        let mut plan = Plan {
            newest,
            ..Plan::default()
        };
        if opts.restore == Restore::None {
            return Ok(plan);
        }
        if Listing::read(&worker_dir(dir, workers))
            .ids
            .last()
            .is_some()
        {
            return Err(EngineError::Checkpoint(format!(
                "the checkpoints in {} were taken by a job of more than {workers} workers; run \
                 it with as many, or with --restore=none to start over",
                dir.display()
            )));
        }
        let mut candidates: Vec<u64> = listings.iter().flat_map(|l| l.ids.clone()).collect();
        candidates.sort_unstable();
        candidates.dedup();
        'candidates: for &n in candidates.iter().rev() {
            let mut parts = Vec::with_capacity(workers);
            for (w, l) in listings.iter().enumerate() {
                let Some(id) = l.stands_for(n) else {
                    continue 'candidates;
                };
                if Store::open(&worker_dir(dir, w))?.verify(id).is_err() {
                    continue 'candidates;
                }
                parts.push(id);
            }
            plan.id = n;
            plan.parts = parts;
            break;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamline_engine::checkpoint::{Snapshot, StateOut};
    use std::time::Duration;

    fn write(dir: &Path, worker: usize, id: u64) {
        let store = Store::open(&worker_dir(dir, worker)).unwrap();
        let mut out = StateOut::new(id, true);
        out.put(b"k", id.to_le_bytes().to_vec());
        let snap = Snapshot {
            id,
            base: id,
            parent: None,
            compact_from: None,
            fingerprint: "f".into(),
            job: Vec::new(),
            nodes: vec![("T".into(), out)],
        };
        store.write(&snap).unwrap();
    }

    fn opts(dir: &Path, restore: Restore) -> CheckpointOptions {
        CheckpointOptions {
            dir: dir.to_path_buf(),
            interval: Duration::from_secs(1),
            restore,
            full_every: 10,
        }
    }

    #[test]
    fn restores_the_newest_checkpoint_every_worker_has() {
        let d = tempfile::tempdir().unwrap();
        for id in [1, 2, 3] {
            write(d.path(), 0, id);
        }
        for id in [1, 2] {
            write(d.path(), 1, id);
        }
        let p = Plan::make(&opts(d.path(), Restore::Latest), 2).unwrap();
        assert_eq!((p.newest, p.id, p.parts.clone()), (3, 2, vec![2, 2]));
        // Started over, the epochs still go on after every id on disk.
        let p = Plan::make(&opts(d.path(), Restore::None), 2).unwrap();
        assert_eq!((p.newest, p.id, p.parts.is_empty()), (3, 0, true));
    }

    #[test]
    fn an_ended_worker_stands_for_later_checkpoints() {
        let d = tempfile::tempdir().unwrap();
        for id in [1, 2, 3, 4] {
            write(d.path(), 0, id);
        }
        write(d.path(), 1, 2);
        assert_eq!(
            Plan::make(&opts(d.path(), Restore::Latest), 2).unwrap().id,
            2
        );
        std::fs::File::create(ended_marker(&worker_dir(d.path(), 1), 2)).unwrap();
        let p = Plan::make(&opts(d.path(), Restore::Latest), 2).unwrap();
        assert_eq!((p.id, p.parts), (4, vec![4, 2]));
    }

    #[test]
    fn a_damaged_part_falls_back_to_the_checkpoint_before() {
        let d = tempfile::tempdir().unwrap();
        for w in [0, 1] {
            write(d.path(), w, 1);
            write(d.path(), w, 2);
        }
        let file = worker_dir(d.path(), 1).join("chk-000000000002.redb");
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let p = Plan::make(&opts(d.path(), Restore::Latest), 2).unwrap();
        assert_eq!((p.id, p.parts), (1, vec![1, 1]));
    }

    #[test]
    fn checkpoints_of_more_workers_are_refused() {
        let d = tempfile::tempdir().unwrap();
        for w in [0, 1, 2] {
            write(d.path(), w, 1);
        }
        let e = Plan::make(&opts(d.path(), Restore::Latest), 2).unwrap_err();
        assert!(e.to_string().contains("more than 2 workers"), "{e}");
    }
}
