//! Pushing elements op to op within one instance of a fused stage: each op's outputs wait
//! in a buffer per output tag and go downstream a batch at a time, into the next ops or the
//! stage's sinks.

use super::shuffle::ShuffleWriter;
use crate::dofn::{Context, DoFnInvoker, Emitter, SideInputData};
use crate::error::{EngineError, Result};
use crate::metrics::MetricsContainer;
use crate::operators::guard::guarded;
use crate::plan::Target;
use crate::window::{Window, WindowFn, WindowedValue};

/// What an op of a stage runs.
pub(super) enum OpKind {
    ParDo(Box<dyn DoFnInvoker>),
    WindowInto(WindowFn),
}

/// Elements handed from one op to the next at a time: enough to pay the per-call work
/// (dispatch, panic guard, context) rarely, few enough to stay in the first-level cache
/// with what they point to (128 elements of 88 bytes plus their boxed key/value pairs:
/// ~19 KB; 256 spilled out of it and cost 7-12% in gbk-sum and combine-mean).
pub(super) const BATCH: usize = 128;

/// One op of a stage's instance: what it runs, where its outputs go, its metrics.
pub(super) struct OpInstance {
    pub(super) name: String,
    pub(super) kind: OpKind,
    pub(super) outputs: Vec<Vec<Target>>,
    pub(super) metrics: MetricsContainer,
    /// Outputs not yet handed downstream, one buffer per output tag.
    pub(super) pending: Vec<Vec<WindowedValue>>,
}

/// Where a stage's output ends up in one bundle: materialized, or written into a shuffle.
pub(super) enum SinkInstance {
    Materialize(Vec<WindowedValue>),
    Shuffle(Box<ShuffleWriter>),
}

/// What an op is asked to do: start its bundle, process a batch, finish its bundle.
pub(super) enum Call<'b> {
    Start,
    Process(&'b mut Vec<WindowedValue>),
    Finish,
}

/// Hands the pending outputs of op `i` (an index into `ops`, which starts at op 0) to
/// their targets.
pub(super) fn flush(
    ops: &mut [OpInstance],
    i: usize,
    sinks: &mut [SinkInstance],
    side: &[Vec<SideInputData>],
) -> Result<()> {
    let (left, right) = ops.split_at_mut(i + 1);
    let op = &mut left[i];
    for (buf, targets) in op.pending.iter_mut().zip(&op.outputs) {
        if !buf.is_empty() {
            deliver(right, i + 1, sinks, side, targets, buf)?;
        }
    }
    Ok(())
}

/// Delivers a batch to every target, leaving `batch` empty (its capacity is kept);
/// ops are addressed by absolute index, `ops[0]` is op `base`.
pub(super) fn deliver(
    ops: &mut [OpInstance],
    base: usize,
    sinks: &mut [SinkInstance],
    side: &[Vec<SideInputData>],
    targets: &[Target],
    batch: &mut Vec<WindowedValue>,
) -> Result<()> {
    let Some((last, rest)) = targets.split_last() else {
        batch.clear();
        return Ok(());
    };
    for t in rest {
        deliver_one(ops, base, sinks, side, *t, &mut batch.clone())?;
    }
    deliver_one(ops, base, sinks, side, *last, batch)
}

/// Delivers a batch to one target.
fn deliver_one(
    ops: &mut [OpInstance],
    base: usize,
    sinks: &mut [SinkInstance],
    side: &[Vec<SideInputData>],
    t: Target,
    batch: &mut Vec<WindowedValue>,
) -> Result<()> {
    match t {
        Target::Op(j) => {
            let r = call_op_rel(ops, base, j, sinks, side, Call::Process(&mut *batch));
            // An invoker that stopped early (it failed) leaves elements behind.
            batch.clear();
            r
        }
        Target::Sink(s) => deliver_to_sink(&mut sinks[s], batch),
    }
}

/// Adds a batch to a sink.
fn deliver_to_sink(sink: &mut SinkInstance, batch: &mut Vec<WindowedValue>) -> Result<()> {
    match sink {
        SinkInstance::Materialize(v) => {
            v.append(batch);
            Ok(())
        }
        SinkInstance::Shuffle(w) => w.write_batch(batch),
    }
}

/// Runs `call` on op `j` (its outputs go down the rest of the stage).
pub(super) fn call_op(
    ops: &mut [OpInstance],
    j: usize,
    sinks: &mut [SinkInstance],
    side: &[Vec<SideInputData>],
    call: Call<'_>,
) -> Result<()> {
    call_op_rel(ops, 0, j, sinks, side, call)
}

/// Where an op's outputs go: into its pending buffers, handed downstream when full.
struct StageEmitter<'s> {
    ops: &'s mut [OpInstance],
    base: usize,
    sinks: &'s mut [SinkInstance],
    side: &'s [Vec<SideInputData>],
    outputs: &'s [Vec<Target>],
    pending: &'s mut [Vec<WindowedValue>],
}

impl Emitter for StageEmitter<'_> {
    fn emit(&mut self, tag: usize, wv: WindowedValue) -> Result<()> {
        let (Some(buf), Some(targets)) = (self.pending.get_mut(tag), self.outputs.get(tag)) else {
            return Err(EngineError::InvalidPipeline(format!(
                "output tag #{tag} used but the transform declares {} output(s)",
                self.outputs.len()
            )));
        };
        buf.push(wv);
        if buf.len() >= BATCH {
            deliver(self.ops, self.base, self.sinks, self.side, targets, buf)?;
        }
        Ok(())
    }

    fn buffer(&mut self, tag: usize) -> Result<Option<&mut Vec<WindowedValue>>> {
        let (Some(buf), Some(targets)) = (self.pending.get_mut(tag), self.outputs.get(tag)) else {
            // Unknown tags get their error from `emit`.
            return Ok(None);
        };
        if buf.len() >= BATCH {
            deliver(self.ops, self.base, self.sinks, self.side, targets, buf)?;
        }
        Ok(Some(buf))
    }
}

/// Runs `call` on op `j` of `ops`, whose first op is op `base`.
fn call_op_rel(
    ops: &mut [OpInstance],
    base: usize,
    j: usize,
    sinks: &mut [SinkInstance],
    side: &[Vec<SideInputData>],
    call: Call<'_>,
) -> Result<()> {
    let rel = j - base;
    let (left, right) = ops.split_at_mut(rel + 1);
    let OpInstance {
        name,
        kind,
        outputs,
        metrics,
        pending,
    } = &mut left[rel];
    let mut em = StageEmitter {
        ops: right,
        base: j + 1,
        sinks,
        side,
        outputs,
        pending,
    };
    match kind {
        OpKind::WindowInto(wf) => {
            let Call::Process(batch) = call else {
                return Ok(());
            };
            for wv in batch.drain(..) {
                match wf.assign_one(wv.timestamp) {
                    Some(window) => em.emit(0, WindowedValue { window, ..wv })?,
                    None => {
                        for window in wf.assign(wv.timestamp) {
                            em.emit(
                                0,
                                WindowedValue {
                                    window,
                                    ..wv.clone()
                                },
                            )?;
                        }
                    }
                }
            }
            Ok(())
        }
        OpKind::ParDo(inv) => {
            let mut ctx = Context::new(&mut em, &side[j], metrics, Window::Global);
            let r = guarded(name, || match call {
                Call::Start => inv.start_bundle(&mut ctx),
                Call::Process(batch) => inv.process_batch(batch, &mut ctx),
                Call::Finish => inv.finish_bundle(&mut ctx),
            });
            // A downstream failure is the root cause; report it first.
            match ctx.take_error() {
                Some(e) => Err(e),
                None => r,
            }
        }
    }
}
