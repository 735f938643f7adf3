//! A batch CombinePerKey split over workers: senders fold its input into the local
//! runner's pre-combine tables (one per shuffle partition) and send each partition's
//! entries as one part to the partition's owner, which merges them and emits one output
//! per key and window, as the local runner's shuffle does.
//!
//! Entries cross as a few bytes each (hash, key and window bytes, timestamp,
//! accumulator), and merging is a table probe per entry: no per-key state, timers or
//! panes, which a batch job's single firing does not need.

use super::combine_table::{entry_output, merge_entry, CombineEntry, CombineTable, GroupBytes};
use super::shuffle::ShuffleWriter;
use crate::coder::{read_varint, write_varint, Coder};
use crate::combine::CombineFnInvoker;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, NodeKind};
use crate::operators::guard::guarded;
use crate::operators::partition::{partition_of, PARTITIONS};
use crate::plan::{lifts, Panes};
use crate::trigger::Trigger;
use crate::window::{TimestampCombiner, WindowedValue};
use std::sync::Arc;

/// Bytes after a part's entries: their count (u64) and partition (u32), little-endian.
const TRAILER: usize = 12;

/// What folding and merging CombinePerKey `node` takes: its combine, key coder,
/// accumulator coder and timestamp combiner.
struct Combining {
    name: String,
    combine: Arc<dyn CombineFnInvoker>,
    key_coder: Coder,
    acc_coder: Coder,
    tc: TimestampCombiner,
}

impl Combining {
    /// `None` unless `node` is a CombinePerKey whose panes fire once when its input is
    /// complete (the default trigger, nothing late) and that lifts then.
    fn of(graph: &Graph, node: &Node) -> Option<Self> {
        let NodeKind::CombinePerKey {
            combine_fn,
            accumulator_coder,
        } = &node.kind
        else {
            return None;
        };
        let input = graph.pcollections.get(*node.inputs.first()?)?;
        let Coder::Kv(key_coder, _) = &input.coder else {
            return None;
        };
        let w = &input.windowing;
        let once = w.trigger == Trigger::Default && w.allowed_lateness == 0;
        (once && lifts(w, &**combine_fn, Panes::Once)).then(|| Combining {
            name: node.name.clone(),
            combine: combine_fn.clone(),
            key_coder: (**key_coder).clone(),
            acc_coder: accumulator_coder.clone(),
            tc: w.timestamp_combiner,
        })
    }

    fn malformed(&self, what: impl std::fmt::Display) -> EngineError {
        EngineError::Runner(format!(
            "'{}' received a malformed part of its shuffle: {what}",
            self.name
        ))
    }
}

/// Whether CombinePerKey `node` of a batch job can run as [`TableWriter`]s and a
/// [`TableMerger`]: it fires once per key and window (the default trigger) and its
/// windows do not merge.
pub fn combines_by_tables(graph: &Graph, node: &Node) -> bool {
    Combining::of(graph, node).is_some()
}

/// The sending half: folds a CombinePerKey's input into one pre-combine table per
/// shuffle partition, handed out as parts ([`TableWriter::drain`]).
pub struct TableWriter {
    writer: ShuffleWriter,
    combining: Combining,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("name", &self.combining.name)
            .field("entries", &self.entries())
            .finish()
    }
}

impl TableWriter {
    /// A writer for CombinePerKey `node`; `None` unless [`combines_by_tables`].
    pub fn new(graph: &Graph, node: &Node) -> Option<Self> {
        let combining = Combining::of(graph, node)?;
        let windowing = graph.pcollections[node.inputs[0]].windowing.clone();
        let writer = ShuffleWriter::new(
            node,
            true,
            combining.key_coder.clone(),
            windowing,
            false,
            None,
            None,
        );
        Some(TableWriter { writer, combining })
    }

    /// Folds `batch` (emptied) in.
    ///
    /// # Errors
    /// An element that is not a key/value pair or whose key does not encode, or a
    /// failing combine, naming the transform.
    pub fn write(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        self.writer.write_batch(batch)
    }

    /// Keys and windows folded and not yet drained.
    pub fn entries(&self) -> usize {
        self.writer.pre_combined().unwrap_or(0)
    }

    /// Hands each non-empty partition's entries to `send` as a part, with its partition
    /// (of [`PARTITIONS`]: the worker owning partition `p` of `n` is `p % n`).
    ///
    /// # Errors
    /// An accumulator that does not encode, naming the transform.
    pub fn drain(&mut self, mut send: impl FnMut(usize, Vec<u8>)) -> Result<()> {
        let c = &self.combining;
        for (p, table) in self.writer.take_tables() {
            let mut bytes = Vec::new();
            let mut count = 0u64;
            for e in table.into_entries() {
                bytes.extend_from_slice(&e.hash.to_le_bytes());
                write_varint(e.group_bytes.len() as u64, &mut bytes);
                bytes.extend_from_slice(&e.group_bytes);
                bytes.extend_from_slice(&e.timestamp.to_le_bytes());
                let value = guarded(&c.name, || c.combine.accumulator_to_value(&e.acc))?;
                c.acc_coder
                    .encode(&value, &mut bytes, true)
                    .map_err(|source| EngineError::Coder {
                        transform: c.name.clone(),
                        source,
                    })?;
                count += 1;
            }
            bytes.extend_from_slice(&count.to_le_bytes());
            bytes.extend_from_slice(&(p as u32).to_le_bytes());
            send(p, bytes);
        }
        Ok(())
    }
}

/// The receiving half: merges the parts of the partitions this worker owns into one
/// table per partition, then emits the combine's output ([`TableMerger::into_output`]).
pub struct TableMerger {
    merged: Vec<CombineTable>,
    /// Folds elements that arrive decoded (from a producer that could not fold them).
    local: TableWriter,
}

impl std::fmt::Debug for TableMerger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableMerger")
            .field("name", &self.local.combining.name)
            .field(
                "entries",
                &self.merged.iter().map(CombineTable::len).sum::<usize>(),
            )
            .finish()
    }
}

impl TableMerger {
    /// The merging of CombinePerKey `node`; `None` unless [`combines_by_tables`].
    pub fn new(graph: &Graph, node: &Node) -> Option<Self> {
        Some(TableMerger {
            merged: (0..PARTITIONS).map(|_| CombineTable::default()).collect(),
            local: TableWriter::new(graph, node)?,
        })
    }

    /// Merges a part a [`TableWriter`] drained (possibly in another process).
    ///
    /// # Errors
    /// Bytes that are not such a part, an accumulator that does not decode, or a failing
    /// merge, naming the transform.
    pub fn add(&mut self, part: Vec<u8>) -> Result<()> {
        let c = &self.local.combining;
        if part.len() < TRAILER {
            return Err(c.malformed(format!("{} bytes", part.len())));
        }
        let at = part.len() - TRAILER;
        let count = u64::from_le_bytes(part[at..at + 8].try_into().expect("8 bytes"));
        let p = u32::from_le_bytes(part[at + 8..].try_into().expect("4 bytes")) as usize;
        if p >= PARTITIONS {
            return Err(c.malformed(format!("partition {p} of {PARTITIONS}")));
        }
        let mut rest = &part[..at];
        for _ in 0..count {
            let e = decode_entry(&mut rest, c).map_err(|what| c.malformed(what))?;
            if partition_of(e.hash, PARTITIONS) != p {
                return Err(c.malformed(format!("an entry of another partition than {p}")));
            }
            let e = CombineEntry {
                acc: guarded(&c.name, || c.combine.accumulator_from_value(e.acc))?,
                hash: e.hash,
                group_bytes: e.group_bytes,
                timestamp: e.timestamp,
            };
            self.merged[p].merge_one(e, |target, e| {
                merge_entry(&*c.combine, c.tc, &c.name, target, e)
            })?;
        }
        if !rest.is_empty() {
            return Err(c.malformed(format!(
                "{} bytes after its {count} entries",
                rest.len()
            )));
        }
        Ok(())
    }

    /// Folds decoded elements (emptied) in.
    ///
    /// # Errors
    /// As [`TableWriter::write`].
    pub fn add_elements(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        self.local.write(batch)?;
        let c = &self.local.combining;
        for (p, t) in self.local.writer.take_tables() {
            self.merged[p].merge_from(t, |target, e| {
                merge_entry(&*c.combine, c.tc, &c.name, target, e)
            })?;
        }
        Ok(())
    }

    /// The CombinePerKey's output: one element per key and window, a partition at a
    /// time.
    pub fn into_output(self) -> CombinedOutput {
        CombinedOutput {
            combining: self.local.combining,
            parts: self.merged.into_iter(),
            entries: None,
        }
    }
}

/// An entry as it crossed: its accumulator still a value.
struct WireEntry {
    hash: u64,
    group_bytes: GroupBytes,
    timestamp: i64,
    acc: crate::value::Value,
}

/// Reads one entry [`TableWriter::drain`] wrote.
fn decode_entry(input: &mut &[u8], c: &Combining) -> std::result::Result<WireEntry, String> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
        if input.len() < n {
            return Err(format!("an entry runs past the end ({n} bytes wanted)"));
        }
        let (head, tail) = input.split_at(n);
        *input = tail;
        Ok(head)
    }
    let hash = u64::from_le_bytes(take(input, 8)?.try_into().expect("8 bytes"));
    let len = read_varint(input).map_err(|e| e.to_string())?;
    let group = take(input, usize::try_from(len).map_err(|e| e.to_string())?)?;
    let timestamp = i64::from_le_bytes(take(input, 8)?.try_into().expect("8 bytes"));
    let acc = c
        .acc_coder
        .decode(input, true)
        .map_err(|e| format!("an accumulator does not decode: {e}"))?;
    Ok(WireEntry {
        hash,
        group_bytes: GroupBytes::from_slice(group),
        timestamp,
        acc,
    })
}

/// The output of a [`TableMerger`], one partition at a time.
pub struct CombinedOutput {
    combining: Combining,
    parts: std::vec::IntoIter<CombineTable>,
    entries: Option<Box<dyn Iterator<Item = CombineEntry> + Send>>,
}

impl std::fmt::Debug for CombinedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CombinedOutput")
            .field("name", &self.combining.name)
            .field("partitions_left", &self.parts.len())
            .finish()
    }
}

impl CombinedOutput {
    /// Appends up to `max` more output elements to `out` (none once all were read).
    ///
    /// # Errors
    /// A key or window that does not decode, or a failing `extract_output`, naming the
    /// transform.
    pub fn next_batch(&mut self, out: &mut Vec<WindowedValue>, max: usize) -> Result<()> {
        let c = &self.combining;
        let mut added = 0;
        while added < max {
            if let Some(e) = self.entries.as_mut().and_then(Iterator::next) {
                out.push(entry_output(e, &*c.combine, &c.key_coder, c.tc, &c.name)?);
                added += 1;
                continue;
            }
            match self.parts.next() {
                Some(t) => self.entries = Some(Box::new(t.into_entries())),
                None => return Ok(()),
            }
        }
        Ok(())
    }
}
