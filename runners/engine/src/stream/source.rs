//! The streaming source operator: a reader polled on its own thread, a bundle ahead of
//! the pipeline, so that reading (and the stateless transforms fused after it) overlaps
//! processing.

use super::chain::Chain;
use super::ops::{Op, OpCx, SourceStep};
use super::{wall_clock_ms, END_OF_TIME};
use crate::error::{EngineError, Result};
use crate::exec::guarded;
use crate::graph::SourceFactory;
use crate::metrics::MetricResults;
use crate::source::UnboundedSource;
use crate::window::{PaneInfo, Window, WindowedValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One bundle read ahead.
struct Bundle {
    /// Its elements (after the fused transforms) in batches of at most about [`BATCH`].
    batches: Vec<Vec<WindowedValue>>,
    /// Elements the source read (the fused transforms may drop or add some).
    read: usize,
    /// The source's watermark after the bundle.
    watermark: i64,
    /// The source has ended.
    finished: bool,
}

/// Elements per batch handed downstream: a batch and its successors' outputs stay in
/// the core's cache while they pass the transforms; a whole bundle would not.
const BATCH: usize = 1024;

/// Spare buffers left to the executor for operator outputs.
const KEEP_SPARE: usize = 4;

/// Most emptied buffers waiting to go back to the reader thread.
const RETURNED: usize = 64;

/// How long a step waits for the reader before reporting the source idle.
const WAIT: Duration = Duration::from_millis(1);

pub(super) struct SourceOp {
    factory: SourceFactory,
    max_bundle_size: usize,
    /// Stateless transforms run on the reader thread, until it starts.
    chain: Option<Chain>,
    /// Bundles from the reader thread, once started.
    bundles: Option<Receiver<Result<Bundle>>>,
    /// The reader thread; it returns the fused transforms' metrics and teardown result.
    reader: Option<JoinHandle<(MetricResults, Result<()>)>>,
    /// Hands emptied batch buffers back to the reader thread, for its next bundles.
    give_back: Option<SyncSender<Vec<WindowedValue>>>,
    /// Tells the reader thread to stop.
    stop: Arc<AtomicBool>,
    wm: i64,
    finished: bool,
    stopped: bool,
}

impl SourceOp {
    pub(super) fn new(factory: SourceFactory, max_bundle_size: usize) -> Self {
        SourceOp {
            factory,
            max_bundle_size,
            chain: None,
            bundles: None,
            reader: None,
            give_back: None,
            stop: Arc::new(AtomicBool::new(false)),
            wm: i64::MIN,
            finished: false,
            stopped: false,
        }
    }

    /// Runs `chain` on the reader thread, after the source.
    pub(super) fn with_chain(mut self, chain: Chain) -> Self {
        self.chain = (!chain.is_empty()).then_some(chain);
        self
    }

    /// Creates the reader and starts its thread: it reads a bundle at a time (at most two
    /// waiting), until the source ends, fails, or the operator stops it.
    fn start(&mut self, name: &str) -> Result<Receiver<Result<Bundle>>> {
        let f = self.factory.clone();
        let mut reader: Box<dyn UnboundedSource> = guarded(name, || f())?;
        let mut chain = self.chain.take().unwrap_or_default();
        let (tx, rx) = sync_channel(2);
        let (give_back, returned) = sync_channel(RETURNED);
        self.give_back = Some(give_back);
        let (max, stop) = (self.max_bundle_size, self.stop.clone());
        let transform = name.to_string();
        let handle = std::thread::Builder::new()
            .name("beamline-source".into())
            .spawn(move || {
                let mut wm = i64::MIN;
                while !stop.load(Ordering::Relaxed) {
                    let now = wall_clock_ms();
                    let r = guarded(&transform, || reader.poll(now, max)).and_then(|polled| {
                        let read = polled.elements.len();
                        let mut batches = Vec::with_capacity(read.div_ceil(BATCH));
                        while let Ok(buf) = returned.try_recv() {
                            chain.recycle(buf);
                        }
                        let mut elements = polled.elements.into_iter().peekable();
                        while elements.peek().is_some() {
                            let mut batch = chain.buffer();
                            batch.extend(elements.by_ref().take(BATCH).map(
                                |(value, timestamp)| WindowedValue {
                                    value,
                                    timestamp,
                                    window: Window::Global,
                                    pane: PaneInfo::NO_FIRING,
                                },
                            ));
                            batches.push(batch);
                        }
                        if !chain.is_empty() && read > 0 {
                            batches = chain.run_bundle(batches, wm, now)?;
                        }
                        wm = wm.max(polled.watermark);
                        Ok(Bundle {
                            batches,
                            read,
                            watermark: polled.watermark,
                            finished: polled.finished,
                        })
                    });
                    let (idle, last) = match &r {
                        Ok(b) => (b.read == 0, b.finished),
                        Err(_) => (false, true),
                    };
                    if tx.send(r).is_err() || last {
                        break;
                    }
                    if idle {
                        std::thread::sleep(WAIT);
                    }
                }
                chain.finish()
            })
            .map_err(|e| {
                EngineError::user(
                    name,
                    format!("cannot start the source's reader thread: {e}"),
                )
            })?;
        self.reader = Some(handle);
        Ok(rx)
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
        if let Some(give_back) = &self.give_back {
            // Buffers the pipeline emptied return to the thread that fills them, so that
            // neither allocates nor frees one per batch.
            while cx.spare.len() > KEEP_SPARE {
                let Some(buf) = cx.spare.pop() else { break };
                if give_back.try_send(buf).is_err() {
                    break;
                }
            }
        }
        let bundles = self.bundles.as_ref().expect("started above");
        let Bundle {
            batches,
            read,
            watermark,
            finished,
        } = match bundles.recv_timeout(WAIT) {
            Ok(bundle) => bundle?,
            Err(RecvTimeoutError::Timeout) => return Ok(SourceStep::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(EngineError::user(
                    cx.name,
                    "the source's reader thread ended without finishing the source",
                ))
            }
        };
        let mut batches = batches.into_iter();
        if let Some(mut first) = batches.next() {
            super::ops::forward(&mut first, &mut cx.out[0]);
        }
        cx.more.extend(batches);
        self.wm = self.wm.max(watermark);
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

    fn stop(&mut self) {
        self.stopped = true;
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver ends a reader thread waiting to hand over a bundle.
        self.bundles = None;
    }

    fn finish(&mut self, name: &str, metrics: &mut MetricResults) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.bundles = None;
        let Some(reader) = self.reader.take() else {
            // Never started: the fused transforms were never set up either.
            return Ok(());
        };
        let (fused, result) = reader
            .join()
            .map_err(|_| EngineError::user(name, "the source's reader thread panicked"))?;
        metrics.merge(fused);
        result
    }
}

impl Drop for SourceOp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use crate::coder::Coder;
    use crate::graph::{Graph, Node, NodeKind, PCollectionInfo, SourceFactory};
    use crate::source::{SourceBatch, UnboundedSource};
    use crate::stream::{execute_streaming, StreamOptions};
    use crate::value::Value;
    use crate::UserError;
    use std::sync::Arc;

    /// Reads two bundles of one element, then fails (or panics) on the third poll.
    struct Flaky {
        polls: usize,
        panic: bool,
    }

    impl UnboundedSource for Flaky {
        fn poll(&mut self, _now: i64, _max: usize) -> Result<SourceBatch, UserError> {
            self.polls += 1;
            if self.polls == 3 {
                if self.panic {
                    panic!("reader broke");
                }
                return Err("connection lost".into());
            }
            Ok(SourceBatch {
                elements: vec![(Value::I64(self.polls as i64), self.polls as i64)],
                watermark: self.polls as i64,
                finished: false,
            })
        }
    }

    fn run(panic: bool) -> String {
        let factory: SourceFactory =
            Arc::new(move || Ok(Box::new(Flaky { polls: 0, panic }) as Box<dyn UnboundedSource>));
        let graph = Graph {
            pcollections: vec![PCollectionInfo {
                name: "Clicks.out".into(),
                coder: Coder::VarInt,
                windowing: Default::default(),
            }],
            nodes: vec![Node {
                name: "Clicks".into(),
                kind: NodeKind::Source { source: factory },
                inputs: vec![],
                outputs: vec![0],
            }],
        };
        let opts = StreamOptions {
            virtual_time: false,
            ..StreamOptions::default()
        };
        match execute_streaming(&graph, &opts) {
            Ok(_) => panic!("a failing source must fail the job"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_failing_reader_fails_the_job_naming_the_source() {
        let err = run(false);
        assert!(
            err.contains("Clicks") && err.contains("connection lost"),
            "{err}"
        );
    }

    #[test]
    fn a_panicking_reader_fails_the_job_naming_the_source() {
        let err = run(true);
        assert!(
            err.contains("Clicks") && err.contains("reader broke"),
            "{err}"
        );
    }
}
