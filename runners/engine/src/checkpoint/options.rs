//! How a job checkpoints (directory, interval, restore) and the pipeline shape a
//! checkpoint is only valid for.

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
    /// Every this many checkpoints one is full (its writer merges what changed into the
    /// state before); the others hold what changed.
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
