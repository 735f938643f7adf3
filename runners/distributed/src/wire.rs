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
}

impl PartialCodec {
    fn err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::user(&self.name, e.to_string())
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
                let mut parts = Vec::with_capacity(batch.len());
                for (_, Payload(bytes)) in batch.drain(..) {
                    let p = Partial::decode(
                        &bytes,
                        &codec.key_coder,
                        &*codec.combine,
                        &codec.acc_coder,
                    )
                    .map_err(|e| codec.err(e))?;
                    parts.push(p);
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
        let parts = pre.take()?;
        out.reserve(parts.len());
        for part in parts {
            let mut bytes = Vec::new();
            part.encode(&*codec.combine, &codec.acc_coder, &mut bytes)
                .map_err(|e| codec.err(e))?;
            out.push((key_hash(part.key_bytes()), Payload(bytes)));
        }
        Ok(())
    }
}
