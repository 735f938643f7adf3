//! A fused chain of engine operators inside one Timely operator: elements go from each
//! transform to the next in slices sized by their fan-out, and what the last one emits
//! leaves encoded, folded into partial results or written into grouping runs.

use crate::adapter::{watermark_of, Ports};
use crate::progress::ChainMeter;
use crate::wire::Leaves;
use beamline_engine::checkpoint::{NodeState, StateOut};
use beamline_engine::metrics::MetricResults;
use beamline_engine::operators::{Op, OpCx, END_OF_TIME};
use beamline_engine::window::WindowedValue;
use beamline_engine::EngineError;

/// About how many elements a transform of a chain may emit for one slice of its input:
/// its input is cut into slices of `LINK_OUTPUT / fan-out` elements, so a transform that
/// makes many elements of each (file ranges into lines, lines into words, chunk numbers
/// into generated pairs) never holds a whole batch's output at once, and the slices stay
/// in cache on their way down the chain.
const LINK_OUTPUT: usize = 2048;

/// One transform of a fused chain.
pub(crate) struct Link {
    /// Its engine operator.
    pub op: Box<dyn Op>,
    /// Its name (errors and metrics).
    pub name: String,
}

/// The transforms of a fused chain and their buffers.
pub(crate) struct Chain {
    pub(crate) links: Vec<Link>,
    /// Output buffers of every link, one per output tag.
    outs: Vec<Vec<Vec<WindowedValue>>>,
    more: Vec<Vec<WindowedValue>>,
    spare: Vec<Vec<WindowedValue>>,
    /// Per link: elements it emitted, in all (events included).
    emitted: Vec<usize>,
    /// Per link: elements it read, and made of them (its fan-out).
    read: Vec<usize>,
    made: Vec<usize>,
    /// How each output of the last link leaves.
    leaves: Vec<Leaves>,
    /// An emptied input buffer, for the next input ([`Chain::input_buffer`]).
    input: Vec<WindowedValue>,
    /// Where its counts go (live progress).
    meter: Option<std::sync::Arc<ChainMeter>>,
    /// The input watermark.
    pub(crate) wm: i64,
    /// Processing time (ms).
    pub(crate) now: i64,
    /// Where checkpoint entries past memory go (under a memory budget).
    pub(crate) checkpoint_overflow: Option<(std::path::PathBuf, usize)>,
    /// When it last sent its partial results.
    flushed: std::time::Instant,
    /// How long it holds partial results at most ([`HOLD_PARTIALS_FOR`]; no limit in a
    /// batch job, whose groupings wait for their whole input anyway).
    pub(crate) hold_for: Option<std::time::Duration>,
    /// An emptied buffer of records to send (keeps its room between sends).
    sending: crate::adapter::Batch,
}

/// Partial results a chain holds across bundles at most before sending them.
const HELD_PARTIALS: usize = 1 << 18;

/// How long a chain holds partial results at most before sending them.
pub(crate) const HOLD_PARTIALS_FOR: std::time::Duration = std::time::Duration::from_millis(100);

impl Chain {
    /// Runs `links` (at least one) whose last one's outputs leave as `leaves` say, at
    /// processing time `now`.
    pub(crate) fn new(links: Vec<Link>, leaves: Vec<Leaves>, now: i64) -> Self {
        let n = links.len();
        let mut outs: Vec<Vec<Vec<WindowedValue>>> = vec![vec![Vec::new()]; n];
        if let Some(last) = outs.last_mut() {
            *last = vec![Vec::new(); leaves.len()];
        }
        Chain {
            links,
            outs,
            more: Vec::new(),
            spare: Vec::new(),
            emitted: vec![0; n],
            read: vec![0; n],
            made: vec![0; n],
            leaves,
            input: Vec::new(),
            meter: None,
            wm: i64::MIN,
            now,
            checkpoint_overflow: None,
            flushed: std::time::Instant::now(),
            hold_for: Some(HOLD_PARTIALS_FOR),
            sending: Vec::new(),
        }
    }

    /// Counts what it reads and emits into `meter`.
    pub(crate) fn metered(&mut self, meter: std::sync::Arc<ChainMeter>) {
        self.meter = Some(meter);
    }

    /// Notes its watermarks in its meter (input, and the least hold as output).
    pub(crate) fn note_watermarks(&self) {
        if let Some(m) = &self.meter {
            m.set_watermarks(self.wm, self.wm.min(self.hold()));
        }
    }

    /// An empty buffer for the next input, with the room of an earlier one (a source
    /// reads into it instead of growing a new one by copying).
    pub(crate) fn input_buffer(&mut self) -> Vec<WindowedValue> {
        std::mem::take(&mut self.input)
    }

    /// The earliest hold of its transforms (their output watermark).
    pub(crate) fn hold(&self) -> i64 {
        self.links
            .iter()
            .map(|l| l.op.hold())
            .min()
            .unwrap_or(END_OF_TIME)
    }

    /// Ends every transform, returning their metrics.
    ///
    /// # Errors
    /// A transform whose teardown fails.
    pub(crate) fn finish(&mut self) -> Result<MetricResults, EngineError> {
        let mut metrics = MetricResults::default();
        for link in &mut self.links {
            link.op.finish(&link.name, &mut metrics)?;
        }
        Ok(metrics)
    }

    /// The watermark of the transforms after the first: the first one's output watermark.
    fn tail_watermark(&self) -> i64 {
        self.wm.min(self.links[0].op.hold())
    }

    /// Hands `elements` to input `slot` of the first transform, in slices small enough
    /// for what it makes of them (see [`LINK_OUTPUT`]).
    pub(crate) fn feed(
        &mut self,
        p: &mut Ports<'_>,
        slot: usize,
        elements: Vec<WindowedValue>,
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        if let (Some(m), 0) = (&self.meter, slot) {
            m.add_in(elements.len());
        }
        self.pass(0, slot, out_wm, p, elements)
    }

    /// How many input elements link `i` gets at once: one until its fan-out is known.
    fn slice_for(&self, i: usize) -> usize {
        if self.read[i] == 0 {
            return 1;
        }
        if self.made[i] <= self.read[i] {
            // It makes no more than it reads: no need to cut its input (nor to copy it).
            return usize::MAX;
        }
        let fan_out = self.made[i].div_ceil(self.read[i]);
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
            } else if i == 0 && batch.capacity() > self.input.capacity() {
                self.input = batch;
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
    pub(crate) fn call(
        &mut self,
        p: &mut Ports<'_>,
        mut f: impl FnMut(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        self.run(0, out_wm, p, &mut f)
    }

    /// Calls every transform in turn (an event: bundle end, watermark, processing time),
    /// each one's output passing down the chain before the next is called.
    pub(crate) fn each(
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
            if let Some(m) = &self.meter {
                m.add_out(elements.len());
            }
            self.leaves[tag].put(elements, &mut self.sending)?;
            p.give(tag, &mut self.sending);
        }
        Ok(())
    }

    /// Tells every transform the job takes checkpoints, as instance `instance`.
    pub(crate) fn enable_commits(&mut self, instance: usize) {
        for link in &mut self.links {
            link.op.enable_commits(instance);
        }
    }

    /// Saves every transform's state for checkpoint `id` (all of it when `full`; `last`
    /// when the chain's input ended); what they emit meanwhile goes down the chain and
    /// out.
    ///
    /// # Errors
    /// A transform that cannot be checkpointed or whose state cannot be saved.
    pub(crate) fn snapshot(
        &mut self,
        p: &mut Ports<'_>,
        id: u64,
        full: bool,
        last: bool,
    ) -> Result<Vec<(String, StateOut)>, EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        let mut parts = Vec::with_capacity(self.links.len());
        for i in 0..self.links.len() {
            let mut out = StateOut::new(id, full).with_last(last);
            if let Some((dir, limit)) = &self.checkpoint_overflow {
                out = out.overflow_into(dir, *limit);
            }
            self.run(i, out_wm, p, &mut |op, cx| op.snapshot(&mut out, cx))?;
            parts.push((self.links[i].name.clone(), out));
        }
        self.flush(p)?;
        Ok(parts)
    }

    /// Puts back what `state` says each transform saved, then commits (again) what the
    /// checkpoint left to commit.
    ///
    /// # Errors
    /// Corrupt or incompatible state; a commit that fails.
    pub(crate) fn restore(
        &mut self,
        p: &mut Ports<'_>,
        state: &dyn Fn(&str) -> Option<NodeState>,
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        for i in 0..self.links.len() {
            if let Some(s) = state(&self.links[i].name) {
                self.run(i, out_wm, p, &mut |op, cx| op.restore(&s, cx))?;
                if !s.commits.is_empty() {
                    self.run(i, out_wm, p, &mut |op, cx| op.commit(&s.commits, cx))?;
                }
            }
        }
        Ok(())
    }

    /// Commits `records` of transform `name`.
    ///
    /// # Errors
    /// User code failing to commit.
    pub(crate) fn commit(
        &mut self,
        p: &mut Ports<'_>,
        name: &str,
        records: &[Vec<u8>],
    ) -> Result<(), EngineError> {
        let out_wm = p.time().map_or(END_OF_TIME, |t| watermark_of(&t));
        if let Some(i) = self.links.iter().position(|l| l.name == name) {
            self.run(i, out_wm, p, &mut |op, cx| op.commit(records, cx))?;
        }
        Ok(())
    }

    /// Partial results folded and not sent yet.
    pub(crate) fn partials(&self) -> usize {
        self.leaves.iter().map(Leaves::partials).sum()
    }

    /// The chain of a batch job (`batch`): it holds partial results until it has
    /// [`HELD_PARTIALS`] of them or its input is complete, however long that takes.
    pub(crate) fn holding(mut self, batch: bool) -> Self {
        if batch {
            self.hold_for = None;
        }
        self
    }

    /// Sends the partial results folded so far, unless `may_hold` (the watermark and
    /// processing time they would travel at stay the same) and they may wait for later
    /// bundles: each key and window then crosses once rather than once per bundle (a
    /// batch job's, once per process). Held at most [`HELD_PARTIALS`] of them and
    /// [`HOLD_PARTIALS_FOR`].
    ///
    /// # Errors
    /// As [`Chain::flush`].
    pub(crate) fn flush_or_hold(
        &mut self,
        p: &mut Ports<'_>,
        may_hold: bool,
    ) -> Result<(), EngineError> {
        if may_hold && self.partials() < HELD_PARTIALS && !self.held_for_long() {
            return Ok(());
        }
        self.flush(p)
    }

    /// Whether it holds partial results that waited [`Chain::hold_for`] already.
    pub(crate) fn held_too_long(&self) -> bool {
        self.partials() > 0 && self.held_for_long()
    }

    /// Whether its last send was [`Chain::hold_for`] ago or longer.
    fn held_for_long(&self) -> bool {
        self.hold_for.is_some_and(|d| self.flushed.elapsed() >= d)
    }

    /// Sends the pre-combined partial results of the bundle that ended.
    pub(crate) fn flush(&mut self, p: &mut Ports<'_>) -> Result<(), EngineError> {
        self.flushed = std::time::Instant::now();
        for (tag, leaves) in self.leaves.iter_mut().enumerate() {
            leaves.flush(&mut self.sending)?;
            p.give(tag, &mut self.sending);
        }
        Ok(())
    }
}
