//! The pre-combine table of a lifted combine with many keys: partial results per key and
//! window in open addressing, each in one cache line, prefetched a few elements ahead.
//! [`super::precombine::PreCombine`] moves to it when its own table outgrows the caches.

use crate::coder::Coder;
use crate::combine::{Accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result};
use crate::value::Value;
use crate::window::{Window, WindowedValue};
use prefetch_index::prefetch_index;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;

/// One key and window's partial result in the table: one cache line, so that finding it
/// (tag, key and window bytes) and adding to it (accumulator, count, timestamp) reads
/// the line a prefetch loaded.
#[repr(align(64))]
struct Slot {
    /// The high half of the mixed hash of `group`; its low bits are the home slot.
    tag: u32,
    /// Elements folded in (past `u32::MAX`, the rest is counted in `overflow`).
    count: u32,
    /// The encoded window, then the encoded key.
    group: GroupBytes,
    /// The accumulator; `None` in an empty slot.
    acc: Option<Accumulator>,
    /// Latest timestamp of the elements.
    latest: i64,
}

/// Encoded bytes kept inline when short (most keys and windows).
type GroupBytes = smallvec::SmallVec<[u8; 16]>;

impl Slot {
    fn empty() -> Slot {
        Slot {
            tag: 0,
            count: 0,
            group: GroupBytes::new(),
            acc: None,
            latest: i64::MIN,
        }
    }
}

/// Mixes a hash before it picks a slot (the low bits of an Fx hash are weak).
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// Encodes a window for a table's group bytes, short enough that a window and a short
/// key stay inline: the global window as one byte, an interval as its start and length
/// as zigzag varints (a minute's window at today's times: 10 bytes, not 17).
fn encode_group_window(w: &Window, out: &mut Vec<u8>) {
    let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    match w {
        Window::Global => out.push(0),
        Window::Interval { start, end } => {
            out.push(1);
            crate::coder::write_varint(zigzag(*start), out);
            crate::coder::write_varint(zigzag(end.wrapping_sub(*start)), out);
        }
    }
}

/// Decodes what [`encode_group_window`] wrote.
fn decode_group_window(input: &mut &[u8]) -> std::result::Result<Window, crate::coder::CoderError> {
    let unzigzag = |v: u64| ((v >> 1) as i64) ^ -((v & 1) as i64);
    let (&tag, rest) = input
        .split_first()
        .ok_or(crate::coder::CoderError::Eof("window"))?;
    *input = rest;
    match tag {
        0 => Ok(Window::Global),
        _ => {
            let start = unzigzag(crate::coder::read_varint(input)?);
            let len = unzigzag(crate::coder::read_varint(input)?);
            Ok(Window::Interval {
                start,
                end: start.wrapping_add(len),
            })
        }
    }
}

/// The tag of encoded group bytes: the high half of their mixed hash.
fn tag_of(group: &[u8]) -> u32 {
    (FxBuildHasher.hash_one(group).wrapping_mul(SPREAD) >> 32) as u32
}

/// Slots of a new table.
const FIRST_SLOTS: usize = 64;

/// How many elements ahead a slot is prefetched.
const PREFETCH_AHEAD: usize = 8;

/// Partial results of one bundle, by key and window.
#[derive(Default)]
pub(crate) struct SlotTable {
    /// Open addressing with linear probing, the partial results in the slots: a lookup
    /// usually reads the one slot it finds (its tag, key bytes and accumulator are
    /// together). A power of two long, at most half full.
    slots: Vec<Slot>,
    /// Occupied slots in order of first arrival (the order partial results are taken).
    order: Vec<u32>,
    /// The batch being added: each element's tag and group bytes in `key_buf`.
    pending: Vec<(u32, usize, usize)>,
    key_buf: Vec<u8>,
    /// Counts past `u32::MAX` of one key and window in one bundle, by group bytes.
    overflow: std::collections::HashMap<Vec<u8>, u64>,
}

/// One partial result going in or out of the table (the parts of a
/// [`super::precombine::Partial`]).
pub(crate) struct Taken<'a> {
    /// The key encoded with the key coder (outer context).
    pub key_bytes: &'a [u8],
    pub key: Value,
    pub window: Window,
    pub acc: Accumulator,
    pub count: usize,
    pub latest: i64,
}

/// What the table folds with.
pub(crate) struct Folding<'a> {
    /// The CombinePerKey's name, for errors.
    pub name: &'a str,
    pub key_coder: &'a Coder,
    pub combine: &'a dyn CombineFnInvoker,
}

impl Folding<'_> {
    fn coder_err(&self, source: crate::coder::CoderError) -> EngineError {
        EngineError::Coder {
            transform: self.name.to_string(),
            source,
        }
    }
}

impl SlotTable {
    /// Partial results it holds.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Moves in a partial result of a key and window the table does not hold yet.
    pub(crate) fn insert(&mut self, p: Taken<'_>) {
        self.key_buf.clear();
        encode_group_window(&p.window, &mut self.key_buf);
        self.key_buf.extend_from_slice(p.key_bytes);
        p.key.release();
        let tag = tag_of(&self.key_buf);
        let i = self.find(tag, 0..self.key_buf.len(), || p.acc);
        let slot = &mut self.slots[i];
        slot.latest = p.latest;
        match u32::try_from(p.count) {
            Ok(c) => slot.count = c,
            Err(_) => {
                slot.count = u32::MAX;
                self.overflow
                    .insert(slot.group.to_vec(), (p.count - u32::MAX as usize) as u64);
            }
        }
    }

    /// Folds the elements of `batch` in, leaving it empty: the keys' encodings and tags
    /// first, so that the slot of an element a few places ahead is loaded into the cache
    /// while this one is added (past the caches, that miss is most of the cost).
    ///
    /// # Errors
    /// An element that is not key/value, a key that does not encode, or a failing
    /// combine, naming the CombinePerKey.
    pub(crate) fn add(&mut self, batch: &mut Vec<WindowedValue>, f: &Folding<'_>) -> Result<()> {
        self.key_buf.clear();
        self.pending.clear();
        let mut values = Vec::with_capacity(batch.len());
        for wv in batch.drain(..) {
            let (key, value) = wv.value.try_into_kv().map_err(|other| {
                EngineError::user(
                    f.name,
                    format!("expected a key/value element, got a {} value", other.kind()),
                )
            })?;
            // The window first: it delimits itself, an outer-context key does not.
            let start = self.key_buf.len();
            encode_group_window(&wv.window, &mut self.key_buf);
            f.key_coder
                .encode(&key, &mut self.key_buf, false)
                .map_err(|e| f.coder_err(e))?;
            key.release();
            let tag = tag_of(&self.key_buf[start..]);
            self.pending.push((tag, start, self.key_buf.len()));
            values.push((value, wv.timestamp));
        }
        for (j, (value, timestamp)) in values.into_iter().enumerate() {
            if let Some(&(ahead, _, _)) = self.pending.get(j + PREFETCH_AHEAD) {
                if !self.slots.is_empty() {
                    prefetch_index(&self.slots, self.home(ahead));
                }
            }
            let (tag, start, end) = self.pending[j];
            let i = self.find(tag, start..end, || f.combine.create_accumulator());
            let slot = &mut self.slots[i];
            let acc = slot.acc.as_mut().expect("an occupied slot");
            f.combine
                .add_input(acc, value)
                .map_err(|e| EngineError::user(f.name, e))?;
            if slot.count == u32::MAX {
                *self.overflow.entry(slot.group.to_vec()).or_default() += 1;
            } else {
                slot.count += 1;
            }
            slot.latest = slot.latest.max(timestamp);
        }
        Ok(())
    }

    /// The slot a search for `tag` starts at.
    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & (self.slots.len() - 1)
    }

    /// The slot of the group (key and window) encoded at `group` in the key buffer,
    /// filled if new (the table grows first when it would be more than half full).
    fn find(
        &mut self,
        tag: u32,
        group: std::ops::Range<usize>,
        new_acc: impl FnOnce() -> Accumulator,
    ) -> usize {
        if (self.order.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let bytes = &self.key_buf[group];
        let mask = self.slots.len() - 1;
        let mut i = self.home(tag);
        loop {
            let s = &self.slots[i];
            if s.acc.is_none() {
                break;
            }
            if s.tag == tag && s.group[..] == *bytes {
                return i;
            }
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            tag,
            count: 0,
            group: GroupBytes::from_slice(bytes),
            acc: Some(new_acc()),
            latest: i64::MIN,
        };
        self.order.push(i as u32);
        i
    }

    /// Doubles the table, moving every slot to its place in the new one.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(FIRST_SLOTS);
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::empty()).collect();
        let mask = n - 1;
        for pos in self.order.iter_mut() {
            let s = std::mem::replace(&mut self.slots[*pos as usize], Slot::empty());
            let mut i = s.tag as usize & mask;
            while slots[i].acc.is_some() {
                i = (i + 1) & mask;
            }
            *pos = i as u32;
            slots[i] = s;
        }
        self.slots = slots;
    }

    /// Hands over the partial results in order of first arrival, emptying the table.
    ///
    /// # Errors
    /// A key that does not decode (its coder encoded it: only a coder bug).
    pub(crate) fn take_into(
        &mut self,
        f: &Folding<'_>,
        mut emit: impl FnMut(Taken<'_>),
    ) -> Result<()> {
        let coder_err = |source| f.coder_err(source);
        for pos in self.order.drain(..) {
            let s = std::mem::replace(&mut self.slots[pos as usize], Slot::empty());
            let mut rest = &s.group[..];
            let window = decode_group_window(&mut rest).map_err(coder_err)?;
            let key_bytes = rest;
            let key = f.key_coder.decode(&mut rest, false).map_err(coder_err)?;
            let extra = if self.overflow.is_empty() {
                0
            } else {
                self.overflow.remove(&s.group[..]).unwrap_or(0)
            };
            emit(Taken {
                key_bytes,
                key,
                window,
                acc: s.acc.expect("an occupied slot"),
                count: s.count as usize + extra as usize,
                latest: s.latest,
            });
        }
        self.overflow.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_cache_line_and_windows_stay_short() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        for w in [
            Window::Global,
            Window::Interval {
                start: 1_765_000_000_000,
                end: 1_765_000_060_000,
            },
            Window::Interval {
                start: i64::MIN,
                end: i64::MAX,
            },
            Window::Interval { start: -5, end: 3 },
        ] {
            let mut bytes = Vec::new();
            encode_group_window(&w, &mut bytes);
            assert_eq!(decode_group_window(&mut &bytes[..]).unwrap(), w);
        }
        let mut minute = Vec::new();
        encode_group_window(
            &Window::Interval {
                start: 1_765_000_000_000,
                end: 1_765_000_060_000,
            },
            &mut minute,
        );
        assert!(minute.len() <= 10, "{}", minute.len());
    }
}
