//! Keys and windows by the time they fall due (trigger timers, window expiry). Entries
//! that share a time (a window's end is the same for every key) go into one list, so
//! adding one is a push, not a sorted insert among all the others.

use super::key_table::KeyBytes;
use crate::window::Window;
use std::collections::btree_map::{BTreeMap, Entry};

/// The entries of one time, in order of insertion.
pub(crate) type DueList = Vec<(KeyBytes, Window)>;

/// Most emptied lists kept for reuse.
const MAX_SPARE: usize = 16;

/// `(key, window)` entries by due time; within a time, in order of insertion. An entry
/// may be stale or repeated: whoever takes it checks that it still applies.
#[derive(Default)]
pub(crate) struct DueIndex {
    by_time: BTreeMap<i64, Due>,
    spare: Vec<DueList>,
    /// Times with entries that went elsewhere since the last compaction.
    moved: Vec<i64>,
}

/// The entries of one time, and how many of them may still apply.
struct Due {
    live: usize,
    list: DueList,
}

impl DueIndex {
    /// Adds `(kb, w)`, due at `at`.
    pub(crate) fn push(&mut self, at: i64, kb: KeyBytes, w: Window) {
        match self.by_time.entry(at) {
            Entry::Occupied(e) => {
                let due = e.into_mut();
                due.live += 1;
                due.list.push((kb, w));
            }
            Entry::Vacant(e) => {
                let mut list = self.spare.pop().unwrap_or_default();
                list.push((kb, w));
                e.insert(Due { live: 1, list });
            }
        }
    }

    /// Notes that one entry due at `at` no longer applies (its window is gone); a time
    /// whose entries all went stale is dropped before it falls due, so the entries of
    /// expired windows do not pile up until then (processing-time timers may be far off).
    ///
    /// Each entry may be forgotten once at most, and only while its time is indexed.
    pub(crate) fn forget(&mut self, at: i64) {
        if let Entry::Occupied(mut e) = self.by_time.entry(at) {
            let due = e.get_mut();
            due.live = due.live.saturating_sub(1);
            if due.live == 0 {
                let list = e.remove().list;
                self.recycle(list);
            }
        }
    }

    /// The earliest time with entries.
    pub(crate) fn first_time(&self) -> Option<i64> {
        self.by_time.keys().next().copied()
    }

    /// Drops the entries of keys `keep` rejects (their keys went elsewhere, with their
    /// times) from every time where most entries may be stale; a time left without
    /// entries goes.
    pub(crate) fn compact(&mut self, mut keep: impl FnMut(&KeyBytes) -> bool) {
        let mut emptied = Vec::new();
        let mut moved = std::mem::take(&mut self.moved);
        moved.sort_unstable();
        moved.dedup();
        for at in moved.drain(..) {
            let Some(due) = self.by_time.get_mut(&at) else {
                continue;
            };
            if due.list.len() < 2 * due.live + 64 {
                continue;
            }
            due.list.retain(|(kb, _)| keep(kb));
            // Every entry left may apply (an over-count only keeps a time longer).
            due.live = due.list.len();
            if due.list.is_empty() {
                emptied.push(at);
            } else if due.list.capacity() > 4 * due.list.len() {
                due.list.shrink_to(2 * due.list.len());
            }
        }
        for at in emptied {
            if let Some(due) = self.by_time.remove(&at) {
                self.recycle(due.list);
            }
        }
        self.moved = moved;
    }

    /// Notes that the entries of one key at `at` went elsewhere (see [`DueIndex::compact`]).
    pub(crate) fn moved_out(&mut self, at: i64) {
        if let Some(due) = self.by_time.get_mut(&at) {
            due.live = due.live.saturating_sub(1);
            self.moved.push(at);
        }
    }

    /// Removes and returns the entries of the earliest time, if `is_due` says that time is due.
    pub(crate) fn pop_due(&mut self, is_due: impl Fn(i64) -> bool) -> Option<(i64, DueList)> {
        let first = self.by_time.first_entry()?;
        is_due(*first.key()).then(|| {
            let (at, due) = first.remove_entry();
            (at, due.list)
        })
    }

    /// Keeps an emptied list for the next time.
    pub(crate) fn recycle(&mut self, mut list: DueList) {
        if self.spare.len() < MAX_SPARE {
            list.clear();
            self.spare.push(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_by_time_then_in_insertion_order() {
        let w = |s: i64| Window::Interval {
            start: s,
            end: s + 10,
        };
        let (a, b) = (KeyBytes::new(b"a"), KeyBytes::new(b"b"));
        let mut due = DueIndex::default();
        due.push(20, b.clone(), w(10));
        due.push(10, b.clone(), w(0));
        due.push(20, a.clone(), w(10));
        due.push(10, a.clone(), w(0));
        assert!(
            due.pop_due(|t| t < 10).is_none(),
            "nothing is due before 10"
        );
        let (t, list) = due.pop_due(|t| t <= 20).unwrap();
        assert_eq!((t, list), (10, vec![(b.clone(), w(0)), (a.clone(), w(0))]));
        let (t, list) = due.pop_due(|t| t <= 20).unwrap();
        assert_eq!((t, list.clone()), (20, vec![(b, w(10)), (a, w(10))]));
        due.recycle(list);
        assert!(due.pop_due(|_| true).is_none());
    }

    #[test]
    fn a_time_whose_entries_were_all_forgotten_is_dropped() {
        let w = Window::Interval { start: 0, end: 10 };
        let (a, b) = (KeyBytes::new(b"a"), KeyBytes::new(b"b"));
        let mut due = DueIndex::default();
        due.push(5, a.clone(), w);
        due.push(5, b.clone(), w);
        due.push(7, a.clone(), w);
        due.forget(5);
        due.forget(9); // no such time: nothing happens
        let (t, list) = due.pop_due(|_| true).unwrap();
        assert_eq!((t, list.len()), (5, 2), "one entry of 5 may still apply");
        due.forget(7);
        assert!(due.pop_due(|_| true).is_none());
    }

    #[test]
    fn compaction_drops_the_entries_of_keys_gone_elsewhere() {
        let w = Window::Global;
        let mut due = DueIndex::default();
        let keys: Vec<KeyBytes> = (0..200u32)
            .map(|i| KeyBytes::new(&i.to_be_bytes()))
            .collect();
        for k in &keys {
            due.push(5, k.clone(), w);
        }
        due.push(9, keys[0].clone(), w);
        // Keys 0..150 went to the store: their entries at 5 (and 0's at 9) moved out.
        for _ in 0..150 {
            due.moved_out(5);
        }
        due.moved_out(9);
        let kept = |kb: &KeyBytes| keys[150..].contains(kb);
        due.compact(kept);
        let (t, list) = due.pop_due(|_| true).unwrap();
        assert_eq!((t, list.len()), (5, 50), "only the keys still here");
        assert!(list.iter().all(|(k, _)| kept(k)));
        // A time with few entries is left alone (compacting it would cost more than it
        // frees): key 0's entry at 9 waits for its time.
        assert_eq!(
            due.pop_due(|_| true).map(|(t, l)| (t, l.len())),
            Some((9, 1))
        );
    }
}
