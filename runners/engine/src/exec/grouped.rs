//! GroupByKey over encoded elements: compact runs in, encoded `KV<key, iterable>` out.
//!
//! When a GroupByKey's values have a standard coder (no user or Python objects), its
//! shuffle keeps every element as bytes (key, window, timestamp, value: ~30 bytes for
//! small values instead of a ~100-byte struct with a boxed value), and writes each group
//! straight into the encoding of its output element by copying value bytes. Values are
//! decoded only when a downstream stage loads the output bundle, one bundle at a time.

use super::spill::{decode_window, Bundle};
use crate::coder::{read_varint, write_pane, write_timestamp, write_varint, Coder};
use crate::error::{EngineError, Result};
use crate::graph::Windowing;
use crate::window::PaneInfo;
use std::sync::Arc;

/// Whether values of coder `c` can be grouped encoded: standard coders only (user and
/// dynamically typed values keep their objects, which encoding would copy or pickle).
pub(crate) fn groups_encoded(c: &Coder) -> bool {
    match c {
        Coder::Bytes | Coder::StringUtf8 | Coder::VarInt | Coder::Bool | Coder::Double => true,
        Coder::Kv(k, v) => groups_encoded(k) && groups_encoded(v),
        Coder::Iterable(e) | Coder::LengthPrefix(e) | Coder::Nullable(e) => groups_encoded(e),
        Coder::Dynamic | Coder::Opaque(_) => false,
    }
}

/// Runs start over before their offsets outgrow `u32`.
const MAX_RUN_BYTES: usize = (u32::MAX as usize) - (64 << 20);

/// Elements of one shuffle partition from one bundle, encoded back to back.
///
/// Each record is: key length (varint), key, window, timestamp (8 bytes), value (nested).
#[derive(Default)]
pub(crate) struct EncodedRun {
    items: Vec<RunItem>,
    bytes: Vec<u8>,
}

/// Where one record is, with its key's hash.
#[derive(Clone, Copy)]
struct RunItem {
    hash: u64,
    start: u32,
    /// Start of the value (the timestamp is the 8 bytes before it).
    value: u32,
}

impl EncodedRun {
    /// Appends a record; `key` is the encoded key, `window` the encoded window.
    pub(crate) fn push(
        &mut self,
        hash: u64,
        key: &[u8],
        window: &[u8],
        timestamp: i64,
        value: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let start = self.bytes.len();
        write_varint(key.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(window);
        self.bytes.extend_from_slice(&timestamp.to_le_bytes());
        let value_start = self.bytes.len();
        if let Err(e) = value(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        self.items.push(RunItem {
            hash,
            start: start as u32,
            value: value_start as u32,
        });
        Ok(())
    }

    /// An empty run with room for `items` records of `bytes` in total.
    pub(crate) fn with_capacity(items: usize, bytes: usize) -> Self {
        EncodedRun {
            items: Vec::with_capacity(items),
            bytes: Vec::with_capacity(bytes.min(MAX_RUN_BYTES)),
        }
    }

    /// Records and bytes in the run.
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.items.len(), self.bytes.len())
    }

    /// Whether the run is full (the writer starts another).
    pub(crate) fn is_full(&self) -> bool {
        self.bytes.len() > MAX_RUN_BYTES
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The key and window bytes of item `i`, and the key's length within them.
    fn group(&self, i: usize) -> (&[u8], usize) {
        let it = self.items[i];
        let mut rec = &self.bytes[it.start as usize..it.value as usize - 8];
        let key_len = read_varint(&mut rec).expect("written by push") as usize;
        (rec, key_len)
    }

    fn timestamp(&self, i: usize) -> i64 {
        let v = self.items[i].value as usize;
        i64::from_le_bytes(self.bytes[v - 8..v].try_into().expect("8 bytes"))
    }

    fn value(&self, i: usize) -> &[u8] {
        let end = self
            .items
            .get(i + 1)
            .map_or(self.bytes.len(), |n| n.start as usize);
        &self.bytes[self.items[i].value as usize..end]
    }
}

/// A group: its first item (for the key and window bytes), size and timestamp.
struct Slot {
    hash: u64,
    /// The key and window bytes, inline when short (compared without touching the runs).
    group: smallvec::SmallVec<[u8; 16]>,
    key_len: u32,
    run: u32,
    item: u32,
    count: u32,
    /// Bytes of the encoded values.
    bytes: usize,
    timestamp: Option<i64>,
}

/// Bytes of the window encoding within a slot's key and window bytes.
fn window_len(group: &[u8], s: &Slot) -> usize {
    group.len() - key_len_of(s)
}

fn key_len_of(s: &Slot) -> usize {
    s.key_len as usize
}

/// Copies a few bytes without a call into `memcpy` (most values are a few bytes long).
#[inline]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    if src.len() <= 16 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Groups a partition's runs (in bundle order) by key and window and encodes each group
/// as an output element `KV<key, iterable<value>>` with `out_coder`, values in arrival
/// order, groups in order of first arrival.
///
/// # Errors
/// When a window does not decode (a bug), naming the transform.
pub(crate) fn finish_encoded(
    name: &str,
    runs: Vec<EncodedRun>,
    windowing: &Windowing,
    out_coder: &Coder,
) -> Result<Bundle> {
    let tc = windowing.timestamp_combiner;
    let mut index: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
    let mut slots: Vec<Slot> = Vec::new();
    let total: usize = runs.iter().map(|r| r.items.len()).sum();
    let mut group_of: Vec<u32> = Vec::with_capacity(total);
    for (r, run) in runs.iter().enumerate() {
        for (i, it) in run.items.iter().enumerate() {
            let (group, key_len) = run.group(i);
            let found = index
                .find(it.hash, |&g| {
                    let s = &slots[g as usize];
                    s.hash == it.hash && s.group[..] == *group
                })
                .copied();
            let g = match found {
                Some(g) => g,
                None => {
                    let g = slots.len() as u32;
                    slots.push(Slot {
                        hash: it.hash,
                        group: group.into(),
                        run: r as u32,
                        item: i as u32,
                        count: 0,
                        bytes: 0,
                        key_len: key_len as u32,
                        timestamp: None,
                    });
                    index.insert_unique(it.hash, g, |&j| slots[j as usize].hash);
                    g
                }
            };
            let s = &mut slots[g as usize];
            s.count += 1;
            s.bytes += run.value(i).len();
            s.timestamp = Some(tc.combine(s.timestamp, run.timestamp(i)));
            group_of.push(g);
        }
    }
    drop(index);
    // Lay every output element out in place, then scatter the values into it in arrival
    // order: reads of the runs stay sequential, writes land in the (small) output.
    let mut pane = Vec::new();
    write_pane(&PaneInfo::ON_TIME_AND_ONLY_FIRING, &mut pane);
    let mut value_at: Vec<usize> = Vec::with_capacity(slots.len());
    let mut len = 0;
    for s in &slots {
        let (group, _) = runs[s.run as usize].group(s.item as usize);
        // Key and count; values; timestamp, window and pane.
        value_at.push(len + group.len() + 4 - window_len(group, s));
        len += group.len() + 4 + s.bytes + 8 + pane.len();
    }
    let mut out = vec![0u8; len];
    for (s, &at) in slots.iter().zip(&value_at) {
        let (group, key_len) = runs[s.run as usize].group(s.item as usize);
        let (key, mut window_bytes) = group.split_at(key_len);
        let window = decode_window(&mut window_bytes).map_err(|source| EngineError::Coder {
            transform: name.to_string(),
            source,
        })?;
        out[at - 4 - key_len..at - 4].copy_from_slice(key);
        out[at - 4..at].copy_from_slice(&(s.count as i32).to_be_bytes());
        let mut tail = Vec::with_capacity(8 + group.len() - key_len + pane.len());
        let ts = s.timestamp.unwrap_or(window.max_timestamp());
        write_timestamp(tc.output(&window, ts), &mut tail);
        tail.extend_from_slice(&group[key_len..]);
        tail.extend_from_slice(&pane);
        let end = at + s.bytes;
        out[end..end + tail.len()].copy_from_slice(&tail);
    }
    let mut next = value_at;
    let mut k = 0;
    for run in &runs {
        for i in 0..run.items.len() {
            let g = group_of[k] as usize;
            k += 1;
            let v = run.value(i);
            let at = next[g];
            copy_small(&mut out[at..at + v.len()], v);
            next[g] = at + v.len();
        }
    }
    Ok(Bundle::Encoded(Arc::new(super::spill::EncodedBundle {
        bytes: out,
        count: slots.len(),
        coder: out_coder.clone(),
    })))
}
