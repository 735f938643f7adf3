//! GroupByKey and CombinePerKey: per-bundle shuffle writers, then grouping per partition.

use super::combine_table::{CombineEntry, CombineTable, GroupBytes, NO_TIMESTAMP};
use super::grouped::EncodedRun;
use super::spill;
use crate::coder::Coder;
use crate::combine::CombineFnInvoker;
use crate::error::{EngineError, Result};
use crate::graph::{Node, NodeKind, Windowing};
use crate::operators::guard::panics_guarded;
use crate::operators::partition::key_hash as hash_of;
use crate::operators::partition::PARTITIONS;
use crate::value::Value;
use crate::window::{Window, WindowedValue};
use std::sync::Arc;

pub(crate) mod input;

/// One key/value pair on its way to grouping, with its key encoded once. The key itself
/// is decoded from `key_bytes` once per group.
struct GroupItem {
    /// Hash of `key_bytes`.
    hash: u64,
    key_bytes: GroupBytes,
    value: Value,
    window: Window,
    timestamp: i64,
}

enum Mode {
    Group(Vec<Vec<GroupItem>>),
    /// Grouping with values encoded by this coder, per partition a list of runs.
    Encoded(Coder, Vec<EncodedRun>),
    Combine(Arc<dyn CombineFnInvoker>, Vec<CombineTable>),
    /// Whole elements (a stateful ParDo sees them as they were), per partition.
    Keyed(KeyedParts),
}

/// A stateful ParDo's elements of one bundle, per partition.
enum KeyedParts {
    /// As they came (user or dynamically typed values).
    Mem(Vec<Vec<WindowedValue>>),
    /// Encoded as [`crate::element_codec::encode_windowed`] writes them with `coder` (standard coders:
    /// a few bytes per small element instead of a struct with a boxed pair), decoded a
    /// batch at a time when the ParDo reads them.
    Encoded {
        /// The input's key/value coder.
        coder: Coder,
        value_coder: Coder,
        /// Bytes and element count per partition.
        parts: Vec<(Vec<u8>, usize)>,
    },
}

/// Empty buffers a closed writer hands to the next bundle's (no regrowing per bundle).
#[derive(Default)]
pub(crate) struct ShuffleBuffers {
    /// Bytes of the largest encoded run (so the next bundle's runs start big enough
    /// instead of growing by copying).
    run_size: usize,
    /// Entries of the largest pre-combine table: the next bundle's start that big instead
    /// of growing, and rehashing, a dozen times (tables are allocated when their first
    /// entry arrives, so partitions that get none cost nothing).
    table_len: usize,
    /// Items of the largest partition of a grouping that keeps items (so the next
    /// bundle's start that big instead of growing by copying, which under a memory
    /// budget also faults the copies' memory in again and again).
    group_len: usize,
}

/// Writes one bundle's elements into shuffle partitions (pre-combining when lifted).
pub(crate) struct ShuffleWriter {
    name: String,
    key_coder: Coder,
    windowing: Windowing,
    mode: Mode,
    scratch: Vec<u8>,
    /// Whether to account the memory of grouped items (only under a memory budget).
    track: bool,
    /// Approximate bytes of the grouped items.
    bytes: usize,
    /// A batch's elements on their way into the pre-combine tables.
    ahead: Vec<Ahead>,
    /// Their encoded keys and windows.
    arena: Vec<u8>,
    /// Elements written since [`ShuffleWriter::take_written`] last asked (live progress).
    written: usize,
}

/// How many elements ahead of the one being added a pre-combine table slot is prefetched:
/// enough to cover a miss, few enough not to fill the core's queue of outstanding misses.
const LOOKAHEAD: usize = 16;

/// An element of a batch whose pre-combine table slot is being prefetched.
struct Ahead {
    hash: u64,
    /// Its key and window bytes in the arena.
    start: usize,
    end: usize,
    value: Value,
    timestamp: i64,
}

/// The shuffle partition of a key hash.
#[inline]
fn partition_of(hash: u64) -> usize {
    crate::operators::partition::partition_of(hash, PARTITIONS)
}

/// The error for an element that is not a key/value pair.
fn not_kv(name: &str, value: &Value) -> EngineError {
    EngineError::user(
        name,
        format!("expected a key/value element, got a {} value", value.kind()),
    )
}

/// Appends the encoding of `key` to `out`.
#[inline(always)]
fn encode_key(coder: &Coder, key: &Value, out: &mut Vec<u8>, name: &str) -> Result<()> {
    coder
        .encode(key, out, true)
        .map_err(|source| EngineError::Coder {
            transform: name.to_string(),
            source,
        })
}

impl ShuffleWriter {
    /// A writer for one bundle, reusing the buffers of an earlier bundle's writer if given;
    /// `lifted`: a CombinePerKey's writer folds values into accumulators (the plan's
    /// lifting).
    pub(crate) fn new(
        node: &Node,
        lifted: bool,
        key_coder: Coder,
        windowing: Windowing,
        track: bool,
        buffers: Option<ShuffleBuffers>,
        encoded_values: Option<Coder>,
    ) -> Self {
        let mode = match &node.kind {
            NodeKind::GroupByKey if encoded_values.is_some() && !track => {
                let bytes = buffers.as_ref().map_or(0, |b| b.run_size);
                Mode::Encoded(
                    encoded_values.expect("checked"),
                    (0..PARTITIONS)
                        .map(|_| EncodedRun::with_capacity(bytes))
                        .collect(),
                )
            }
            NodeKind::CombinePerKey { combine_fn, .. } if lifted => {
                let len = buffers.as_ref().map_or(0, |b| b.table_len);
                Mode::Combine(
                    combine_fn.clone(),
                    // A little headroom: bundles of the same input differ slightly.
                    (0..PARTITIONS)
                        .map(|_| CombineTable::with_capacity(len + len / 8))
                        .collect(),
                )
            }
            NodeKind::ParDo { .. } => Mode::Keyed(match encoded_values {
                Some(value_coder) => KeyedParts::Encoded {
                    coder: Coder::Kv(Box::new(key_coder.clone()), Box::new(value_coder.clone())),
                    value_coder,
                    parts: (0..PARTITIONS).map(|_| (Vec::new(), 0)).collect(),
                },
                None => KeyedParts::Mem((0..PARTITIONS).map(|_| Vec::new()).collect()),
            }),
            _ => {
                let len = buffers.as_ref().map_or(0, |b| b.group_len);
                // A little headroom: bundles of the same input differ slightly.
                Mode::Group(
                    (0..PARTITIONS)
                        .map(|_| Vec::with_capacity(len + len / 16))
                        .collect(),
                )
            }
        };
        ShuffleWriter {
            name: node.name.clone(),
            key_coder,
            windowing,
            mode,
            scratch: Vec::new(),
            track,
            bytes: 0,
            ahead: Vec::new(),
            arena: Vec::new(),
            written: 0,
        }
    }

    /// Entries in the pre-combine tables; `None` when the writer does not pre-combine.
    pub(crate) fn pre_combined(&self) -> Option<usize> {
        match &self.mode {
            Mode::Combine(_, tables) => Some(tables.iter().map(CombineTable::len).sum()),
            _ => None,
        }
    }

    /// Writes a batch of elements, leaving `batch` empty.
    /// Elements written since the last call.
    pub(crate) fn take_written(&mut self) -> usize {
        std::mem::take(&mut self.written)
    }

    pub(crate) fn write_batch(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        self.written += batch.len();
        // Combining calls user code per element: one panic guard for the whole batch.
        self.guarded(|w, name| {
            if matches!(w.mode, Mode::Combine(..)) {
                return w.combine_batch(batch, name);
            }
            for wv in batch.drain(..) {
                w.write(wv, name)?;
            }
            Ok(())
        })
    }

    /// Adds a batch to the pre-combine tables in two passes: every key is encoded and
    /// hashed first, then the slots are looked up while the slot of an element
    /// [`LOOKAHEAD`] places further is prefetched, so cache misses overlap instead of
    /// stalling one after the other.
    fn combine_batch(&mut self, batch: &mut Vec<WindowedValue>, name: &str) -> Result<()> {
        let Mode::Combine(f, tables) = &mut self.mode else {
            unreachable!("checked by the caller")
        };
        let (ahead, arena) = (&mut self.ahead, &mut self.arena);
        ahead.clear();
        arena.clear();
        for wv in batch.drain(..) {
            let (key, value) = match wv.value.try_into_kv() {
                Ok(kv) => kv,
                Err(other) => return Err(not_kv(name, &other)),
            };
            let start = arena.len();
            encode_key(&self.key_coder, &key, arena, name)?;
            key.release();
            let hash = hash_of(&arena[start..]);
            crate::element_codec::encode_window(&wv.window, arena);
            if ahead.len() < LOOKAHEAD {
                tables[partition_of(hash)].prefetch(hash);
            }
            ahead.push(Ahead {
                hash,
                start,
                end: arena.len(),
                value,
                timestamp: wv.timestamp,
            });
        }
        let tc = self.windowing.timestamp_combiner;
        let mut items = ahead.drain(..);
        loop {
            if let Some(next) = items.as_slice().get(LOOKAHEAD) {
                tables[partition_of(next.hash)].prefetch(next.hash);
            }
            let Some(a) = items.next() else {
                break;
            };
            let group = &arena[a.start..a.end];
            let e = entry(f.as_ref(), &mut tables[partition_of(a.hash)], a.hash, group);
            add_input(f.as_ref(), e, a.value, a.timestamp, tc, name)?;
        }
        Ok(())
    }

    /// Runs `f` (which may call user code) under one panic guard, with the writer and the
    /// transform's name (lent out of the writer meanwhile).
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self, &str) -> Result<T>) -> Result<T> {
        let name = std::mem::take(&mut self.name);
        let r = panics_guarded(&name, || f(self, &name));
        self.name = name;
        r
    }

    fn write(&mut self, wv: WindowedValue, name: &str) -> Result<()> {
        if let Mode::Keyed(parts) = &mut self.mode {
            let Some((key, value)) = wv.value.as_kv() else {
                return Err(not_kv(name, &wv.value));
            };
            self.scratch.clear();
            encode_key(&self.key_coder, &key, &mut self.scratch, name)?;
            let p = partition_of(hash_of(&self.scratch));
            match parts {
                KeyedParts::Mem(parts) => {
                    if self.track {
                        self.bytes += spill::windowed_size(&wv);
                    }
                    parts[p].push(wv);
                }
                KeyedParts::Encoded {
                    value_coder, parts, ..
                } => {
                    // The key/value coder writes the key, then the value.
                    let (buf, count) = &mut parts[p];
                    let start = buf.len();
                    buf.extend_from_slice(&self.scratch);
                    if let Err(source) = value_coder.encode(&value, buf, true) {
                        buf.truncate(start);
                        return Err(EngineError::Coder {
                            transform: name.to_string(),
                            source,
                        });
                    }
                    crate::coder::write_timestamp(wv.timestamp, buf);
                    crate::element_codec::encode_window(&wv.window, buf);
                    crate::windowed_coder::write_pane(&wv.pane, buf);
                    *count += 1;
                    self.bytes += buf.len() - start;
                }
            }
            return Ok(());
        }
        let (key, value) = match wv.value.try_into_kv() {
            Ok(kv) => kv,
            Err(other) => return Err(not_kv(name, &other)),
        };
        self.scratch.clear();
        encode_key(&self.key_coder, &key, &mut self.scratch, name)?;
        key.release();
        let hash = hash_of(&self.scratch);
        let p = partition_of(hash);
        match &mut self.mode {
            Mode::Group(parts) => {
                if self.track {
                    self.bytes += std::mem::size_of::<GroupItem>()
                        + if self.scratch.len() > 16 {
                            self.scratch.len()
                        } else {
                            0
                        }
                        + spill::value_size(&value)
                        - std::mem::size_of::<Value>();
                }
                parts[p].push(GroupItem {
                    hash,
                    key_bytes: GroupBytes::from_slice(&self.scratch),
                    value,
                    window: wv.window,
                    timestamp: wv.timestamp,
                })
            }
            Mode::Encoded(coder, parts) => {
                let key_len = self.scratch.len();
                crate::element_codec::encode_window(&wv.window, &mut self.scratch);
                let (key, window) = self.scratch.split_at(key_len);
                parts[p].push(key, window, wv.timestamp, |out| {
                    coder
                        .encode(&value, out, true)
                        .map_err(|source| EngineError::Coder {
                            transform: name.to_string(),
                            source,
                        })
                })?;
                value.release();
            }
            Mode::Keyed(_) => unreachable!("written above"),
            Mode::Combine(..) => unreachable!("batches are combined by `combine_batch`"),
        }
        Ok(())
    }
}

impl ShuffleWriter {
    /// The non-empty pre-combine tables of a lifted combine's writer, with their
    /// partitions (the writer goes on with empty ones, sized as these were); nothing
    /// unless the writer pre-combines.
    pub(crate) fn take_tables(&mut self) -> Vec<(usize, CombineTable)> {
        let Mode::Combine(_, tables) = &mut self.mode else {
            return Vec::new();
        };
        tables
            .iter_mut()
            .enumerate()
            .filter(|(_, t)| !t.is_empty())
            .map(|(p, t)| {
                let next = CombineTable::with_capacity(t.len());
                (p, std::mem::replace(t, next))
            })
            .collect()
    }

    /// The non-empty encoded runs written so far, with their partitions (the writer goes
    /// on with empty ones); nothing unless the writer groups encoded.
    pub(crate) fn take_runs(&mut self) -> Vec<(usize, EncodedRun)> {
        let Mode::Encoded(_, parts) = &mut self.mode else {
            return Vec::new();
        };
        parts
            .iter_mut()
            .enumerate()
            .filter(|(_, run)| !run.is_empty())
            .map(|(p, run)| {
                // The next run starts as big as this one was (not growing by copying).
                let next = EncodedRun::with_capacity(run.len() + run.len() / 8);
                (p, std::mem::replace(run, next))
            })
            .collect()
    }

    /// Bytes of the encoded runs written so far.
    pub(crate) fn run_bytes(&self) -> usize {
        match &self.mode {
            Mode::Encoded(_, parts) => parts.iter().map(EncodedRun::len).sum(),
            _ => 0,
        }
    }

    /// The writer's (emptied) buffers, sized for the next bundle's writer; call once the
    /// bundle's last element is written.
    pub(crate) fn close(&mut self) -> ShuffleBuffers {
        match &self.mode {
            Mode::Combine(_, tables) => ShuffleBuffers {
                table_len: tables.iter().map(CombineTable::len).max().unwrap_or(0),
                ..ShuffleBuffers::default()
            },
            Mode::Encoded(_, parts) => {
                let bytes = parts.iter().map(EncodedRun::len).max().unwrap_or(0);
                // A little headroom: bundles of the same input differ slightly in size.
                ShuffleBuffers {
                    run_size: bytes + bytes / 8,
                    ..ShuffleBuffers::default()
                }
            }
            Mode::Group(parts) => ShuffleBuffers {
                group_len: parts.iter().map(Vec::len).max().unwrap_or(0),
                ..ShuffleBuffers::default()
            },
            Mode::Keyed(_) => ShuffleBuffers::default(),
        }
    }
}

/// The entry of a key and window (encoded in `group`), created if new.
#[inline]
fn entry<'t>(
    f: &dyn CombineFnInvoker,
    table: &'t mut CombineTable,
    hash: u64,
    group: &[u8],
) -> &'t mut CombineEntry {
    table.get_or_insert_with(hash, group, || CombineEntry {
        hash,
        group_bytes: GroupBytes::from_slice(group),
        acc: f.create_accumulator(),
        timestamp: NO_TIMESTAMP,
    })
}

/// Adds one element to an accumulator.
#[inline]
fn add_input(
    f: &dyn CombineFnInvoker,
    e: &mut CombineEntry,
    value: Value,
    timestamp: i64,
    tc: crate::window::TimestampCombiner,
    name: &str,
) -> Result<()> {
    e.timestamp = tc.combine(e.timestamp(), timestamp);
    f.add_input(&mut e.acc, value)
        .map_err(|e| EngineError::user(name, e))
}
