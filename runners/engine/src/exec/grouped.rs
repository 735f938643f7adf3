//! GroupByKey over encoded elements: compact runs in, encoded `KV<key, iterable>` out.
//!
//! When a GroupByKey's values have a standard coder (no user or Python objects), its
//! shuffle keeps every element as bytes (key, window, timestamp, value: ~30 bytes for
//! small values instead of a ~100-byte struct with a boxed value), and writes each group
//! straight into the encoding of its output element by copying value bytes. Values are
//! decoded only when a downstream stage loads the output bundle, one bundle at a time.

use super::spill::Bundle;
use crate::coder::{write_timestamp, write_varint, Coder};
use crate::element_codec::decode_window;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, NodeKind, Windowing};
use crate::window::PaneInfo;
use crate::windowed_coder::write_pane;
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

/// Whether GroupByKey `node` groups its input encoded: values of standard coders, an
/// output coder that is exactly the encoding the grouping writes (`KV<key,
/// iterable<value>>`), and windows that do not merge.
pub(crate) fn gbk_groups_encoded(
    graph: &Graph,
    node: &Node,
    key_coder: &Coder,
    value_coder: &Coder,
) -> bool {
    let grouped = Coder::Kv(
        Box::new(key_coder.clone()),
        Box::new(Coder::Iterable(Box::new(value_coder.clone()))),
    );
    matches!(node.kind, NodeKind::GroupByKey)
        && groups_encoded(value_coder)
        && graph.pcollections[node.outputs[0]].coder == grouped
        && !graph.pcollections[node.inputs[0]]
            .windowing
            .window_fn
            .is_merging()
}

/// Elements of one shuffle partition from one bundle, encoded back to back.
///
/// Each record is: a header (varint: key length, shifted left by two, with a bit for a
/// window and a bit for a timestamp change), key, window (left out for the global
/// window), timestamp change (zigzag varint of the difference to the previous record's,
/// left out when zero), value length (varint), value (nested). Batch data in the global
/// window thus costs the key, the value and two bytes. Records are read in order only,
/// so no index is kept.
#[derive(Default)]
pub(crate) struct EncodedRun {
    bytes: Vec<u8>,
    count: usize,
    last_timestamp: i64,
}

/// The encoding of the global window (left out of records).
const GLOBAL_WINDOW: &[u8] = &[0];

/// One record read back.
struct Record<'a> {
    /// Key then window bytes (the key alone for the global window).
    group: &'a [u8],
    key_len: usize,
    timestamp: i64,
    value: &'a [u8],
}

impl EncodedRun {
    /// An empty run with room for `bytes`.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        EncodedRun {
            bytes: Vec::with_capacity(bytes),
            ..EncodedRun::default()
        }
    }

    /// Appends a record; `key` is the encoded key, `window` the encoded window, `value`
    /// appends the nested encoding of the value.
    pub(crate) fn push(
        &mut self,
        key: &[u8],
        window: &[u8],
        timestamp: i64,
        value: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let start = self.bytes.len();
        let windowed = window != GLOBAL_WINDOW;
        let delta = timestamp.wrapping_sub(self.last_timestamp);
        let header = (key.len() as u64) << 2 | u64::from(windowed) << 1 | u64::from(delta != 0);
        write_varint(header, &mut self.bytes);
        extend_small(&mut self.bytes, key);
        if windowed {
            self.bytes.extend_from_slice(window);
        }
        if delta != 0 {
            write_varint(((delta << 1) ^ (delta >> 63)) as u64, &mut self.bytes);
        }
        // Values are almost always shorter than 128 bytes: reserve one length byte and
        // move the value only when its length needs more.
        let len_at = self.bytes.len();
        self.bytes.push(0);
        if let Err(e) = value(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        let len = self.bytes.len() - len_at - 1;
        if len < 0x80 {
            self.bytes[len_at] = len as u8;
        } else {
            let value = self.bytes.split_off(len_at + 1);
            self.bytes.truncate(len_at);
            write_varint(len as u64, &mut self.bytes);
            self.bytes.extend_from_slice(&value);
        }
        self.last_timestamp = timestamp;
        self.count += 1;
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes in the run.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Records in the run.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The run's bytes (records read back start from timestamp 0: the bytes and the count
    /// are the whole run).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The run of `count` records in `bytes`, written by [`EncodedRun::push`] elsewhere
    /// (another process). Not checked here (a pass of its own over every record costs
    /// as much as the exchange): the grouping reads records with bounds checks and
    /// checks the count ([`finish_encoded`]).
    pub(crate) fn from_bytes(bytes: Vec<u8>, count: usize) -> Self {
        EncodedRun {
            bytes,
            count,
            last_timestamp: 0,
        }
    }

    /// The records, in order.
    fn records(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            pos: 0,
            timestamp: 0,
        }
    }
}

/// Reads a varint written by [`EncodedRun::push`] at `*pos` (no error path: the bytes
/// were written by this module).
#[inline(always)]
fn varint_at(bytes: &[u8], pos: &mut usize) -> u64 {
    let b = bytes[*pos];
    *pos += 1;
    if b < 0x80 {
        return u64::from(b);
    }
    let mut result = u64::from(b & 0x7f);
    let mut shift = 7;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return result;
        }
        shift += 7;
    }
}

/// A cursor over a run's records (a plain loop over the bytes: this is the grouping's
/// inner loop, run twice per element).
struct Records<'a> {
    bytes: &'a [u8],
    pos: usize,
    timestamp: i64,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Record<'a>> {
        let bytes = self.bytes;
        if self.pos >= bytes.len() {
            return None;
        }
        let mut pos = self.pos;
        let header = varint_at(bytes, &mut pos);
        let key_len = (header >> 2) as usize;
        let start = pos;
        pos += key_len;
        if header & 2 != 0 {
            // A window is its tag byte, plus both bounds for an interval.
            pos += if bytes[pos] == 0 { 1 } else { 17 };
        }
        let group = &bytes[start..pos];
        if header & 1 != 0 {
            let z = varint_at(bytes, &mut pos);
            self.timestamp = self
                .timestamp
                .wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
        let len = varint_at(bytes, &mut pos) as usize;
        let value = &bytes[pos..pos + len];
        self.pos = pos + len;
        Some(Record {
            group,
            key_len,
            timestamp: self.timestamp,
            value,
        })
    }
}

/// The number of the group `same` recognises among those with `hash`, or of a new group
/// `make` builds (group numbers index `slots`).
pub(crate) fn group_number<S>(
    index: &mut hashbrown::HashTable<u32>,
    slots: &mut Vec<S>,
    hash: u64,
    hash_of: impl Fn(&S) -> u64,
    same: impl Fn(&S) -> bool,
    make: impl FnOnce() -> Result<S>,
) -> Result<u32> {
    if let Some(&g) = index.find(hash, |&g| {
        let s = &slots[g as usize];
        hash_of(s) == hash && same(s)
    }) {
        return Ok(g);
    }
    let g = slots.len() as u32;
    slots.push(make()?);
    index.insert_unique(hash, g, |&j| hash_of(&slots[j as usize]));
    Ok(g)
}

/// A group: its key and window bytes, size and timestamp. One cache line (64 bytes, and
/// aligned: a slot across two lines costs a second miss per element).
#[repr(align(64))]
struct Slot {
    hash: u64,
    /// The key and window bytes, inline when short.
    group: smallvec::SmallVec<[u8; 16]>,
    key_len: u32,
    count: u32,
    /// Bytes of the encoded values.
    bytes: usize,
    timestamp: Option<i64>,
}

/// Copies a few bytes without a call into `memcpy` (most keys and values are a few bytes
/// long; a byte loop would be turned back into that call).
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    match *src {
        [a] => dst[0] = a,
        [a, b] => dst[..2].copy_from_slice(&[a, b]),
        [a, b, c] => dst[..3].copy_from_slice(&[a, b, c]),
        [a, b, c, d] => dst[..4].copy_from_slice(&[a, b, c, d]),
        _ => dst.copy_from_slice(src),
    }
}

/// Appends a few bytes without a call into `memcpy` (see [`copy_small`]).
#[inline(always)]
fn extend_small(out: &mut Vec<u8>, src: &[u8]) {
    match *src {
        [a] => out.push(a),
        [a, b] => out.extend_from_slice(&[a, b]),
        [a, b, c] => out.extend_from_slice(&[a, b, c]),
        [a, b, c, d] => out.extend_from_slice(&[a, b, c, d]),
        _ => out.extend_from_slice(src),
    }
}

/// Buffers of [`finish_encoded`], one set per thread, reused from one partition to the
/// next: allocated afresh each time, their megabytes go back to the system and fault in
/// again, which costs more than the grouping itself on some machines.
#[derive(Default)]
struct Scratch {
    index: hashbrown::HashTable<u32>,
    slots: Vec<Slot>,
    group_of: Vec<u32>,
    value_at: Vec<usize>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Groups a partition's runs (in bundle order) by key and window and encodes each group
/// as an output element `KV<key, iterable<value>>` with `out_coder`, values in arrival
/// order, groups in order of first arrival.
///
/// # Errors
/// When a window does not decode or a run holds another number of records than it
/// says (a bug, or runs damaged on their way from another process), naming the
/// transform.
///
/// # Panics
/// When a record runs past the end of its run (the same).
pub(crate) fn finish_encoded(
    name: &str,
    runs: Vec<EncodedRun>,
    windowing: &Windowing,
    out_coder: &Coder,
) -> Result<Bundle> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch {
            index,
            slots,
            group_of,
            value_at,
        } = &mut *scratch;
        index.clear();
        slots.clear();
        group_of.clear();
        value_at.clear();
        group_runs(
            name, &runs, windowing, out_coder, index, slots, group_of, value_at,
        )
    })
}

/// [`finish_encoded`] with its buffers.
#[allow(clippy::too_many_arguments)]
fn group_runs(
    name: &str,
    runs: &[EncodedRun],
    windowing: &Windowing,
    out_coder: &Coder,
    index: &mut hashbrown::HashTable<u32>,
    slots: &mut Vec<Slot>,
    group_of: &mut Vec<u32>,
    value_at: &mut Vec<usize>,
) -> Result<Bundle> {
    let tc = windowing.timestamp_combiner;
    let total: usize = runs.iter().map(|r| r.count).sum();
    group_of.reserve(total);
    for run in runs {
        for rec in run.records() {
            let hash = crate::operators::partition::key_hash(rec.group);
            let g = group_number(
                index,
                slots,
                hash,
                |s| s.hash,
                // The key length tells a key in the global window from a longer key
                // whose bytes match another key and its window.
                |s| {
                    s.key_len as usize == rec.key_len
                        && crate::operators::partition::same_bytes(&s.group, rec.group)
                },
                || {
                    Ok(Slot {
                        hash,
                        group: rec.group.into(),
                        key_len: rec.key_len as u32,
                        count: 0,
                        bytes: 0,
                        timestamp: None,
                    })
                },
            )?;
            let s = &mut slots[g as usize];
            s.count += 1;
            s.bytes += rec.value.len();
            s.timestamp = Some(tc.combine(s.timestamp, rec.timestamp));
            group_of.push(g);
        }
    }
    if group_of.len() != total {
        return Err(EngineError::Runner(format!(
            "'{name}' read {} records of its shuffle where {total} were written",
            group_of.len()
        )));
    }
    // Lay every output element out in place, then scatter the values into it in arrival
    // order: the runs are read sequentially, writes land in the (small) output.
    let mut pane = Vec::new();
    write_pane(&PaneInfo::ON_TIME_AND_ONLY_FIRING, &mut pane);
    value_at.reserve(slots.len());
    let mut len = 0;
    for s in slots.iter() {
        // Key and count; values; timestamp, window and pane.
        value_at.push(len + s.key_len as usize + 4);
        let window_len = (s.group.len() - s.key_len as usize).max(GLOBAL_WINDOW.len());
        len += s.key_len as usize + window_len + 4 + s.bytes + 8 + pane.len();
    }
    let mut out = vec![0u8; len];
    let mut tail = Vec::new();
    for (s, &at) in slots.iter().zip(value_at.iter()) {
        let key_len = s.key_len as usize;
        let (key, window_bytes) = s.group.split_at(key_len);
        let window_bytes = if window_bytes.is_empty() {
            GLOBAL_WINDOW
        } else {
            window_bytes
        };
        let mut window_input = window_bytes;
        let window = decode_window(&mut window_input).map_err(|source| EngineError::Coder {
            transform: name.to_string(),
            source,
        })?;
        out[at - 4 - key_len..at - 4].copy_from_slice(key);
        out[at - 4..at].copy_from_slice(&(s.count as i32).to_be_bytes());
        tail.clear();
        let ts = s.timestamp.unwrap_or(window.max_timestamp());
        write_timestamp(tc.output(&window, ts), &mut tail);
        tail.extend_from_slice(window_bytes);
        tail.extend_from_slice(&pane);
        let end = at + s.bytes;
        out[end..end + tail.len()].copy_from_slice(&tail);
    }
    let next = value_at;
    let mut groups = group_of.iter();
    for run in runs {
        for (rec, &g) in run.records().zip(groups.by_ref()) {
            let at = next[g as usize];
            copy_small(&mut out[at..at + rec.value.len()], rec.value);
            next[g as usize] = at + rec.value.len();
        }
    }
    Ok(Bundle::Encoded(Arc::new(super::spill::EncodedBundle {
        bytes: out,
        count: slots.len(),
        coder: out_coder.clone(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use crate::window::{TimestampCombiner, Window};

    fn push(run: &mut EncodedRun, key: i64, w: &Window, ts: i64, v: &Value, coder: &Coder) {
        let (mut k, mut wb) = (Vec::new(), Vec::new());
        Coder::VarInt
            .encode(&Value::I64(key), &mut k, true)
            .unwrap();
        crate::element_codec::encode_window(w, &mut wb);
        run.push(&k, &wb, ts, |out| {
            coder.encode(v, out, true).unwrap();
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn groups_long_values_windows_and_timestamps_in_arrival_order() {
        let coder = Coder::StringUtf8;
        let w = Window::Interval { start: 0, end: 10 };
        let long = Value::Str("x".repeat(300));
        let mut a = EncodedRun::default();
        push(&mut a, 1, &w, 5, &Value::Str("a".into()), &coder);
        push(&mut a, 2, &Window::Global, -7, &long, &coder);
        push(&mut a, 1, &w, 2, &long, &coder);
        let mut b = EncodedRun::default();
        push(&mut b, 1, &w, 9, &Value::Str("b".into()), &coder);
        let windowing = Windowing {
            timestamp_combiner: TimestampCombiner::Earliest,
            ..Windowing::default()
        };
        let out_coder = Coder::Kv(
            Box::new(Coder::VarInt),
            Box::new(Coder::Iterable(Box::new(coder.clone()))),
        );
        let out = finish_encoded("G", vec![a, b], &windowing, &out_coder)
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(out.len(), 2);
        let list = |items: Vec<Value>| Value::List(items);
        assert_eq!(
            out[0].value,
            Value::kv(
                Value::I64(1),
                list(vec![
                    Value::Str("a".into()),
                    long.clone(),
                    Value::Str("b".into())
                ])
            )
        );
        assert_eq!((out[0].window, out[0].timestamp), (w, 2));
        assert_eq!(out[1].value, Value::kv(Value::I64(2), list(vec![long])));
        assert_eq!((out[1].window, out[1].timestamp), (Window::Global, -7));
    }

    #[test]
    fn a_global_key_never_matches_a_shorter_key_with_its_window() {
        // Key B's bytes are key A's followed by A's window: the same group bytes.
        let w = Window::Interval { start: 3, end: 9 };
        let mut wb = Vec::new();
        crate::element_codec::encode_window(&w, &mut wb);
        let key_a = vec![7u8];
        let key_b: Vec<u8> = key_a.iter().chain(&wb).copied().collect();
        let mut run = EncodedRun::default();
        for (key, window) in [
            (&key_a, &wb[..]),
            (&key_b, GLOBAL_WINDOW),
            (&key_a, &wb[..]),
        ] {
            run.push(key, window, 4, |out| {
                out.push(1);
                Ok(())
            })
            .unwrap();
        }
        // Keys are encoded nested (prefix-free), so such a pair never decodes: count the
        // groups without decoding them.
        let out_coder = Coder::Kv(
            Box::new(Coder::Bytes),
            Box::new(Coder::Iterable(Box::new(Coder::VarInt))),
        );
        let out = finish_encoded("G", vec![run], &Windowing::default(), &out_coder).unwrap();
        assert_eq!(out.len(), 2, "two groups: (A, interval) and (B, global)");
    }
}
