//! Encoded keys of a streaming grouping and the table of per-key state: short keys are
//! kept inline, so a lookup compares a stored hash and a few bytes without following a
//! pointer, and copies of a key (timers, expiry) need no reference count.

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::cmp::Ordering;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// Longest key stored inline.
const INLINE: usize = 22;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    /// Length, then the bytes, zero-padded (so equal keys compare equal as arrays).
    Inline(u8, [u8; INLINE]),
    Heap(Arc<[u8]>),
}

/// A key's encoding with its hash; ordered by the hash first, so that index lookups (many
/// keys' timers share a timestamp) rarely compare the bytes themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyBytes {
    hash: u64,
    repr: Repr,
}

impl KeyBytes {
    /// The key encoded as `bytes`.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        let repr = if bytes.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            Repr::Inline(bytes.len() as u8, buf)
        } else {
            Repr::Heap(Arc::from(bytes))
        };
        KeyBytes {
            hash: FxBuildHasher.hash_one(bytes),
            repr,
        }
    }

    /// The encoded key.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline(len, buf) => &buf[..*len as usize],
            Repr::Heap(b) => b,
        }
    }
}

impl Hash for KeyBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Ord for KeyBytes {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hash
            .cmp(&other.hash)
            .then_with(|| self.bytes().cmp(other.bytes()))
    }
}

impl PartialOrd for KeyBytes {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Values by encoded key.
pub(crate) struct KeyTable<V>(HashTable<(KeyBytes, V)>);

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable(HashTable::new())
    }
}

impl<V> KeyTable<V> {
    pub(crate) fn get(&self, kb: &KeyBytes) -> Option<&V> {
        self.0.find(kb.hash, |(k, _)| k == kb).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, kb: &KeyBytes) -> Option<&mut V> {
        self.0.find_mut(kb.hash, |(k, _)| k == kb).map(|(_, v)| v)
    }

    /// The entry of `kb`, created by `new` if absent.
    pub(crate) fn get_or_insert_with(
        &mut self,
        kb: &KeyBytes,
        new: impl FnOnce() -> V,
    ) -> (&KeyBytes, &mut V) {
        let (k, v) = self
            .0
            .entry(kb.hash, |(k, _)| k == kb, |(k, _)| k.hash)
            .or_insert_with(|| (kb.clone(), new()))
            .into_mut();
        (k, v)
    }

    /// Every key with its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&KeyBytes, &V)> + '_ {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Removes and returns the entries `pick` chooses.
    pub(crate) fn extract_if(
        &mut self,
        mut pick: impl FnMut(&KeyBytes, &mut V) -> bool,
    ) -> Vec<(KeyBytes, V)> {
        self.0.extract_if(|(k, v)| pick(k, v)).collect()
    }

    /// Gives memory back when the table is mostly empty (after many removals).
    pub(crate) fn shrink_if_sparse(&mut self) {
        let len = self.0.len();
        if self.0.capacity() > 4 * len + 64 {
            self.0.shrink_to(2 * len, |(k, _)| k.hash);
        }
    }

    pub(crate) fn remove(&mut self, kb: &KeyBytes) -> Option<V> {
        let entry = self.0.find_entry(kb.hash, |(k, _)| k == kb).ok()?;
        Some(entry.remove().0 .1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_keys_are_found_removed_and_ordered_by_hash_then_bytes() {
        let short = KeyBytes::new(b"ab");
        let long = KeyBytes::new(&[7u8; 40]);
        let mut t = KeyTable::default();
        *t.get_or_insert_with(&short, || 1).1 += 10;
        t.get_or_insert_with(&long, || 2);
        assert_eq!(t.get(&KeyBytes::new(b"ab")), Some(&11));
        assert_eq!(t.get(&KeyBytes::new(&[7u8; 40])), Some(&2));
        assert_eq!(
            t.get(&KeyBytes::new(b"ab\0")),
            None,
            "padding is not part of the key"
        );
        assert_eq!(t.remove(&short), Some(11));
        assert_eq!(t.get(&short), None);
        assert_eq!(long.bytes(), &[7u8; 40]);
        let (a, b) = (KeyBytes::new(b"x"), KeyBytes::new(b"y"));
        assert_eq!(a.cmp(&b), a.hash.cmp(&b.hash).then(b"x".cmp(b"y")));
    }
}
