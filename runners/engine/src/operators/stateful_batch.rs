//! A stateful ParDo driven by the batch executor over the elements of one key partition.
//!
//! Beam's batch semantics, as its batch runners implement them: every element of a key
//! is processed while the input watermark is at its minimum (nothing is late), then the
//! watermark jumps to the end of time: event-time timers fire in timestamp order (timers
//! they set fire too), windows expire (on-window-expiration, then the state is dropped).
//! Processing time stays at zero, as in the streaming executor's virtual time for bounded
//! pipelines. The same operator as in streaming runs the DoFn, so both executors share
//! one implementation of state, timers and expiry.

use super::op::END_OF_TIME;
use super::op::{call_bounded, Op, OpCx};
use super::pardo::ParDoOp;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, NodeKind};
use crate::metrics::MetricResults;
use crate::window::WindowedValue;

/// A stateful ParDo over a bounded input: one instance per key partition, fed the
/// partition's elements, then finished (timers fire and windows expire as the watermark
/// jumps to the end of time), as Beam's batch runners run stateful DoFns.
pub struct StatefulBatch {
    op: ParDoOp,
    name: String,
    /// Outputs not yet taken, one buffer per output tag.
    outs: Vec<Vec<WindowedValue>>,
    input_watermark: i64,
}

impl StatefulBatch {
    /// An instance of ParDo node `node` of `graph`, with its side inputs' elements (in the
    /// order the DoFn reads them), all complete.
    ///
    /// # Errors
    /// When the node is not a ParDo or its input is not key/value.
    pub fn new(
        graph: &Graph,
        node: usize,
        sides: Vec<Vec<WindowedValue>>,
    ) -> Result<StatefulBatch> {
        let n = &graph.nodes[node];
        let NodeKind::ParDo {
            dofn,
            side_inputs,
            stateful,
        } = &n.kind
        else {
            return Err(EngineError::InvalidPipeline(format!(
                "'{}' is not a ParDo",
                n.name
            )));
        };
        let mut b = StatefulBatch {
            op: ParDoOp::new(graph, n, dofn, side_inputs, stateful.as_ref())?,
            name: n.name.clone(),
            outs: vec![Vec::new(); n.outputs.len()],
            input_watermark: i64::MIN,
        };
        let complete = vec![END_OF_TIME; sides.len()];
        for (slot, mut values) in sides.into_iter().enumerate() {
            b.with_cx(|op, cx| op.process(slot + 1, &mut values, cx))?;
        }
        b.op.side_watermarks(&complete);
        Ok(b)
    }

    fn with_cx(&mut self, f: impl FnOnce(&mut ParDoOp, &mut OpCx<'_>) -> Result<()>) -> Result<()> {
        let op = &mut self.op;
        call_bounded(&mut self.outs, self.input_watermark, &self.name, |cx| {
            f(op, cx)
        })
    }

    /// Processes a batch of the partition's elements (in arrival order), leaving it empty.
    ///
    /// # Errors
    /// The DoFn's failure, or an element that is not key/value.
    pub fn process(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        self.with_cx(|op, cx| op.process(0, batch, cx))?;
        batch.clear();
        Ok(())
    }

    /// The outputs produced so far, per output tag (drain them to bound memory).
    pub fn outputs(&mut self) -> &mut [Vec<WindowedValue>] {
        &mut self.outs
    }

    /// Ends the input: processing-time timers due at time zero, then the watermark to the
    /// end of time (event-time timers, expiry), then the DoFn's teardown. Returns the
    /// remaining outputs per tag and the transform's metrics.
    ///
    /// # Errors
    /// The first failure of the DoFn (teardown runs regardless).
    pub fn finish(mut self) -> Result<(Vec<Vec<WindowedValue>>, MetricResults)> {
        let r = self
            .with_cx(|op, cx| op.end_bundle(cx))
            .and_then(|()| self.with_cx(|op, cx| op.on_processing_time(cx)))
            .and_then(|()| {
                self.input_watermark = END_OF_TIME;
                self.with_cx(|op, cx| op.advance(END_OF_TIME, cx))
            })
            .and_then(|()| self.with_cx(|op, cx| op.end_bundle(cx)));
        let mut metrics = MetricResults::default();
        let torn = self.op.finish(&self.name, &mut metrics);
        r?;
        torn?;
        Ok((self.outs, metrics))
    }

    /// Tears the DoFn down after a failure (its error is the one to report).
    pub fn abandon(mut self) {
        let mut metrics = MetricResults::default();
        let _ = self.op.finish(&self.name, &mut metrics);
    }
}
