//! Engine operators inside a Timely operator: a transform and the stateless transforms
//! fused after it, whose input batches are processed in the order of their times, each
//! after the transforms' watermark (and processing time) reached it; the operator's
//! capabilities follow its output watermark.

use crate::adapter::{processing_time_of, time, watermark_of, Batch, Ports, Time};
use crate::chain::{Chain, Link};
use crate::dataflow::{Clock, Setup, Shared};
use crate::wire::{Arrives, Leaves};
use beamline_engine::operators::END_OF_TIME;
use beamline_engine::EngineError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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

/// A chain of engine operators driven by one Timely operator: the first reads the inputs,
/// each further one (stateless, one input) reads the one before; the last one's outputs
/// are the operator's. Input is processed in the order of its times, each time's batches
/// as one bundle.
pub(crate) struct Driver {
    /// The transforms.
    chain: Chain,
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
    shared: Arc<Shared>,
}

impl Driver {
    /// Drives `links` reading inputs that arrive as `arrives` says (main, then side
    /// inputs) and writing outputs as `leaves` says.
    pub(crate) fn new(
        links: Vec<Link>,
        arrives: Vec<Arrives>,
        leaves: Vec<Leaves>,
        eager: bool,
        setup: &Setup,
        shared: Arc<Shared>,
    ) -> Self {
        let clock = setup.clock;
        let now = match clock {
            Clock::Virtual => 0,
            Clock::Wall => wall_clock_ms(),
        };
        Driver {
            chain: Chain::new(links, leaves, now),
            arrives,
            stash: BTreeMap::new(),
            clock,
            final_processing_time: setup.final_processing_time,
            eager,
            shared,
        }
    }

    /// Runs what is ready; a failure ends this worker process (see [`Shared::fail`]).
    pub(crate) fn activate(&mut self, p: &mut Ports<'_>) {
        if p.finished() {
            for slot in 0..p.inputs() {
                p.pull(slot, &mut |_, data| data.clear());
            }
            return;
        }
        if let Err(e) = self.step(p) {
            self.shared.fail(e);
        }
    }

    fn step(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
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
        let frontier = p.frontier_of_all();
        // Everything before the frontier is complete (more may come at the frontier
        // itself): process it in time order, each time's batches as one bundle (from
        // every upstream worker), side inputs first. An eager chain also takes what
        // arrived at the frontier, as it arrives.
        while let Some((&t, _)) = self.stash.first_key_value() {
            if frontier.is_some_and(|f| t > f || (t == f && !self.eager)) {
                break;
            }
            // Side inputs' watermarks still count this time's side batches.
            self.move_to(p, t)?;
            // What this time's batches make travels at this time (or what holds it).
            self.follow(p, t)?;
            let (_, mut batches) = self.stash.pop_first().expect("a first entry");
            batches.sort_by_key(|(slot, _)| if *slot == 0 { usize::MAX } else { *slot });
            let mut sides_done = false;
            for (slot, mut batch) in batches {
                if slot == 0 && !sides_done {
                    sides_done = true;
                    self.side_watermarks(p);
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
        }
        match frontier {
            Some(f) => {
                self.move_to(p, f)?;
                self.follow(p, f)?;
                if self.clock == Clock::Wall {
                    p.activate_after(TICK);
                }
            }
            None => {
                // A batch GroupByKey's input is complete: its groups go down the chain,
                // a batch at a time.
                if let Some(grouper) = self.arrives.first_mut().and_then(Arrives::grouped) {
                    let mut output = grouper.into_output();
                    let mut batch = Vec::new();
                    loop {
                        batch.clear();
                        output.next_batch(&mut batch, usize::MAX, GROUPS_BYTES)?;
                        if batch.is_empty() {
                            break;
                        }
                        self.chain.call(p, |op, cx| op.process(0, &mut batch, cx))?;
                    }
                }
                // Every input is complete: timers due now, then the watermark to the end
                // of time (panes and timers fire, windows expire).
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
                self.shared.add_metrics(self.chain.finish()?);
                p.finish();
            }
        }
        Ok(())
    }

    /// Moves the capabilities to `t`, or to the chain's holds when earlier (its output
    /// watermark); partial results folded so far go out first, at the time they were
    /// made.
    fn follow(&mut self, p: &mut Ports<'_>, t: Time) -> Result<(), EngineError> {
        let hold = self.chain.hold();
        let target = if hold < watermark_of(&t) {
            time(hold, processing_time_of(&t), (t.1).1)
        } else {
            t
        };
        if p.time().is_some_and(|now| now < target) {
            self.chain.flush(p)?;
            p.downgrade(target);
        }
        Ok(())
    }

    /// Moves processing time, then the watermark, to those of `t`.
    fn move_to(&mut self, p: &mut Ports<'_>, t: Time) -> Result<(), EngineError> {
        let pt = processing_time_of(&t);
        if self.clock == Clock::Virtual && pt > self.chain.now {
            self.chain.now = pt;
            self.chain.each(p, |op, cx| op.on_processing_time(cx))?;
        }
        self.side_watermarks(p);
        let wm = watermark_of(&t);
        if wm > self.chain.wm {
            self.chain.wm = wm;
            self.chain
                .each(p, |op, cx| op.advance(cx.input_watermark, cx))?;
        }
        Ok(())
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
                    .map_or(END_OF_TIME, |f| watermark_of(&f))
                    .min(waiting)
            })
            .collect();
        self.chain.links[0].op.side_watermarks(&wms);
    }
}
