//! The durable checkpoint store: one redb file per checkpoint, written aside and renamed
//! when complete, so a checkpoint file is either whole or absent; a digest of its entries
//! finds damage redb's own checks let through.
//!
//! A full checkpoint holds every operator's state; an incremental one holds what changed
//! since its parent (puts and deletes per operator), and names the full checkpoint its
//! chain starts at. Restoring reads the chain from that full checkpoint onwards; when a
//! file of the newest chain is missing or damaged, the one before is used. A full
//! checkpoint after the first is compacted: its operators saved what changed, and the
//! writer merges that with the state its chain holds (they never pause to save it all).

use super::format::{err, Digest, COMMITS, DELETES, FORMAT, FULL_NODES, META, PUTS};
use super::reader::{NodeState, OpenFile};
use super::state::{Entry, Snapshot};
use crate::error::{EngineError, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Cache of each file read to restore (entries are looked up as well as listed).
const RESTORE_READ_CACHE: usize = 4 << 20;

/// Cache of each file read to compact: listed once, in order, while the job runs (its
/// memory adds to what `--memory-budget` bounds).
const COMPACT_READ_CACHE: usize = 256 << 10;

/// The checkpoints of one job, in a directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A checkpoint read back: the state of every operator as of checkpoint `id`.
#[derive(Debug)]
pub struct Restored {
    /// Its id.
    pub id: u64,
    /// The full checkpoint its chain starts at.
    pub base: u64,
    /// The pipeline it was taken of (see [`super::options::fingerprint`]).
    pub fingerprint: String,
    /// The scheduler's own state (watermarks, time).
    pub job: Vec<u8>,
    /// Per operator (by transform name).
    pub nodes: BTreeMap<String, NodeState>,
    /// Newer checkpoints that could not be used, with the reason.
    pub skipped: Vec<(u64, String)>,
}

impl Store {
    /// The store in `dir`, created if needed.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}", dir.display()), e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id:012}.redb"))
    }

    /// Ids of the complete checkpoint files, oldest first.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| err(format!("listing {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|s| s.strip_suffix(".redb"))
                .and_then(|s| s.parse().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Writes `snap` durably: to a file aside, synced, then renamed into place. Returns
    /// the file's size. A snapshot to compact ([`Snapshot::compact_from`]) is merged with
    /// the state of its chain into a full checkpoint.
    ///
    /// # Errors
    /// When the file cannot be written, synced or renamed; a chain to compact that is
    /// missing or damaged.
    pub fn write(&self, snap: &Snapshot) -> Result<u64> {
        // A compacted checkpoint: the chain its operators' changes apply to, read now.
        let chain = match snap.compact_from {
            Some(from) => self.chain_with_cache(from, COMPACT_READ_CACHE)?,
            None => Vec::new(),
        };
        let path = self.path(snap.id);
        let tmp = path.with_extension("redb.tmp");
        let _ = std::fs::remove_file(&tmp);
        let what = format!("writing checkpoint {}", tmp.display());
        let db = redb::Builder::new()
            .set_cache_size(8 << 20)
            .create(&tmp)
            .map_err(|e| err(&what, e))?;
        let tx = db.begin_write().map_err(|e| err(&what, e))?;
        let mut digest = Digest::default();
        {
            let mut puts = tx.open_table(PUTS).map_err(|e| err(&what, e))?;
            let mut deletes = tx.open_table(DELETES).map_err(|e| err(&what, e))?;
            let mut commits = tx.open_table(COMMITS).map_err(|e| err(&what, e))?;
            let mut full = tx.open_table(FULL_NODES).map_err(|e| err(&what, e))?;
            let mut mark_full = |name: &str, digest: &mut Digest| -> Result<()> {
                full.insert(name, ()).map_err(|e| err(&what, e))?;
                digest.add(&[b"f", name.as_bytes()]);
                Ok(())
            };
            for (name, out) in &snap.nodes {
                let name = name.as_str();
                // Merged with the chain, this operator's state is whole.
                let merged = snap.compact_from.is_some() && !out.full();
                if out.full() || merged {
                    mark_full(name, &mut digest)?;
                }
                // The keys the changes put or deleted (a merge skips them in the chain).
                let mut changed = std::collections::HashSet::new();
                out.for_each_entry(|e| {
                    match e {
                        Entry::Put(k, v) => {
                            puts.insert((name, k), v).map_err(|e| err(&what, e))?;
                            digest.add(&[b"p", name.as_bytes(), k, v]);
                            if merged {
                                changed.insert(k.to_vec());
                            }
                        }
                        Entry::Delete(k) if merged => {
                            changed.insert(k.to_vec());
                        }
                        Entry::Delete(k) => {
                            deletes.insert((name, k), ()).map_err(|e| err(&what, e))?;
                            digest.add(&[b"d", name.as_bytes(), k]);
                        }
                    }
                    Ok(())
                })?;
                if merged {
                    // What the chain holds and the changes did not put or delete.
                    let state = NodeState::from_chain(name, &chain, Vec::new());
                    state.for_each(|k, v| {
                        if changed.contains(k) {
                            return Ok(());
                        }
                        puts.insert((name, k), v).map_err(|e| err(&what, e))?;
                        digest.add(&[b"p", name.as_bytes(), k, v]);
                        Ok(())
                    })?;
                }
                for (i, c) in out.commits.iter().enumerate() {
                    commits
                        .insert((name, i as u64), c.as_slice())
                        .map_err(|e| err(&what, e))?;
                    digest.add(&[b"c", name.as_bytes(), &(i as u64).to_le_bytes(), c]);
                }
            }
            // Operators that changed nothing since: their state as the chain has it.
            let written: BTreeSet<&str> = snap.nodes.iter().map(|(n, _)| n.as_str()).collect();
            let unchanged: BTreeSet<&String> = chain
                .iter()
                .flat_map(|f| &f.names)
                .filter(|n| !written.contains(n.as_str()))
                .collect();
            for name in unchanged {
                let name = name.as_str();
                mark_full(name, &mut digest)?;
                NodeState::from_chain(name, &chain, Vec::new()).for_each(|k, v| {
                    puts.insert((name, k), v).map_err(|e| err(&what, e))?;
                    digest.add(&[b"p", name.as_bytes(), k, v]);
                    Ok(())
                })?;
            }
            let mut meta = tx.open_table(META).map_err(|e| err(&what, e))?;
            let parent = snap.parent.map_or(Vec::new(), |p| p.to_le_bytes().to_vec());
            let rows: [(&str, &[u8]); 7] = [
                ("format", &FORMAT.to_le_bytes()),
                ("id", &snap.id.to_le_bytes()),
                ("base", &snap.base.to_le_bytes()),
                ("parent", &parent),
                ("fingerprint", snap.fingerprint.as_bytes()),
                ("job", &snap.job),
                ("digest", &digest.bytes()),
            ];
            for (k, v) in rows {
                meta.insert(k, v).map_err(|e| err(&what, e))?;
            }
        }
        tx.commit().map_err(|e| err(&what, e))?;
        drop(db);
        let size = std::fs::metadata(&tmp).map_err(|e| err(&what, e))?.len();
        std::fs::rename(&tmp, &path).map_err(|e| err(&what, e))?;
        // The rename is durable once the directory is.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(size)
    }

    /// The chain of checkpoint `id`: its files from the full one it starts at, each
    /// checked.
    fn chain(&self, id: u64) -> Result<Vec<Arc<OpenFile>>> {
        self.chain_with_cache(id, RESTORE_READ_CACHE)
    }

    /// [`Store::chain`], each file read through a cache of `cache` bytes.
    fn chain_with_cache(&self, id: u64, cache: usize) -> Result<Vec<Arc<OpenFile>>> {
        let mut chain = Vec::new();
        let mut at = id;
        loop {
            let file = OpenFile::open(&self.path(at), at, cache)?;
            let (parent, base) = (file.parent, file.base);
            chain.push(Arc::new(file));
            match parent {
                None if at == base => break,
                Some(p) if p < at && p >= base => at = p,
                _ => {
                    return Err(EngineError::Checkpoint(format!(
                        "checkpoint {at} in {} has a broken chain",
                        self.dir.display()
                    )))
                }
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// The newest checkpoint whose files are all whole, read back; `None` when there is
    /// none.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn latest(&self) -> Result<Option<Restored>> {
        let mut skipped = Vec::new();
        for id in self.ids()?.into_iter().rev() {
            match self.read_checkpoint(id) {
                Ok(mut r) => {
                    r.skipped = skipped;
                    return Ok(Some(r));
                }
                Err(e) => skipped.push((id, e.to_string())),
            }
        }
        Ok(None)
    }

    /// Checkpoint `id` read back from its chain of files.
    ///
    /// # Errors
    /// When a file of its chain is missing or damaged.
    pub fn read_checkpoint(&self, id: u64) -> Result<Restored> {
        let chain = self.chain(id)?;
        let last = chain.last().expect("a chain has its own file");
        let names: BTreeSet<&String> = chain.iter().flat_map(|f| &f.names).collect();
        let nodes = names
            .into_iter()
            .map(|name| {
                // Only the restored checkpoint's records may be uncommitted.
                let commits = last.commits.get(name).cloned().unwrap_or_default();
                (name.clone(), NodeState::from_chain(name, &chain, commits))
            })
            .collect();
        Ok(Restored {
            id,
            base: chain[0].base,
            fingerprint: last.fingerprint.clone(),
            job: last.job.clone(),
            nodes,
            skipped: Vec::new(),
        })
    }

    /// Checks checkpoint `id`: every file of its chain is there and whole.
    ///
    /// # Errors
    /// When one is missing or damaged.
    pub fn verify(&self, id: u64) -> Result<()> {
        self.chain(id).map(drop)
    }

    /// Removes checkpoint files older than `keep_from` and files left half-written.
    pub fn collect_garbage(&self, keep_from: u64) {
        if let Ok(ids) = self.ids() {
            for id in ids.into_iter().filter(|&i| i < keep_from) {
                let _ = std::fs::remove_file(self.path(id));
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name
                    .strip_prefix("chk-")
                    .and_then(|s| s.strip_suffix(".redb.tmp"))
                    .and_then(|s| s.parse::<u64>().ok());
                if id.is_some_and(|i| i < keep_from) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Removes every checkpoint (a job started over with `--restore=none`).
    pub fn clear(&self) {
        if let Ok(ids) = self.ids() {
            for id in ids {
                let _ = std::fs::remove_file(self.path(id));
            }
        }
        self.collect_garbage(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::state::StateOut;

    fn snap(id: u64, base: u64, parent: Option<u64>, nodes: Vec<(&str, StateOut)>) -> Snapshot {
        Snapshot {
            id,
            base,
            parent,
            compact_from: None,
            fingerprint: "Count|GroupByKey".into(),
            job: vec![id as u8],
            nodes: nodes.into_iter().map(|(n, o)| (n.to_string(), o)).collect(),
        }
    }

    fn out(full: bool, puts: &[(&str, &str)], deletes: &[&str], commits: &[&str]) -> StateOut {
        let mut o = StateOut::new(0, full);
        for (k, v) in puts {
            o.put(k.as_bytes(), v.as_bytes().to_vec());
        }
        for k in deletes {
            o.delete(k.as_bytes());
        }
        for c in commits {
            o.commit_record(c.as_bytes().to_vec());
        }
        o
    }

    fn entries(r: &Restored, node: &str) -> Vec<(String, String)> {
        let mut all = Vec::new();
        r.nodes[node]
            .for_each(|k, v| {
                all.push((
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                ));
                Ok(())
            })
            .unwrap();
        all
    }

    #[test]
    fn entries_past_the_memory_limit_go_through_a_file_and_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill");
        let store = Store::open(&dir.path().join("ckpt")).unwrap();
        // 500 bytes in memory at most (a few entries, with their overhead): the rest
        // in a file.
        let mut o = StateOut::new(1, true).overflow_into(&spill, 500);
        let want: Vec<(String, String)> = (0..50)
            .map(|i| (format!("key{i:03}"), format!("value-{i}")))
            .collect();
        for (k, v) in &want {
            o.put(k.as_bytes(), v.as_bytes().to_vec());
        }
        assert!(o.puts.len() < 10, "{} in memory", o.puts.len());
        assert_eq!(o.put_count(), 50);
        assert_eq!(
            o.bytes(),
            want.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        );
        assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 1);
        // A copy has its own file.
        let copy = o.clone();
        assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 2);
        store.write(&snap(1, 1, None, vec![("Dedup", o)])).unwrap();
        store
            .write(&snap(2, 2, None, vec![("Dedup", copy)]))
            .unwrap();
        // Written (and the files removed with their StateOuts).
        assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
        let r = store.latest().unwrap().unwrap();
        assert_eq!(entries(&r, "Dedup"), want);
        assert_eq!(entries(&store.read_checkpoint(1).unwrap(), "Dedup"), want);
    }

    #[test]
    fn a_compacted_checkpoint_merges_the_changes_into_its_chain_and_stands_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = vec![
            (
                "Count",
                out(true, &[("a", "1"), ("b", "1"), ("d", "1")], &[], &[]),
            ),
            ("Other", out(true, &[("x", "1")], &[], &[])),
            ("Reset", out(true, &[("r", "1")], &[], &[])),
        ];
        store.write(&snap(1, 1, None, first)).unwrap();
        let second = vec![("Count", out(false, &[("a", "2")], &["b"], &["f2"]))];
        store.write(&snap(2, 1, Some(1), second)).unwrap();
        // Checkpoint 3: what changed since 2, merged into a full one. "Other" changed
        // nothing; "Reset" replaced its whole state.
        let mut reset = out(false, &[], &[], &[]);
        reset.replace_all();
        reset.put(b"s", b"1".to_vec());
        let mut third = snap(
            3,
            3,
            None,
            vec![
                (
                    "Count",
                    out(false, &[("c", "1"), ("d", "2")], &["a"], &["f3"]),
                ),
                ("Reset", reset),
            ],
        );
        third.compact_from = Some(2);
        store.write(&third).unwrap();
        // It needs no other file.
        store.collect_garbage(3);
        assert_eq!(store.ids().unwrap(), vec![3]);
        let r = store.latest().unwrap().unwrap();
        assert_eq!((r.id, r.base), (3, 3));
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(entries(&r, "Count"), pairs(&[("c", "1"), ("d", "2")]));
        assert_eq!(entries(&r, "Other"), pairs(&[("x", "1")]));
        assert_eq!(entries(&r, "Reset"), pairs(&[("s", "1")]));
        // Only its own commit records are left to commit.
        assert_eq!(r.nodes["Count"].commits, vec![b"f3".to_vec()]);
        assert!(r.nodes["Other"].commits.is_empty());
        // An incremental checkpoint on top of it.
        let fourth = vec![("Other", out(false, &[("y", "1")], &["x"], &[]))];
        store.write(&snap(4, 3, Some(3), fourth)).unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(entries(&r, "Other"), pairs(&[("y", "1")]));
        assert_eq!(entries(&r, "Count"), pairs(&[("c", "1"), ("d", "2")]));
    }

    #[test]
    fn a_compaction_over_a_damaged_chain_fails_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(&snap(
                1,
                1,
                None,
                vec![("Count", out(true, &[("a", "1")], &[], &[]))],
            ))
            .unwrap();
        std::fs::write(store.path(1), b"damaged").unwrap();
        let mut second = snap(
            2,
            2,
            None,
            vec![("Count", out(false, &[("b", "1")], &[], &[]))],
        );
        second.compact_from = Some(1);
        let e = store.write(&second).unwrap_err().to_string();
        assert!(e.contains("chk-000000000001"), "{e}");
        assert_eq!(store.ids().unwrap(), vec![1]);
    }

    #[test]
    fn a_chain_of_incremental_checkpoints_restores_and_damage_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.latest().unwrap().is_none());
        store
            .write(&snap(
                1,
                1,
                None,
                vec![("Count", out(true, &[("a", "1"), ("b", "1")], &[], &[]))],
            ))
            .unwrap();
        store
            .write(&snap(
                2,
                1,
                Some(1),
                vec![("Count", out(false, &[("a", "2")], &["b"], &["f2"]))],
            ))
            .unwrap();
        store
            .write(&snap(
                3,
                1,
                Some(2),
                vec![("Count", out(false, &[("c", "1")], &[], &["f3"]))],
            ))
            .unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(r.id, 3);
        assert_eq!(r.job, vec![3]);
        assert_eq!(
            entries(&r, "Count"),
            vec![("a".into(), "2".into()), ("c".into(), "1".into())]
        );
        assert_eq!(r.nodes["Count"].commits, vec![b"f3".to_vec()]);

        // A truncated newest file: the one before is used, and the reason kept.
        let p3 = store.path(3);
        let len = std::fs::metadata(&p3).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p3).unwrap();
        f.set_len(len / 2).unwrap();
        let r = store.latest().unwrap().unwrap();
        assert_eq!(r.id, 2);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(entries(&r, "Count"), vec![("a".into(), "2".into())]);
        assert_eq!(r.nodes["Count"].commits, vec![b"f2".to_vec()]);

        // Damaged bytes in the middle of the full checkpoint: its whole chain is unusable.
        let p1 = store.path(1);
        let mut bytes = std::fs::read(&p1).unwrap();
        let at = bytes
            .windows(2)
            .position(|w| w == b"a1" || w == b"b1")
            .expect("values are stored as they are");
        bytes[at + 1] = b'9';
        std::fs::write(&p1, &bytes).unwrap();
        assert!(store.latest().unwrap().is_none());

        store.collect_garbage(3);
        assert_eq!(store.ids().unwrap(), vec![3]);
        store.clear();
        assert!(store.ids().unwrap().is_empty());
    }
}
