//! An engine operator inside a Timely operator: input batches are processed in the order
//! of their times, each after the operator's watermark (and processing time) reached it,
//! and the operator's capabilities follow its output watermark.

use crate::adapter::{processing_time_of, time, watermark_of, Batch, Ports, Time};
use crate::dataflow::{Clock, Shared};
use crate::wire::{decode, Encoder};
use beamline_engine::coder::Coder;
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

/// An engine operator driven by a Timely operator.
pub(crate) struct Driver {
    op: Box<dyn Op>,
    name: String,
    /// Coders of the inputs: main, then side inputs.
    in_coders: Vec<Coder>,
    encoders: Vec<Encoder>,
    outs: Vec<Vec<WindowedValue>>,
    more: Vec<Vec<WindowedValue>>,
    spare: Vec<Vec<WindowedValue>>,
    /// Batches received ahead of the watermark, by time: `(input slot, records)`.
    stash: BTreeMap<Time, Vec<(usize, Batch)>>,
    /// The input watermark.
    wm: i64,
    /// Processing time (ms).
    now: i64,
    clock: Clock,
    shared: Arc<Shared>,
}

impl Driver {
    /// Drives `op` (transform `name`) reading inputs of `in_coders` (main, then side
    /// inputs) and writing outputs with `encoders`.
    pub(crate) fn new(
        op: Box<dyn Op>,
        name: &str,
        in_coders: Vec<Coder>,
        encoders: Vec<Encoder>,
        clock: Clock,
        shared: Arc<Shared>,
    ) -> Self {
        let outputs = encoders.len();
        Driver {
            op,
            name: name.to_string(),
            in_coders,
            encoders,
            outs: vec![Vec::new(); outputs],
            more: Vec::new(),
            spare: Vec::new(),
            stash: BTreeMap::new(),
            wm: i64::MIN,
            now: match clock {
                Clock::Virtual => 0,
                Clock::Wall => wall_clock_ms(),
            },
            clock,
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
                self.call(p, |op, cx| op.on_processing_time(cx))?;
            }
        }
        let frontier = p.frontier_of_all();
        // Everything before the frontier is complete: process it in time order, each
        // time's batches as one bundle, side inputs first.
        while let Some((&t, _)) = self.stash.first_key_value() {
            if frontier.is_some_and(|f| t > f) {
                break;
            }
            // Side inputs' watermarks still count this time's side batches.
            self.move_to(p, t)?;
            // What this time's batches make travels at this time (or what holds it).
            self.follow(p, t);
            let (_, mut batches) = self.stash.pop_first().expect("a first entry");
            batches.sort_by_key(|(slot, _)| if *slot == 0 { usize::MAX } else { *slot });
            let mut sides_done = false;
            for (slot, mut batch) in batches {
                if slot == 0 && !sides_done {
                    sides_done = true;
                    self.side_watermarks(p);
                }
                let mut elements = decode(&self.in_coders[slot], &mut batch, &self.name)?;
                self.call(p, |op, cx| op.process(slot, &mut elements, cx))?;
            }
            if !sides_done {
                self.side_watermarks(p);
            }
            self.call(p, |op, cx| op.end_bundle(cx))?;
            self.call(p, |op, cx| op.on_processing_time(cx))?;
        }
        match frontier {
            Some(f) => {
                self.move_to(p, f)?;
                self.follow(p, f);
                if self.clock == Clock::Wall {
                    p.activate_after(TICK);
                }
            }
            None => {
                // Every input is complete: timers due now, then the watermark to the end
                // of time (panes and timers fire, windows expire).
                self.call(p, |op, cx| op.on_processing_time(cx))?;
                self.side_watermarks(p);
                if self.wm < END_OF_TIME {
                    self.wm = END_OF_TIME;
                    self.call(p, |op, cx| op.advance(END_OF_TIME, cx))?;
                }
                self.call(p, |op, cx| op.end_bundle(cx))?;
                let mut metrics = MetricResults::default();
                self.op.finish(&self.name, &mut metrics)?;
                self.shared.add_metrics(metrics);
                p.finish();
            }
        }
        Ok(())
    }

    /// Moves the capabilities to `t`, or to the operator's hold when that is earlier (its
    /// output watermark).
    fn follow(&self, p: &mut Ports<'_>, t: Time) {
        let hold = self.op.hold();
        p.downgrade(if hold < watermark_of(&t) {
            time(hold, processing_time_of(&t), (t.1).1)
        } else {
            t
        });
    }

    /// Moves processing time, then the watermark, to those of `t`.
    fn move_to(&mut self, p: &mut Ports<'_>, t: Time) -> Result<(), EngineError> {
        let pt = processing_time_of(&t);
        if self.clock == Clock::Virtual && pt > self.now {
            self.now = pt;
            self.call(p, |op, cx| op.on_processing_time(cx))?;
        }
        self.side_watermarks(p);
        let wm = watermark_of(&t);
        if wm > self.wm {
            self.wm = wm;
            self.call(p, |op, cx| op.advance(wm, cx))?;
        }
        Ok(())
    }

    /// Tells the operator how far each side input is complete: its frontier, or the
    /// earliest of its batches still waiting.
    fn side_watermarks(&mut self, p: &Ports<'_>) {
        if self.in_coders.len() < 2 {
            return;
        }
        let wms: Vec<i64> = (1..self.in_coders.len())
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
        self.op.side_watermarks(&wms);
    }

    /// Calls the operator, then sends what it emitted.
    fn call(
        &mut self,
        p: &mut Ports<'_>,
        f: impl FnOnce(&mut dyn Op, &mut OpCx<'_>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let mut cx = OpCx {
            out: &mut self.outs,
            more: &mut self.more,
            spare: &mut self.spare,
            now: self.now,
            input_watermark: self.wm,
            output_watermark: p.time().map_or(END_OF_TIME, |t| watermark_of(&t)),
            name: &self.name,
        };
        f(&mut *self.op, &mut cx)?;
        for (tag, elements) in self.outs.iter_mut().enumerate() {
            let mut batch = Vec::new();
            self.encoders[tag].encode(elements, &mut batch)?;
            if tag == 0 {
                for mut more in self.more.drain(..) {
                    self.encoders[tag].encode(&mut more, &mut batch)?;
                }
            }
            p.give(tag, &mut batch);
        }
        Ok(())
    }
}
