//! Engine operators inside a Timely operator: a transform and the stateless transforms
//! fused after it, whose input batches are processed in the order of their times, each
//! after the transforms' watermark (and processing time) reached it; the operator's
//! capabilities follow its output watermark. With checkpoints, an epoch's input is
//! processed only once every input passed the epoch before, and the state between two
//! epochs is the operator's part of a checkpoint.

use crate::adapter::{
    epoch_of, join, processing_time_of, step_of, time, watermark_of, Batch, Front, Ports, Time,
};
use crate::chain::{Chain, Link};
use crate::dataflow::{Clock, Setup, Shared};
use crate::member::Member;
use crate::wire::{Arrives, GroupingOutput, Leaves};
use beamline_engine::checkpoint::StateOut;
use beamline_engine::operators::END_OF_TIME;
use beamline_engine::EngineError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an operator looks at the wall clock while it waits (processing-time timers).
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Milliseconds since the Unix epoch, now.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Encoded bytes of a batch GroupByKey's output decoded at once (then passed down the
/// chain while in cache).
const GROUPS_BYTES: usize = 8 << 10;

/// How long an operator runs before the worker's other operators get their turn.
const TURN: Duration = Duration::from_millis(10);

/// An operator's turn: over after [`TURN`], once it did some work.
struct Turn {
    started: Instant,
    worked: bool,
}

impl Turn {
    fn new() -> Self {
        Turn {
            started: Instant::now(),
            worked: false,
        }
    }

    fn over(&self) -> bool {
        self.worked && self.started.elapsed() >= TURN
    }
}

/// About how long a piece of an eager driver's input takes (between looks at the clock).
const PIECE_TIME: Duration = Duration::from_millis(1);

/// Most records in one piece.
const MAX_PIECE: usize = 1 << 16;

/// The name the driver's own state is saved under: its first transform's, with this.
const DRIVER_STATE: &str = "\u{0}driver";

/// A chain of engine operators driven by one Timely operator: the first reads the inputs,
/// each further one (stateless, one input) reads the one before; the last one's outputs
/// are the operator's. Input is processed in the order of its times, each time's batches
/// as one bundle.
pub(crate) struct Driver {
    /// The transforms.
    pub(crate) chain: Chain,
    /// How each input arrives: main, then side inputs.
    arrives: Vec<Arrives>,
    /// Batches received ahead of the watermark, by time: `(input slot, records)`.
    stash: BTreeMap<Time, Vec<(usize, Batch)>>,
    clock: Clock,
    /// Processing time once the input is complete, under virtual time.
    final_processing_time: i64,
    /// Takes input at the frontier as it arrives, not only once the frontier passed it:
    /// for transforms whose results do not depend on how their input is split into
    /// bundles (all but groupings whose triggers count elements or fire late panes per
    /// bundle). Without it, a bounded pipeline's whole input waits at every exchange.
    eager: bool,
    /// The checkpoint epoch being processed (0 without checkpoints).
    epoch: u64,
    /// Its part in the worker's checkpoints, and whether it restored its state.
    member: Option<Member>,
    started: bool,
    /// A batch grouping's output being read down the chain (over several turns).
    grouped: Option<GroupingOutput>,
    /// Records of the main input fed at once when eager (see [`Driver::feed_in_pieces`]).
    piece: usize,
    /// This worker (the instance of transforms that commit).
    worker: usize,
    shared: Arc<Shared>,
}

impl Driver {
    /// Drives `links` reading inputs that arrive as `arrives` says (main, then side
    /// inputs) and writing outputs as `leaves` says; `member` is its part in checkpoints.
    pub(crate) fn new(
        links: Vec<Link>,
        arrives: Vec<Arrives>,
        leaves: Vec<Leaves>,
        eager: bool,
        setup: &Setup,
        member: Option<Member>,
        shared: Arc<Shared>,
    ) -> Self {
        let clock = setup.clock;
        let now = match clock {
            Clock::Virtual => 0,
            Clock::Wall => wall_clock_ms(),
        };
        Driver {
            chain: Chain::new(links, leaves, now).holding(setup.batch),
            arrives,
            stash: BTreeMap::new(),
            clock,
            final_processing_time: setup.final_processing_time,
            eager,
            epoch: member.as_ref().map_or(0, Member::first_epoch),
            member,
            started: false,
            grouped: None,
            piece: 1,
            worker: setup.worker,
            shared,
        }
    }

    /// Counts what its chain reads and emits into `meter`.
    pub(crate) fn metered(&mut self, meter: std::sync::Arc<crate::progress::ChainMeter>) {
        self.chain.metered(meter);
    }

    /// Runs what is ready; a failure ends this worker process (see [`Shared::fail`]).
    pub(crate) fn activate(&mut self, p: &mut Ports<'_>) {
        if p.finished() {
            for slot in 0..p.inputs() {
                p.pull(slot, &mut |_, data| data.clear());
            }
            return;
        }
        let r = if self.member.as_ref().is_some_and(Member::finishing) {
            self.wait_to_end(p)
        } else {
            self.step(p)
        };
        if let Err(e) = r {
            self.shared.fail(e);
        }
        self.chain.note_watermarks();
    }

    /// With checkpoints: restores the state the checkpoint restored saved, once; then
    /// commits what became committable.
    fn checkpoint_chores(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        if !self.started {
            self.started = true;
            p.downgrade(time(self.epoch, i64::MIN, 0, 0));
            self.chain.enable_commits(self.worker);
            let own = format!("{}{DRIVER_STATE}", self.chain.links[0].name);
            if let Some(state) = member.restored(&own) {
                if let Some(wm) = state.get(b"")? {
                    let wm = beamline_engine::checkpoint::codec::Dec::new(&wm, "a driver").i64()?;
                    self.chain.wm = self.chain.wm.max(wm);
                }
            }
            self.chain.restore(p, &|name| member.restored(name))?;
            member.done_restoring();
        }
        let chain = &mut self.chain;
        member.commit_due(|name, records| chain.commit(p, name, records))
    }

    fn step(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        self.checkpoint_chores(p)?;
        for slot in 0..p.inputs() {
            let stash = &mut self.stash;
            p.pull(slot, &mut |t, data| {
                stash
                    .entry(t)
                    .or_default()
                    .push((slot, std::mem::take(data)))
            });
        }
        if self.clock == Clock::Wall {
            let now = wall_clock_ms();
            if now > self.chain.now {
                self.chain.now = now;
                self.chain.each(p, |op, cx| op.on_processing_time(cx))?;
                self.chain.flush(p)?;
            }
        }
        let front = p.frontier_of_all();
        loop {
            if self.process_ready(p, &front)? {
                // Its turn is over: the rest after the worker's other operators had theirs
                // (a receiver of this worker's exchange, above all, which frees the
                // network's buffers as it reads them).
                p.activate_after(Duration::ZERO);
                return Ok(());
            }
            // The epoch is over once every input passed it and its input is processed;
            // one epoch at a time, each a checkpoint.
            let later = if front.is_empty() {
                self.stash.keys().next().map(epoch_of)
            } else {
                front.least().map(|t| epoch_of(&t))
            };
            let over = self.member.as_ref().is_some_and(|m| m.may_end(self.epoch))
                && front.past_epoch(self.epoch)
                && later.is_some_and(|e| e > self.epoch)
                && self
                    .stash
                    .keys()
                    .next()
                    .is_none_or(|t| epoch_of(t) > self.epoch);
            if !over {
                break;
            }
            self.end_epoch(p)?;
        }
        match front.least() {
            Some(f) => {
                self.move_to(p, f, &front)?;
                self.follow(p, f, &front)?;
                if self.chain.held_too_long() {
                    self.chain.flush(p)?;
                }
                if self.clock == Clock::Wall {
                    p.activate_after(TICK);
                } else if let (Some(d), true) = (self.chain.hold_for, self.chain.partials() > 0) {
                    // Held partial results go out in time even if no input comes.
                    p.activate_after(d);
                }
            }
            None => self.end(p)?,
        }
        Ok(())
    }

    /// Processes the batches of this epoch whose time every input passed (or reached,
    /// when eager), in time order, each time's batches as one bundle (from every upstream
    /// worker), side inputs first.
    ///
    /// Returns whether it stopped with ready input left, its turn used up ([`TURN`]): the
    /// worker's other operators run before the rest (an eager driver's one time may be
    /// cut into several bundles).
    fn process_ready(&mut self, p: &mut Ports<'_>, front: &Front) -> Result<bool, EngineError> {
        let mut turn = Turn::new();
        while let Some((&t, _)) = self.stash.first_key_value() {
            if epoch_of(&t) > self.epoch || !front.passed(&t, self.eager) {
                break;
            }
            if turn.over() {
                return Ok(true);
            }
            // Side inputs' watermarks still count this time's side batches.
            self.move_to(p, t, front)?;
            // What this time's batches make travels at this time (or what holds it).
            self.follow(p, t, front)?;
            let (_, mut batches) = self.stash.pop_first().expect("a first entry");
            batches.sort_by_key(|(slot, _)| if *slot == 0 { usize::MAX } else { *slot });
            let mut sides_done = false;
            let mut left = None;
            let mut batches = batches.into_iter();
            while let Some((slot, mut batch)) = batches.next() {
                if slot == 0 && !sides_done {
                    sides_done = true;
                    self.side_watermarks(p);
                }
                if self.eager && slot == 0 {
                    if let Some(rest) = self.feed_in_pieces(p, batch, &mut turn)? {
                        left = Some(std::iter::once((0, rest)).chain(batches).collect());
                        break;
                    }
                    continue;
                }
                let name = &self.chain.links[0].name;
                if let Some(elements) = self.arrives[slot].take(&mut batch, name)? {
                    self.chain.feed(p, slot, elements)?;
                }
            }
            if !sides_done {
                self.side_watermarks(p);
            }
            self.chain.each(p, |op, cx| op.end_bundle(cx))?;
            self.chain.each(p, |op, cx| op.on_processing_time(cx))?;
            turn.worked = true;
            if let Some(left) = left {
                // Later arrivals at `t` queue behind what is left.
                self.stash.insert(t, left);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Feeds main-input `batch` down the chain a piece at a time (pieces sized to take
    /// about a millisecond each); returns what is left once `turn` is over.
    fn feed_in_pieces(
        &mut self,
        p: &mut Ports<'_>,
        mut batch: Batch,
        turn: &mut Turn,
    ) -> Result<Option<Batch>, EngineError> {
        let mut at = 0;
        while at < batch.len() {
            if turn.over() {
                batch.drain(..at);
                return Ok(Some(batch));
            }
            let n = self.piece.min(batch.len() - at);
            let mut piece: Batch = if at == 0 && n == batch.len() {
                std::mem::take(&mut batch)
            } else {
                batch[at..at + n].iter_mut().map(std::mem::take).collect()
            };
            at += n;
            let started = Instant::now();
            let name = &self.chain.links[0].name;
            if let Some(elements) = self.arrives[0].take(&mut piece, name)? {
                self.chain.feed(p, 0, elements)?;
            }
            let took = started.elapsed();
            if took < PIECE_TIME / 2 {
                self.piece = (self.piece * 2).min(MAX_PIECE);
            } else if took > PIECE_TIME * 2 {
                self.piece = (self.piece / 2).max(1);
            }
            turn.worked = true;
        }
        Ok(None)
    }

    /// The operator's state for checkpoint `epoch` (all of it when `full`).
    fn snapshot(
        &mut self,
        p: &mut Ports<'_>,
        epoch: u64,
        full: bool,
        last: bool,
    ) -> Result<Vec<(String, StateOut)>, EngineError> {
        let mut parts = self.chain.snapshot(p, epoch, full, last)?;
        let mut e = beamline_engine::checkpoint::codec::Enc::new();
        e.i64(self.chain.wm);
        let mut own = StateOut::new(epoch, full);
        own.put(b"", e.finish());
        parts.push((format!("{}{DRIVER_STATE}", self.chain.links[0].name), own));
        Ok(parts)
    }

    /// Every input passed the epoch: its state is the operator's part of that
    /// checkpoint; then the next epoch starts.
    fn end_epoch(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        let epoch = self.epoch;
        let full = self.member.as_ref().is_some_and(|m| m.full(epoch));
        self.chain.flush(p)?;
        let started = std::time::Instant::now();
        let parts = self.snapshot(p, epoch, full, false)?;
        if let Some(m) = &self.member {
            m.paused(started.elapsed().as_micros());
            m.deliver(epoch, parts)?;
        }
        self.epoch += 1;
        p.downgrade(time(self.epoch, i64::MIN, 0, 0));
        Ok(())
    }

    /// Every input is complete: the operator's last output, then (with checkpoints) its
    /// last state, and it ends once that checkpoint is whole.
    fn end(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        if self.member.as_ref().is_some_and(|m| !m.may_end(self.epoch)) {
            // Its last state waits for the checkpoint before (see `Member::may_end`).
            p.activate_after(TICK);
            return Ok(());
        }
        // A batch GroupByKey's input is complete: its groups go down the chain, a batch
        // at a time, in turns.
        if let Some(grouper) = self.arrives.first_mut().and_then(Arrives::grouped) {
            self.grouped = Some(grouper.into_output());
        }
        if let Some(output) = &mut self.grouped {
            let mut turn = Turn::new();
            let mut batch = Vec::new();
            loop {
                if turn.over() {
                    p.activate_after(Duration::ZERO);
                    return Ok(());
                }
                output.next_batch(&mut batch, usize::MAX, GROUPS_BYTES)?;
                if batch.is_empty() {
                    break;
                }
                self.chain.call(p, |op, cx| op.process(0, &mut batch, cx))?;
                batch.clear();
                turn.worked = true;
            }
            self.grouped = None;
        }
        // Every input is complete: timers due now, then the watermark to the end of time
        // (panes and timers fire, windows expire).
        if self.clock == Clock::Virtual {
            self.chain.now = self.chain.now.max(self.final_processing_time);
        }
        self.chain.each(p, |op, cx| op.on_processing_time(cx))?;
        self.side_watermarks(p);
        if self.chain.wm < END_OF_TIME {
            self.chain.wm = END_OF_TIME;
            self.chain.each(p, |op, cx| op.advance(END_OF_TIME, cx))?;
        }
        self.chain.each(p, |op, cx| op.end_bundle(cx))?;
        self.chain.flush(p)?;
        if self.member.is_some() {
            let epoch = self.epoch;
            let parts = self.snapshot(p, epoch, true, true)?;
            if let Some(m) = &mut self.member {
                m.finish(epoch, parts)?;
            }
            // Downstream may end the epoch while this operator waits for its commits.
            self.epoch += 1;
            p.downgrade(time(self.epoch, i64::MIN, 0, 0));
            return self.wait_to_end(p);
        }
        self.shared.add_metrics(self.chain.finish()?);
        p.finish();
        Ok(())
    }

    /// Ended with checkpoints: commits what is due; finishes once the last checkpoint is
    /// whole.
    fn wait_to_end(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        self.checkpoint_chores(p)?;
        let done = self.member.as_ref().map_or(Ok(true), Member::done)?;
        if done {
            self.shared.add_metrics(self.chain.finish()?);
            p.finish();
        } else {
            p.activate_after(TICK);
        }
        Ok(())
    }

    /// Moves the capabilities to `t`, or to the chain's holds or the input watermark when
    /// earlier (its output watermark), in this epoch; partial results folded so far go
    /// out first, at the time they were made.
    fn follow(&mut self, p: &mut Ports<'_>, t: Time, front: &Front) -> Result<(), EngineError> {
        let wm = watermark_of(&t)
            .min(self.chain.hold())
            .min(self.input_watermark(front));
        let target = time(self.epoch, wm, processing_time_of(&t), step_of(&t));
        if let Some(now) = p.time().filter(|now| *now != join(now, &target)) {
            // Partial results may wait for later bundles while the watermark and
            // processing time stay (a batch job's, all along).
            let may_hold = watermark_of(&now) == watermark_of(&target)
                && processing_time_of(&now) == processing_time_of(&target);
            self.chain.flush_or_hold(p, may_hold)?;
            p.downgrade(target);
        }
        Ok(())
    }

    /// Moves processing time, then the watermark, to those of `t` (the watermark no
    /// further than the inputs').
    fn move_to(&mut self, p: &mut Ports<'_>, t: Time, front: &Front) -> Result<(), EngineError> {
        let pt = processing_time_of(&t);
        if self.clock == Clock::Virtual && pt > self.chain.now {
            self.chain.now = pt;
            self.chain.each(p, |op, cx| op.on_processing_time(cx))?;
        }
        self.side_watermarks(p);
        let wm = watermark_of(&t).min(self.input_watermark(front));
        if wm > self.chain.wm {
            self.chain.wm = wm;
            self.chain
                .each(p, |op, cx| op.advance(cx.input_watermark, cx))?;
        }
        Ok(())
    }

    /// The input watermark: the inputs' frontiers, and batches of later epochs received
    /// ahead (they may be older than the frontiers).
    fn input_watermark(&self, front: &Front) -> i64 {
        let ahead = self
            .stash
            .range(time(self.epoch + 1, i64::MIN, 0, 0)..)
            .map(|(t, _)| watermark_of(t))
            .min();
        front
            .watermark()
            .unwrap_or(END_OF_TIME)
            .min(ahead.unwrap_or(END_OF_TIME))
    }

    /// Tells the first transform how far each side input is complete: its frontier, or
    /// the earliest of its batches still waiting.
    fn side_watermarks(&mut self, p: &Ports<'_>) {
        if self.arrives.len() < 2 {
            return;
        }
        let wms: Vec<i64> = (1..self.arrives.len())
            .map(|slot| {
                let waiting = self
                    .stash
                    .iter()
                    .find(|(_, batches)| batches.iter().any(|(s, _)| *s == slot))
                    .map_or(END_OF_TIME, |(t, _)| watermark_of(t));
                p.frontier(slot)
                    .watermark()
                    .unwrap_or(END_OF_TIME)
                    .min(waiting)
            })
            .collect();
        self.chain.links[0].op.side_watermarks(&wms);
    }
}
