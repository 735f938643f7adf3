//! A batch GroupByKey split over workers: senders write its input as encoded runs per
//! shuffle partition (the local runner's shuffle format), the owner of a partition
//! groups the runs it receives with the local runner's encoded grouping.
//!
//! A distributed runner moves a run as one message (a few bytes per element) instead
//! of one encoded element each, and groups without building a value per element: the
//! same work as the local runner's shuffle, plus the copy over the network.

use super::grouped::{finish_encoded, gbk_groups_encoded, EncodedRun};
use super::shuffle::ShuffleWriter;
use super::spill::BundleReader;
use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, Windowing};
use crate::operators::partition::PARTITIONS;
use crate::window::WindowedValue;

/// Bytes after a run in a part: its record count (u64) and partition (u32), little-endian.
const TRAILER: usize = 12;

/// The key and value coders of GroupByKey `node` when it can be grouped encoded.
fn coders(graph: &Graph, node: &Node) -> Option<(Coder, Coder)> {
    let input = graph.pcollections.get(*node.inputs.first()?)?;
    let Coder::Kv(k, v) = &input.coder else {
        return None;
    };
    gbk_groups_encoded(graph, node, k, v).then(|| ((**k).clone(), (**v).clone()))
}

/// Whether GroupByKey `node` of `graph` can run as [`RunWriter`]s and a [`RunGrouper`]:
/// its values have standard coders, its output coder is `KV<key, iterable<value>>` and
/// its windows do not merge.
pub fn groups_by_runs(graph: &Graph, node: &Node) -> bool {
    coders(graph, node).is_some()
}

/// The sending half: writes elements of a GroupByKey's input into encoded runs, one per
/// shuffle partition, handed out as parts ([`RunWriter::drain`]).
pub struct RunWriter {
    writer: ShuffleWriter,
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("bytes", &self.buffered())
            .finish()
    }
}

impl RunWriter {
    /// A writer for GroupByKey `node`; `None` unless [`groups_by_runs`].
    pub fn new(graph: &Graph, node: &Node) -> Option<Self> {
        let (key_coder, value_coder) = coders(graph, node)?;
        let windowing = graph.pcollections[node.inputs[0]].windowing.clone();
        let writer = ShuffleWriter::new(
            node,
            false,
            key_coder,
            windowing,
            false,
            None,
            Some(value_coder),
        );
        Some(RunWriter { writer })
    }

    /// Writes `batch` (emptied).
    ///
    /// # Errors
    /// An element that is not a key/value pair or does not encode, naming the transform.
    pub fn write(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        self.writer.write_batch(batch)
    }

    /// Bytes written and not yet drained.
    pub fn buffered(&self) -> usize {
        self.writer.run_bytes()
    }

    /// Hands every non-empty run to `send` as a part, with its partition (of
    /// [`PARTITIONS`]: the worker owning partition `p` of `n` is `p % n`).
    pub fn drain(&mut self, mut send: impl FnMut(usize, Vec<u8>)) {
        for (p, run) in self.writer.take_runs() {
            let count = run.count() as u64;
            let mut bytes = run.into_bytes();
            bytes.extend_from_slice(&count.to_le_bytes());
            bytes.extend_from_slice(&(p as u32).to_le_bytes());
            send(p, bytes);
        }
    }
}

/// The receiving half: keeps the runs of the partitions this worker owns, then groups
/// them into the GroupByKey's output ([`RunGrouper::into_output`]).
pub struct RunGrouper {
    name: String,
    windowing: Windowing,
    out_coder: Coder,
    parts: Vec<Vec<EncodedRun>>,
    /// Writes elements that arrive decoded (from a producer that could not write runs).
    local: RunWriter,
}

impl std::fmt::Debug for RunGrouper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunGrouper")
            .field("name", &self.name)
            .field("runs", &self.parts.iter().map(Vec::len).sum::<usize>())
            .finish()
    }
}

impl RunGrouper {
    /// The grouping of GroupByKey `node`; `None` unless [`groups_by_runs`].
    pub fn new(graph: &Graph, node: &Node) -> Option<Self> {
        Some(RunGrouper {
            name: node.name.clone(),
            windowing: graph.pcollections[node.inputs[0]].windowing.clone(),
            out_coder: graph.pcollections[node.outputs[0]].coder.clone(),
            parts: (0..PARTITIONS).map(|_| Vec::new()).collect(),
            local: RunWriter::new(graph, node)?,
        })
    }

    /// Adds a part a [`RunWriter`] drained (possibly in another process).
    ///
    /// # Errors
    /// Bytes that are not such a part, naming the transform.
    pub fn add(&mut self, mut part: Vec<u8>) -> Result<()> {
        let bad = |what: String| {
            EngineError::Runner(format!(
                "'{}' received a malformed part of its shuffle: {what}",
                self.name
            ))
        };
        if part.len() < TRAILER {
            return Err(bad(format!("{} bytes", part.len())));
        }
        let at = part.len() - TRAILER;
        let count = u64::from_le_bytes(part[at..at + 8].try_into().expect("8 bytes"));
        let p = u32::from_le_bytes(part[at + 8..].try_into().expect("4 bytes")) as usize;
        if p >= PARTITIONS {
            return Err(bad(format!("partition {p} of {PARTITIONS}")));
        }
        part.truncate(at);
        self.parts[p].push(EncodedRun::from_bytes(part, count as usize));
        Ok(())
    }

    /// Adds decoded elements (emptied).
    ///
    /// # Errors
    /// An element that is not a key/value pair or does not encode, naming the transform.
    pub fn add_elements(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        self.local.write(batch)?;
        for (p, run) in self.local.writer.take_runs() {
            self.parts[p].push(run);
        }
        Ok(())
    }

    /// The GroupByKey's output: one element per key and window, values in the order
    /// their runs arrived, read in batches.
    pub fn into_output(self) -> GroupedOutput {
        GroupedOutput {
            name: self.name,
            windowing: self.windowing,
            out_coder: self.out_coder,
            parts: self.parts.into_iter(),
            reader: None,
        }
    }
}

/// The grouped output of a [`RunGrouper`], one partition grouped at a time.
pub struct GroupedOutput {
    name: String,
    windowing: Windowing,
    out_coder: Coder,
    parts: std::vec::IntoIter<Vec<EncodedRun>>,
    reader: Option<BundleReader>,
}

impl std::fmt::Debug for GroupedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupedOutput")
            .field("name", &self.name)
            .field("partitions_left", &self.parts.len())
            .finish()
    }
}

impl GroupedOutput {
    /// Appends up to `max` more output elements to `out`, fewer once decoding has read
    /// `max_bytes` (at least one; none once all were read). A few kilobytes at a time
    /// keep the decoded values in cache for the transforms that read them.
    ///
    /// # Errors
    /// When a window or value does not decode, naming the transform.
    pub fn next_batch(
        &mut self,
        out: &mut Vec<WindowedValue>,
        max: usize,
        max_bytes: usize,
    ) -> Result<()> {
        loop {
            if let Some(reader) = &mut self.reader {
                if reader.remaining() > 0 {
                    return reader.next_batch(out, max, max_bytes);
                }
            }
            let Some(runs) = self.parts.next() else {
                return Ok(());
            };
            if runs.is_empty() {
                continue;
            }
            // Runs from another process are read with bounds checks: a damaged one
            // panics, reported as what it is.
            let bundle = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                finish_encoded(&self.name, runs, &self.windowing, &self.out_coder)
            }))
            .map_err(|_| {
                EngineError::Runner(format!(
                    "'{}' received a malformed part of its shuffle: a record runs past \
                     the end of its run",
                    self.name
                ))
            })??;
            self.reader = Some(bundle.reader()?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{NodeKind, PCollectionInfo};
    use crate::value::Value;
    use crate::window::Window;

    fn gbk_graph() -> (Graph, usize) {
        let kv = Coder::Kv(Box::new(Coder::StringUtf8), Box::new(Coder::VarInt));
        let grouped = Coder::Kv(
            Box::new(Coder::StringUtf8),
            Box::new(Coder::Iterable(Box::new(Coder::VarInt))),
        );
        let pc = |name: &str, coder| PCollectionInfo {
            name: name.into(),
            coder,
            // The earliest timestamp: the test sees timestamps cross the exchange.
            windowing: Windowing {
                timestamp_combiner: crate::window::TimestampCombiner::Earliest,
                ..Windowing::default()
            },
        };
        let graph = Graph {
            pcollections: vec![pc("in", kv), pc("out", grouped)],
            nodes: vec![Node {
                name: "Group".into(),
                kind: NodeKind::GroupByKey,
                inputs: vec![0],
                outputs: vec![1],
            }],
        };
        (graph, 0)
    }

    fn kv(k: &str, v: i64, ts: i64) -> WindowedValue {
        let mut wv =
            WindowedValue::in_global_window(Value::kv(Value::Str(k.into()), Value::I64(v)));
        wv.timestamp = ts;
        wv
    }

    #[test]
    fn runs_written_in_two_places_group_in_one() {
        let (g, n) = gbk_graph();
        let node = &g.nodes[n];
        assert!(groups_by_runs(&g, node));
        let mut a = RunWriter::new(&g, node).unwrap();
        let mut b = RunWriter::new(&g, node).unwrap();
        a.write(&mut vec![kv("x", 1, 5), kv("y", 2, 7), kv("x", 3, 9)])
            .unwrap();
        b.write(&mut vec![kv("y", 4, 1)]).unwrap();
        assert!(a.buffered() > 0);
        let mut parts = Vec::new();
        a.drain(|_, p| parts.push(p));
        b.drain(|_, p| parts.push(p));
        assert_eq!(a.buffered(), 0);
        let mut grouper = RunGrouper::new(&g, node).unwrap();
        for p in parts {
            grouper.add(p).unwrap();
        }
        grouper.add_elements(&mut vec![kv("z", 6, 0)]).unwrap();
        let mut out = grouper.into_output();
        let mut all = Vec::new();
        loop {
            let before = all.len();
            out.next_batch(&mut all, 1, usize::MAX).unwrap();
            if all.len() == before {
                break;
            }
        }
        let mut got: Vec<(String, Vec<i64>, i64)> = all
            .into_iter()
            .map(|wv| {
                assert_eq!(wv.window, Window::Global);
                let (k, vs) = wv.value.as_kv().unwrap();
                let vs = match &*vs {
                    Value::List(l) => l
                        .iter()
                        .map(|v| match v {
                            Value::I64(i) => *i,
                            other => panic!("{other:?}"),
                        })
                        .collect(),
                    other => panic!("{other:?}"),
                };
                let Value::Str(k) = &*k else { panic!("{k:?}") };
                (k.clone(), vs, wv.timestamp)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("x".into(), vec![1, 3], 5),
                ("y".into(), vec![2, 4], 1),
                ("z".into(), vec![6], 0)
            ]
        );
    }

    #[test]
    fn malformed_parts_are_errors_naming_the_transform() {
        let (g, n) = gbk_graph();
        let node = &g.nodes[n];
        let mut w = RunWriter::new(&g, node).unwrap();
        w.write(&mut vec![kv("x", 1, 5), kv("y", 2, 6)]).unwrap();
        let mut parts = Vec::new();
        w.drain(|_, p| parts.push(p));
        let trailer = &parts[0][parts[0].len() - TRAILER..];
        let run = &parts[0][..parts[0].len() - TRAILER];
        // Too short for a trailer, or a partition that does not exist: refused at once.
        let mut grouper = RunGrouper::new(&g, node).unwrap();
        for bad in [vec![1, 2, 3], {
            let mut p = parts[0].clone();
            let at = p.len() - 4;
            p[at] = 200;
            p
        }] {
            let e = grouper.add(bad).unwrap_err().to_string();
            assert!(e.contains("'Group'") && e.contains("malformed"), "{e}");
        }
        // A run cut short, or one that holds fewer records than its trailer says: an
        // error when grouping.
        for bad in [
            [&run[..run.len() - 1], trailer].concat(),
            [&run[..2], trailer].concat(),
            {
                let mut t = trailer.to_vec();
                t[0] += 1;
                [run, &t].concat()
            },
        ] {
            let mut grouper = RunGrouper::new(&g, node).unwrap();
            grouper.add(bad).unwrap();
            let mut out = grouper.into_output();
            let e = out
                .next_batch(&mut Vec::new(), 100, usize::MAX)
                .unwrap_err()
                .to_string();
            assert!(e.contains("'Group'"), "{e}");
        }
    }
}
