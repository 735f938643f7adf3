//! Streaming operators: the operator trait, Impulse, TestStream, WindowInto, Flatten.

use super::gbk::GbkOp;
use super::pardo::ParDoOp;
use super::source::SourceOp;
use super::END_OF_TIME;
use crate::coder::Coder;
use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, NodeKind, TestEvent};
use crate::job::JobControl;
use crate::metrics::MetricResults;
use crate::value::Value;
use crate::window::{PaneInfo, Window, WindowFn, WindowedValue};

/// What an operator sees of the executor during a call.
pub(super) struct OpCx<'a> {
    /// Output buffers, one per output tag.
    pub out: &'a mut [Vec<WindowedValue>],
    /// Further batches of output 0, queued in order after `out[0]`: a source hands over a
    /// bundle in batches small enough to stay in cache on their way downstream.
    pub more: &'a mut Vec<Vec<WindowedValue>>,
    /// Emptied buffers the executor keeps for outputs; a source hands some back to its
    /// reader thread.
    pub spare: &'a mut Vec<Vec<WindowedValue>>,
    /// Processing time (ms).
    pub now: i64,
    /// The operator's input watermark.
    pub input_watermark: i64,
    /// The operator's output watermark.
    pub output_watermark: i64,
    /// The transform's unique name.
    pub name: &'a str,
}

/// What a source did in one step.
pub(super) enum SourceStep {
    NotASource,
    Finished,
    Idle,
    Progressed { advance_processing_time: i64 },
}

/// Moves a batch into an output buffer (without copying when the buffer is empty).
pub(super) fn forward(batch: &mut Vec<WindowedValue>, out: &mut Vec<WindowedValue>) {
    if out.is_empty() {
        std::mem::swap(batch, out);
    } else {
        out.append(batch);
    }
}

/// A transform in the streaming executor.
pub(super) trait Op {
    /// Processes a batch of elements of input `slot` (0: main input, 1..: side inputs);
    /// what is left in `batch` afterwards is discarded.
    fn process(
        &mut self,
        _slot: usize,
        _batch: &mut Vec<WindowedValue>,
        _cx: &mut OpCx<'_>,
    ) -> Result<()> {
        Ok(())
    }
    fn end_bundle(&mut self, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    fn advance(&mut self, _wm: i64, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    fn side_watermarks(&mut self, _wms: &[i64]) {}
    fn on_processing_time(&mut self, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    fn hold(&self) -> i64 {
        END_OF_TIME
    }
    fn step(&mut self, _cx: &mut OpCx<'_>) -> Result<SourceStep> {
        Ok(SourceStep::NotASource)
    }
    fn stop(&mut self) {}
    /// Moves the metrics gathered so far to the job's handle.
    fn report(&mut self, _name: &str, _control: &JobControl) {}
    fn finish(&mut self, _name: &str, _metrics: &mut MetricResults) -> Result<()> {
        Ok(())
    }
}

pub(super) fn build(graph: &Graph, node: &Node, max_bundle_size: usize) -> Result<Box<dyn Op>> {
    Ok(match &node.kind {
        NodeKind::Impulse => Box::new(ImpulseOp { emitted: false }),
        NodeKind::TestStream { events } => Box::new(TestStreamOp {
            events: events.clone(),
            pos: 0,
            wm: i64::MIN,
        }),
        NodeKind::Source { source } => Box::new(SourceOp::new(source.clone(), max_bundle_size)),
        NodeKind::WindowInto { window_fn } => Box::new(WindowIntoOp(*window_fn)),
        NodeKind::Flatten | NodeKind::Reshuffle => Box::new(PassOp),
        NodeKind::GroupByKey | NodeKind::CombinePerKey { .. } => {
            let input = &graph.pcollections[node.inputs[0]];
            let Coder::Kv(key_coder, _) = &input.coder else {
                return Err(EngineError::InvalidPipeline(format!(
                    "{} '{}' needs key/value input, but '{}' has coder {}",
                    node.kind.label(),
                    node.name,
                    input.name,
                    input.coder
                )));
            };
            let combine = match &node.kind {
                NodeKind::CombinePerKey { combine_fn, .. } => Some(combine_fn.clone()),
                _ => None,
            };
            Box::new(GbkOp::new(
                (**key_coder).clone(),
                input.windowing.clone(),
                combine,
            ))
        }
        NodeKind::ParDo {
            dofn,
            side_inputs,
            stateful,
        } => Box::new(ParDoOp::new(
            graph,
            node,
            dofn,
            side_inputs,
            stateful.as_ref(),
        )?),
    })
}

struct ImpulseOp {
    emitted: bool,
}

impl Op for ImpulseOp {
    fn step(&mut self, cx: &mut OpCx<'_>) -> Result<SourceStep> {
        if self.emitted {
            return Ok(SourceStep::Finished);
        }
        self.emitted = true;
        cx.out[0].push(WindowedValue::in_global_window(Value::Bytes(Vec::new())));
        Ok(SourceStep::Progressed {
            advance_processing_time: 0,
        })
    }
    fn hold(&self) -> i64 {
        if self.emitted {
            END_OF_TIME
        } else {
            i64::MIN
        }
    }
}

struct TestStreamOp {
    events: Vec<TestEvent>,
    pos: usize,
    wm: i64,
}

impl Op for TestStreamOp {
    fn step(&mut self, cx: &mut OpCx<'_>) -> Result<SourceStep> {
        let Some(event) = self.events.get(self.pos) else {
            self.wm = END_OF_TIME;
            return Ok(SourceStep::Finished);
        };
        self.pos += 1;
        let mut advance = 0;
        match event {
            TestEvent::Elements(items) => {
                cx.out[0].extend(items.iter().map(|(v, ts)| WindowedValue {
                    value: v.clone(),
                    timestamp: *ts,
                    window: Window::Global,
                    pane: PaneInfo::NO_FIRING,
                }));
            }
            TestEvent::Watermark(w) => self.wm = self.wm.max(*w),
            TestEvent::ProcessingTime(d) => advance = *d,
        }
        Ok(SourceStep::Progressed {
            advance_processing_time: advance,
        })
    }
    fn hold(&self) -> i64 {
        self.wm
    }
    fn stop(&mut self) {
        self.pos = self.events.len();
    }
}

pub(super) struct WindowIntoOp(pub(super) WindowFn);

impl Op for WindowIntoOp {
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        // Windows are assigned in place when each element gets exactly one.
        let mut i = 0;
        while i < batch.len() {
            match self.0.assign_one(batch[i].timestamp) {
                Some(window) => batch[i].window = window,
                None => break,
            }
            i += 1;
        }
        if i == batch.len() {
            forward(batch, &mut cx.out[0]);
            return Ok(());
        }
        let out = &mut cx.out[0];
        out.extend(batch.drain(..i));
        for wv in batch.drain(..) {
            match self.0.assign_one(wv.timestamp) {
                Some(window) => out.push(WindowedValue { window, ..wv }),
                None => out.extend(self.0.assign(wv.timestamp).into_iter().map(|window| {
                    WindowedValue {
                        window,
                        ..wv.clone()
                    }
                })),
            }
        }
        Ok(())
    }
}

struct PassOp;

impl Op for PassOp {
    fn process(
        &mut self,
        _slot: usize,
        batch: &mut Vec<WindowedValue>,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        forward(batch, &mut cx.out[0]);
        Ok(())
    }
}
