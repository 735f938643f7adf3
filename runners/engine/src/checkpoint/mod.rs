//! Checkpoints of streaming jobs: what operators save, the durable store, and the
//! coordinator that takes a checkpoint every interval and writes it in the background.
//!
//! A scheduler takes a checkpoint at a point where no element is between operators (the
//! streaming executor: between two rounds of its loop). Each operator writes its state
//! into a [`StateOut`] as keyed entries: everything in a full checkpoint, what changed
//! since the last one otherwise. The [`Coordinator`] hands the [`Snapshot`] to a writer
//! thread ([`Store`]: one redb file per checkpoint) while processing goes on; once the
//! file is durable, the commit records operators left (files to publish) are committed.
//! A job started again with the same directory restores the newest whole checkpoint.

pub mod codec;
mod coordinator;
mod store;

pub use coordinator::{Completed, Coordinator};
pub use store::{Restored, Store};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How a streaming job checkpoints (`--checkpoint-dir`, `--checkpoint-interval`,
/// `--restore`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Where checkpoints are kept.
    pub dir: PathBuf,
    /// Time between the start of one checkpoint and the next.
    pub interval: Duration,
    /// Whether a job resumes from the newest checkpoint in `dir`.
    pub restore: Restore,
    /// Every this many checkpoints one is full; the others hold what changed.
    pub full_every: u64,
}

/// Default of [`CheckpointOptions::full_every`].
pub const DEFAULT_FULL_EVERY: u64 = 10;

/// Whether a job resumes from a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// From the newest whole checkpoint, when there is one (the default).
    Latest,
    /// Start over: earlier checkpoints are removed.
    None,
}

impl std::str::FromStr for Restore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(Restore::Latest),
            "none" => Ok(Restore::None),
            _ => Err(format!("--restore takes 'latest' or 'none', not '{s}'")),
        }
    }
}

/// What one operator saves in a checkpoint.
#[derive(Debug, Default)]
pub struct StateOut {
    id: u64,
    full: bool,
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

/// The shape of `graph` that its checkpoints depend on: each transform's name, kind and
/// output coders, one line each.
pub fn fingerprint(graph: &crate::graph::Graph) -> String {
    let mut lines = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        let coders: Vec<String> = n
            .outputs
            .iter()
            .map(|&pc| graph.pcollections[pc].coder.to_string())
            .collect();
        lines.push(format!(
            "{} [{}] -> {}",
            n.name,
            n.kind.label(),
            coders.join(", ")
        ));
    }
    lines.join("\n")
}

/// Says how `now` differs from `saved` (both from [`fingerprint`]), or `None` when the
/// pipelines are the same.
pub fn incompatibility(saved: &str, now: &str) -> Option<String> {
    if saved == now {
        return None;
    }
    let old: Vec<&str> = saved.lines().collect();
    let new: Vec<&str> = now.lines().collect();
    let name = |l: &str| l.split(" [").next().unwrap_or(l).to_string();
    for l in &new {
        match old.iter().find(|o| name(o) == name(l)) {
            None => return Some(format!("transform '{}' is new", name(l))),
            Some(o) if o != l => {
                return Some(format!("transform '{}' changed: was {o}, now {l}", name(l)))
            }
            _ => {}
        }
    }
    for o in &old {
        if !new.iter().any(|l| name(l) == name(o)) {
            return Some(format!("transform '{}' is gone", name(o)));
        }
    }
    Some("the transforms are in another order".into())
}
