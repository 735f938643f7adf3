//! What operators save in a checkpoint and get back from one.

use std::collections::BTreeMap;

/// What one operator saves in a checkpoint.
#[derive(Debug, Default, Clone)]
pub struct StateOut {
    id: u64,
    full: bool,
    last: bool,
    pub(crate) puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) deletes: Vec<Vec<u8>>,
    pub(crate) commits: Vec<Vec<u8>>,
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
    /// Sets entry `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.puts.push((key.to_vec(), value));
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
        !self.full && self.puts.is_empty() && self.deletes.is_empty() && self.commits.is_empty()
    }
    /// Bytes of keys and values written.
    pub fn bytes(&self) -> usize {
        self.puts
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self.deletes.iter().map(Vec::len).sum::<usize>()
            + self.commits.iter().map(Vec::len).sum::<usize>()
    }
}

/// An operator's state as restored: its entries and the commit records of the restored
/// checkpoint (to commit again).
#[derive(Debug, Default, Clone)]
pub struct NodeState {
    /// Entries by key.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Commit records of the checkpoint restored.
    pub commits: Vec<Vec<u8>>,
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
    /// The pipeline's shape (see [`fingerprint`]).
    pub fingerprint: String,
    /// The scheduler's own state.
    pub job: Vec<u8>,
    /// Per operator (by transform name), those that wrote something.
    pub nodes: Vec<(String, StateOut)>,
}
