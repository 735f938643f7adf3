//! What operators save in a checkpoint and get back from one.

use crate::error::{EngineError, Result};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One change to an operator's entries in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// Entry `key` is `value`.
    Put(&'a [u8], &'a [u8]),
    /// Entry `key` is gone (in an incremental checkpoint).
    Delete(&'a [u8]),
}

/// Entries an operator hands to the checkpoint's writer to list on the writer's thread: a
/// consistent view of a store that goes on changing (the states a spill store held when
/// the snapshot was taken), so a checkpoint of state beyond memory does not pause the
/// pipeline while spilled states are read.
pub trait LaterEntries: Send + Sync + std::fmt::Debug {
    /// Calls `f` with every entry.
    ///
    /// # Errors
    /// The view cannot be read; what `f` returns.
    fn for_each(&self, f: &mut dyn FnMut(Entry<'_>) -> Result<()>) -> Result<()>;
}

/// What one operator saves in a checkpoint.
///
/// Entries past a size limit ([`StateOut::overflow_into`]) go to a temporary file instead
/// of memory, so a checkpoint of state spilled past a memory budget does not gather it
/// all in memory; the writer thread reads them back from the file.
#[derive(Debug, Default)]
pub struct StateOut {
    id: u64,
    full: bool,
    last: bool,
    pub(crate) puts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of keys and values in `puts`.
    put_bytes: usize,
    /// Memory `puts` takes, estimated (what the limit bounds).
    put_memory: usize,
    /// Where entries go past `limit` bytes in memory (none: all in memory).
    overflow_to: Option<(PathBuf, usize)>,
    overflow: Mutex<Option<Overflow>>,
    /// Entries listed when the checkpoint is written (see [`LaterEntries`]).
    later: Vec<Arc<dyn LaterEntries>>,
    pub(crate) deletes: Vec<Vec<u8>>,
    pub(crate) commits: Vec<Vec<u8>>,
}

/// Entries of a [`StateOut`] past its limit, in a temporary file (removed with it).
#[derive(Debug)]
struct Overflow {
    path: PathBuf,
    /// None when it could not be created (`failed` says why).
    file: Option<BufWriter<std::fs::File>>,
    count: u64,
    bytes: u64,
    /// The first error writing the file (reported when the entries are read).
    failed: Option<String>,
}

impl Drop for Overflow {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Memory an entry of `puts` takes besides its bytes (estimated).
const ENTRY_OVERHEAD: usize = 80;

fn overflow_err(path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!(
        "checkpoint entries past the memory limit in {}: {e}",
        path.display()
    ))
}

impl StateOut {
    /// The state of checkpoint `id`, all of it when `full`.
    pub fn new(id: u64, full: bool) -> Self {
        StateOut {
            id,
            full,
            ..StateOut::default()
        }
    }
    /// Marks the checkpoint as the job's last: its input ended and nothing follows.
    pub fn with_last(mut self, last: bool) -> Self {
        self.last = last;
        self
    }
    /// The job's last checkpoint (see [`StateOut::with_last`]).
    pub fn last(&self) -> bool {
        self.last
    }
    /// The checkpoint's id (grows by one per checkpoint of a job, across restarts).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Every entry must be written (not only what changed since the last checkpoint).
    pub fn full(&self) -> bool {
        self.full
    }
    /// Keeps at most `limit` bytes of entries in memory; the rest go to a temporary file
    /// in `dir`.
    pub fn overflow_into(mut self, dir: &Path, limit: usize) -> Self {
        self.overflow_to = Some((dir.to_path_buf(), limit));
        self
    }
    /// Sets entry `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let size = key.len() + value.len();
        // Two vectors and their allocations besides the bytes: small entries (a key and a
        // flag) take several times their size.
        let memory = size + ENTRY_OVERHEAD;
        match &self.overflow_to {
            Some((dir, limit)) if self.put_memory + memory > *limit => {
                let o = self.overflow.get_mut().unwrap_or_else(|p| p.into_inner());
                let o = o.get_or_insert_with(|| Overflow::create(dir));
                o.write(key, &value);
            }
            _ => {
                self.put_bytes += size;
                self.put_memory += memory;
                self.puts.push((key.to_vec(), value));
            }
        }
    }
    /// Adds the entries of `entries`, listed when the checkpoint is written (they count in
    /// neither [`StateOut::put_count`] nor [`StateOut::bytes`]).
    pub fn put_later(&mut self, entries: Arc<dyn LaterEntries>) {
        self.later.push(entries);
    }
    /// Calls `f` with every entry: those put in memory, then those in the file, the
    /// deletes, then those added for later (whose deletes count only in an incremental
    /// checkpoint, as [`StateOut::delete`]'s).
    ///
    /// # Errors
    /// The file of entries past the limit cannot be written or read; what `f` returns.
    pub fn for_each_entry(&self, mut f: impl FnMut(Entry<'_>) -> Result<()>) -> Result<()> {
        for (k, v) in &self.puts {
            f(Entry::Put(k, v))?;
        }
        {
            let mut o = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = o.as_mut() {
                o.for_each(|k, v| f(Entry::Put(k, v)))?;
            }
        }
        for k in &self.deletes {
            f(Entry::Delete(k))?;
        }
        let full = self.full;
        for entries in &self.later {
            entries.for_each(&mut |e| match e {
                Entry::Delete(_) if full => Ok(()),
                e => f(e),
            })?;
        }
        Ok(())
    }
    /// How many entries were put.
    pub fn put_count(&self) -> usize {
        let o = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        self.puts.len() + o.as_ref().map_or(0, |o| o.count as usize)
    }
    /// Makes this operator's part of an incremental checkpoint a whole one: it replaces
    /// what the operator saved before (an operator that dropped every state at once
    /// cannot list them). Everything must then be put again.
    pub fn replace_all(&mut self) {
        self.full = true;
        self.deletes.clear();
    }
    /// Removes entry `key` (written in an incremental checkpoint only).
    pub fn delete(&mut self, key: &[u8]) {
        if !self.full {
            self.deletes.push(key.to_vec());
        }
    }
    /// Something to do once the checkpoint is durable (and again after a restore from it:
    /// committing must be idempotent), such as publishing files written since the last.
    pub fn commit_record(&mut self, record: Vec<u8>) {
        self.commits.push(record);
    }
    /// The records [`StateOut::commit_record`] left.
    pub fn commit_records(&self) -> &[Vec<u8>] {
        &self.commits
    }
    /// Nothing was written.
    pub fn is_empty(&self) -> bool {
        !self.full
            && self.put_count() == 0
            && self.later.is_empty()
            && self.deletes.is_empty()
            && self.commits.is_empty()
    }
    /// Bytes of keys and values written.
    pub fn bytes(&self) -> usize {
        let o = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        self.put_bytes
            + o.as_ref().map_or(0, |o| o.bytes as usize)
            + self.deletes.iter().map(Vec::len).sum::<usize>()
            + self.commits.iter().map(Vec::len).sum::<usize>()
    }
}

impl Clone for StateOut {
    /// A copy (entries past the limit copied into a file of its own).
    fn clone(&self) -> Self {
        let mut copy = StateOut {
            id: self.id,
            full: self.full,
            last: self.last,
            puts: self.puts.clone(),
            put_bytes: self.put_bytes,
            put_memory: self.put_memory,
            overflow_to: self.overflow_to.clone(),
            overflow: Mutex::new(None),
            later: self.later.clone(),
            deletes: self.deletes.clone(),
            commits: self.commits.clone(),
        };
        let mut o = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(o), Some((dir, _))) = (o.as_mut(), &self.overflow_to) {
            let mut entries = Overflow::create(dir);
            if let Err(e) = o.for_each(|k, v| {
                entries.write(k, v);
                Ok(())
            }) {
                entries.failed.get_or_insert(e.to_string());
            }
            copy.overflow = Mutex::new(Some(entries));
        }
        copy
    }
}

impl Overflow {
    fn create(dir: &Path) -> Overflow {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = dir.join(format!(
            "beamline-checkpoint-{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        // A failure is reported when the entries are read (the checkpoint then fails).
        let opened = std::fs::create_dir_all(dir).and_then(|()| std::fs::File::create(&path));
        let (file, failed) = match opened {
            Ok(f) => (Some(BufWriter::with_capacity(1 << 20, f)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Overflow {
            path,
            file,
            count: 0,
            bytes: 0,
            failed,
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8]) {
        let Some(file) = &mut self.file else {
            return;
        };
        let r = (|| {
            file.write_all(&(key.len() as u64).to_le_bytes())?;
            file.write_all(&(value.len() as u64).to_le_bytes())?;
            file.write_all(key)?;
            file.write_all(value)
        })();
        if let Err(e) = r {
            self.failed.get_or_insert(e.to_string());
        }
        self.count += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }

    fn for_each(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        if let Some(Err(e)) = self.file.as_mut().map(Write::flush) {
            self.failed.get_or_insert(e.to_string());
        }
        if let Some(e) = &self.failed {
            return Err(overflow_err(&self.path, e));
        }
        let file = std::fs::File::open(&self.path).map_err(|e| overflow_err(&self.path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let mut len = [0u8; 8];
        for _ in 0..self.count {
            let mut read = |buf: &mut Vec<u8>, r: &mut BufReader<std::fs::File>| {
                r.read_exact(&mut len)?;
                let n = u64::from_le_bytes(len) as usize;
                buf.resize(n, 0);
                Ok::<_, std::io::Error>(n)
            };
            let kn = read(&mut key, &mut r).map_err(|e| overflow_err(&self.path, e))?;
            let vn = read(&mut value, &mut r).map_err(|e| overflow_err(&self.path, e))?;
            r.read_exact(&mut key[..kn])
                .and_then(|()| r.read_exact(&mut value[..vn]))
                .map_err(|e| overflow_err(&self.path, e))?;
            f(&key, &value)?;
        }
        Ok(())
    }
}

/// A checkpoint on its way to the store.
#[derive(Debug)]
pub struct Snapshot {
    /// Its id.
    pub id: u64,
    /// The full checkpoint its chain starts at (itself when full).
    pub base: u64,
    /// The checkpoint it holds the changes since (`None` when full).
    pub parent: Option<u64>,
    /// The checkpoint whose state its operators saved the changes since, to be merged
    /// into a full checkpoint by the writer (`parent` is then `None`, `base` its own id):
    /// a full checkpoint without pausing the pipeline to encode every state.
    pub compact_from: Option<u64>,
    /// The pipeline's shape (see [`crate::checkpoint::fingerprint`]).
    pub fingerprint: String,
    /// The scheduler's own state.
    pub job: Vec<u8>,
    /// Per operator (by transform name), those that wrote something.
    pub nodes: Vec<(String, StateOut)>,
}
