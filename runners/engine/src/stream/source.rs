//! The streaming source operator: a reader polled on its own thread, a bundle ahead of
//! the pipeline, so that reading overlaps processing.

use super::ops::{Op, OpCx, SourceStep};
use super::{wall_clock_ms, END_OF_TIME};
use crate::error::{EngineError, Result};
use crate::exec::guarded;
use crate::graph::SourceFactory;
use crate::source::UnboundedSource;
use crate::window::{PaneInfo, Window, WindowedValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// One bundle read ahead: elements, the watermark after them, whether the source ended.
type Bundle = (Vec<WindowedValue>, i64, bool);

/// How long a step waits for the reader before reporting the source idle.
const WAIT: Duration = Duration::from_millis(1);

pub(super) struct SourceOp {
    factory: SourceFactory,
    max_bundle_size: usize,
    /// Bundles from the reader thread, once started.
    bundles: Option<Receiver<Result<Bundle>>>,
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
            bundles: None,
            stop: Arc::new(AtomicBool::new(false)),
            wm: i64::MIN,
            finished: false,
            stopped: false,
        }
    }

    /// Creates the reader and starts its thread: it reads a bundle at a time (at most two
    /// waiting), until the source ends, fails, or the operator stops it.
    fn start(&mut self, name: &str) -> Result<Receiver<Result<Bundle>>> {
        let f = self.factory.clone();
        let mut reader: Box<dyn UnboundedSource> = guarded(name, || f())?;
        let (tx, rx) = sync_channel(2);
        let (max, stop) = (self.max_bundle_size, self.stop.clone());
        let transform = name.to_string();
        std::thread::Builder::new()
            .name("beamline-source".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r =
                        guarded(&transform, || reader.poll(wall_clock_ms(), max)).map(|batch| {
                            let elements = batch
                                .elements
                                .into_iter()
                                .map(|(value, timestamp)| WindowedValue {
                                    value,
                                    timestamp,
                                    window: Window::Global,
                                    pane: PaneInfo::NO_FIRING,
                                })
                                .collect::<Vec<_>>();
                            (elements, batch.watermark, batch.finished)
                        });
                    let (idle, last) = match &r {
                        Ok((elements, _, finished)) => (elements.is_empty(), *finished),
                        Err(_) => (false, true),
                    };
                    if tx.send(r).is_err() || last {
                        return;
                    }
                    if idle {
                        std::thread::sleep(WAIT);
                    }
                }
            })
            .map_err(|e| {
                EngineError::user(
                    name,
                    format!("cannot start the source's reader thread: {e}"),
                )
            })?;
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
        let bundles = self.bundles.as_ref().expect("started above");
        let (mut elements, watermark, finished) = match bundles.recv_timeout(WAIT) {
            Ok(bundle) => bundle?,
            Err(RecvTimeoutError::Timeout) => return Ok(SourceStep::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(EngineError::user(
                    cx.name,
                    "the source's reader thread ended without finishing the source",
                ))
            }
        };
        let n = elements.len();
        super::ops::forward(&mut elements, &mut cx.out[0]);
        self.wm = self.wm.max(watermark);
        if finished {
            self.finished = true;
            self.wm = END_OF_TIME;
            self.bundles = None;
        }
        Ok(if n == 0 && !finished {
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
