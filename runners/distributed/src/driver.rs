//! Engine operators inside a Timely operator: a transform and the stateless transforms
//! fused after it, whose input batches are processed in the order of their times, each
//! after the transforms' watermark (and processing time) reached it; the operator's
//! capabilities follow its output watermark.

use crate::adapter::{processing_time_of, time, watermark_of, Batch, Ports, Time};
use crate::dataflow::{Clock, Setup, Shared};
use crate::wire::{Arrives, Leaves};
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::{Op, OpCx, END_OF_TIME};
use beamline_engine::window::WindowedValue;
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

/// Most elements handed from one transform of a chain to the next at once.
const CHAIN_BATCH: usize = 1024;

/// Encoded bytes of a batch GroupByKey's output decoded at once (then passed down the
/// chain while in cache).
const GROUPS_BYTES: usize = 8 << 10;

/// About how many elements a transform of a chain may emit for one slice of its input:
/// its input is cut into slices of `LINK_OUTPUT / fan-out` elements, so a transform that
/// makes many elements of each (file ranges into lines, lines into words, chunk numbers
/// into generated pairs) never holds a whole batch's output at once.
const LINK_OUTPUT: usize = 16 * CHAIN_BATCH;

/// One transform of a fused chain.
pub(crate) struct Link {
    /// Its engine operator.
    pub op: Box<dyn Op>,
    /// Its name (errors and metrics).
    pub name: String,
}

/// A chain of engine operators driven by one Timely operator: the first reads the inputs,
/// each further one (stateless, one input) reads the one before; the last one's outputs
/// are the operator's.
pub(crate) struct Driver {
    links: Vec<Link>,
    /// Output buffers of every link, one per output tag.
    outs: Vec<Vec<Vec<WindowedValue>>>,
    more: Vec<Vec<WindowedValue>>,
    spare: Vec<Vec<WindowedValue>>,
    /// Per link: elements it emitted, in all (events included).
    emitted: Vec<usize>,
    /// Per link: elements it read, and made of them (its fan-out).
    read: Vec<usize>,
    made: Vec<usize>,
    /// How each input arrives: main, then side inputs.
    arrives: Vec<Arrives>,
    /// How each output of the last link leaves.
    leaves: Vec<Leaves>,
    /// Batches received ahead of the watermark, by time: `(input slot, records)`.
    stash: BTreeMap<Time, Vec<(usize, Batch)>>,
    /// The input watermark.
    wm: i64,
    /// Processing time (ms).
    now: i64,
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
        let n = links.len();
        let mut outs: Vec<Vec<Vec<WindowedValue>>> = vec![vec![Vec::new()]; n];
        if let Some(last) = outs.last_mut() {
            *last = vec![Vec::new(); leaves.len()];
        }
        Driver {
            links,
            outs,
            more: Vec::new(),
            spare: Vec::new(),
            emitted: vec![0; n],
            read: vec![0; n],
            made: vec![0; n],
            arrives,
            leaves,
            stash: BTreeMap::new(),
            wm: i64::MIN,
            now: match clock {
                Clock::Virtual => 0,
                Clock::Wall => wall_clock_ms(),
            },
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
            if now > self.now {
                self.now = now;
                self.each(p, |op, cx| op.on_processing_time(cx))?;
                self.flush(p)?;
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
                let name = &self.links[0].name;
                if let Some(elements) = self.arrives[slot].take(&mut batch, name)? {
                    self.feed(p, slot, elements)?;
                }
            }
            if !sides_done {
                self.side_watermarks(p);
            }
            self.each(p, |op, cx| op.end_bundle(cx))?;
            self.each(p, |op, cx| op.on_processing_time(cx))?;
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
                    loop {
                        let mut batch = Vec::with_capacity(CHAIN_BATCH);
                        output.next_batch(&mut batch, CHAIN_BATCH, GROUPS_BYTES)?;
                        if batch.is_empty() {
                            break;
                        }
                        self.call(p, |op, cx| op.process(0, &mut batch, cx))?;
                    }
                }
                // Every input is complete: timers due now, then the watermark to the end
                // of time (panes and timers fire, windows expire).
                if self.clock == Clock::Virtual {
                    self.now = self.now.max(self.final_processing_time);
                }
                self.each(p, |op, cx| op.on_processing_time(cx))?;
                self.side_watermarks(p);
                if self.wm < END_OF_TIME {
                    self.wm = END_OF_TIME;
                    self.each(p, |op, cx| op.advance(END_OF_TIME, cx))?;
                }
                self.each(p, |op, cx| op.end_bundle(cx))?;
                self.flush(p)?;
                let mut metrics = MetricResults::default();
                for link in &mut self.links {
                    link.op.finish(&link.name, &mut metrics)?;
                }
                self.shared.add_metrics(metrics);
                p.finish();
            }
        }
        Ok(())
    }

    /// The watermark of the transforms after the first: the first one's output watermark.
    fn tail_watermark(&self) -> i64 {
        self.wm.min(self.links[0].op.hold())
    }

    /// Moves the capabilities to `t`, or to the chain's holds when earlier (its output
    /// watermark); partial results folded so far go out first, at the time they were
    /// made.
    fn follow(&mut self, p: &mut Ports<'_>, t: Time) -> Result<(), EngineError> {
        let hold = self
            .links
            .iter()
            .map(|l| l.op.hold())
            .min()
            .unwrap_or(END_OF_TIME);
        let target = if hold < watermark_of(&t) {
            time(hold, processing_time_of(&t), (t.1).1)
        } else {
            t
        };
        if p.time().is_some_and(|now| now < target) {
            self.flush(p)?;
            p.downgrade(target);
        }
        Ok(())
    }

    /// Moves processing time, then the watermark, to those of `t`.
    fn move_to(&mut self, p: &mut Ports<'_>, t: Time) -> Result<(), EngineError> {
        let pt = processing_time_of(&t);
        if self.clock == Clock::Virtual && pt > self.now {
            self.now = pt;
            self.each(p, |op, cx| op.on_processing_time(cx))?;
        }
        self.side_watermarks(p);
        let wm = watermark_of(&t);
        if wm > self.wm {
            self.wm = wm;
            self.each(p, |op, cx| op.advance(cx.input_watermark, cx))?;
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
        self.links[0].op.side_watermarks(&wms);
    }

    /// Hands `elements` to input `slot` of the first transform, in slices small enough
    /// for what it makes of them (see [`LINK_OUTPUT`]).
    fn feed(
        &mut self,
        p: &mut Ports<'_>,
        slot: usize,
        elements: Vec<WindowedValue>,
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        self.pass(0, slot, out_wm, p, elements)
    }

    /// How many input elements link `i` gets at once: one until its fan-out is known.
    fn slice_for(&self, i: usize) -> usize {
        if self.read[i] == 0 {
            return 1;
        }
        let fan_out = self.made[i].div_ceil(self.read[i]).max(1);
        (LINK_OUTPUT / fan_out).clamp(1, LINK_OUTPUT)
    }

    /// Hands `batch` to input `slot` of link `i` (and what it makes down the chain), in
    /// slices of [`Driver::slice_for`]; slicing copies the input, so it happens where the
    /// elements are fewest (before a transform that multiplies them).
    fn pass(
        &mut self,
        i: usize,
        slot: usize,
        out_wm: i64,
        p: &mut Ports<'_>,
        mut batch: Vec<WindowedValue>,
    ) -> Result<(), EngineError> {
        if batch.len() <= self.slice_for(i) {
            self.pass_slice(i, slot, out_wm, p, &mut batch)?;
            // The emptied buffer keeps its room for the next output of the link before.
            if i > 0 && self.outs[i - 1][0].capacity() == 0 {
                self.outs[i - 1][0] = batch;
            }
            return Ok(());
        }
        let mut rest = batch.into_iter();
        loop {
            let mut part: Vec<WindowedValue> = rest.by_ref().take(self.slice_for(i)).collect();
            if part.is_empty() {
                return Ok(());
            }
            self.pass_slice(i, slot, out_wm, p, &mut part)?;
        }
    }

    /// Hands `part` to link `i`, counting what it makes of it.
    fn pass_slice(
        &mut self,
        i: usize,
        slot: usize,
        out_wm: i64,
        p: &mut Ports<'_>,
        part: &mut Vec<WindowedValue>,
    ) -> Result<(), EngineError> {
        let before = self.emitted[i];
        self.read[i] += part.len();
        self.run(i, out_wm, p, &mut |op, cx| op.process(slot, part, cx))?;
        self.made[i] += self.emitted[i] - before;
        Ok(())
    }

    /// Calls the first transform, passes what it emitted down the chain, and sends what
    /// comes out of the last one.
    fn call(
        &mut self,
        p: &mut Ports<'_>,
        mut f: impl FnMut(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        self.run(0, out_wm, p, &mut f)
    }

    /// Calls every transform in turn (an event: bundle end, watermark, processing time),
    /// each one's output passing down the chain before the next is called.
    fn each(
        &mut self,
        p: &mut Ports<'_>,
        mut f: impl FnMut(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        for i in 0..self.links.len() {
            self.run(i, out_wm, p, &mut f)?;
        }
        Ok(())
    }

    /// Calls link `i` with `f`, then link `i + 1` with what it emitted, and so on; what
    /// the last one emits is sent.
    fn run(
        &mut self,
        i: usize,
        out_wm: i64,
        p: &mut Ports<'_>,
        f: &mut dyn FnMut(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let wm = if i == 0 {
            self.wm
        } else {
            self.tail_watermark()
        };
        let link = &mut self.links[i];
        f(
            &mut *link.op,
            &mut OpCx {
                out: &mut self.outs[i],
                more: &mut self.more,
                spare: &mut self.spare,
                now: self.now,
                input_watermark: wm,
                output_watermark: out_wm,
                name: &link.name,
            },
        )?;
        self.emitted[i] += self.outs[i].iter().map(Vec::len).sum::<usize>()
            + self.more.iter().map(Vec::len).sum::<usize>();
        if i + 1 == self.links.len() {
            return self.emit(p);
        }
        let mut batch = std::mem::take(&mut self.outs[i][0]);
        for more in self.more.drain(..) {
            batch.extend(more);
        }
        if batch.is_empty() {
            self.outs[i][0] = batch;
            return Ok(());
        }
        self.pass(i + 1, 0, out_wm, p, batch)
    }

    /// Sends what the last transform emitted.
    fn emit(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        let last = self.outs.len() - 1;
        for (tag, elements) in self.outs[last].iter_mut().enumerate() {
            if tag == 0 {
                for more in self.more.drain(..) {
                    elements.extend(more);
                }
            }
            if elements.is_empty() {
                continue;
            }
            let mut batch = Vec::new();
            self.leaves[tag].put(elements, &mut batch)?;
            p.give(tag, &mut batch);
        }
        Ok(())
    }

    /// Sends the pre-combined partial results of the bundle that ended.
    fn flush(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        for (tag, leaves) in self.leaves.iter_mut().enumerate() {
            let mut batch = Vec::new();
            leaves.flush(&mut batch)?;
            p.give(tag, &mut batch);
        }
        Ok(())
    }
}
