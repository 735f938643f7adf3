//! The pre-combine table of lifted combines: accumulators per encoded key and window.
//!
//! Open addressing with linear probing, the entries themselves in the slots: a lookup
//! usually reads one cache line (the hash is in the entry, so other keys are passed over
//! without comparing bytes), and the slot of an element a few places ahead can be
//! prefetched while this one is added. With many keys the table is larger than the
//! caches and that miss is most of a lifted combine's cost.

use crate::coder::Coder;
use crate::combine::{Accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result};
use crate::operators::guard::guarded;
use crate::operators::partition::same_bytes;
use crate::value::Value;
use crate::window::{PaneInfo, TimestampCombiner, Window, WindowedValue};
use prefetch_index::prefetch_index;

/// Encoded bytes kept inline when short (most keys): no allocation per element, and a
/// lookup touches one cache line instead of chasing a heap pointer.
pub(super) type GroupBytes = smallvec::SmallVec<[u8; 16]>;

/// A pre-combined accumulator for one key and window: 64 bytes, one cache line (aligned
/// to it, or most entries would span two). The key and window are decoded from
/// `group_bytes` once, when the result is emitted.
#[repr(align(64))]
pub(super) struct CombineEntry {
    /// Hash of the encoded key (shared by all windows of the key).
    pub(super) hash: u64,
    /// The encoded key, then the encoded window.
    pub(super) group_bytes: GroupBytes,
    pub(super) acc: Accumulator,
    /// Combined timestamp of the inputs; [`NO_TIMESTAMP`] before the first.
    pub(super) timestamp: i64,
}

/// [`CombineEntry::timestamp`] before any input (keeps entries at 64 bytes).
pub(super) const NO_TIMESTAMP: i64 = i64::MIN;

impl CombineEntry {
    pub(super) fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
}

/// Pre-combined entries by key and window.
#[derive(Default)]
pub(super) struct CombineTable {
    /// The slots (any number: tables are sized to what the previous bundle needed).
    slots: Vec<Option<CombineEntry>>,
    len: usize,
    /// Slots of the first allocation, made when the first entry arrives (partitions that
    /// get no entries cost nothing).
    first: usize,
}

/// Mixes the hash before it is mapped to a slot: the high bits of the product depend on
/// every bit of the hash (the low bits of an Fx hash are weak).
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

impl CombineTable {
    /// An empty table with room for `n` entries.
    pub(super) fn with_capacity(n: usize) -> Self {
        CombineTable {
            first: n * 4 / 3 + 1,
            ..CombineTable::default()
        }
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot where the search for `hash` starts: the mixed hash scaled to the number
    /// of slots (a multiply instead of a division).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash.wrapping_mul(SPREAD)) * self.slots.len() as u128) >> 64) as usize
    }

    /// Starts loading the slot where `hash` begins its search into the cache.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch_index(&self.slots, self.home(hash));
        }
    }

    /// Index of the slot holding `group` (hash `hash`), or of the empty slot where it
    /// belongs. The table must have an empty slot.
    #[inline]
    fn position(&self, hash: u64, group: &[u8]) -> usize {
        let n = self.slots.len();
        let mut i = self.home(hash);
        loop {
            match &self.slots[i] {
                None => return i,
                Some(e) if e.hash == hash && same_bytes(&e.group_bytes, group) => return i,
                Some(_) => i = if i + 1 == n { 0 } else { i + 1 },
            }
        }
    }

    /// The entry of `group` (hash `hash`), created by `make` if new.
    #[inline]
    pub(super) fn get_or_insert_with(
        &mut self,
        hash: u64,
        group: &[u8],
        make: impl FnOnce() -> CombineEntry,
    ) -> &mut CombineEntry {
        // At most 3/4 full: a search ends after two or three slots on average.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let i = self.position(hash, group);
        let slot = &mut self.slots[i];
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    fn grow(&mut self) {
        let n = if self.slots.is_empty() {
            self.first
        } else {
            self.slots.len() * 2
        };
        self.resize(n.max(16));
    }

    /// Moves the entries into `n` slots (more than the entries).
    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.slots, (0..n).map(|_| None).collect());
        for e in old.into_iter().flatten() {
            // Entries are distinct: the first empty slot from home is theirs.
            let mut i = self.home(e.hash);
            while self.slots[i].is_some() {
                i = if i + 1 == n { 0 } else { i + 1 };
            }
            self.slots[i] = Some(e);
        }
    }

    /// Moves every entry of `other` in: new keys and windows are inserted, those already
    /// here are merged by `merge` (see [`CombineTable::merge_slots`]).
    ///
    /// # Errors
    /// The first error of `merge`.
    pub(super) fn merge_from<E>(
        &mut self,
        other: CombineTable,
        merge: impl FnMut(&mut CombineEntry, CombineEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        let count = other.len;
        self.merge_slots(other.slots, count, merge)
    }

    /// Moves the entries of `slots` (`count` of them, `None`s skipped) in: new keys and
    /// windows are inserted, those already here are merged by `merge`. Room is made first
    /// and slots are prefetched a few entries ahead (merging is a cache miss per entry
    /// when tables are large).
    ///
    /// # Errors
    /// The first error of `merge`.
    pub(super) fn merge_slots<E>(
        &mut self,
        mut slots: Vec<Option<CombineEntry>>,
        count: usize,
        mut merge: impl FnMut(&mut CombineEntry, CombineEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        const AHEAD: usize = 8;
        let wanted = self.len + count;
        if wanted * 4 > self.slots.len() * 3 {
            self.resize((wanted * 4 / 3 + 1).max(self.slots.len() * 2).max(16));
        }
        for i in 0..slots.len() {
            if let Some(next) = slots.get(i + AHEAD).and_then(Option::as_ref) {
                self.prefetch(next.hash);
            }
            let Some(e) = slots[i].take() else {
                continue;
            };
            // `count` may be short: room for one more.
            if (self.len + 1) * 4 > self.slots.len() * 3 {
                self.grow();
            }
            let at = self.position(e.hash, &e.group_bytes);
            match &mut self.slots[at] {
                Some(target) => merge(target, e)?,
                empty => {
                    *empty = Some(e);
                    self.len += 1;
                }
            }
        }
        Ok(())
    }

    /// The entries, in slot order.
    pub(super) fn into_entries(self) -> impl Iterator<Item = CombineEntry> {
        self.slots.into_iter().flatten()
    }
}

/// Merges entry `e` into `target` of the same key and window: accumulators with `f`,
/// timestamps with `tc`.
///
/// # Errors
/// A failing (or panicking) merge, naming transform `name`.
pub(super) fn merge_entry(
    f: &dyn CombineFnInvoker,
    tc: TimestampCombiner,
    name: &str,
    target: &mut CombineEntry,
    e: CombineEntry,
) -> Result<()> {
    let ts = e.timestamp();
    guarded(name, || f.merge_into(&mut target.acc, e.acc))?;
    if let Some(ts) = ts {
        target.timestamp = tc.combine(target.timestamp(), ts);
    }
    Ok(())
}

/// The output element of a key and window's group: `value` at the timestamp `tc` gives
/// the window and the group's timestamp (the window's last moment without one), its only
/// pane.
pub(super) fn group_output(
    key: Value,
    window: Window,
    value: Value,
    ts: Option<i64>,
    tc: TimestampCombiner,
) -> WindowedValue {
    WindowedValue {
        value: Value::kv(key, value),
        timestamp: tc.output(&window, ts.unwrap_or(window.max_timestamp())),
        window,
        pane: PaneInfo::ON_TIME_AND_ONLY_FIRING,
    }
}

/// The output element of a merged entry: its key and window decoded from its group
/// bytes, the combine's output of its accumulator.
///
/// # Errors
/// Group bytes that do not decode, or a failing `extract_output`, naming transform `name`.
pub(super) fn entry_output(
    e: CombineEntry,
    f: &dyn CombineFnInvoker,
    key_coder: &Coder,
    tc: TimestampCombiner,
    name: &str,
) -> Result<WindowedValue> {
    let coder_err = |source| EngineError::Coder {
        transform: name.to_string(),
        source,
    };
    let mut b = &e.group_bytes[..];
    let key = key_coder.decode(&mut b, true).map_err(coder_err)?;
    let window = crate::element_codec::decode_window(&mut b).map_err(coder_err)?;
    let ts = e.timestamp();
    let v = guarded(name, || f.extract_output(e.acc))?;
    Ok(group_output(key, window, v, ts, tc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64) -> CombineEntry {
        CombineEntry {
            hash: key % 7, // many collisions on purpose
            group_bytes: GroupBytes::from_slice(&key.to_le_bytes()),
            acc: Accumulator::new(0i64),
            timestamp: NO_TIMESTAMP,
        }
    }

    #[test]
    fn entries_fill_one_cache_line() {
        assert_eq!(std::mem::size_of::<Option<CombineEntry>>(), 64);
    }

    #[test]
    fn finds_every_key_after_growing_with_colliding_hashes() {
        check_rounds(CombineTable::default());
        // Not a power of two of slots, and searches wrapping around the end.
        check_rounds(CombineTable::with_capacity(10));
    }

    #[test]
    fn merging_inserts_new_keys_and_merges_known_ones() {
        let mut a = CombineTable::default();
        let mut b = CombineTable::with_capacity(3);
        for key in 0..600u64 {
            let e = entry(key);
            let (hash, bytes) = (e.hash, e.group_bytes.clone());
            let t = if key < 400 { &mut a } else { &mut b };
            t.get_or_insert_with(hash, &bytes, || e);
            if (200..400).contains(&key) {
                let e = entry(key);
                b.get_or_insert_with(hash, &bytes, || e);
            }
        }
        let mut merged = 0;
        a.merge_from(b, |into, _| {
            *into.acc.downcast_mut::<i64>().unwrap() += 1;
            merged += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!((a.len(), merged), (600, 200));
        let twice = a
            .into_entries()
            .filter(|e| e.acc.try_clone().and_then(|c| c.downcast::<i64>().ok()) == Some(1))
            .count();
        assert_eq!(twice, 200);
    }

    fn check_rounds(mut t: CombineTable) {
        for round in 0..3 {
            for key in 0..1000u64 {
                let e = entry(key);
                let (hash, bytes) = (e.hash, e.group_bytes.clone());
                let got = t.get_or_insert_with(hash, &bytes, || e);
                *got.acc.downcast_mut::<i64>().unwrap() += 1;
                assert_eq!(got.group_bytes.as_slice(), &key.to_le_bytes());
            }
            assert_eq!(t.len(), 1000, "round {round}");
        }
        let mut counts: Vec<(Vec<u8>, i64)> = t
            .into_entries()
            .map(|e| (e.group_bytes.to_vec(), e.acc.downcast::<i64>().unwrap()))
            .collect();
        counts.sort();
        assert_eq!(counts.len(), 1000);
        assert!(counts.iter().all(|(_, n)| *n == 3));
    }
}
