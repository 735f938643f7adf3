//! The thin adapter over Timely Dataflow (`timely` pinned exactly): the one place an upgrade
//! touches.
//!
//! Elements travel between operators as batches of `(key hash, encoded element)`: the hash
//! routes keyed exchanges ([`beamline_engine::operators::partition::key_hash`] of the
//! encoded key, the same in every process), the bytes are
//! [`beamline_engine::element_codec::encode_windowed`]'s.

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Concatenate};

pub(crate) use timely::dataflow::Scope;

/// Timely's time in Beamline's dataflows: every element is at time 0 (bounded input); the
/// frontier passing 0 means the input is complete.
pub(crate) type Time = u64;

/// One element on the wire: its key's hash (0 when unkeyed) and its encoding.
pub(crate) type Record = (u64, Vec<u8>);

/// A batch of records.
pub(crate) type Batch = Vec<Record>;

/// A stream of records.
pub(crate) type Stream<'s> = timely::dataflow::Stream<'s, Time, Batch>;

/// An output of an operator under construction.
pub(crate) type Output = OutputBuilder<Time, timely::container::CapacityContainerBuilder<Batch>>;

/// How an operator's input arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Where it was produced (same worker).
    Local,
    /// To the worker owning the record's key hash.
    ByKey,
    /// To every worker (side inputs).
    Everywhere,
}

/// The input handle type of an operator built here.
pub(crate) type Input = Box<dyn FnMut(&mut dyn FnMut(&mut Batch))>;

/// Builds operator `name` reading `inputs` and writing `outputs` streams; `logic` gets
/// the inputs (each pulled with a callback), whether each input is complete, the outputs
/// and the operator's one capability (taken away to finish).
pub(crate) fn operator<'s, L>(
    scope: Scope<'s, Time>,
    name: &str,
    inputs: Vec<(Stream<'s>, Route)>,
    outputs: usize,
    logic: L,
) -> Vec<Stream<'s>>
where
    L: FnMut(&mut [Input], &[bool], &mut [Output], &mut Option<Capability<Time>>) + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_string(), scope);
    let mut handles: Vec<Input> = Vec::with_capacity(inputs.len());
    for (stream, route) in inputs {
        match route {
            Route::Local => {
                let mut h = builder.new_input(stream, Pipeline);
                handles.push(Box::new(move |f: &mut dyn FnMut(&mut Batch)| {
                    h.for_each(|_cap, data| f(data))
                }));
            }
            Route::ByKey => {
                let mut h = builder.new_input(stream, Exchange::new(|r: &Record| r.0));
                handles.push(Box::new(move |f: &mut dyn FnMut(&mut Batch)| {
                    h.for_each(|_cap, data| f(data))
                }));
            }
            Route::Everywhere => {
                let mut h = builder.new_input(stream.broadcast(), Pipeline);
                handles.push(Box::new(move |f: &mut dyn FnMut(&mut Batch)| {
                    h.for_each(|_cap, data| f(data))
                }));
            }
        }
    }
    let mut outs = Vec::with_capacity(outputs);
    let mut streams = Vec::with_capacity(outputs);
    for _ in 0..outputs {
        let (out, stream) = builder.new_output::<Batch>();
        outs.push(OutputBuilder::from(out));
        streams.push(stream);
    }
    let mut logic = logic;
    builder.build(move |mut caps| {
        let mut cap = caps.pop();
        move |frontiers| {
            let done: Vec<bool> = frontiers.iter().map(|f| f.is_empty()).collect();
            logic(&mut handles, &done, &mut outs, &mut cap);
        }
    });
    streams
}

/// Passes `stream` through an operator that routes it as `route` says, after `retag`
/// changed each record's hash (round robin for a Reshuffle).
pub(crate) fn pass<'s>(
    scope: Scope<'s, Time>,
    name: &str,
    stream: Stream<'s>,
    route: Route,
    mut retag: impl FnMut(&mut Record) + 'static,
) -> Stream<'s> {
    let mut streams = operator(
        scope,
        name,
        vec![(stream, route)],
        1,
        move |inputs, done, outs, cap| {
            let Some(c) = cap.clone() else { return };
            let mut batch = Vec::new();
            inputs[0](&mut |data: &mut Batch| {
                for mut r in data.drain(..) {
                    retag(&mut r);
                    batch.push(r);
                }
            });
            give(&mut outs[0], &c, &mut batch);
            if done[0] {
                *cap = None;
            }
        },
    );
    streams.pop().expect("one output")
}

/// Sends `records` on `output` at `cap`'s time.
pub(crate) fn give(output: &mut Output, cap: &Capability<Time>, records: &mut Batch) {
    if records.is_empty() {
        return;
    }
    let mut active = output.activate();
    let mut session = active.session(cap);
    session.give_iterator(records.drain(..));
}

/// The union of `streams` (a Flatten).
pub(crate) fn concatenate<'s>(scope: Scope<'s, Time>, streams: Vec<Stream<'s>>) -> Stream<'s> {
    scope.concatenate(streams)
}

/// Runs `work` on every worker thread of this process of a cluster of `addresses` (one per
/// process, this one at `process`), `threads` workers per process; returns once the
/// processes are connected, with a handle to wait for the workers.
///
/// # Errors
/// When the network cannot be set up (a port in use, a peer refusing).
pub(crate) fn execute<F>(
    process: usize,
    addresses: Vec<String>,
    threads: usize,
    work: F,
) -> Result<timely::communication::initialize::WorkerGuards<()>, String>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    let config = timely::Config {
        communication: timely::communication::Config::Cluster {
            threads,
            process,
            addresses,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    };
    timely::execute(config, work)
}
