//! The checkpoint files' format: their redb tables, format number, digest and errors
//! (shared by writing and reading them).

use crate::error::EngineError;
use redb::TableDefinition;

pub(super) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
pub(super) const PUTS: TableDefinition<'_, (&str, &[u8]), &[u8]> = TableDefinition::new("puts");
pub(super) const DELETES: TableDefinition<'_, (&str, &[u8]), ()> = TableDefinition::new("deletes");
pub(super) const COMMITS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("commits");
pub(super) const FULL_NODES: TableDefinition<'_, &str, ()> = TableDefinition::new("full_nodes");

/// Format of the files; a file of another format is not read.
pub(super) const FORMAT: u64 = 1;

/// A checkpoint error: what was being done, and why it failed.
pub(super) fn err(context: impl std::fmt::Display, e: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!("{context}: {e}"))
}

/// An order-independent digest of a file's entries: the count and a sum of CRCs.
#[derive(Default, PartialEq, Eq, Debug, Clone, Copy)]
pub(super) struct Digest(u64, u64);

impl Digest {
    pub(super) fn add(&mut self, parts: &[&[u8]]) {
        let mut h = crc32fast::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        self.0 += 1;
        self.1 = self
            .1
            .wrapping_add(u64::from(h.finalize()).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    pub(super) fn bytes(self) -> Vec<u8> {
        [self.0.to_le_bytes(), self.1.to_le_bytes()].concat()
    }
}
