//! Stateful ParDo in the batch executor: elements shuffled by key, then every key
//! partition runs through its own instance of the DoFn, partitions in parallel.
//!
//! A key's elements all land in one partition, in bundle order, so each instance sees
//! every element of its keys and keeps their state; once its input is complete the
//! watermark jumps to the end of time (timers fire, windows expire, state is dropped).
//! The outputs are one bundle (or, under a memory budget, several spilled ones) per
//! partition and output tag, in partition order: independent of the thread count.

use super::grouped::groups_encoded;
use super::spill::Bundles;
use super::spill::{self, Budget, Bundle, SpillFile};
use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::graph::Graph;
use crate::job::JobControl;
use crate::metrics::MetricResults;
use crate::operators::stateful_batch::StatefulBatch;
use crate::window::WindowedValue;
use rayon::prelude::*;
use std::sync::Arc;

/// Elements read from the input and handed to the DoFn at a time.
const BATCH: usize = 1024;

/// Where outputs spill under a memory budget.
struct Spill<'a> {
    budget: &'a Budget,
    file: Arc<SpillFile>,
}

/// The output of one tag of one partition: bundles cut by size when spilling.
struct TagOutput<'a> {
    coder: &'a Coder,
    name: &'a str,
    pending: Vec<WindowedValue>,
    pending_bytes: usize,
    /// Outputs with standard coders are kept encoded (as a GroupByKey's are): a few bytes
    /// per small element instead of a struct with boxed values.
    encoded: Option<Vec<u8>>,
    encoded_count: usize,
    bundles: Bundles,
}

impl<'a> TagOutput<'a> {
    fn new(coder: &'a Coder, name: &'a str, spilling: bool) -> Self {
        TagOutput {
            coder,
            name,
            pending: Vec::new(),
            pending_bytes: 0,
            encoded: (!spilling && groups_encoded(coder)).then(Vec::new),
            encoded_count: 0,
            bundles: Vec::new(),
        }
    }

    fn push(&mut self, items: &mut Vec<WindowedValue>, spill: Option<&Spill<'_>>) -> Result<()> {
        if let Some(bytes) = &mut self.encoded {
            for wv in items.drain(..) {
                crate::element_codec::encode_windowed(self.coder, &wv, bytes).map_err(
                    |source| EngineError::Coder {
                        transform: self.name.to_string(),
                        source,
                    },
                )?;
                self.encoded_count += 1;
            }
            return Ok(());
        }
        let Some(sp) = spill else {
            self.pending.append(items);
            return Ok(());
        };
        for wv in items.drain(..) {
            self.pending_bytes += spill::windowed_size(&wv);
            self.pending.push(wv);
            if self.pending_bytes >= sp.budget.bundle_bytes() {
                self.cut(sp)?;
            }
        }
        Ok(())
    }

    fn cut(&mut self, sp: &Spill<'_>) -> Result<()> {
        let b = Bundle::spill(&self.pending, self.coder, &sp.file, self.name)?;
        self.bundles.push(b);
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn finish(mut self, spill: Option<&Spill<'_>>) -> Result<Bundles> {
        if let Some(bytes) = self.encoded.take().filter(|_| self.encoded_count > 0) {
            self.bundles
                .push(Bundle::Encoded(Arc::new(spill::EncodedBundle {
                    bytes,
                    count: self.encoded_count,
                    coder: self.coder.clone(),
                })));
        }
        if !self.pending.is_empty() {
            match spill {
                Some(sp) => self.cut(sp)?,
                None => self.bundles.push(Bundle::Mem(self.pending)),
            }
        }
        Ok(self.bundles)
    }
}

/// Runs stateful ParDo `node` over its shuffled input (`parts`: per key partition, its
/// bundles in order) with its side inputs' elements; returns the bundles of every output
/// tag and merges the DoFn's metrics into `metrics`.
///
/// # Errors
/// The first failure of the DoFn in any partition (naming the transform), or I/O
/// failures of spilling.
pub(crate) fn run(
    graph: &Graph,
    node: usize,
    parts: Vec<Vec<Bundle>>,
    sides: Vec<Vec<WindowedValue>>,
    metrics: &mut MetricResults,
    budget: Option<&Budget>,
    control: &JobControl,
) -> Result<Vec<Bundles>> {
    let n = &graph.nodes[node];
    let spill = match budget {
        Some(b) => Some(Spill {
            budget: b,
            file: SpillFile::create(b)?,
        }),
        None => None,
    };
    let per_part: Vec<(Vec<Bundles>, MetricResults)> = parts
        .into_par_iter()
        .filter(|bundles| bundles.iter().any(|b| !b.is_empty()))
        .map(|bundles| {
            let mut outs: Vec<TagOutput<'_>> = n
                .outputs
                .iter()
                .map(|&pc| TagOutput::new(&graph.pcollections[pc].coder, &n.name, spill.is_some()))
                .collect();
            control.check()?;
            let mut inst = StatefulBatch::new(graph, node, sides.clone())?;
            let fed = feed(&mut inst, bundles, &mut outs, spill.as_ref(), control);
            if let Err(e) = fed {
                inst.abandon();
                return Err(e);
            }
            let (rest, m) = inst.finish()?;
            let mut tags = Vec::with_capacity(outs.len());
            for (mut out, mut items) in outs.into_iter().zip(rest) {
                out.push(&mut items, spill.as_ref())?;
                tags.push(out.finish(spill.as_ref())?);
            }
            Ok((tags, m))
        })
        .collect::<Result<_>>()?;
    let mut by_tag: Vec<Bundles> = vec![Vec::new(); n.outputs.len()];
    for (tags, m) in per_part {
        metrics.merge(m);
        for (all, b) in by_tag.iter_mut().zip(tags) {
            all.extend(b);
        }
    }
    Ok(by_tag)
}

/// Hands a partition's elements to the DoFn a batch at a time, moving its outputs on.
fn feed(
    inst: &mut StatefulBatch,
    bundles: Vec<Bundle>,
    outs: &mut [TagOutput<'_>],
    spill: Option<&Spill<'_>>,
    control: &JobControl,
) -> Result<()> {
    let mut batch = Vec::new();
    let mut batches = 0u32;
    for b in bundles {
        let mut reader = b.reader()?;
        loop {
            // A partition's input is one long run: stop soon after a cancel.
            if batches.is_multiple_of(64) {
                control.check()?;
            }
            batches = batches.wrapping_add(1);
            reader.next_batch(&mut batch, BATCH, usize::MAX)?;
            if batch.is_empty() {
                break;
            }
            inst.process(&mut batch)?;
            for (out, items) in outs.iter_mut().zip(inst.outputs()) {
                out.push(items, spill)?;
            }
        }
    }
    Ok(())
}
