//! Elements on the wire: encoding a PCollection's elements into records (with their key's
//! hash) and decoding them back, or a lifted combine's partial results instead, or a
//! batch GroupByKey's input as encoded runs per partition, or a batch CombinePerKey's as
//! pre-combine tables per partition.

use crate::adapter::{Batch, Payload};
use beamline_engine::coder::Coder;
use beamline_engine::combine::CombineFnInvoker;
use beamline_engine::element_codec::{decode_windowed, encode_windowed};
use beamline_engine::exec::exchange::{GroupedOutput, RunGrouper, RunWriter};
use beamline_engine::exec::exchange_combine::{CombinedOutput, TableMerger, TableWriter};
use beamline_engine::graph::Graph;
use beamline_engine::operators::partition::key_hash;
use beamline_engine::operators::precombine::{Mailbox, Partial, PreCombine};
use beamline_engine::window::WindowedValue;
use beamline_engine::EngineError;
use std::sync::Arc;

/// Encodes elements of a PCollection for the wire: the element, and its key's hash when
/// the PCollection is key/value.
#[derive(Clone)]
pub(crate) struct Encoder {
    coder: Coder,
    key: Option<Coder>,
    name: String,
}

impl Encoder {
    /// The encoder of PCollection `pc`, written by transform `transform`.
    pub(crate) fn new(graph: &Graph, pc: usize, transform: &str) -> Self {
        let coder = graph.pcollections[pc].coder.clone();
        let key = match &coder {
            Coder::Kv(k, _) => Some((**k).clone()),
            _ => None,
        };
        Encoder {
            coder,
            key,
            name: transform.to_string(),
        }
    }

    /// Appends the records of `elements` (emptied) to `out`.
    ///
    /// # Errors
    /// An element its coder cannot encode, naming the transform.
    pub(crate) fn encode(
        &self,
        elements: &mut Vec<WindowedValue>,
        out: &mut Batch,
    ) -> Result<(), EngineError> {
        let coder_err = |source| EngineError::Coder {
            transform: self.name.clone(),
            source,
        };
        out.reserve(elements.len());
        let mut key = Vec::new();
        for wv in elements.drain(..) {
            let mut bytes = Vec::new();
            encode_windowed(&self.coder, &wv, &mut bytes).map_err(coder_err)?;
            let hash = match (&self.key, wv.value.as_kv()) {
                (Some(kc), Some((k, _))) => {
                    key.clear();
                    kc.encode(&k, &mut key, false).map_err(coder_err)?;
                    key_hash(&key)
                }
                _ => 0,
            };
            out.push((hash, Payload(bytes)));
        }
        Ok(())
    }
}

/// Decodes `batch` (emptied) of a PCollection with `coder`, read by transform `transform`.
///
/// # Errors
/// Bytes the coder cannot decode, naming the transform.
pub(crate) fn decode(
    coder: &Coder,
    batch: &mut Batch,
    transform: &str,
) -> Result<Vec<WindowedValue>, EngineError> {
    let mut elements = Vec::with_capacity(batch.len());
    for (_, Payload(bytes)) in batch.drain(..) {
        let wv =
            decode_windowed(coder, &mut bytes.as_slice()).map_err(|source| EngineError::Coder {
                transform: transform.to_string(),
                source,
            })?;
        elements.push(wv);
    }
    Ok(elements)
}

/// How a lifted CombinePerKey's partial results cross the exchange.
#[derive(Clone)]
pub(crate) struct PartialCodec {
    /// The CombinePerKey's name (errors name it).
    pub name: String,
    pub key_coder: Coder,
    pub acc_coder: Coder,
    pub combine: Arc<dyn CombineFnInvoker>,
    /// Worker threads of the job: the partial results sent to each travel together.
    pub workers: usize,
}

/// Bytes of partial results for one worker sent as one record (big enough that a record
/// costs little beside its bytes, small enough to start sending before all are encoded).
const PARTIALS_PART: usize = 256 << 10;

impl PartialCodec {
    fn err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::user(&self.name, e.to_string())
    }

    /// Encodes `parts` (emptied) into `out`: for each worker, records of its partial
    /// results, each one's length (u32, little-endian) then its bytes. A record's hash
    /// routes it to the worker owning its keys (as [`Encoder`]'s records of their keys).
    fn encode_all(&self, parts: &mut Vec<Partial>, out: &mut Batch) -> Result<(), EngineError> {
        let workers = self.workers.max(1);
        let mut to: Vec<Vec<u8>> = vec![Vec::new(); workers];
        let send = |w: usize, bytes: Vec<u8>, out: &mut Batch| {
            out.push(((w as u64) << 32, Payload(bytes)));
        };
        for part in parts.drain(..) {
            let w = ((key_hash(part.key_bytes()) >> 32) % workers as u64) as usize;
            let buf = &mut to[w];
            let at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            part.encode(&*self.combine, &self.acc_coder, buf)
                .map_err(|e| self.err(e))?;
            let len = u32::try_from(buf.len() - at - 4)
                .map_err(|_| self.err("a partial result of 4 GiB or more"))?;
            buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
            if buf.len() >= PARTIALS_PART {
                send(w, std::mem::take(buf), out);
            }
        }
        for (w, bytes) in to.into_iter().enumerate() {
            if !bytes.is_empty() {
                send(w, bytes, out);
            }
        }
        Ok(())
    }

    /// Decodes the partial results of a record [`PartialCodec::encode_all`] wrote,
    /// appending them to `parts`.
    fn decode_all(&self, mut bytes: &[u8], parts: &mut Vec<Partial>) -> Result<(), EngineError> {
        while !bytes.is_empty() {
            let (len, rest) = bytes
                .split_first_chunk::<4>()
                .ok_or_else(|| self.err("a truncated partial result's length"))?;
            let len = u32::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err(self.err(format!(
                    "a partial result of {len} bytes with {} left",
                    rest.len()
                )));
            }
            let (one, rest) = rest.split_at(len);
            let p = Partial::decode(one, &self.key_coder, &*self.combine, &self.acc_coder)
                .map_err(|e| self.err(e))?;
            parts.push(p);
            bytes = rest;
        }
        Ok(())
    }
}

/// How an input of a driven transform arrives.
pub(crate) enum Arrives {
    /// Encoded elements of this coder.
    Elements(Coder),
    /// Partial results of a lifted CombinePerKey, handed to its grouping through the
    /// mailbox (it merges them at the bundle's end).
    Partials(PartialCodec, Mailbox),
    /// The input of a batch GroupByKey or CombinePerKey, kept in its grouping until the
    /// input is complete ([`Arrives::grouped`]): parts of runs or tables, or elements of
    /// this coder when the producer could not write them.
    Grouped(Option<Coder>, Option<Box<Grouping>>),
}

/// A batch grouping the runner does itself: a GroupByKey's runs, a CombinePerKey's
/// pre-combine tables.
pub(crate) enum Grouping {
    Runs(RunGrouper),
    Tables(TableMerger),
}

impl Grouping {
    /// Adds a part its producer drained.
    fn add(&mut self, part: Vec<u8>) -> Result<(), EngineError> {
        match self {
            Grouping::Runs(g) => g.add(part),
            Grouping::Tables(m) => m.add(part),
        }
    }

    /// Adds decoded elements (emptied).
    fn add_elements(&mut self, batch: &mut Vec<WindowedValue>) -> Result<(), EngineError> {
        match self {
            Grouping::Runs(g) => g.add_elements(batch),
            Grouping::Tables(m) => m.add_elements(batch),
        }
    }

    /// The grouping's output, once its input is complete.
    pub(crate) fn into_output(self) -> GroupingOutput {
        match self {
            Grouping::Runs(g) => GroupingOutput::Runs(g.into_output()),
            Grouping::Tables(m) => GroupingOutput::Tables(m.into_output()),
        }
    }
}

/// Outputs of a combine's merged tables handed down the chain at once.
const TABLE_OUTPUTS: usize = 1024;

/// The output of a [`Grouping`], read in batches.
pub(crate) enum GroupingOutput {
    Runs(GroupedOutput),
    Tables(CombinedOutput),
}

impl GroupingOutput {
    /// Appends up to `max` more output elements to `out` (fewer once `max_bytes` of
    /// groups were decoded; none once all were read).
    ///
    /// # Errors
    /// What does not decode, or a failing combine, naming the transform.
    pub(crate) fn next_batch(
        &mut self,
        out: &mut Vec<WindowedValue>,
        max: usize,
        max_bytes: usize,
    ) -> Result<(), EngineError> {
        match self {
            GroupingOutput::Runs(o) => o.next_batch(out, max, max_bytes),
            // A batch of outputs at a time, as groups are read a few kilobytes at a time.
            GroupingOutput::Tables(o) => o.next_batch(out, max.min(TABLE_OUTPUTS)),
        }
    }
}

impl Arrives {
    /// The grouping of a batch GroupByKey's or CombinePerKey's input, once (its output
    /// is read from it).
    pub(crate) fn grouped(&mut self) -> Option<Grouping> {
        match self {
            Arrives::Grouped(_, grouper) => grouper.take().map(|g| *g),
            _ => None,
        }
    }

    /// The elements of `batch` (emptied) for transform `name`; `None` when they went to
    /// the mailbox.
    ///
    /// # Errors
    /// Bytes that do not decode, naming the transform.
    pub(crate) fn take(
        &mut self,
        batch: &mut Batch,
        name: &str,
    ) -> Result<Option<Vec<WindowedValue>>, EngineError> {
        match self {
            Arrives::Elements(coder) => decode(coder, batch, name).map(Some),
            Arrives::Partials(codec, mailbox) => {
                // A buffer the grouping emptied, rather than a new one per message.
                let mut parts = mailbox.lock().spare.pop().unwrap_or_default();
                for (_, Payload(bytes)) in batch.drain(..) {
                    codec.decode_all(&bytes, &mut parts)?;
                }
                mailbox.lock().deliver(parts);
                Ok(None)
            }
            Arrives::Grouped(coder, grouper) => {
                let grouper = grouper.as_mut().ok_or_else(|| {
                    EngineError::Runner(format!("'{name}' received input after its output"))
                })?;
                match coder {
                    Some(coder) => grouper.add_elements(&mut decode(coder, batch, name)?)?,
                    None => {
                        for (_, Payload(part)) in batch.drain(..) {
                            grouper.add(part)?;
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

/// How an output of a driven transform leaves.
pub(crate) enum Leaves {
    /// Encoded elements.
    Elements(Encoder),
    /// Folded into partial results per key and window (the CombinePerKey it feeds is
    /// lifted), sent at each bundle's end.
    Partials(Box<PreCombine>, PartialCodec),
    /// Written into encoded runs per shuffle partition (the batch GroupByKey it feeds
    /// groups them), sent as parts of about [`RUN_PART`] bytes.
    Runs(Box<RunWriter>),
    /// Folded into pre-combine tables per shuffle partition (the batch CombinePerKey it
    /// feeds merges them), sent when the chain sends its partial results.
    Tables(Box<TableWriter>),
}

/// Bytes of runs written before they are sent (one message per partition, big enough
/// that the exchange costs a copy per byte and little per message).
const RUN_PART: usize = 1 << 20;

/// Sends the parts `w` holds, each to the worker owning its partition.
fn send_runs(w: &mut RunWriter, out: &mut Batch) {
    w.drain(|p, part| out.push(((p as u64) << 32, Payload(part))));
}

impl Leaves {
    /// Encodes `elements` (emptied) into `out`, or folds them in.
    ///
    /// # Errors
    /// An element that does not encode, or a failing combine, naming the transform.
    pub(crate) fn put(
        &mut self,
        elements: &mut Vec<WindowedValue>,
        out: &mut Batch,
    ) -> Result<(), EngineError> {
        match self {
            Leaves::Elements(e) => e.encode(elements, out),
            Leaves::Partials(pre, _) => pre.add(elements),
            Leaves::Runs(w) => {
                w.write(elements)?;
                if w.buffered() >= RUN_PART {
                    send_runs(w, out);
                }
                Ok(())
            }
            Leaves::Tables(w) => w.write(elements),
        }
    }

    /// Partial results (or table entries) folded and not sent yet.
    pub(crate) fn partials(&self) -> usize {
        match self {
            Leaves::Partials(pre, _) => pre.len(),
            Leaves::Tables(w) => w.entries(),
            _ => 0,
        }
    }

    /// The partial results folded so far, encoded into `out` (or the runs written, or
    /// the tables' entries).
    ///
    /// # Errors
    /// An accumulator that does not encode, naming the CombinePerKey.
    pub(crate) fn flush(&mut self, out: &mut Batch) -> Result<(), EngineError> {
        let (pre, codec) = match self {
            Leaves::Partials(pre, codec) => (pre, codec),
            Leaves::Runs(w) => {
                send_runs(w, out);
                return Ok(());
            }
            Leaves::Tables(w) => {
                return w.drain(|p, part| out.push(((p as u64) << 32, Payload(part))));
            }
            Leaves::Elements(_) => return Ok(()),
        };
        let mut parts = pre.take()?;
        codec.encode_all(&mut parts, out)?;
        // Its room serves the next bundle's partial results.
        pre.give_back(parts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamline_engine::combine::Accumulator;
    use beamline_engine::value::Value;
    use beamline_engine::window::{PaneInfo, Window};
    use beamline_engine::UserError;

    /// Sums numbers.
    struct Sum;

    impl CombineFnInvoker for Sum {
        fn create_accumulator(&self) -> Accumulator {
            Accumulator::new(0i64)
        }
        fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
            let Value::I64(x) = input else {
                return Err("not a number".into());
            };
            *acc.downcast_mut::<i64>().ok_or("not a sum")? += x;
            Ok(())
        }
        fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
            let mut total = 0;
            for a in accs {
                total += a.downcast::<i64>().map_err(|_| "not a sum")?;
            }
            Ok(Accumulator::new(total))
        }
        fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
            Ok(Value::I64(acc.downcast::<i64>().map_err(|_| "not a sum")?))
        }
        fn accumulator_coder(&self, _input: &Coder) -> Coder {
            Coder::VarInt
        }
        fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
            Ok(Value::I64(*acc.downcast_ref::<i64>().ok_or("not a sum")?))
        }
        fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
            match value {
                Value::I64(n) => Ok(Accumulator::new(n)),
                _ => Err("not a sum".into()),
            }
        }
    }

    fn codec(workers: usize) -> PartialCodec {
        PartialCodec {
            name: "Sums".into(),
            key_coder: Coder::VarInt,
            acc_coder: Coder::VarInt,
            combine: Arc::new(Sum),
            workers,
        }
    }

    /// Partial results of keys 0..keys, key k holding k + 1 elements of value k.
    fn partials(keys: i64) -> Vec<Partial> {
        let c = codec(1);
        let mut pre = PreCombine::new(
            c.name.clone(),
            c.key_coder.clone(),
            c.combine.clone(),
            Mailbox::default(),
        );
        let mut batch: Vec<WindowedValue> = (0..keys)
            .flat_map(|k| (0..=k).map(move |i| (k, i)))
            .map(|(k, i)| WindowedValue {
                value: Value::kv(Value::I64(k), Value::I64(k)),
                timestamp: i,
                window: Window::Global,
                pane: PaneInfo::NO_FIRING,
            })
            .collect();
        pre.add(&mut batch).unwrap();
        pre.take().unwrap()
    }

    #[test]
    fn partial_results_travel_one_record_per_worker_to_the_owner_of_their_keys() {
        let c = codec(3);
        let mut parts = partials(200);
        let mut out = Batch::new();
        c.encode_all(&mut parts, &mut out).unwrap();
        assert!(parts.is_empty());
        assert_eq!(out.len(), 3, "one record per worker");
        let mut seen = std::collections::BTreeMap::new();
        for (hash, Payload(bytes)) in &out {
            let worker = hash >> 32;
            let mut decoded = Vec::new();
            c.decode_all(bytes, &mut decoded).unwrap();
            for p in decoded {
                // The worker an element of this key goes to ([`Encoder`]'s hash).
                assert_eq!((key_hash(p.key_bytes()) >> 32) % 3, worker);
                let Value::I64(k) = p.key else {
                    panic!("a number key")
                };
                let sum = *p.acc.downcast_ref::<i64>().unwrap();
                seen.insert(k, (p.count, sum, p.latest));
            }
        }
        let expected: std::collections::BTreeMap<i64, (usize, i64, i64)> = (0..200)
            .map(|k| (k, (k as usize + 1, k * (k + 1), k)))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_worker_s_partial_results_past_a_part_s_size_travel_in_several_records() {
        let c = PartialCodec {
            key_coder: Coder::Bytes,
            ..codec(1)
        };
        // Long keys: each partial result is about 100 KB.
        let mut parts: Vec<Partial> = (0..8u8)
            .map(|i| {
                let key = vec![i; 100_000];
                Partial::new(
                    &key,
                    Value::Bytes(key.clone()),
                    Window::Global,
                    Accumulator::new(i64::from(i)),
                    1,
                    0,
                )
            })
            .collect();
        let mut out = Batch::new();
        c.encode_all(&mut parts, &mut out).unwrap();
        assert!(out.len() >= 3, "{} records", out.len());
        let mut decoded = Vec::new();
        for (hash, Payload(bytes)) in &out {
            assert_eq!(*hash, 0, "the only worker");
            assert!(bytes.len() < PARTIALS_PART + 200_000);
            c.decode_all(bytes, &mut decoded).unwrap();
        }
        let keys: Vec<Value> = decoded.into_iter().map(|p| p.key).collect();
        let expected: Vec<Value> = (0..8u8).map(|i| Value::Bytes(vec![i; 100_000])).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_damaged_record_of_partial_results_is_an_error_naming_the_combine() {
        let c = codec(1);
        let mut out = Batch::new();
        c.encode_all(&mut partials(3), &mut out).unwrap();
        let bytes = &out[0].1 .0;
        for cut in [1, 3, bytes.len() - 1] {
            let err = c
                .decode_all(&bytes[..cut], &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains("Sums"), "{err}");
        }
    }
}
