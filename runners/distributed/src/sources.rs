//! Where data enters the dataflow: Impulse and TestStream (the engine's operators, on
//! worker 0 only, as one element or one replay for the whole job) and unbounded sources
//! (split over every worker, each polling its part). With checkpoints, a source moves to
//! the next epoch every interval, its position (and its fused transforms' state) then its
//! part of the checkpoint.

use crate::adapter::{time, Ports};
use crate::chain::Chain;
use crate::dataflow::Shared;
use crate::driver::wall_clock_ms;
use crate::driver::TICK;
use crate::member::Member;
use crate::progress::ChainMeter;
use crate::source_state::{SourceState, SOURCE_KEY};
use crate::wire::Encoder;
use beamline_engine::checkpoint::StateOut;
use beamline_engine::graph::SourceFactory;
use beamline_engine::operators::guard::guarded;
use beamline_engine::operators::{Op, OpCx, SourceStep, END_OF_TIME};
use beamline_engine::source::{SourceOutput, UnboundedSource};
use beamline_engine::window::WindowedValue;
use beamline_engine::EngineError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// With checkpoints: its part in them (an Impulse: whether it emitted).
    member: Option<Member>,
    epoch: u64,
    started: bool,
    shared: Arc<Shared>,
    /// Where what it emits is counted.
    meter: Option<Arc<ChainMeter>>,
}

impl Replay {
    /// Replays `op` (transform `name`) when `active`; otherwise the worker emits nothing.
    pub(crate) fn new(
        op: Box<dyn Op>,
        name: &str,
        encoder: Encoder,
        active: bool,
        member: Option<Member>,
        shared: Arc<Shared>,
    ) -> Self {
        Replay {
            op: active.then_some(op),
            name: name.to_string(),
            encoder,
            wm: i64::MIN,
            pt: 0,
            step: 0,
            epoch: member.as_ref().map_or(0, Member::first_epoch),
            member,
            started: false,
            shared,
            meter: None,
        }
    }

    /// Counts what it emits into `meter`.
    pub(crate) fn metered(mut self, meter: Arc<ChainMeter>) -> Self {
        self.meter = Some(meter);
        self
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

    /// Restores its operator, once (with checkpoints).
    fn restore(&mut self) -> Result<(), EngineError> {
        let (Some(m), Some(op)) = (&self.member, self.op.as_mut()) else {
            return Ok(());
        };
        if let Some(state) = m.restored(&self.name) {
            let (pt, wm, name) = (self.pt, self.wm, self.name.clone());
            quiet(op, pt, wm, &name, |op, cx| op.restore(&state, cx))?;
        }
        m.done_restoring();
        Ok(())
    }

    /// The replay ended: with checkpoints, its last state goes into them first.
    fn end(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        if let Some(m) = &mut self.member {
            if !m.finishing() {
                let mut out = StateOut::new(self.epoch, true);
                if let Some(op) = self.op.as_mut() {
                    quiet(op, self.pt, self.wm, &self.name, |op, cx| {
                        op.snapshot(&mut out, cx)
                    })?;
                }
                m.finish(self.epoch, vec![(self.name.clone(), out)])?;
            }
            // It holds nothing to commit: the worker's checkpoints need not wait for it.
        }
        p.finish();
        Ok(())
    }

    fn steps(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        if !self.started {
            self.started = true;
            self.restore()?;
        }
        let Some(op) = self.op.as_mut() else {
            return self.end(p);
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
                if let Some(m) = &self.meter {
                    m.add_in(elements.len());
                    m.add_out(elements.len());
                    m.set_watermarks(i64::MIN, self.wm);
                }
                let mut batch = Vec::new();
                self.encoder.encode(&mut elements, &mut batch)?;
                p.give(0, &mut batch);
                self.step += 1;
            }
            match step {
                SourceStep::Finished | SourceStep::NotASource => return self.end(p),
                SourceStep::Idle => break,
                SourceStep::Progressed {
                    advance_processing_time,
                } => self.pt += advance_processing_time.max(0),
            }
            self.wm = self.wm.max(op.hold());
            if self.wm == END_OF_TIME {
                return self.end(p);
            }
            p.downgrade(time(self.epoch, self.wm, self.pt, self.step));
        }
        p.activate_after(Duration::ZERO);
        Ok(())
    }
}

/// Calls `op` (transform `name`, at processing time `pt` and watermark `wm`) for what
/// emits nothing (restoring, saving its state).
fn quiet(
    op: &mut Box<dyn Op>,
    pt: i64,
    wm: i64,
    name: &str,
    f: impl FnOnce(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let (mut out, mut more, mut spare) = (vec![Vec::new()], Vec::new(), Vec::new());
    f(
        &mut **op,
        &mut OpCx {
            out: &mut out,
            more: &mut more,
            spare: &mut spare,
            now: pt,
            input_watermark: wm,
            output_watermark: wm,
            name,
        },
    )
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
    /// With checkpoints: its part in them, the interval, when the epoch ends, and the
    /// positions of checkpoints not yet whole, by epoch.
    member: Option<Member>,
    interval: Duration,
    epoch: u64,
    epoch_ends: Instant,
    positions: BTreeMap<u64, Vec<u8>>,
    worker_instance: usize,
    shared: Arc<Shared>,
    /// Where what it reads and emits is counted.
    meter: Option<Arc<ChainMeter>>,
}

impl Poll {
    /// Worker `worker.0` of `worker.1` reads its part of the source `factory` makes.
    pub(crate) fn new(
        factory: SourceFactory,
        worker: (usize, usize),
        name: &str,
        emit: Emit,
        max_bundle: usize,
        checkpoints: Option<(Member, Duration)>,
        shared: Arc<Shared>,
    ) -> Self {
        let (member, interval) = match checkpoints {
            Some((m, i)) => (Some(m), i),
            None => (None, Duration::MAX),
        };
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
            epoch: member.as_ref().map_or(0, Member::first_epoch),
            member,
            interval,
            epoch_ends: Instant::now(),
            positions: BTreeMap::new(),
            worker_instance: worker.0,
            shared,
            meter: None,
        }
    }

    /// Counts what it reads and emits into `meter` (its chain's, when it has one).
    pub(crate) fn metered(mut self, meter: Arc<ChainMeter>) -> Self {
        if let Emit::Chain(chain) = &mut self.emit {
            chain.metered(meter.clone());
        }
        self.meter = Some(meter);
        self
    }

    /// Polls this worker's reader once.
    pub(crate) fn activate(&mut self, p: &mut Ports<'_>) {
        if p.finished() {
            return;
        }
        let r = if self.member.as_ref().is_some_and(Member::finishing) {
            self.wait_to_end(p)
        } else {
            self.poll(p)
        };
        if let Err(e) = r {
            self.shared.fail(e);
        }
    }

    /// With checkpoints, at the start: the reader and the fused transforms resume where
    /// the checkpoint restored left them. Returns whether this part had ended.
    fn restore(&mut self, p: &mut Ports<'_>) -> Result<bool, EngineError> {
        let Some(m) = &self.member else {
            return Ok(false);
        };
        self.epoch_ends = Instant::now() + self.interval;
        p.downgrade(time(self.epoch, i64::MIN, 0, 0));
        if let Emit::Chain(chain) = &mut self.emit {
            chain.enable_commits(self.worker_instance);
            chain.restore(p, &|name| m.restored(name))?;
        }
        let state = m.restored(&self.name);
        m.done_restoring();
        let Some(state) = state else {
            return Ok(false);
        };
        let Some(bytes) = state.get(SOURCE_KEY)? else {
            return Ok(false);
        };
        let SourceState {
            finished,
            wm,
            step,
            position,
        } = SourceState::decode(&bytes, &self.name)?;
        self.wm = self.wm.max(wm);
        self.step = step;
        if let (Some(reader), Some(pos)) = (self.reader.as_mut(), position.as_deref()) {
            guarded(&self.name, || reader.restore(pos))?;
            // Committed again: the checkpoint may have become whole just before the end.
            guarded(&self.name, || reader.checkpointed(pos))?;
        }
        Ok(finished)
    }

    /// The source's state for checkpoint `epoch`: its fused transforms', then its own.
    fn snapshot(
        &mut self,
        p: &mut Ports<'_>,
        epoch: u64,
        full: bool,
        finished: bool,
    ) -> Result<Vec<(String, StateOut)>, EngineError> {
        let mut parts = match &mut self.emit {
            Emit::Chain(chain) => chain.snapshot(p, epoch, full, finished)?,
            Emit::Encoded(_) => Vec::new(),
        };
        let position = match &self.reader {
            Some(r) => Some(r.position().ok_or_else(|| {
                EngineError::Checkpoint(format!(
                    "source '{}' cannot resume from a checkpoint (it has no position)",
                    self.name
                ))
            })?),
            None => None,
        };
        if let Some(pos) = &position {
            self.positions.insert(epoch, pos.clone());
        }
        let mut out = StateOut::new(epoch, full);
        let own = SourceState {
            finished,
            wm: self.wm,
            step: self.step,
            position,
        };
        out.put(SOURCE_KEY, own.encode());
        parts.push((self.name.clone(), out));
        Ok(parts)
    }

    /// With checkpoints: commits what became committable, and tells the reader the
    /// newest position of a whole checkpoint.
    fn checkpoint_chores(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        let Some(m) = &self.member else {
            return Ok(());
        };
        match &mut self.emit {
            Emit::Chain(chain) => m.commit_due(|name, records| chain.commit(p, name, records))?,
            Emit::Encoded(_) => m.commit_due(|_, _| Ok(()))?,
        }
        let whole: Vec<u64> = self
            .positions
            .keys()
            .copied()
            .filter(|&e| m.committed(e))
            .collect();
        if let Some(&newest) = whole.last() {
            let pos = self.positions[&newest].clone();
            for e in whole {
                self.positions.remove(&e);
            }
            if let Some(reader) = self.reader.as_mut() {
                guarded(&self.name, || reader.checkpointed(&pos))?;
            }
        }
        Ok(())
    }

    /// The interval passed: what was read so far is this epoch's, and the next starts.
    fn end_epoch(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        let epoch = self.epoch;
        let full = self.member.as_ref().is_some_and(|m| m.full(epoch));
        let started = Instant::now();
        let parts = self.snapshot(p, epoch, full, false)?;
        if let Some(m) = &self.member {
            m.paused(started.elapsed().as_micros());
            m.deliver(epoch, parts)?;
        }
        self.epoch += 1;
        self.epoch_ends = Instant::now() + self.interval;
        // What is read from now on is of the next epoch.
        p.downgrade(time(self.epoch, self.wm, 0, self.step));
        Ok(())
    }

    /// Ended with checkpoints: commits what is due; finishes once the last checkpoint is
    /// whole.
    fn wait_to_end(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        self.checkpoint_chores(p)?;
        if self.member.as_ref().map_or(Ok(true), Member::done)? {
            self.reader = None;
            if let Emit::Chain(chain) = &mut self.emit {
                self.shared.add_metrics(chain.finish()?);
            }
            p.finish();
        } else {
            p.activate_after(TICK);
        }
        Ok(())
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
            if self.restore(p)? {
                self.reader = None;
            }
        }
        self.checkpoint_chores(p)?;
        // One checkpoint at a time: the epoch ends once the one before is whole and its
        // commits made (while sinks commit slowly, epochs grow longer rather than
        // checkpoints pile up).
        let due = self
            .member
            .as_ref()
            .is_some_and(|m| Instant::now() >= self.epoch_ends && m.may_end(self.epoch));
        if due {
            self.end_epoch(p)?;
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
                if let Some(m) = &self.meter {
                    m.add_in(elements.len());
                    m.add_out(elements.len());
                }
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
                }
                // Partial results wait for later bundles while the watermark stays (a
                // bounded source's, all along), no longer than the source reads on.
                let may_hold = read > 0 && !polled.finished && polled.watermark <= self.wm;
                chain.flush_or_hold(p, may_hold)?;
                if read > 0 {
                    self.step += 1;
                }
                (polled, read >= max)
            }
        };
        self.wm = self.wm.max(polled.watermark);
        match (&self.emit, &self.meter) {
            (Emit::Chain(chain), _) => chain.note_watermarks(),
            (Emit::Encoded(_), Some(m)) => m.set_watermarks(i64::MIN, self.wm),
            _ => {}
        }
        if polled.finished || self.wm == END_OF_TIME {
            return self.end(p);
        }
        if let Emit::Chain(chain) = &mut self.emit {
            if self.wm > chain.wm {
                chain.wm = self.wm;
                chain.each(p, |op, cx| op.advance(cx.input_watermark, cx))?;
            }
        }
        p.downgrade(time(self.epoch, self.wm, 0, self.step));
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
        if self.member.as_ref().is_some_and(|m| !m.may_end(self.epoch)) {
            // Its last state waits for the checkpoint before (see `Member::may_end`).
            p.activate_after(TICK);
            return Ok(());
        }
        if let Emit::Chain(chain) = &mut self.emit {
            if chain.wm < END_OF_TIME {
                chain.wm = END_OF_TIME;
                chain.each(p, |op, cx| op.advance(END_OF_TIME, cx))?;
            }
            chain.each(p, |op, cx| op.end_bundle(cx))?;
            chain.flush(p)?;
        }
        if self.member.is_some() {
            let epoch = self.epoch;
            let parts = self.snapshot(p, epoch, true, true)?;
            if let Some(m) = &mut self.member {
                m.finish(epoch, parts)?;
            }
            // Downstream may end the epoch while this source waits for its commits.
            self.epoch += 1;
            p.downgrade(time(self.epoch, END_OF_TIME, 0, self.step));
            return self.wait_to_end(p);
        }
        if let Emit::Chain(chain) = &mut self.emit {
            self.shared.add_metrics(chain.finish()?);
        }
        p.finish();
        Ok(())
    }
}
