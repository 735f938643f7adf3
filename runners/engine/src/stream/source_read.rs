//! The reading half of a streaming source: its thread polls the reader into bundles,
//! running the stateless transforms fused after it on each batch as it is read.

use super::chain::Chain;
use super::clock::wall_clock_ms;
use crate::error::{EngineError, Result};
use crate::metrics::MetricResults;
use crate::operators::guard::guarded;
use crate::operators::precombine::Partial;
use crate::source::{Polled, SourceOutput, UnboundedSource};
use crate::window::WindowedValue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Duration;

/// One bundle read ahead.
pub(super) struct Bundle {
    /// Its elements (after the fused transforms) in batches of at most about [`BATCH`].
    pub(super) batches: Vec<Vec<WindowedValue>>,
    /// Partial results for the lifted CombinePerKey after the fused transforms.
    pub(super) partials: Vec<Partial>,
    /// Elements the source read (the fused transforms may drop or add some).
    pub(super) read: usize,
    /// The source's watermark after the bundle.
    pub(super) watermark: i64,
    /// The source has ended.
    pub(super) finished: bool,
    /// The reader's position after the bundle (when checkpointing).
    pub(super) position: Option<Vec<u8>>,
}

/// Elements per batch handed downstream: a batch and its successors' outputs stay in
/// the core's cache while they pass the transforms; a whole bundle would not.
pub(super) const BATCH: usize = 1024;

/// How long a step waits for the reader before reporting the source idle.
pub(super) const WAIT: Duration = Duration::from_millis(1);

/// What a source's thread returns: the metrics of its fused transforms and their teardown.
pub(super) type ThreadResult = (MetricResults, Result<()>);

/// Starts thread `thread` of the source of transform `name`, running `f`.
pub(super) fn spawn(
    name: &str,
    thread: &str,
    f: impl FnOnce() -> ThreadResult + Send + 'static,
) -> Result<JoinHandle<ThreadResult>> {
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(f)
        .map_err(|e| EngineError::user(name, format!("cannot start the source's threads: {e}")))
}

/// Reads bundles with `read` (given the processing time) and hands them to `send` (false
/// once nobody takes them) until the source ends, fails, or `stop` is set; `status` says
/// whether a bundle is empty (the next read waits [`WAIT`]) and whether it is the last.
pub(super) fn poll_until_done<T>(
    stop: &AtomicBool,
    mut read: impl FnMut(i64) -> Result<T>,
    status: impl Fn(&T) -> (bool, bool),
    mut send: impl FnMut(Result<T>) -> bool,
) {
    while !stop.load(Ordering::Relaxed) {
        let r = read(wall_clock_ms());
        let (idle, last) = match &r {
            Ok(b) => status(b),
            Err(_) => (false, true),
        };
        if !send(r) || last {
            break;
        }
        if idle {
            std::thread::sleep(WAIT);
        }
    }
}

/// Reads a bundle of a split source's part, running each batch through `chain` as it is
/// read; `wm` is the part's watermark before the bundle.
pub(super) fn read_fused(
    reader: &mut dyn UnboundedSource,
    chain: &mut Chain,
    transform: &str,
    now: i64,
    max: usize,
    wm: i64,
) -> Result<Bundle> {
    let mut sink = Fused {
        chain,
        batches: Vec::new(),
        wm,
        now,
    };
    let (read, polled) = read_bundle(reader, transform, now, max, &mut sink)?;
    let Fused {
        chain, mut batches, ..
    } = sink;
    let partials = if read > 0 {
        chain.end_bundle(wm, now, &mut batches)?
    } else {
        Vec::new()
    };
    Ok(Bundle {
        batches,
        partials,
        read,
        watermark: polled.watermark,
        finished: polled.finished,
        position: None,
    })
}

/// Where [`read_bundle`] puts the batches it reads.
pub(super) trait Batches {
    /// An empty buffer to poll into.
    fn buffer(&mut self) -> Vec<WindowedValue>;
    /// Takes a batch the source filled.
    fn take(&mut self, batch: Vec<WindowedValue>) -> Result<()>;
    /// Takes back a buffer left empty.
    fn put_back(&mut self, buf: Vec<WindowedValue>);
}

/// Keeps the batches as read, for a worker (or the pipeline) to process.
pub(super) struct Collect<'a> {
    pub(super) pool: &'a mut Vec<Vec<WindowedValue>>,
    pub(super) batches: Vec<Vec<WindowedValue>>,
}

impl Batches for Collect<'_> {
    fn buffer(&mut self) -> Vec<WindowedValue> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b
    }
    fn take(&mut self, batch: Vec<WindowedValue>) -> Result<()> {
        self.batches.push(batch);
        Ok(())
    }
    fn put_back(&mut self, buf: Vec<WindowedValue>) {
        self.pool.push(buf);
    }
}

/// Runs each batch through the fused transforms as soon as it is read.
pub(super) struct Fused<'a> {
    chain: &'a mut Chain,
    /// What the transforms emitted.
    batches: Vec<Vec<WindowedValue>>,
    wm: i64,
    now: i64,
}

impl Batches for Fused<'_> {
    fn buffer(&mut self) -> Vec<WindowedValue> {
        self.chain.buffer()
    }
    fn take(&mut self, batch: Vec<WindowedValue>) -> Result<()> {
        self.chain.feed(batch, self.wm, self.now, &mut self.batches)
    }
    fn put_back(&mut self, buf: Vec<WindowedValue>) {
        self.chain.recycle(buf);
    }
}

/// Reads up to about `max` elements from `reader`, polling it for a batch at a time into
/// buffers from `sink`, which takes each batch: how many elements were read, and the
/// last poll's report.
pub(super) fn read_bundle(
    reader: &mut dyn UnboundedSource,
    transform: &str,
    now: i64,
    max: usize,
    sink: &mut impl Batches,
) -> Result<(usize, Polled)> {
    let mut read = 0;
    loop {
        let mut batch = sink.buffer();
        let want = BATCH.min(max - read);
        let polled = guarded(transform, || {
            reader.poll(now, want, &mut SourceOutput::new(&mut batch))
        })?;
        let n = batch.len();
        read += n;
        if n > BATCH {
            // A source that reads more than asked: batches of the usual size all the same.
            let mut elements = batch.drain(..);
            while elements.len() > 0 {
                let mut chunk = sink.buffer();
                chunk.extend(elements.by_ref().take(BATCH));
                sink.take(chunk)?;
            }
            drop(elements);
            sink.put_back(batch);
        } else if n > 0 {
            sink.take(batch)?;
        } else {
            sink.put_back(batch);
        }
        if polled.finished || n < want || read >= max {
            return Ok((read, polled));
        }
    }
}

/// A bundle as read, before the fused transforms.
pub(super) struct Raw {
    pub(super) batches: Vec<Vec<WindowedValue>>,
    pub(super) read: usize,
    /// The source's watermark before the bundle.
    pub(super) wm_before: i64,
    pub(super) watermark: i64,
    pub(super) finished: bool,
    /// Processing time of the read.
    pub(super) now: i64,
    /// The reader's position after the bundle (when checkpointing).
    pub(super) position: Option<Vec<u8>>,
}

/// Where the reader sends a bundle.
pub(super) enum Lane {
    /// To a worker running the fused transforms.
    Worker(SyncSender<Result<Raw>>),
    /// Straight to the operator (no fused transforms).
    Direct(SyncSender<Result<Bundle>>),
}

impl Lane {
    /// Sends a bundle; false once the other side is gone.
    pub(super) fn send(&self, r: Result<Raw>) -> bool {
        match self {
            Lane::Worker(tx) => tx.send(r).is_ok(),
            Lane::Direct(tx) => tx
                .send(r.map(|raw| Bundle {
                    batches: raw.batches,
                    partials: Vec::new(),
                    read: raw.read,
                    watermark: raw.watermark,
                    finished: raw.finished,
                    position: raw.position,
                }))
                .is_ok(),
        }
    }
}
