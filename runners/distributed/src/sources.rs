//! Where data enters the dataflow: Impulse and TestStream (the engine's operators, on
//! worker 0 only, as one element or one replay for the whole job) and unbounded sources
//! (split over every worker, each polling its part).

use crate::adapter::{time, Ports};
use crate::chain::Chain;
use crate::dataflow::Shared;
use crate::driver::wall_clock_ms;
use crate::wire::Encoder;
use beamline_engine::graph::SourceFactory;
use beamline_engine::operators::guard::guarded;
use beamline_engine::operators::{Op, OpCx, SourceStep, END_OF_TIME};
use beamline_engine::source::{SourceOutput, UnboundedSource};
use beamline_engine::window::WindowedValue;
use beamline_engine::EngineError;
use std::sync::Arc;
use std::time::Duration;

/// Elements a source with fused transforms reads at once (a bundle is several such
/// reads): each goes down the chain while it is in cache.
const POLL_CHUNK: usize = 1024;

/// Most steps a replayed source takes per scheduling, so other operators get their turn.
const STEPS_PER_ACTIVATION: usize = 64;

/// An engine source operator (Impulse, TestStream) replayed on one worker: each step's
/// elements at the time of the source's watermark, virtual processing time and step.
pub(crate) struct Replay {
    op: Option<Box<dyn Op>>,
    name: String,
    encoder: Encoder,
    wm: i64,
    pt: i64,
    step: u64,
    shared: Arc<Shared>,
}

impl Replay {
    /// Replays `op` (transform `name`) when `active`; otherwise the worker emits nothing.
    pub(crate) fn new(
        op: Box<dyn Op>,
        name: &str,
        encoder: Encoder,
        active: bool,
        shared: Arc<Shared>,
    ) -> Self {
        Replay {
            op: active.then_some(op),
            name: name.to_string(),
            encoder,
            wm: i64::MIN,
            pt: 0,
            step: 0,
            shared,
        }
    }

    /// Takes the source's next steps.
    pub(crate) fn activate(&mut self, p: &mut Ports<'_>) {
        if p.finished() {
            return;
        }
        if let Err(e) = self.steps(p) {
            self.shared.fail(e);
        }
    }

    fn steps(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        let Some(op) = self.op.as_mut() else {
            p.finish();
            return Ok(());
        };
        for _ in 0..STEPS_PER_ACTIVATION {
            let mut out = vec![Vec::new()];
            let (mut more, mut spare) = (Vec::new(), Vec::new());
            let step = op.step(&mut OpCx {
                out: &mut out,
                more: &mut more,
                spare: &mut spare,
                now: self.pt,
                input_watermark: self.wm,
                output_watermark: self.wm,
                name: &self.name,
            })?;
            let mut elements: Vec<WindowedValue> = out.pop().unwrap_or_default();
            elements.extend(more.into_iter().flatten());
            if !elements.is_empty() {
                let mut batch = Vec::new();
                self.encoder.encode(&mut elements, &mut batch)?;
                p.give(0, &mut batch);
                self.step += 1;
            }
            match step {
                SourceStep::Finished | SourceStep::NotASource => {
                    p.finish();
                    return Ok(());
                }
                SourceStep::Idle => break,
                SourceStep::Progressed {
                    advance_processing_time,
                } => self.pt += advance_processing_time.max(0),
            }
            self.wm = self.wm.max(op.hold());
            if self.wm == END_OF_TIME {
                p.finish();
                return Ok(());
            }
            p.downgrade(time(self.wm, self.pt, self.step));
        }
        p.activate_after(Duration::ZERO);
        Ok(())
    }
}

/// Where a source's elements go.
pub(crate) enum Emit {
    /// Encoded onto its output.
    Encoded(Encoder),
    /// Through the stateless transforms fused after it (each poll one bundle).
    Chain(Box<Chain>),
}

/// One worker's part of an unbounded source, polled on the worker's thread.
pub(crate) struct Poll {
    factory: SourceFactory,
    /// This worker's index and the number of workers.
    worker: (usize, usize),
    reader: Option<Box<dyn UnboundedSource>>,
    started: bool,
    name: String,
    emit: Emit,
    max_bundle: usize,
    wm: i64,
    step: u64,
    shared: Arc<Shared>,
}

impl Poll {
    /// Worker `worker.0` of `worker.1` reads its part of the source `factory` makes.
    pub(crate) fn new(
        factory: SourceFactory,
        worker: (usize, usize),
        name: &str,
        emit: Emit,
        max_bundle: usize,
        shared: Arc<Shared>,
    ) -> Self {
        Poll {
            factory,
            worker,
            reader: None,
            started: false,
            name: name.to_string(),
            emit,
            max_bundle: max_bundle.max(1),
            wm: i64::MIN,
            step: 0,
            shared,
        }
    }

    /// Polls this worker's reader once.
    pub(crate) fn activate(&mut self, p: &mut Ports<'_>) {
        if p.finished() {
            return;
        }
        if let Err(e) = self.poll(p) {
            self.shared.fail(e);
        }
    }

    /// This worker's reader: its part of the split, or the whole source on worker 0 when
    /// it does not split; `None` when there is no part for it.
    fn start(&mut self) -> Result<Option<Box<dyn UnboundedSource>>, EngineError> {
        let (index, workers) = self.worker;
        let f = self.factory.clone();
        let whole = guarded(&self.name, || f())?;
        let mut parts = if workers > 1 {
            guarded(&self.name, || Ok(whole.split(workers)))?
        } else {
            Vec::new()
        };
        if parts.len() > workers {
            return Err(EngineError::user(
                &self.name,
                format!(
                    "the source split into {} readers when asked for at most {workers}",
                    parts.len()
                ),
            ));
        }
        Ok(if parts.is_empty() {
            (index == 0).then_some(whole)
        } else if index < parts.len() {
            Some(parts.swap_remove(index))
        } else {
            None
        })
    }

    fn poll(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        if !self.started {
            self.started = true;
            self.reader = self.start()?;
        }
        let Some(reader) = self.reader.as_mut() else {
            return self.end(p);
        };
        let max = self.max_bundle;
        let now = wall_clock_ms();
        let (polled, full) = match &mut self.emit {
            Emit::Encoded(encoder) => {
                let mut elements = Vec::new();
                let polled = guarded(&self.name, || {
                    reader.poll(now, max, &mut SourceOutput::new(&mut elements))
                })?;
                let full = elements.len() >= max;
                if !elements.is_empty() {
                    let mut batch = Vec::new();
                    encoder.encode(&mut elements, &mut batch)?;
                    p.give(0, &mut batch);
                    self.step += 1;
                }
                (polled, full)
            }
            Emit::Chain(chain) => {
                // One bundle of up to `max` elements, read a chunk at a time and each
                // chunk taken down the chain at once, while it is in cache.
                chain.now = chain.now.max(now);
                let mut read = 0;
                let polled = loop {
                    let mut elements = chain.input_buffer();
                    let want = POLL_CHUNK.min(max - read);
                    let polled = guarded(&self.name, || {
                        reader.poll(now, want, &mut SourceOutput::new(&mut elements))
                    })?;
                    let n = elements.len();
                    read += n;
                    if n > 0 {
                        chain.feed(p, 0, elements)?;
                    }
                    if n < want || read >= max || polled.finished {
                        break polled;
                    }
                };
                if read > 0 {
                    chain.each(p, |op, cx| op.end_bundle(cx))?;
                    chain.flush(p)?;
                    self.step += 1;
                }
                (polled, read >= max)
            }
        };
        self.wm = self.wm.max(polled.watermark);
        if polled.finished || self.wm == END_OF_TIME {
            return self.end(p);
        }
        if let Emit::Chain(chain) = &mut self.emit {
            if self.wm > chain.wm {
                chain.wm = self.wm;
                chain.each(p, |op, cx| op.advance(cx.input_watermark, cx))?;
            }
        }
        p.downgrade(time(self.wm, 0, self.step));
        p.activate_after(if full {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        });
        Ok(())
    }

    /// This worker's part is read: the fused transforms see the end of time, and the
    /// operator finishes.
    fn end(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        if let Emit::Chain(chain) = &mut self.emit {
            if chain.wm < END_OF_TIME {
                chain.wm = END_OF_TIME;
                chain.each(p, |op, cx| op.advance(END_OF_TIME, cx))?;
            }
            chain.each(p, |op, cx| op.end_bundle(cx))?;
            chain.flush(p)?;
            self.shared.add_metrics(chain.finish()?);
        }
        p.finish();
        Ok(())
    }
}
