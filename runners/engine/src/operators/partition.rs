//! Keys to partitions: the stable hash of an encoded key, and the partition it goes to.
//!
//! Every grouping (GroupByKey, CombinePerKey, a stateful ParDo's input) sends an element
//! to the partition of its key's hash. The hash is FxHash (`rustc-hash` 2) of the key's
//! encoding with its coder: no per-process seed, so every process of a job, and every run,
//! puts a key in the same partition, and the number of partitions is fixed, so results do
//! not depend on the number of threads.

use rustc_hash::FxHasher;
use std::hash::Hasher;

/// Number of shuffle partitions of the batch executor: fixed, so grouping does not depend
/// on the thread count.
pub const PARTITIONS: usize = 32;

/// The hash of an encoded key, the same in every process.
///
/// # Examples
///
/// ```
/// use beamline_engine::operators::partition::{key_hash, partition_of, PARTITIONS};
/// let h = key_hash(b"user-42");
/// assert_eq!(h, key_hash(b"user-42"));
/// assert!(partition_of(h, PARTITIONS) < PARTITIONS);
/// ```
#[inline]
pub fn key_hash(key_bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(key_bytes);
    h.finish()
}

/// The partition, of `partitions`, of a key hash: its middle bits, independent of the bits
/// hash tables use for buckets (low) and tags (high).
#[inline]
pub fn partition_of(hash: u64, partitions: usize) -> usize {
    ((hash >> 32) % partitions as u64) as usize
}

/// Byte-slice equality without a call into `memcmp` for short keys.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            a == b
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `key_hash(b"user-42")` as computed when this test was written.
    const PINNED: u64 = 13_683_578_250_236_101_094;

    #[test]
    fn the_hash_is_stable_across_processes() {
        // A fixed value: a change of hash function would move keys between partitions of
        // processes built from different versions.
        assert_eq!(key_hash(b"user-42"), PINNED);
        assert_eq!(key_hash(b"abc"), key_hash(b"abc"));
        assert_ne!(key_hash(b"abc"), key_hash(b"abd"));
        let spread: std::collections::HashSet<usize> = (0..1000u32)
            .map(|i| partition_of(key_hash(&i.to_be_bytes()), PARTITIONS))
            .collect();
        assert_eq!(spread.len(), PARTITIONS);
    }
}
