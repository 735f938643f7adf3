//! A shuffle's input, gathered from its writers per partition (pre-combined entries
//! merged as they arrive, grouped items spilled past a memory budget), then grouped a
//! partition at a time into the transforms after it.

use super::{GroupItem, KeyedParts, Mode, ShuffleWriter};
use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::error::{EngineError, Result};
use crate::exec::combine_table::{
    entry_output, group_output, merge_entry, CombineEntry, CombineTable, GroupBytes,
};
use crate::exec::grouped::EncodedRun;
use crate::exec::spill::{self, Budget, Bundle, Bundles, SpillFile};
use crate::graph::{Node, NodeKind, Windowing};
use crate::operators::guard::guarded;
use crate::operators::partition::key_hash as hash_of;
use crate::operators::partition::PARTITIONS;
use crate::value::Value;
use crate::window::{merge_intervals, Window, WindowedValue};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::sync::Arc;

enum Chunk {
    Group(Vec<GroupItem>),
    Encoded(EncodedRun),
    Combine(Vec<CombineEntry>),
    /// Whole elements for a stateful ParDo: in memory, or spilled (encoded with the
    /// input's key/value coder).
    Keyed(Bundle),
}

/// Everything written to one shuffle, per partition, in bundle order. Pre-combined
/// accumulators are merged into one table per partition as bundles arrive (in bundle
/// order, so results do not depend on thread count), which bounds memory by the number of
/// distinct keys instead of keys times bundles. Under a memory budget, grouped items past
/// the shuffle's share are spilled to disk, per partition, in bundle order.
#[derive(Default)]
pub(crate) struct ShuffleInput {
    /// Coder of the keys (to decode pre-combined entries' keys).
    key_coder: Option<Coder>,
    parts: Vec<Vec<Chunk>>,
    merged: Vec<CombineTable>,
    spill: Option<ShuffleSpill>,
}

/// Spilling of grouped items: where, how items encode, and what was written.
pub(crate) struct ShuffleSpill {
    budget: Budget,
    value_coder: Coder,
    name: String,
    /// Approximate bytes of the grouped items in memory.
    mem_bytes: usize,
    file: Option<Arc<SpillFile>>,
    /// Per partition: (offset, length, items) of each spilled run, in bundle order.
    segments: Vec<Vec<(u64, u64, usize)>>,
}

impl ShuffleSpill {
    /// Spilling for the shuffle of `name`, values encoded with `value_coder` (keys are
    /// already encoded; a stateful ParDo's whole elements use its input's coder).
    pub(crate) fn new(budget: Budget, name: &str, value_coder: Coder) -> Self {
        ShuffleSpill {
            budget,
            value_coder,
            name: name.to_string(),
            mem_bytes: 0,
            file: None,
            segments: (0..PARTITIONS).map(|_| Vec::new()).collect(),
        }
    }

    fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Writes the grouped items of every partition to the spill file.
    fn spill(&mut self, parts: &mut [Vec<Chunk>]) -> Result<()> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = SpillFile::create(&self.budget)?;
                self.file = Some(f.clone());
                f
            }
        };
        let mut buf = Vec::new();
        for (p, chunks) in parts.iter_mut().enumerate() {
            let mut kept = Vec::new();
            buf.clear();
            let mut count = 0;
            for chunk in chunks.drain(..) {
                let items = match chunk {
                    Chunk::Group(items) => items,
                    Chunk::Keyed(Bundle::Mem(elements)) => {
                        let b = Bundle::spill(&elements, &self.value_coder, &file, &self.name)?;
                        kept.push(Chunk::Keyed(b));
                        continue;
                    }
                    Chunk::Keyed(Bundle::Encoded(e)) => {
                        kept.push(Chunk::Keyed(Bundle::spill_encoded(&e, &file)?));
                        continue;
                    }
                    other => {
                        kept.push(other);
                        continue;
                    }
                };
                for it in items {
                    crate::coder::write_varint(it.key_bytes.len() as u64, &mut buf);
                    buf.extend_from_slice(&it.key_bytes);
                    self.value_coder
                        .encode(&it.value, &mut buf, true)
                        .map_err(|source| EngineError::Coder {
                            transform: self.name.clone(),
                            source,
                        })?;
                    crate::coder::write_timestamp(it.timestamp, &mut buf);
                    crate::element_codec::encode_window(&it.window, &mut buf);
                    count += 1;
                }
            }
            *chunks = kept;
            if count > 0 {
                let offset = file.append(&buf)?;
                self.segments[p].push((offset, buf.len() as u64, count));
            }
        }
        self.mem_bytes = 0;
        Ok(())
    }

    /// Reads back one spilled run of a partition.
    fn load(&self, (offset, len, count): (u64, u64, usize)) -> Result<Vec<GroupItem>> {
        let file = self.file.as_ref().expect("runs exist only once spilled");
        let bytes = file.read(offset, len)?;
        let mut input = bytes.as_slice();
        let coder_err = |source| EngineError::Coder {
            transform: self.name.clone(),
            source,
        };
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let n = crate::coder::read_varint(&mut input).map_err(coder_err)? as usize;
            if input.len() < n {
                return Err(coder_err(crate::coder::CoderError::Eof("spilled key")));
            }
            let (key_bytes, rest) = input.split_at(n);
            input = rest;
            let value = self
                .value_coder
                .decode(&mut input, true)
                .map_err(coder_err)?;
            let timestamp = crate::coder::read_timestamp(&mut input).map_err(coder_err)?;
            let window = crate::element_codec::decode_window(&mut input).map_err(coder_err)?;
            items.push(GroupItem {
                hash: hash_of(key_bytes),
                key_bytes: GroupBytes::from_slice(key_bytes),
                value,
                window,
                timestamp,
            });
        }
        Ok(items)
    }
}

impl ShuffleInput {
    /// A shuffle input that spills past its share of `spill`'s budget.
    pub(crate) fn with_spill(spill: Option<ShuffleSpill>) -> Self {
        ShuffleInput {
            spill,
            ..ShuffleInput::default()
        }
    }

    /// Appends what another stage wrote into the same GroupByKey shuffle (unzipped
    /// flattens; never under a memory budget, never for combines).
    pub(crate) fn append(&mut self, other: ShuffleInput) {
        debug_assert!(self.spill.is_none() && other.spill.is_none());
        debug_assert!(self.merged.is_empty() && other.merged.is_empty());
        if self.key_coder.is_none() {
            self.key_coder = other.key_coder;
        }
        if self.parts.is_empty() {
            self.parts = other.parts;
        } else {
            for (mine, theirs) in self.parts.iter_mut().zip(other.parts) {
                mine.extend(theirs);
            }
        }
    }

    /// Accounts `bytes` more held in memory; spills everything held past the budget.
    fn held(&mut self, bytes: usize) -> Result<()> {
        if let Some(sp) = &mut self.spill {
            sp.mem_bytes += bytes;
            if sp.mem_bytes > sp.budget.shuffle_bytes() {
                sp.spill(&mut self.parts)?;
            }
        }
        Ok(())
    }

    pub(crate) fn absorb(&mut self, w: ShuffleWriter) -> Result<()> {
        if self.key_coder.is_none() {
            self.key_coder = Some(w.key_coder.clone());
        }
        if self.parts.is_empty() {
            self.parts = (0..PARTITIONS).map(|_| Vec::new()).collect();
        }
        match w.mode {
            Mode::Encoded(_, parts) => {
                for (p, run) in parts.into_iter().enumerate() {
                    if !run.is_empty() {
                        self.parts[p].push(Chunk::Encoded(run));
                    }
                }
            }
            Mode::Group(parts) => {
                for (p, items) in parts.into_iter().enumerate() {
                    if !items.is_empty() {
                        self.parts[p].push(Chunk::Group(items));
                    }
                }
                self.held(w.bytes)?;
            }
            Mode::Keyed(KeyedParts::Mem(parts)) => {
                for (p, elements) in parts.into_iter().enumerate() {
                    if !elements.is_empty() {
                        self.parts[p].push(Chunk::Keyed(Bundle::Mem(elements)));
                    }
                }
                self.held(w.bytes)?;
            }
            Mode::Keyed(KeyedParts::Encoded { coder, parts, .. }) => {
                for (p, (bytes, count)) in parts.into_iter().enumerate() {
                    if count > 0 {
                        let e = spill::EncodedBundle {
                            bytes,
                            count,
                            coder: coder.clone(),
                        };
                        self.parts[p].push(Chunk::Keyed(Bundle::Encoded(Arc::new(e))));
                    }
                }
                self.held(w.bytes)?;
            }
            Mode::Combine(f, tables) => {
                if self.merged.is_empty() {
                    self.merged = (0..PARTITIONS).map(|_| CombineTable::default()).collect();
                }
                let tc = w.windowing.timestamp_combiner;
                for (p, t) in tables.into_iter().enumerate() {
                    self.merged[p].merge_from(t, |target, e| {
                        merge_entry(f.as_ref(), tc, &w.name, target, e)
                    })?;
                }
            }
        }
        Ok(())
    }

    /// The elements of a stateful ParDo's shuffle: per partition, its bundles in order.
    pub(crate) fn into_keyed(self) -> Vec<Vec<Bundle>> {
        let (parts, _, _) = self.into_parts();
        parts
            .into_iter()
            .map(|chunks| {
                chunks
                    .into_iter()
                    .filter_map(|c| match c {
                        Chunk::Keyed(b) => Some(b),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    /// Moves the merged tables into the partitions' chunk lists.
    fn into_parts(mut self) -> (Vec<Vec<Chunk>>, Option<ShuffleSpill>, Option<Coder>) {
        if self.parts.is_empty() {
            self.parts = (0..PARTITIONS).map(|_| Vec::new()).collect();
        }
        for (p, t) in std::mem::take(&mut self.merged).into_iter().enumerate() {
            if !t.is_empty() {
                self.parts[p].push(Chunk::Combine(t.into_entries().collect()));
            }
        }
        (self.parts, self.spill, self.key_coder)
    }
}

/// One group: a key, a window, and what was collected for it.
struct Group<T> {
    key: Value,
    window: Window,
    items: Vec<T>,
    timestamp: Option<i64>,
}

/// Groups, merges windows, combines and emits the output of a GroupByKey or CombinePerKey.
///
/// When the shuffle spilled, each partition reads its spilled runs back and its output is
/// spilled too (encoded with `out_coder`), in bundles of the budget's bundle size.
pub(crate) fn finish(
    node: &Node,
    input: ShuffleInput,
    windowing: Windowing,
    out_coder: &Coder,
) -> Result<Bundles> {
    let combine_fn = match &node.kind {
        NodeKind::CombinePerKey { combine_fn, .. } => Some(combine_fn.clone()),
        _ => None,
    };
    let (parts, spill, key_coder) = input.into_parts();
    let spill = spill.filter(ShuffleSpill::spilled);
    let out_file = match &spill {
        Some(sp) => Some(SpillFile::create(&sp.budget)?),
        None => None,
    };
    let per_part: Vec<Bundles> = parts
        .into_par_iter()
        .enumerate()
        .map(|(p, chunks)| {
            let mut all = Vec::new();
            if let Some(sp) = &spill {
                for &run in &sp.segments[p] {
                    all.push(Chunk::Group(sp.load(run)?));
                }
            }
            if chunks.iter().any(|c| matches!(c, Chunk::Encoded(_))) {
                // Encoded runs are written only without a memory budget: nothing spilled.
                let runs = chunks
                    .into_iter()
                    .filter_map(|c| match c {
                        Chunk::Encoded(r) => Some(r),
                        _ => None,
                    })
                    .collect();
                let out =
                    crate::exec::grouped::finish_encoded(&node.name, runs, &windowing, out_coder)?;
                return Ok(vec![out]);
            }
            all.extend(chunks);
            let out = finish_partition(
                node,
                all,
                &windowing,
                combine_fn.as_deref(),
                key_coder.as_ref(),
            )?;
            match (&spill, &out_file) {
                (Some(sp), Some(file)) => {
                    spill_output(out, out_coder, file, &sp.budget, &node.name)
                }
                _ => Ok(vec![Bundle::Mem(out)]),
            }
        })
        .collect::<Result<_>>()?;
    Ok(per_part.into_iter().flatten().collect())
}

/// Writes a partition's output to `file` in bundles of at most the budget's bundle size.
fn spill_output(
    out: Vec<WindowedValue>,
    coder: &Coder,
    file: &Arc<SpillFile>,
    budget: &Budget,
    name: &str,
) -> Result<Bundles> {
    let mut bundles = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, wv) in out.iter().enumerate() {
        size += spill::windowed_size(wv);
        if size >= budget.bundle_bytes() {
            bundles.push(Bundle::spill(&out[start..=i], coder, file, name)?);
            start = i + 1;
            size = 0;
        }
    }
    if start < out.len() {
        bundles.push(Bundle::spill(&out[start..], coder, file, name)?);
    }
    Ok(bundles)
}

fn finish_partition(
    node: &Node,
    chunks: Vec<Chunk>,
    windowing: &Windowing,
    combine_fn: Option<&dyn CombineFnInvoker>,
    key_coder: Option<&Coder>,
) -> Result<Vec<WindowedValue>> {
    let tc = windowing.timestamp_combiner;
    let coder_err = |source| EngineError::Coder {
        transform: node.name.clone(),
        source,
    };
    // Every chunk was written by a shuffle writer, which sets the key coder.
    let decode_key = |b: &[u8]| -> Result<Value> {
        let c = key_coder.expect("chunks come with a key coder");
        c.decode(&mut &b[..], true).map_err(coder_err)
    };
    let mut out = Vec::new();
    let emit =
        |out: &mut Vec<WindowedValue>,
         key: Value,
         window: Window,
         value: Value,
         ts: Option<i64>| { out.push(group_output(key, window, value, ts, tc)) };
    let mut grouper = Grouper::default();
    let mut index: FxHashMap<GroupBytes, usize> = FxHashMap::default();
    // Merging windows group per key first, keeping each value's window; merged below.
    let mut unmerged: Vec<Group<(Window, i64, Value)>> = Vec::new();
    let merging = windowing.window_fn.is_merging();
    for chunk in chunks {
        match chunk {
            Chunk::Combine(entries) => {
                // One merged table per partition: every entry is its own key and window.
                let f = combine_fn.expect("lifted chunks only for combines");
                let key_coder = key_coder.expect("chunks come with a key coder");
                for e in entries {
                    out.push(entry_output(e, f, key_coder, tc, &node.name)?);
                }
            }
            Chunk::Group(items) if merging => {
                for it in items {
                    let i = match index.get(&it.key_bytes) {
                        Some(&i) => i,
                        None => {
                            unmerged.push(Group {
                                key: decode_key(&it.key_bytes)?,
                                window: Window::Global,
                                items: Vec::new(),
                                timestamp: None,
                            });
                            index.insert(it.key_bytes, unmerged.len() - 1);
                            unmerged.len() - 1
                        }
                    };
                    unmerged[i].items.push((it.window, it.timestamp, it.value));
                }
            }
            Chunk::Group(items) => grouper.add(items, tc, &decode_key)?,
            Chunk::Encoded(_) => unreachable!("encoded runs are grouped by `finish_encoded`"),
            Chunk::Keyed(_) => unreachable!("keyed chunks feed stateful ParDos only"),
        }
    }
    let groups = if merging {
        merge_groups(unmerged, windowing)
    } else {
        grouper.finish()
    };
    for g in groups {
        match combine_fn {
            None => emit(&mut out, g.key, g.window, Value::List(g.items), g.timestamp),
            Some(f) => {
                let mut acc = guarded(&node.name, || Ok(f.create_accumulator()))?;
                for v in g.items {
                    guarded(&node.name, || f.add_input(&mut acc, v))?;
                }
                let v = guarded(&node.name, || f.extract_output(acc))?;
                emit(&mut out, g.key, g.window, v, g.timestamp);
            }
        }
    }
    Ok(out)
}

/// Groups items by (key, window) in two passes: first every item gets its group's number
/// (keys compared by hash, then bytes), then each group's values are moved into a vector of
/// exactly the right size, in arrival order.
#[derive(Default)]
struct Grouper {
    index: hashbrown::HashTable<u32>,
    slots: Vec<Slot>,
    group_of: Vec<u32>,
    values: Vec<Value>,
}

struct Slot {
    hash: u64,
    key_bytes: GroupBytes,
    key: Value,
    window: Window,
    timestamp: Option<i64>,
    count: usize,
}

impl Grouper {
    fn add(
        &mut self,
        items: Vec<GroupItem>,
        tc: crate::window::TimestampCombiner,
        decode_key: &dyn Fn(&[u8]) -> Result<Value>,
    ) -> Result<()> {
        self.group_of.reserve(items.len());
        self.values.reserve(items.len());
        for it in items {
            let g = crate::exec::grouped::group_number(
                &mut self.index,
                &mut self.slots,
                it.hash,
                |s| s.hash,
                |s| s.window == it.window && s.key_bytes == it.key_bytes,
                || {
                    Ok(Slot {
                        hash: it.hash,
                        key: decode_key(&it.key_bytes)?,
                        key_bytes: it.key_bytes.clone(),
                        window: it.window,
                        timestamp: None,
                        count: 0,
                    })
                },
            )?;
            let slot = &mut self.slots[g as usize];
            slot.count += 1;
            slot.timestamp = Some(tc.combine(slot.timestamp, it.timestamp));
            self.group_of.push(g);
            self.values.push(it.value);
        }
        Ok(())
    }

    fn finish(self) -> Vec<Group<Value>> {
        let mut groups: Vec<Group<Value>> = self
            .slots
            .into_iter()
            .map(|s| Group {
                key: s.key,
                window: s.window,
                items: Vec::with_capacity(s.count),
                timestamp: s.timestamp,
            })
            .collect();
        for (g, v) in self.group_of.into_iter().zip(self.values) {
            groups[g as usize].items.push(v);
        }
        groups
    }
}

/// Splits per-key groups of (window, timestamp, value) into merged-window groups.
fn merge_groups(
    groups: Vec<Group<(Window, i64, Value)>>,
    windowing: &Windowing,
) -> Vec<Group<Value>> {
    let tc = windowing.timestamp_combiner;
    let mut out = Vec::new();
    for g in groups {
        let windows: Vec<Window> = g.items.iter().map(|(w, _, _)| *w).collect();
        let merged = merge_intervals(&windows);
        let mut by_window: Vec<Group<Value>> = Vec::new();
        for (w, (_, ts, value)) in merged.into_iter().zip(g.items) {
            let pos = match by_window.iter().position(|x| x.window == w) {
                Some(p) => p,
                None => {
                    by_window.push(Group {
                        key: g.key.clone(),
                        window: w,
                        items: Vec::new(),
                        timestamp: None,
                    });
                    by_window.len() - 1
                }
            };
            let bw = &mut by_window[pos];
            bw.timestamp = Some(tc.combine(bw.timestamp, ts));
            bw.items.push(value);
        }
        out.extend(by_window);
    }
    out
}
