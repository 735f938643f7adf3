//! The thin adapter over Timely Dataflow (`timely` pinned exactly): the one place an upgrade
//! touches.
//!
//! Elements travel between operators as batches of `(key hash, encoded element)`: the hash
//! routes keyed exchanges ([`beamline_engine::operators::partition::key_hash`] of the
//! encoded key, the same in every process), the bytes are
//! [`beamline_engine::element_codec::encode_windowed`]'s.
//!
//! Timely's time is a checkpoint epoch and Beam's watermark: a [`Time`] is the product of
//! the epoch and `(watermark, (processing time, step))`, the latter ordered
//! lexicographically. An operator holds its capabilities at its output watermark, so a
//! downstream input frontier is its input watermark (the least over the frontier's
//! times); the processing time (virtual, under a TestStream) and a step counter (one per
//! source bundle) order what happens at one watermark as the local runner does. Sources
//! move to the next epoch at each checkpoint, and an operator whose inputs all passed an
//! epoch has seen all of it and nothing after it: its state then is its part of that
//! checkpoint (without checkpoints, every time is of epoch 0).

use std::rc::Rc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Concatenate};
use timely::order::{PartialOrder, Product};
use timely::scheduling::Activator;

/// Timely's time in Beamline's dataflows: epoch × `(watermark, (processing time, step))`,
/// see the module's documentation; build with [`time`].
pub(crate) type Time = Product<u64, (u64, (u64, u64))>;

/// A scope of the pipeline's dataflow.
pub(crate) type Scope<'s> = timely::dataflow::Scope<'s, Time>;

/// The time of checkpoint epoch `epoch`, watermark `wm` (ms, any `i64`), processing time
/// `pt` (ms, at least 0) and step `step`.
pub(crate) fn time(epoch: u64, wm: i64, pt: i64, step: u64) -> Time {
    Product::new(epoch, ((wm as u64) ^ (1 << 63), (pt.max(0) as u64, step)))
}

/// The checkpoint epoch of a time.
pub(crate) fn epoch_of(t: &Time) -> u64 {
    t.outer
}

/// The watermark of a time.
pub(crate) fn watermark_of(t: &Time) -> i64 {
    (t.inner.0 ^ (1 << 63)) as i64
}

/// The processing time of a time.
pub(crate) fn processing_time_of(t: &Time) -> i64 {
    (t.inner.1 .0).min(i64::MAX as u64) as i64
}

/// The step of a time.
pub(crate) fn step_of(t: &Time) -> u64 {
    t.inner.1 .1
}

/// Where some inputs' frontiers are: the least times they may still receive.
#[derive(Clone, Debug, Default)]
pub(crate) struct Front {
    times: Vec<Time>,
}

impl Front {
    /// Every input is complete.
    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Nothing at `t` or before it may still arrive (with `at_ok`, only something at `t`
    /// itself may).
    pub(crate) fn passed(&self, t: &Time, at_ok: bool) -> bool {
        !self.times.iter().any(|f| {
            if at_ok {
                f.less_than(t)
            } else {
                f.less_equal(t)
            }
        })
    }

    /// Nothing of epoch `epoch` or before may still arrive.
    pub(crate) fn past_epoch(&self, epoch: u64) -> bool {
        self.times.iter().all(|f| f.outer > epoch)
    }

    /// The input watermark: the least over the times (`None` when complete).
    pub(crate) fn watermark(&self) -> Option<i64> {
        self.times.iter().map(watermark_of).min()
    }

    /// The least of the times, ordered epoch first.
    pub(crate) fn least(&self) -> Option<Time> {
        self.times.iter().min().copied()
    }
}

/// One element on the wire: its key's hash (0 when unkeyed) and its encoding (or a
/// part of a grouping: many elements' runs).
pub(crate) type Record = (u64, Payload);

/// The bytes of a record, serialized as one byte string (serde writes a `Vec<u8>` as a
/// sequence: one call per byte, each way).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Payload(pub Vec<u8>);

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// A batch of records.
pub(crate) type Batch = Vec<Record>;

/// A stream of records.
pub(crate) type Stream<'s> = timely::dataflow::Stream<'s, Time, Batch>;

type Output = OutputBuilder<Time, timely::container::CapacityContainerBuilder<Batch>>;

/// How an operator's input arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Where it was produced (same worker).
    Local,
    /// To the worker owning the record's key hash.
    ByKey,
    /// To every worker (side inputs).
    Everywhere,
    /// Spread evenly over the workers, round robin from this position (a Reshuffle); the
    /// records keep their key hash.
    Spread(u64),
}

/// The worker of a keyed record: from the hash's high half (the exchange takes the low
/// bits, which a multiplicative hash mixes least).
fn worker_of(r: &Record) -> u64 {
    r.0 >> 32
}

type Input = Box<dyn FnMut(&mut dyn FnMut(Time, &mut Batch))>;

/// What an operator's logic sees when it is scheduled: its inputs, their frontiers, its
/// outputs and its capabilities (one per output, all at the same time).
pub(crate) struct Ports<'a> {
    inputs: &'a mut [Input],
    frontiers: &'a [Vec<Time>],
    outputs: &'a mut [Output],
    caps: &'a mut Option<Vec<Capability<Time>>>,
    activator: &'a Activator,
}

impl Ports<'_> {
    /// Number of inputs.
    pub(crate) fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Hands every batch waiting on input `slot` to `f`, with its time.
    pub(crate) fn pull(&mut self, slot: usize, f: &mut dyn FnMut(Time, &mut Batch)) {
        (self.inputs[slot])(f)
    }

    /// The frontier of input `slot`.
    pub(crate) fn frontier(&self, slot: usize) -> Front {
        Front {
            times: self.frontiers[slot].clone(),
        }
    }

    /// The frontiers of every input.
    pub(crate) fn frontier_of_all(&self) -> Front {
        Front {
            times: self.frontiers.iter().flatten().copied().collect(),
        }
    }

    /// The time of the operator's capabilities; `None` once it finished.
    pub(crate) fn time(&self) -> Option<Time> {
        self.caps
            .as_ref()
            .and_then(|c| c.first().map(|c| *c.time()))
    }

    /// The operator finished (it gave up its capabilities).
    pub(crate) fn finished(&self) -> bool {
        self.caps.is_none()
    }

    /// Sends `records` on output `port` at the capabilities' time.
    pub(crate) fn give(&mut self, port: usize, records: &mut Batch) {
        if records.is_empty() {
            return;
        }
        let Some(cap) = self.caps.as_ref().and_then(|c| c.get(port)) else {
            records.clear();
            return;
        };
        let mut active = self.outputs[port].activate();
        let mut session = active.session(cap);
        session.give_iterator(records.drain(..));
    }

    /// Sends `records` on output `port` at time `t`, not before the capabilities' time.
    pub(crate) fn give_at(&mut self, port: usize, t: Time, records: &mut Batch) {
        if records.is_empty() {
            return;
        }
        let Some(cap) = self.caps.as_ref().and_then(|c| c.get(port)) else {
            records.clear();
            return;
        };
        let cap = cap.delayed(&join(&t, cap.time()));
        let mut active = self.outputs[port].activate();
        let mut session = active.session(&cap);
        session.give_iterator(records.drain(..));
    }

    /// Moves the capabilities towards `t`: each part (epoch, the rest) where it is later
    /// than theirs.
    pub(crate) fn downgrade(&mut self, t: Time) {
        if let Some(caps) = self.caps.as_mut() {
            for c in caps.iter_mut() {
                let to = join(c.time(), &t);
                if to != *c.time() {
                    c.downgrade(&to);
                }
            }
        }
    }

    /// Gives up the capabilities: the operator's outputs are complete.
    pub(crate) fn finish(&mut self) {
        *self.caps = None;
    }

    /// Schedules the operator again after `delay`.
    pub(crate) fn activate_after(&self, delay: std::time::Duration) {
        self.activator.activate_after(delay);
    }
}

/// The least time at or after both `a` and `b`.
pub(crate) fn join(a: &Time, b: &Time) -> Time {
    Product::new(a.outer.max(b.outer), a.inner.max(b.inner))
}

/// Builds operator `name` reading `inputs` and writing `outputs` streams; `logic` runs
/// whenever the operator is scheduled.
pub(crate) fn operator<'s, L>(
    scope: Scope<'s>,
    name: &str,
    inputs: Vec<(Stream<'s>, Route)>,
    outputs: usize,
    logic: L,
) -> Vec<Stream<'s>>
where
    L: FnMut(&mut Ports<'_>) + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_string(), scope);
    let activator = scope.activator_for(Rc::clone(&builder.operator_info().address));
    let mut handles: Vec<Input> = Vec::with_capacity(inputs.len());
    for (stream, route) in inputs {
        macro_rules! handle {
            ($h:expr) => {{
                let mut h = $h;
                handles.push(Box::new(move |f: &mut dyn FnMut(Time, &mut Batch)| {
                    h.for_each(|cap, data| {
                        // Sent under one capability: one time (else the times' meet,
                        // at or before each).
                        let stamp = cap.stamp().elements();
                        if let Some(first) = stamp.first() {
                            let t = stamp.iter().fold(*first, |m, t| {
                                Product::new(m.outer.min(t.outer), m.inner.min(t.inner))
                            });
                            f(t, data)
                        }
                    })
                }));
            }};
        }
        match route {
            Route::Local => handle!(builder.new_input(stream, Pipeline)),
            Route::ByKey => handle!(builder.new_input(stream, Exchange::new(worker_of))),
            Route::Everywhere => handle!(builder.new_input(stream.broadcast(), Pipeline)),
            Route::Spread(start) => {
                let mut next = start;
                let spread = move |_: &Record| {
                    next = next.wrapping_add(1);
                    next
                };
                handle!(builder.new_input(stream, Exchange::new(spread)))
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
    builder.build(move |caps| {
        let mut caps = Some(caps);
        let mut fronts: Vec<Vec<Time>> = Vec::new();
        move |frontiers| {
            fronts.resize_with(frontiers.len(), Vec::new);
            for (to, f) in fronts.iter_mut().zip(frontiers.iter()) {
                to.clear();
                to.extend(f.frontier().iter().copied());
            }
            logic(&mut Ports {
                inputs: &mut handles,
                frontiers: &fronts,
                outputs: &mut outs,
                caps: &mut caps,
                activator: &activator,
            });
        }
    });
    streams
}

/// Passes `stream` through an operator that routes it as `route` says.
pub(crate) fn pass<'s>(
    scope: Scope<'s>,
    name: &str,
    stream: Stream<'s>,
    route: Route,
) -> Stream<'s> {
    let mut streams = operator(scope, name, vec![(stream, route)], 1, move |p| {
        if p.finished() {
            return;
        }
        let mut by_time: Vec<(Time, Batch)> = Vec::new();
        p.pull(0, &mut |t, data| by_time.push((t, std::mem::take(data))));
        by_time.sort_by_key(|(t, _)| *t);
        // Records keep their time: hold it while sending, then follow the frontier (the
        // least epoch and the least rest of its times).
        for (t, mut batch) in by_time {
            p.give_at(0, t, &mut batch);
        }
        let front = &p.frontiers[0];
        match front.iter().map(|t| t.outer).min() {
            Some(epoch) => {
                let rest = front.iter().map(|t| t.inner).min().expect("not empty");
                p.downgrade(Product::new(epoch, rest));
            }
            None => p.finish(),
        }
    });
    streams.pop().expect("one output")
}

/// The union of `streams` (a Flatten).
pub(crate) fn concatenate<'s>(scope: Scope<'s>, streams: Vec<Stream<'s>>) -> Stream<'s> {
    scope.concatenate(streams)
}

/// Steps `worker` until its dataflows are complete.
pub(crate) fn run_to_end(worker: &mut timely::worker::Worker) {
    while worker.step_or_park(None) {}
}

/// Runs `work` in a scope of [`Time`] within a new dataflow of `worker`.
pub(crate) fn dataflow<R>(
    worker: &mut timely::worker::Worker,
    work: impl FnOnce(Scope<'_>) -> R,
) -> R {
    worker.dataflow::<u64, _, _>(|outer| outer.scoped::<Time, _, _>("Pipeline", work))
}

/// Runs `work` on every worker thread of this process (`process` of a cluster whose other
/// processes `sockets` connect it to, `None` at its own), `threads` workers per process;
/// returns with a handle to wait for the workers.
///
/// # Errors
/// When Timely's networking cannot start on the sockets.
pub(crate) fn execute<F>(
    process: usize,
    sockets: Vec<Option<std::net::TcpStream>>,
    threads: usize,
    work: F,
) -> Result<timely::communication::initialize::WorkerGuards<()>, String>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
    use timely::communication::Hooks;
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), None);
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, process, threads, hooks)
            .map_err(|e| format!("cannot start networking: {e}"))?;
    timely::execute::execute_from(
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        Box::new(guard),
        timely::WorkerConfig::default(),
        work,
    )
}
