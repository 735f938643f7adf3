//! The streaming source operator: a reader polled on its own thread, a bundle ahead of
//! the pipeline, so that reading (and the stateless transforms fused after it) overlaps
//! processing.

use super::chain::Chain;
use super::source_read::{
    poll_until_done, read_bundle, read_fused, spawn, Bundle, Collect, Lane, Raw, ThreadResult, WAIT,
};
use super::source_state::{resume_parts, SourceState};
use crate::checkpoint::codec::{Dec, Enc};
use crate::checkpoint::{NodeState, StateOut};
use crate::error::{EngineError, Result};
use crate::graph::SourceFactory;
use crate::metrics::MetricResults;
use crate::operators::guard::guarded;
use crate::operators::op::{Op, OpCx, SourceStep, END_OF_TIME};
use crate::operators::precombine::Mailbox;
use crate::source::UnboundedSource;
use crate::window::WindowedValue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Spare buffers left to the executor for operator outputs.
const KEEP_SPARE: usize = 4;

/// Most emptied buffers waiting to go back to the reader thread.
const RETURNED: usize = 64;

/// Bundles a part of a split source may have read ahead of the pipeline: with one, a
/// reader that finished a bundle waited for the pipeline to take the one before, and
/// the cores idled while the pipeline thread and the readers took turns.
const READ_AHEAD: usize = 4;

pub(super) struct SourceOp {
    factory: SourceFactory,
    max_bundle_size: usize,
    /// The fused stateless transforms, one copy per worker thread, until they start.
    chains: Vec<Chain>,
    /// Bundles from the reader (or its workers), once started, read in turn.
    bundles: Option<Vec<Receiver<Result<Bundle>>>>,
    /// The lane the next bundle comes from.
    next_lane: usize,
    /// The reader and worker threads; they return the fused transforms' metrics and
    /// teardown result.
    threads: Vec<JoinHandle<ThreadResult>>,
    /// Where partial results go, for the lifted CombinePerKey.
    mailbox: Option<Mailbox>,
    /// Hands emptied batch buffers back to the reader thread (one per lane when the
    /// source is split), for its next bundles.
    give_back: Vec<SyncSender<Vec<WindowedValue>>>,
    /// The source is split: each lane has its own reader, watermark and end.
    split: bool,
    /// Per lane of a split source: its watermark (the source's is the smallest).
    lane_wm: Vec<i64>,
    /// Per lane of a split source: its reader has finished.
    lane_done: Vec<bool>,
    /// Tells the reader thread to stop.
    stop: Arc<AtomicBool>,
    /// Readers report their position with each bundle, for checkpoints.
    checkpointing: bool,
    /// The position after the last bundle taken, per lane of a split source (one for
    /// the reader of an unsplit one).
    positions: Vec<Option<Vec<u8>>>,
    /// Positions to resume from, from a restored checkpoint, until the readers start.
    resume: Option<Vec<Option<Vec<u8>>>>,
    /// A bundle came without a position while checkpointing: the source cannot resume.
    unresumable: bool,
    /// Per reader thread: positions of durable checkpoints, for the reader to confirm.
    confirm: Vec<Sender<Vec<u8>>>,
    /// Positions to confirm before the readers started (a restored checkpoint's).
    to_confirm: Vec<(usize, Vec<u8>)>,
    wm: i64,
    finished: bool,
    stopped: bool,
}

impl SourceOp {
    pub(super) fn new(factory: SourceFactory, max_bundle_size: usize) -> Self {
        SourceOp {
            factory,
            max_bundle_size,
            chains: Vec::new(),
            bundles: None,
            next_lane: 0,
            threads: Vec::new(),
            give_back: Vec::new(),
            split: false,
            lane_wm: Vec::new(),
            lane_done: Vec::new(),
            mailbox: None,
            stop: Arc::new(AtomicBool::new(false)),
            checkpointing: false,
            positions: Vec::new(),
            resume: None,
            unresumable: false,
            confirm: Vec::new(),
            to_confirm: Vec::new(),
            wm: i64::MIN,
            finished: false,
            stopped: false,
        }
    }

    /// A channel to a new reader thread for the positions of durable checkpoints (those
    /// confirmed before it started are sent at once).
    fn confirm_channel(&mut self) -> Receiver<Vec<u8>> {
        let (tx, rx) = channel();
        let lane = self.confirm.len();
        for (_, p) in self.to_confirm.iter().filter(|(l, _)| *l == lane) {
            let _ = tx.send(p.clone());
        }
        self.confirm.push(tx);
        rx
    }

    /// Has its readers report their positions, for checkpoints.
    pub(super) fn with_checkpoints(mut self, on: bool) -> Self {
        self.checkpointing = on;
        self
    }

    /// Runs `chains` (copies of the same fused transforms, one per worker thread) on
    /// the source's bundles, which the workers take in turn; their partial results (when
    /// they pre-combine) go to `mailbox`.
    pub(super) fn with_chains(mut self, chains: Vec<Chain>, mailbox: Option<Mailbox>) -> Self {
        self.chains = chains.into_iter().filter(|c| !c.is_empty()).collect();
        self.mailbox = mailbox;
        self
    }

    /// Creates the reader and starts its thread: it reads a bundle at a time, until the
    /// source ends, fails, or the operator stops it. With fused transforms, worker threads
    /// run them on alternate bundles; the lanes (one per worker, or the reader's own) are
    /// read in turn, so bundles arrive in the order they were read. A source that splits
    /// is read by the workers themselves (see [`SourceOp::start_split`]).
    fn start(&mut self, name: &str) -> Result<Vec<Receiver<Result<Bundle>>>> {
        let f = self.factory.clone();
        let mut reader: Box<dyn UnboundedSource> = guarded(name, || f())?;
        let resume = self.resume.take();
        if self.chains.len() > 1 || resume.as_ref().is_some_and(|r| r.len() > 1) {
            let n = self.chains.len();
            let mut parts = guarded(name, || Ok(reader.split(n)))?;
            if let (Some(positions), false) = (&resume, parts.is_empty()) {
                resume_parts(name, &mut parts, positions)?;
            }
            if parts.len() > n {
                return Err(EngineError::user(
                    name,
                    format!(
                        "the source split into {} readers when asked for at most {n}",
                        parts.len()
                    ),
                ));
            }
            if parts.len() > 1 {
                let lanes = self.start_split(name, parts)?;
                self.positions = resume.unwrap_or_else(|| vec![None; lanes.len()]);
                return Ok(lanes);
            }
        }
        if let Some(positions) = &resume {
            resume_parts(name, std::slice::from_mut(&mut reader), positions)?;
        }
        self.positions = resume.unwrap_or_else(|| vec![None]);
        // The reader hands its bundles to the lanes from the first: they are taken from
        // there (a restored lane to read next belongs to a split source).
        self.next_lane = 0;
        let checkpointing = self.checkpointing;
        let confirmed = self.confirm_channel();
        let (give_back, returned) = sync_channel(RETURNED);
        self.give_back = vec![give_back.clone()];
        // Lanes: where the reader sends each bundle in turn, and where the op reads it.
        let mut to_lanes = Vec::new();
        let mut lanes = Vec::new();
        for mut chain in std::mem::take(&mut self.chains) {
            let (raw_tx, raw_rx) = sync_channel::<Result<Raw>>(1);
            let (tx, rx) = sync_channel(1);
            let give_back = give_back.clone();
            let handle = spawn(name, "beamline-fused", move || {
                while let Ok(raw) = raw_rx.recv() {
                    let r = raw.and_then(|raw| {
                        let (batches, partials) = if raw.read > 0 {
                            chain.run_bundle(raw.batches, raw.wm_before, raw.now)?
                        } else {
                            (raw.batches, Vec::new())
                        };
                        Ok(Bundle {
                            batches,
                            partials,
                            read: raw.read,
                            watermark: raw.watermark,
                            finished: raw.finished,
                            position: raw.position,
                        })
                    });
                    // Buffers beyond what the transforms reuse go back to the reader.
                    while let Some(buf) = chain.surplus() {
                        if give_back.try_send(buf).is_err() {
                            break;
                        }
                    }
                    if tx.send(r).is_err() {
                        break;
                    }
                }
                chain.finish()
            })?;
            self.threads.push(handle);
            to_lanes.push(Lane::Worker(raw_tx));
            lanes.push(rx);
        }
        if to_lanes.is_empty() {
            let (tx, rx) = sync_channel(2);
            to_lanes.push(Lane::Direct(tx));
            lanes.push(rx);
        }
        let (max, stop) = (self.max_bundle_size, self.stop.clone());
        let transform = name.to_string();
        let handle = spawn(name, "beamline-source", move || {
            let mut wm = i64::MIN;
            let mut pool: Vec<Vec<WindowedValue>> = Vec::new();
            let mut turn = 0;
            poll_until_done(
                &stop,
                |now| {
                    for p in confirmed.try_iter() {
                        guarded(&transform, || reader.checkpointed(&p))?;
                    }
                    pool.extend(returned.try_iter());
                    let mut sink = Collect {
                        pool: &mut pool,
                        batches: Vec::new(),
                    };
                    let (read, polled) =
                        read_bundle(&mut *reader, &transform, now, max, &mut sink)?;
                    let raw = Raw {
                        batches: sink.batches,
                        read,
                        wm_before: wm,
                        watermark: polled.watermark,
                        finished: polled.finished,
                        now,
                        position: if checkpointing {
                            reader.position()
                        } else {
                            None
                        },
                    };
                    wm = wm.max(polled.watermark);
                    Ok(raw)
                },
                |raw| (raw.read == 0, raw.finished),
                |r| {
                    turn += 1;
                    to_lanes[(turn - 1) % to_lanes.len()].send(r)
                },
            );
            (MetricResults::default(), Ok(()))
        })?;
        self.threads.push(handle);
        Ok(lanes)
    }

    /// Starts one thread per part of a split source, each reading its part and running
    /// the fused transforms on every batch as soon as it is read (while it is in the
    /// core's cache, and with no element crossing threads before the pipeline's); each
    /// sends its bundles down its own lane, with its part's watermark.
    fn start_split(
        &mut self,
        name: &str,
        readers: Vec<Box<dyn UnboundedSource>>,
    ) -> Result<Vec<Receiver<Result<Bundle>>>> {
        let chains = std::mem::take(&mut self.chains);
        let mut lanes = Vec::with_capacity(readers.len());
        let checkpointing = self.checkpointing;
        for (mut reader, mut chain) in readers.into_iter().zip(chains) {
            let (tx, rx) = sync_channel(READ_AHEAD);
            let (give_back, returned) = sync_channel::<Vec<WindowedValue>>(RETURNED);
            let (max, stop) = (self.max_bundle_size, self.stop.clone());
            let transform = name.to_string();
            let confirmed = self.confirm_channel();
            let handle = spawn(name, "beamline-source", move || {
                let mut wm = i64::MIN;
                poll_until_done(
                    &stop,
                    |now| {
                        for p in confirmed.try_iter() {
                            guarded(&transform, || reader.checkpointed(&p))?;
                        }
                        for buf in returned.try_iter() {
                            chain.recycle(buf);
                        }
                        let mut b = read_fused(&mut *reader, &mut chain, &transform, now, max, wm)?;
                        wm = wm.max(b.watermark);
                        if checkpointing {
                            b.position = reader.position();
                        }
                        Ok(b)
                    },
                    |b| (b.read == 0, b.finished),
                    |r| tx.send(r).is_ok(),
                );
                chain.finish()
            })?;
            self.threads.push(handle);
            self.give_back.push(give_back);
            lanes.push(rx);
        }
        self.split = true;
        if self.lane_wm.len() != lanes.len() {
            self.lane_wm = vec![i64::MIN; lanes.len()];
            self.lane_done = vec![false; lanes.len()];
        }
        Ok(lanes)
    }
}

impl Op for SourceOp {
    fn step(&mut self, cx: &mut OpCx<'_>) -> Result<SourceStep> {
        if self.finished {
            return Ok(SourceStep::Finished);
        }
        if self.stopped {
            self.finished = true;
            self.wm = END_OF_TIME;
            return Ok(SourceStep::Progressed {
                advance_processing_time: 0,
            });
        }
        if self.bundles.is_none() {
            self.bundles = Some(self.start(cx.name)?);
        }
        let lanes = self.bundles.as_ref().expect("started above");
        let mut lane = self.next_lane % lanes.len();
        while self.split && self.lane_done[lane] {
            // Not all done: the source would have finished.
            lane = (lane + 1) % lanes.len();
        }
        if let Some(give_back) = self.give_back.get(lane % self.give_back.len().max(1)) {
            // Buffers the pipeline emptied return to the thread that fills them, so that
            // neither allocates nor frees one per batch.
            while cx.spare.len() > KEEP_SPARE {
                let Some(buf) = cx.spare.pop() else { break };
                if give_back.try_send(buf).is_err() {
                    break;
                }
            }
        }
        let Bundle {
            batches,
            partials,
            read,
            watermark,
            finished,
            position,
        } = match lanes[lane].recv_timeout(WAIT) {
            Ok(bundle) => bundle?,
            Err(RecvTimeoutError::Timeout) => return Ok(SourceStep::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(EngineError::user(
                    cx.name,
                    "the source's reader thread ended without finishing the source",
                ))
            }
        };
        self.next_lane = lane + 1;
        if position.is_some() {
            let at = if self.split { lane } else { 0 };
            self.positions[at] = position;
        } else if self.checkpointing && read > 0 {
            self.unresumable = true;
        }
        let mut batches = batches.into_iter();
        if let Some(mut first) = batches.next() {
            crate::operators::op::forward(&mut first, &mut cx.out[0]);
        }
        cx.more.extend(batches);
        if !partials.is_empty() {
            if let Some(mailbox) = &self.mailbox {
                // The grouping takes them when this bundle ends, before watermarks move.
                mailbox.lock().deliver(partials);
            }
        }
        let finished = if self.split {
            // A part's end or watermark holds the source back until every part's moves.
            self.lane_wm[lane] = self.lane_wm[lane].max(watermark);
            if finished {
                self.lane_done[lane] = true;
                self.lane_wm[lane] = END_OF_TIME;
            }
            let wm = self.lane_wm.iter().copied().min().unwrap_or(END_OF_TIME);
            self.wm = self.wm.max(wm);
            self.lane_done.iter().all(|&d| d)
        } else {
            self.wm = self.wm.max(watermark);
            finished
        };
        if finished {
            self.finished = true;
            self.wm = END_OF_TIME;
            self.bundles = None;
        }
        Ok(if read == 0 && !finished {
            SourceStep::Idle
        } else {
            SourceStep::Progressed {
                advance_processing_time: 0,
            }
        })
    }

    fn hold(&self) -> i64 {
        self.wm
    }

    fn snapshot(&mut self, out: &mut StateOut, cx: &mut OpCx<'_>) -> Result<()> {
        if self.unresumable {
            return Err(EngineError::Checkpoint(format!(
                "source '{}' cannot resume from a position: it cannot be checkpointed",
                cx.name
            )));
        }
        let state = SourceState {
            finished: self.finished,
            wm: self.wm,
            next_lane: self.next_lane,
            // Before the readers start, these are the positions restored (if any).
            positions: self.positions.clone(),
            lanes: self
                .lane_wm
                .iter()
                .copied()
                .zip(self.lane_done.iter().copied())
                .collect(),
        };
        out.put(b"", state.encode());
        for (lane, p) in self.positions.iter().enumerate() {
            if let Some(p) = p {
                let mut e = Enc::new();
                e.u64(lane as u64).bytes(p);
                out.commit_record(e.finish());
            }
        }
        Ok(())
    }

    fn commit(&mut self, records: &[Vec<u8>], cx: &mut OpCx<'_>) -> Result<()> {
        for r in records {
            let mut d = Dec::new(r, cx.name);
            let (lane, p) = (d.u64()? as usize, d.bytes()?.to_vec());
            d.end()?;
            match self.confirm.get(lane) {
                // A reader that ended takes no more confirmations.
                Some(tx) => drop(tx.send(p)),
                None => self.to_confirm.push((lane, p)),
            }
        }
        Ok(())
    }

    fn restore(&mut self, st: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        let Some(bytes) = st.get(b"")? else {
            return Ok(());
        };
        let s = SourceState::decode(&bytes, cx.name)?;
        self.finished = s.finished;
        self.wm = s.wm;
        // The lane read next: bundles go downstream in the order they did before.
        self.next_lane = s.next_lane;
        (self.lane_wm, self.lane_done) = s.lanes.into_iter().unzip();
        self.resume = (!s.positions.is_empty()).then(|| s.positions.clone());
        self.positions = s.positions;
        Ok(())
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver ends a reader thread waiting to hand over a bundle.
        self.bundles = None;
    }

    fn finish(&mut self, name: &str, metrics: &mut MetricResults) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.bundles = None;
        // Never started: the fused transforms were never set up either.
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            let (fused, r) = thread
                .join()
                .map_err(|_| EngineError::user(name, "a thread of the source panicked"))?;
            metrics.merge(fused);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

impl Drop for SourceOp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
