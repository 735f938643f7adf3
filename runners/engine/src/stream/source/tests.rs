//! Tests of the streaming source operator: batches, splits, and readers that fail or panic.

use crate::coder::Coder;
use crate::graph::{Graph, Node, NodeKind, PCollectionInfo, SourceFactory};
use crate::source::{Polled, SourceOutput, UnboundedSource};
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
    fn poll(
        &mut self,
        _now: i64,
        _max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError> {
        self.polls += 1;
        if self.polls == 3 {
            if self.panic {
                panic!("reader broke");
            }
            return Err("connection lost".into());
        }
        out.push(Value::I64(self.polls as i64), self.polls as i64);
        Ok(Polled {
            watermark: self.polls as i64,
            finished: false,
        })
    }
}

/// Adds up to `per_poll` numbers a poll until `total`; no more than asked when
/// `honest`.
struct Counter {
    next: i64,
    per_poll: usize,
    total: i64,
    honest: bool,
}

impl UnboundedSource for Counter {
    fn poll(
        &mut self,
        _now: i64,
        max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError> {
        let n = if self.honest {
            self.per_poll.min(max)
        } else {
            self.per_poll
        };
        for _ in 0..n {
            if self.next == self.total {
                break;
            }
            out.push(Value::I64(self.next), self.next);
            self.next += 1;
        }
        Ok(Polled {
            watermark: self.next,
            finished: self.next == self.total,
        })
    }
}

impl Counter {
    fn new(per_poll: usize, total: i64, honest: bool) -> Self {
        Counter {
            next: 0,
            per_poll,
            total,
            honest,
        }
    }
}

fn bundle(source: &mut Counter, max: usize) -> (Vec<usize>, usize, Polled) {
    let mut pool = Vec::new();
    let mut sink = super::Collect {
        pool: &mut pool,
        batches: Vec::new(),
    };
    let (read, polled) = super::read_bundle(source, "Numbers", 0, max, &mut sink).unwrap();
    let batches = sink.batches;
    let mut expected = (source.next - read as i64)..;
    for wv in batches.iter().flatten() {
        assert_eq!(wv.value, Value::I64(expected.next().unwrap()));
    }
    (batches.iter().map(Vec::len).collect(), read, polled)
}

#[test]
fn a_bundle_is_read_a_batch_at_a_time_up_to_its_size() {
    let mut exact = Counter::new(usize::MAX, 5_000, true);
    let (sizes, read, polled) = bundle(&mut exact, 3_000);
    assert_eq!((sizes, read), (vec![1024, 1024, 952], 3_000));
    assert!(!polled.finished);
    let (sizes, read, polled) = bundle(&mut exact, 3_000);
    assert_eq!(
        (sizes, read),
        (vec![1024, 976], 2_000),
        "ends with the source"
    );
    assert!(polled.finished && polled.watermark == 5_000);
}

#[test]
fn a_source_reading_more_than_asked_is_cut_into_batches() {
    let mut greedy = Counter::new(2_500, 10_000, false);
    let (sizes, read, _) = bundle(&mut greedy, 100);
    assert_eq!((sizes, read), (vec![1024, 1024, 452], 2_500));
    let mut slow = Counter::new(10, 10_000, true);
    let (sizes, read, _) = bundle(&mut slow, 3_000);
    assert_eq!(
        (sizes, read),
        (vec![10], 10),
        "fewer than asked: nothing more now"
    );
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

/// Splits into one reader more than asked for.
struct Greedy;

impl UnboundedSource for Greedy {
    fn poll(
        &mut self,
        _now: i64,
        _max: usize,
        _out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError> {
        Ok(Polled {
            watermark: i64::MAX,
            finished: true,
        })
    }

    fn split(&self, n: usize) -> Vec<Box<dyn UnboundedSource>> {
        (0..=n)
            .map(|_| Box::new(Greedy) as Box<dyn UnboundedSource>)
            .collect()
    }
}

#[test]
fn a_source_splitting_into_more_readers_than_asked_fails_naming_it() {
    let factory: SourceFactory = Arc::new(|| Ok(Box::new(Greedy) as Box<dyn UnboundedSource>));
    let pc = |name: &str| PCollectionInfo {
        name: name.into(),
        coder: Coder::VarInt,
        windowing: Default::default(),
    };
    let graph = Graph {
        pcollections: vec![pc("Clicks.out"), pc("Minutes.out")],
        nodes: vec![
            Node {
                name: "Clicks".into(),
                kind: NodeKind::Source { source: factory },
                inputs: vec![],
                outputs: vec![0],
            },
            // Fused after the source: its readers run it.
            Node {
                name: "Minutes".into(),
                kind: NodeKind::WindowInto {
                    window_fn: crate::window::WindowFn::Fixed {
                        size: 60_000,
                        offset: 0,
                    },
                },
                inputs: vec![0],
                outputs: vec![1],
            },
        ],
    };
    let opts = StreamOptions {
        virtual_time: false,
        workers: 2,
        ..StreamOptions::default()
    };
    let err = match execute_streaming(&graph, &opts) {
        Ok(_) => panic!("an impossible split fails the job"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("Clicks") && err.contains("split into 3 readers when asked for at most 2"),
        "{err}"
    );
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
