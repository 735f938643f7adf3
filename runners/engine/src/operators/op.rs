//! The operator interface every scheduler drives: batches in, batches out, watermarks,
//! processing time and bundle ends.

use crate::checkpoint::{NodeState, StateOut};
use crate::error::{EngineError, Result};
use crate::job::JobControl;
use crate::metrics::MetricResults;
use crate::window::WindowedValue;

/// The watermark after all data: past the end of every window.
pub const END_OF_TIME: i64 = i64::MAX;

/// What an operator sees of the scheduler during a call: where its outputs go, the time
/// and its watermarks.
pub struct OpCx<'a> {
    /// Output buffers, one per output tag.
    pub out: &'a mut [Vec<WindowedValue>],
    /// Further batches of output 0, queued in order after `out[0]`: a source hands over a
    /// bundle in batches small enough to stay in cache on their way downstream.
    pub more: &'a mut Vec<Vec<WindowedValue>>,
    /// Emptied buffers the executor keeps for outputs; a source hands some back to its
    /// reader thread.
    pub spare: &'a mut Vec<Vec<WindowedValue>>,
    /// Processing time (ms).
    pub now: i64,
    /// The operator's input watermark.
    pub input_watermark: i64,
    /// The operator's output watermark.
    pub output_watermark: i64,
    /// The transform's unique name.
    pub name: &'a str,
}

/// Runs `f` with the context of an operator whose caller drives it alone over a bounded
/// input: outputs go to `out` (further batches of output 0 are appended to `out[0]`),
/// processing time is 0 and no output watermark is tracked.
pub fn call_bounded<R>(
    out: &mut [Vec<WindowedValue>],
    input_watermark: i64,
    name: &str,
    f: impl FnOnce(&mut OpCx<'_>) -> R,
) -> R {
    let (mut more, mut spare) = (Vec::new(), Vec::new());
    let r = f(&mut OpCx {
        out: &mut *out,
        more: &mut more,
        spare: &mut spare,
        now: 0,
        input_watermark,
        output_watermark: i64::MIN,
        name,
    });
    if let Some(first) = out.first_mut() {
        for batch in more {
            first.extend(batch);
        }
    }
    r
}

/// What a source did in one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStep {
    /// The operator is not a source.
    NotASource,
    /// The source has no more data and its watermark reached the end of time.
    Finished,
    /// Nothing to read now; call again later.
    Idle,
    /// It emitted data (or advanced its watermark).
    Progressed {
        /// Processing time to add under virtual time (a TestStream's advance), ms.
        advance_processing_time: i64,
    },
}

/// How many bytes of keyed state an operator keeps in memory, and where the rest goes:
/// past the budget, state and timers are spilled to a store in `dir` and read back when
/// used (see [`Op::limit_state`]).
#[derive(Clone, Debug)]
pub struct StateBudget {
    /// Estimated bytes of state to keep in memory.
    pub bytes: usize,
    /// Directory of the spill store (a temporary file, deleted when the operator is).
    pub dir: std::path::PathBuf,
}

/// Share of a memory budget given to keyed state; the rest is for bundles in flight, the
/// spill stores' caches and what is not state.
const STATE_SHARE: f64 = 0.5;

impl StateBudget {
    /// Each keyed operator's budget when the keyed state of `graph` may take `budget`
    /// bytes in all, with `instances` copies of each running in the process: an equal
    /// share of half of it for each stateful DoFn and each grouping (GroupByKey,
    /// CombinePerKey: their panes in streaming), spilling into `dir` (default: the
    /// system's temporary directory). `None` when no transform has keyed state.
    pub fn share(
        graph: &crate::graph::Graph,
        budget: usize,
        instances: usize,
        dir: Option<&std::path::Path>,
    ) -> Option<StateBudget> {
        use crate::graph::NodeKind;
        let stateful = graph
            .nodes
            .iter()
            .filter(|n| {
                matches!(
                    &n.kind,
                    NodeKind::ParDo {
                        stateful: Some(_),
                        ..
                    } | NodeKind::GroupByKey
                        | NodeKind::CombinePerKey { .. }
                )
            })
            .count()
            * instances.max(1);
        (stateful > 0).then(|| StateBudget {
            bytes: (budget as f64 * STATE_SHARE / stateful as f64) as usize,
            dir: dir.map_or_else(std::env::temp_dir, |d| d.to_path_buf()),
        })
    }

    /// Where a checkpoint's entries of one operator go past what it keeps in memory
    /// (a quarter of the operator's budget, at least 1 MiB), so that a checkpoint of
    /// spilled state does not gather it all in memory.
    pub fn checkpoint_overflow(&self) -> (std::path::PathBuf, usize) {
        (self.dir.clone(), (self.bytes / 4).max(1 << 20))
    }

    /// Bytes the spill store may cache: an eighth of the budget, within 1 MiB..256 MiB.
    pub(crate) fn cache_bytes(&self) -> usize {
        (self.bytes / 8).clamp(1 << 20, 256 << 20)
    }
}

/// Moves a batch into an output buffer (without copying when the buffer is empty).
pub fn forward(batch: &mut Vec<WindowedValue>, out: &mut Vec<WindowedValue>) {
    if out.is_empty() {
        std::mem::swap(batch, out);
    } else {
        out.append(batch);
    }
}

/// A transform as a scheduler drives it: batches of elements in, batches out through the
/// [`OpCx`], and the events of event time and processing time.
///
/// A scheduler calls [`process`](Op::process) for each batch of an input, then
/// [`end_bundle`](Op::end_bundle); [`advance`](Op::advance) when the input watermark
/// moves (firing event-time triggers and timers) and
/// [`on_processing_time`](Op::on_processing_time) as processing time passes; it reads
/// [`hold`](Op::hold) to compute the operator's output watermark. Sources are operators
/// whose [`step`](Op::step) produces data. Every method has a default that does nothing,
/// so an operator implements what it uses.
pub trait Op {
    /// Processes a batch of elements of input `slot` (0: main input, 1..: side inputs);
    /// what is left in `batch` afterwards is discarded.
    ///
    /// # Errors
    /// User code failures and panics (naming the transform), coder mismatches.
    fn process(
        &mut self,
        _slot: usize,
        _batch: &mut Vec<WindowedValue>,
        _cx: &mut OpCx<'_>,
    ) -> Result<()> {
        Ok(())
    }
    /// Ends the current bundle (count triggers fire, `finish_bundle` runs).
    ///
    /// # Errors
    /// As [`Op::process`].
    fn end_bundle(&mut self, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    /// The input watermark moved to `wm`: fire what is due in event time.
    ///
    /// # Errors
    /// As [`Op::process`].
    fn advance(&mut self, _wm: i64, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    /// Like [`Op::advance`], but may stop once it has emitted about `max_out` more
    /// elements: then it returns false, and the caller drains the output and calls it
    /// again with the same watermark until it returns true (an operator whose state is
    /// beyond memory does not hold all of a window end's output at once).
    ///
    /// # Errors
    /// As [`Op::advance`].
    fn advance_some(&mut self, wm: i64, cx: &mut OpCx<'_>, _max_out: usize) -> Result<bool> {
        self.advance(wm, cx)?;
        Ok(true)
    }
    /// The watermarks of the side inputs, in declaration order (elements wait for them).
    fn side_watermarks(&mut self, _wms: &[i64]) {}
    /// Processing time moved to `cx.now`: fire what is due in processing time.
    ///
    /// # Errors
    /// As [`Op::process`].
    fn on_processing_time(&mut self, _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    /// The earliest timestamp the operator may still emit (pending panes, timers): its
    /// output watermark cannot pass it.
    fn hold(&self) -> i64 {
        END_OF_TIME
    }
    /// A source reads what it can now; other operators say [`SourceStep::NotASource`].
    ///
    /// # Errors
    /// Source failures.
    fn step(&mut self, _cx: &mut OpCx<'_>) -> Result<SourceStep> {
        Ok(SourceStep::NotASource)
    }
    /// A source stops reading (a drain); its watermark then advances to the end.
    fn stop(&mut self) {}
    /// Runs timer `name` of the key encoded as `key` in `window`, fired by a runner that
    /// keeps the timers (see [`crate::operators::state_backend::StateBackend`]).
    ///
    /// # Errors
    /// User code failures; an operator without timers.
    fn fire_timer(
        &mut self,
        _key: &[u8],
        _window: crate::window::Window,
        name: &str,
        _output_timestamp: i64,
        cx: &mut OpCx<'_>,
    ) -> Result<()> {
        Err(crate::error::EngineError::Runner(format!(
            "timer '{name}' fired for '{}', which has no timers",
            cx.name
        )))
    }
    /// Saves the operator's state for a checkpoint: all of it when `out.full()`, else
    /// what changed since the last call. Called between bundles, with no element between
    /// operators; outputs emitted here go downstream before the next bundle.
    ///
    /// # Errors
    /// An operator that cannot be checkpointed (the default: it says so, naming the
    /// transform), state that cannot be encoded, user code failing to prepare a commit.
    fn snapshot(&mut self, _out: &mut StateOut, cx: &mut OpCx<'_>) -> Result<()> {
        Err(EngineError::Checkpoint(format!(
            "transform '{}' cannot be checkpointed yet",
            cx.name
        )))
    }
    /// Restores what [`Op::snapshot`] saved, before any element arrives.
    ///
    /// # Errors
    /// Corrupt or incompatible state (naming the transform).
    fn restore(&mut self, _state: &NodeState, cx: &mut OpCx<'_>) -> Result<()> {
        Err(EngineError::Checkpoint(format!(
            "transform '{}' cannot restore a checkpoint",
            cx.name
        )))
    }
    /// The checkpoint holding `records` (from [`StateOut::commit_record`]) is durable:
    /// makes their effects visible. Called again after a restore: must be idempotent.
    ///
    /// # Errors
    /// User code failing to commit.
    fn commit(&mut self, _records: &[Vec<u8>], _cx: &mut OpCx<'_>) -> Result<()> {
        Ok(())
    }
    /// Keeps the operator's keyed state within `budget`, spilling the rest to disk;
    /// whether the operator has keyed state it can spill (called before any element).
    fn limit_state(&mut self, _budget: StateBudget) -> bool {
        false
    }
    /// The job takes checkpoints: output made visible outside the job must wait for
    /// [`Op::commit`] (called before any element arrives). `instance` tells the
    /// transform's parallel instances apart (a distributed job's worker; 0 otherwise).
    fn enable_commits(&mut self, _instance: usize) {}
    /// Moves the metrics gathered so far to the job's handle.
    fn report(&mut self, _name: &str, _control: &JobControl) {}
    /// Tears the operator down and adds its metrics to `metrics`.
    ///
    /// # Errors
    /// A failing `teardown` of user code.
    fn finish(&mut self, _name: &str, _metrics: &mut MetricResults) -> Result<()> {
        Ok(())
    }
}
