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
        // Decoded first, then merged with the table's slots prefetched ahead. An entry
        // takes at least 17 bytes: a count past that is caught below, not allocated.
        let mut entries = Vec::with_capacity((count as usize).min(rest.len() / 17));
        for _ in 0..count {
            let e = decode_entry(&mut rest, c).map_err(|what| c.malformed(what))?;
            if partition_of(e.hash, PARTITIONS) != p {
                return Err(c.malformed(format!("an entry of another partition than {p}")));
            }
            entries.push(Some(CombineEntry {
                acc: guarded(&c.name, || c.combine.accumulator_from_value(e.acc))?,
                hash: e.hash,
                group_bytes: e.group_bytes,
                timestamp: e.timestamp,
            }));
        }
        if !rest.is_empty() {
            return Err(c.malformed(format!("{} bytes after its {count} entries", rest.len())));
        }
        let n = entries.len();
        self.merged[p].merge_slots(entries, n, |target, e| {
            merge_entry(&*c.combine, c.tc, &c.name, target, e)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{PCollectionInfo, Windowing};
    use crate::operators::precombine::tests::Sum;
    use crate::value::Value;
    use crate::window::Window;

    /// A graph of one CombinePerKey summing numbers per string key; `windowing` of its
    /// input.
    fn combine_graph(windowing: Windowing) -> Graph {
        let kv = Coder::Kv(Box::new(Coder::StringUtf8), Box::new(Coder::VarInt));
        let pc = |name: &str, coder: Coder| PCollectionInfo {
            name: name.into(),
            coder,
            windowing: windowing.clone(),
        };
        Graph {
            pcollections: vec![pc("in", kv.clone()), pc("out", kv)],
            nodes: vec![Node {
                name: "Sum".into(),
                kind: NodeKind::CombinePerKey {
                    combine_fn: Arc::new(Sum),
                    accumulator_coder: Coder::VarInt,
                },
                inputs: vec![0],
                outputs: vec![1],
            }],
        }
    }

    /// The earliest timestamp: the test sees timestamps merge across the exchange.
    fn earliest() -> Windowing {
        Windowing {
            timestamp_combiner: TimestampCombiner::Earliest,
            ..Windowing::default()
        }
    }

    fn kv(k: &str, v: i64, ts: i64) -> WindowedValue {
        let mut wv =
            WindowedValue::in_global_window(Value::kv(Value::Str(k.into()), Value::I64(v)));
        wv.timestamp = ts;
        wv
    }

    /// Every output, read one at a time, as (key, sum, timestamp), sorted.
    fn outputs(m: TableMerger) -> Vec<(String, i64, i64)> {
        let mut out = m.into_output();
        let mut all = Vec::new();
        loop {
            let before = all.len();
            out.next_batch(&mut all, 1).unwrap();
            if all.len() == before {
                break;
            }
            assert_eq!(all.len(), before + 1);
        }
        let mut got: Vec<(String, i64, i64)> = all
            .into_iter()
            .map(|wv| {
                assert_eq!(wv.window, Window::Global);
                assert_eq!(wv.pane, crate::window::PaneInfo::ON_TIME_AND_ONLY_FIRING);
                let (k, v) = wv.value.as_kv().unwrap();
                let (Value::Str(k), Value::I64(v)) = (&*k, &*v) else {
                    panic!("{k:?} {v:?}")
                };
                (k.clone(), *v, wv.timestamp)
            })
            .collect();
        got.sort();
        got
    }

    #[test]
    fn tables_folded_in_two_places_merge_in_one() {
        let g = combine_graph(earliest());
        let node = &g.nodes[0];
        assert!(combines_by_tables(&g, node));
        let mut a = TableWriter::new(&g, node).unwrap();
        let mut b = TableWriter::new(&g, node).unwrap();
        a.write(&mut vec![kv("x", 1, 5), kv("y", 2, 7), kv("x", 3, 9)])
            .unwrap();
        b.write(&mut vec![kv("y", 4, 1)]).unwrap();
        assert_eq!((a.entries(), b.entries()), (2, 1));
        let mut parts = Vec::new();
        a.drain(|_, p| parts.push(p)).unwrap();
        b.drain(|_, p| parts.push(p)).unwrap();
        assert_eq!(a.entries(), 0);
        // Drained twice: the second round's entries merge with the first's.
        a.write(&mut vec![kv("x", 10, 2)]).unwrap();
        a.drain(|_, p| parts.push(p)).unwrap();
        let mut m = TableMerger::new(&g, node).unwrap();
        for p in parts {
            m.add(p).unwrap();
        }
        m.add_elements(&mut vec![kv("z", 6, 0), kv("x", 100, 3)])
            .unwrap();
        assert_eq!(
            outputs(m),
            vec![("x".into(), 114, 2), ("y".into(), 6, 1), ("z".into(), 6, 0)]
        );
    }

    #[test]
    fn only_groupings_that_fire_once_merge_tables() {
        let triggered = Windowing {
            trigger: Trigger::Repeatedly(Box::new(Trigger::AfterCount(2))),
            ..Windowing::default()
        };
        let late = Windowing {
            allowed_lateness: 1000,
            ..Windowing::default()
        };
        for w in [triggered, late] {
            let g = combine_graph(w);
            assert!(!combines_by_tables(&g, &g.nodes[0]));
            assert!(TableWriter::new(&g, &g.nodes[0]).is_none());
        }
    }

    #[test]
    fn malformed_parts_are_errors_naming_the_transform() {
        let g = combine_graph(earliest());
        let node = &g.nodes[0];
        let mut w = TableWriter::new(&g, node).unwrap();
        w.write(&mut vec![kv("x", 1, 5)]).unwrap();
        let mut parts = Vec::new();
        w.drain(|_, p| parts.push(p)).unwrap();
        let part = &parts[0];
        let (entries, trailer) = part.split_at(part.len() - TRAILER);
        let with_trailer = |count: u64, p: u32| {
            let mut t = count.to_le_bytes().to_vec();
            t.extend_from_slice(&p.to_le_bytes());
            t
        };
        let own = u32::from_le_bytes(trailer[8..].try_into().unwrap());
        for bad in [
            // Too short for a trailer; a partition that does not exist.
            vec![1, 2, 3],
            [entries, &with_trailer(1, 200)].concat(),
            // An entry cut short; fewer entries than the trailer says; bytes left over.
            [&entries[..entries.len() - 1], trailer].concat(),
            [entries, &with_trailer(2, own)].concat(),
            [entries, &[0], trailer].concat(),
            // The entry filed under another partition.
            [entries, &with_trailer(1, (own + 1) % PARTITIONS as u32)].concat(),
        ] {
            let mut m = TableMerger::new(&g, node).unwrap();
            let e = m.add(bad).unwrap_err().to_string();
            assert!(e.contains("'Sum'") && e.contains("malformed"), "{e}");
        }
        // The part itself is fine.
        let mut m = TableMerger::new(&g, node).unwrap();
        m.add(part.clone()).unwrap();
        assert_eq!(outputs(m), vec![("x".into(), 1, 5)]);
    }
}
