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
    run: u32,
    item: u32,
    count: u32,
    timestamp: Option<i64>,
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
            let (group, _) = run.group(i);
            let found = index
                .find(it.hash, |&g| {
                    let s = &slots[g as usize];
                    s.hash == it.hash && runs[s.run as usize].group(s.item as usize).0 == group
                })
                .copied();
            let g = match found {
                Some(g) => g,
                None => {
                    let g = slots.len() as u32;
                    slots.push(Slot {
                        hash: it.hash,
                        run: r as u32,
                        item: i as u32,
                        count: 0,
                        timestamp: None,
                    });
                    index.insert_unique(it.hash, g, |&j| slots[j as usize].hash);
                    g
                }
            };
            let s = &mut slots[g as usize];
            s.count += 1;
            s.timestamp = Some(tc.combine(s.timestamp, run.timestamp(i)));
            group_of.push(g);
        }
    }
    drop(index);
    // Counting sort of (run, item) by group, keeping arrival order within each group.
    let mut next: Vec<usize> = Vec::with_capacity(slots.len());
    let mut at = 0;
    for s in &slots {
        next.push(at);
        at += s.count as usize;
    }
    let mut order: Vec<(u32, u32)> = vec![(0, 0); total];
    let mut k = 0;
    for (r, run) in runs.iter().enumerate() {
        for i in 0..run.items.len() {
            let g = group_of[k] as usize;
            k += 1;
            order[next[g]] = (r as u32, i as u32);
            next[g] += 1;
        }
    }
    drop(group_of);
    let mut out = Vec::new();
    let mut pos = 0;
    for s in &slots {
        let (group, key_len) = runs[s.run as usize].group(s.item as usize);
        let (key, mut window_bytes) = group.split_at(key_len);
        let window = decode_window(&mut window_bytes).map_err(|source| EngineError::Coder {
            transform: name.to_string(),
            source,
        })?;
        out.extend_from_slice(key);
        out.extend_from_slice(&(s.count as i32).to_be_bytes());
        for &(r, i) in &order[pos..pos + s.count as usize] {
            out.extend_from_slice(runs[r as usize].value(i as usize));
        }
        pos += s.count as usize;
        let ts = s.timestamp.unwrap_or(window.max_timestamp());
        write_timestamp(tc.output(&window, ts), &mut out);
        out.extend_from_slice(&group[key_len..]);
        write_pane(&PaneInfo::ON_TIME_AND_ONLY_FIRING, &mut out);
    }
    Ok(Bundle::Encoded(Arc::new(super::spill::EncodedBundle {
        bytes: out,
        count: slots.len(),
        coder: out_coder.clone(),
    })))
}
