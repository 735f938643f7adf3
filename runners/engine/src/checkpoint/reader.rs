//! Reading checkpoint files back: each file of a chain checked against its digest, then
//! an operator's state merged from the chain's files as it is read, never gathered in
//! memory (a state spilled past a memory budget is restored as it was written: in parts).

use super::format::{err, Digest, COMMITS, DELETES, FORMAT, FULL_NODES, META, PUTS};
use crate::error::Result;
use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type PutsTable = ReadOnlyTable<(&'static str, &'static [u8]), &'static [u8]>;
type DeletesTable = ReadOnlyTable<(&'static str, &'static [u8]), ()>;

/// One checkpoint file whose entries matched its digest, open for reading.
pub(crate) struct OpenFile {
    pub(crate) path: PathBuf,
    pub(crate) base: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) fingerprint: String,
    pub(crate) job: Vec<u8>,
    /// Operators whose state this file replaces.
    pub(crate) full: BTreeSet<String>,
    /// Operators this file holds anything of.
    pub(crate) names: BTreeSet<String>,
    /// Commit records per operator.
    pub(crate) commits: BTreeMap<String, Vec<Vec<u8>>>,
    puts: PutsTable,
    deletes: DeletesTable,
    // The tables read through the database: keep it open as long as they are.
    _db: redb::ReadOnlyDatabase,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("path", &self.path)
            .field("base", &self.base)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl OpenFile {
    /// Opens checkpoint file `id` at `path` (read through a cache of `cache` bytes) and
    /// checks its records and digest (reading it through once, keeping only the names of
    /// the operators and their commit records).
    pub(crate) fn open(path: &Path, id: u64, cache: usize) -> Result<OpenFile> {
        let what = format!("reading checkpoint {}", path.display());
        // Reading goes through each file once or twice in order: a small cache will do.
        let db = redb::Builder::new()
            .set_cache_size(cache)
            .open_read_only(path)
            .map_err(|e| err(&what, e))?;
        let tx = db.begin_read().map_err(|e| err(&what, e))?;
        let meta = tx.open_table(META).map_err(|e| err(&what, e))?;
        let get = |k: &str| -> Result<Vec<u8>> {
            Ok(meta
                .get(k)
                .map_err(|e| err(&what, e))?
                .ok_or_else(|| err(&what, format!("no '{k}' record")))?
                .value()
                .to_vec())
        };
        let u64_of = |k: &str| -> Result<u64> {
            let b = get(k)?;
            Ok(u64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| err(&what, format!("bad '{k}' record")))?,
            ))
        };
        if u64_of("format")? != FORMAT {
            return Err(err(&what, "written by another version of Beamline"));
        }
        if u64_of("id")? != id {
            return Err(err(&what, "its id is not its name's"));
        }
        let parent = match get("parent")? {
            p if p.is_empty() => None,
            p => Some(u64::from_le_bytes(
                p.try_into()
                    .map_err(|_| err(&what, "bad 'parent' record"))?,
            )),
        };
        let (base, fingerprint, job) = (
            u64_of("base")?,
            String::from_utf8(get("fingerprint")?).map_err(|_| err(&what, "bad fingerprint"))?,
            get("job")?,
        );
        let want = get("digest")?;
        let mut digest = Digest::default();
        let mut full = BTreeSet::new();
        let mut names = BTreeSet::new();
        for row in tx
            .open_table(FULL_NODES)
            .map_err(|e| err(&what, e))?
            .iter()
            .map_err(|e| err(&what, e))?
        {
            let (k, _) = row.map_err(|e| err(&what, e))?;
            let name = k.value();
            digest.add(&[b"f", name.as_bytes()]);
            full.insert(name.to_string());
            names.insert(name.to_string());
        }
        let puts = tx.open_table(PUTS).map_err(|e| err(&what, e))?;
        let deletes = tx.open_table(DELETES).map_err(|e| err(&what, e))?;
        let note = |name: &str, names: &mut BTreeSet<String>| {
            if !names.contains(name) {
                names.insert(name.to_string());
            }
        };
        for row in puts.iter().map_err(|e| err(&what, e))? {
            let (k, v) = row.map_err(|e| err(&what, e))?;
            let (name, key) = k.value();
            digest.add(&[b"p", name.as_bytes(), key, v.value()]);
            note(name, &mut names);
        }
        for row in deletes.iter().map_err(|e| err(&what, e))? {
            let (k, _) = row.map_err(|e| err(&what, e))?;
            let (name, key) = k.value();
            digest.add(&[b"d", name.as_bytes(), key]);
            note(name, &mut names);
        }
        let mut commits: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for row in tx
            .open_table(COMMITS)
            .map_err(|e| err(&what, e))?
            .iter()
            .map_err(|e| err(&what, e))?
        {
            let (k, v) = row.map_err(|e| err(&what, e))?;
            let (name, i) = k.value();
            digest.add(&[b"c", name.as_bytes(), &i.to_le_bytes(), v.value()]);
            names.insert(name.to_string());
            commits
                .entry(name.to_string())
                .or_default()
                .push(v.value().to_vec());
        }
        if digest.bytes() != want {
            return Err(err(&what, "its entries do not match their digest"));
        }
        drop(meta);
        Ok(OpenFile {
            path: path.to_path_buf(),
            base,
            parent,
            fingerprint,
            job,
            full,
            names,
            commits,
            puts,
            deletes,
            _db: db,
        })
    }
}

/// An operator's state as restored: its entries, read from the checkpoint's files as they
/// are asked for, and the commit records of the restored checkpoint (to commit again).
///
/// Cloning it is cheap (the files are shared).
#[derive(Debug, Default, Clone)]
pub struct NodeState {
    name: String,
    /// The files that hold its entries, oldest first, from the newest that replaced them.
    files: Vec<Arc<OpenFile>>,
    /// Entries given directly (a state built in memory rather than read).
    given: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Commit records of the checkpoint restored.
    pub commits: Vec<Vec<u8>>,
}

/// A cursor over one file's puts or deletes of one operator.
struct Cursor<I> {
    rows: I,
    head: Option<(Vec<u8>, Vec<u8>)>,
}

impl<I: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>> Cursor<I> {
    fn new(mut rows: I) -> Result<Self> {
        let head = rows.next().transpose()?;
        Ok(Cursor { rows, head })
    }
    fn at(&self, key: &[u8]) -> bool {
        self.head.as_ref().is_some_and(|(k, _)| k == key)
    }
    fn advance(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let next = self.rows.next().transpose()?;
        Ok(std::mem::replace(&mut self.head, next))
    }
}

impl NodeState {
    /// The state of operator `name` as the chain `files` (oldest first) leaves it, with
    /// `commits` to commit again.
    pub(crate) fn from_chain(name: &str, chain: &[Arc<OpenFile>], commits: Vec<Vec<u8>>) -> Self {
        let from = chain
            .iter()
            .rposition(|f| f.full.contains(name))
            .unwrap_or(0);
        NodeState {
            name: name.to_string(),
            files: chain[from..]
                .iter()
                .filter(|f| f.names.contains(name))
                .cloned()
                .collect(),
            given: BTreeMap::new(),
            commits,
        }
    }

    /// A state of the given entries (for tests and schedulers that hold state in memory).
    pub fn from_entries(entries: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        NodeState {
            given: entries,
            ..NodeState::default()
        }
    }

    /// The entry at `key`, if any.
    ///
    /// # Errors
    /// When a checkpoint file cannot be read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.given.get(key) {
            return Ok(Some(v.clone()));
        }
        for f in self.files.iter().rev() {
            let what = || format!("reading checkpoint {}", f.path.display());
            let at = (self.name.as_str(), key);
            if let Some(v) = f.puts.get(at).map_err(|e| err(what(), e))? {
                return Ok(Some(v.value().to_vec()));
            }
            if f.deletes.get(at).map_err(|e| err(what(), e))?.is_some() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Calls `f` with every entry, in key order, reading the files as it goes.
    ///
    /// # Errors
    /// When a checkpoint file cannot be read, or `f` fails.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        for (k, v) in &self.given {
            f(k, v)?;
        }
        let name = self.name.as_str();
        // Per file, newest last: its puts and its deletes, each in key order.
        let mut cursors = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let what = format!("reading checkpoint {}", file.path.display());
            let start = (name, &b""[..]);
            let w = what.clone();
            let puts = file
                .puts
                .range(start..)
                .map_err(|e| err(&what, e))?
                .map(move |row| row.map_err(|e| err(&w, e)))
                .take_while(move |row| row.as_ref().map_or(true, |(k, _)| k.value().0 == name))
                .map(|row| row.map(|(k, v)| (k.value().1.to_vec(), v.value().to_vec())));
            let w = what.clone();
            let deletes = file
                .deletes
                .range(start..)
                .map_err(|e| err(&what, e))?
                .map(move |row| row.map_err(|e| err(&w, e)))
                .take_while(move |row| row.as_ref().map_or(true, |(k, _)| k.value().0 == name))
                .map(|row| row.map(|(k, _)| (k.value().1.to_vec(), Vec::new())));
            cursors.push((Cursor::new(puts)?, Cursor::new(deletes)?));
        }
        let mut key = Vec::new();
        loop {
            let least = cursors
                .iter()
                .flat_map(|(p, d)| [&p.head, &d.head])
                .filter_map(|h| h.as_ref().map(|(k, _)| k))
                .min();
            let Some(least) = least else {
                return Ok(());
            };
            key.clear();
            key.extend_from_slice(least);
            // The newest file with the key decides; within a file a put outlives a delete.
            let mut value = None;
            let mut decided = false;
            for (puts, deletes) in cursors.iter_mut().rev() {
                let (put, deleted) = (puts.at(&key), deletes.at(&key));
                if put {
                    let row = puts.advance()?;
                    if !decided {
                        value = row.map(|(_, v)| v);
                    }
                }
                if deleted {
                    deletes.advance()?;
                }
                decided |= put || deleted;
            }
            if let Some(v) = value {
                f(&key, &v)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checkpoint::{Snapshot, StateOut, Store};

    fn out(full: bool, puts: &[(&str, &str)], deletes: &[&str]) -> StateOut {
        let mut o = StateOut::new(0, full);
        for (k, v) in puts {
            o.put(k.as_bytes(), v.as_bytes().to_vec());
        }
        for k in deletes {
            o.delete(k.as_bytes());
        }
        o
    }

    fn write(store: &Store, id: u64, parent: Option<u64>, nodes: Vec<(&str, StateOut)>) {
        let snap = Snapshot {
            id,
            base: 1,
            parent,
            compact_from: None,
            fingerprint: "f".into(),
            job: Vec::new(),
            nodes: nodes.into_iter().map(|(n, o)| (n.to_string(), o)).collect(),
        };
        store.write(&snap).unwrap();
    }

    #[test]
    fn a_state_is_merged_from_its_chain_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write(
            &store,
            1,
            None,
            vec![
                ("A", out(true, &[("a", "1"), ("b", "1"), ("c", "1")], &[])),
                ("B", out(true, &[("x", "1")], &[])),
            ],
        );
        write(
            &store,
            2,
            Some(1),
            vec![
                ("A", out(false, &[("a", "2")], &["b"])),
                // Replaces B's state: x is gone without a delete.
                ("B", out(true, &[("y", "2")], &[])),
            ],
        );
        write(
            &store,
            3,
            Some(2),
            vec![
                ("A", out(false, &[("b", "3"), ("d", "3")], &["a"])),
                ("B", out(false, &[("z", "3")], &[])),
                ("C", out(false, &[("k", "3")], &[])),
            ],
        );
        let r = store.read_checkpoint(3).unwrap();
        let all = |node: &str| {
            let mut v = Vec::new();
            r.nodes[node]
                .for_each(|k, x| {
                    v.push(format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(x)
                    ));
                    Ok(())
                })
                .unwrap();
            v
        };
        assert_eq!(all("A"), ["b=3", "c=1", "d=3"]);
        assert_eq!(all("B"), ["y=2", "z=3"]);
        assert_eq!(all("C"), ["k=3"]);
        let get = |node: &str, k: &str| r.nodes[node].get(k.as_bytes()).unwrap();
        assert_eq!(get("A", "a"), None);
        assert_eq!(get("A", "b"), Some(b"3".to_vec()));
        assert_eq!(get("A", "c"), Some(b"1".to_vec()));
        assert_eq!(get("B", "x"), None);
        assert_eq!(get("B", "y"), Some(b"2".to_vec()));
        // The checkpoint before reads as it was.
        let r2 = store.read_checkpoint(2).unwrap();
        assert!(!r2.nodes.contains_key("C"));
        assert_eq!(r2.nodes["A"].get(b"b").unwrap(), None);
        assert_eq!(r2.nodes["A"].get(b"a").unwrap(), Some(b"2".to_vec()));
        // A failure of the caller's stops the walk with its error.
        let mut seen = 0;
        let e = r.nodes["A"].for_each(|_, _| {
            seen += 1;
            Err(crate::error::EngineError::Checkpoint("stop".into()))
        });
        assert!(e.is_err());
        assert_eq!(seen, 1);
    }
}
