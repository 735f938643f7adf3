//! Stateless transforms fused after a source: the ParDos (no state, timers or side
//! inputs) and WindowIntos that directly follow an unbounded source run on its worker
//! threads, so reading and that work overlap the rest of the pipeline.

use crate::error::{EngineError, Result};
use crate::graph::{Graph, Node, NodeKind};
use crate::job::JobControl;
use crate::metrics::MetricResults;
use crate::operators::op::{Op, OpCx};
use crate::operators::pardo::ParDoOp;
use crate::operators::precombine::{Partial, PreCombine};
use crate::operators::simple::WindowIntoOp;
use crate::progress::StageMeters;
use crate::window::WindowedValue;

/// The fused transform of `node` (on the line of a source's stage, see
/// [`crate::plan::StagePlan::line`]), with its name.
///
/// # Errors
/// As building the ParDo's operator.
pub(super) fn link(graph: &Graph, node: &Node) -> Result<(String, LinkOp)> {
    let op = match &node.kind {
        NodeKind::ParDo {
            dofn,
            side_inputs,
            stateful,
        } => LinkOp::ParDo(Box::new(ParDoOp::new(
            graph,
            node,
            dofn,
            side_inputs,
            stateful.as_ref(),
        )?)),
        NodeKind::WindowInto { window_fn } => LinkOp::WindowInto(WindowIntoOp(*window_fn)),
        other => {
            return Err(EngineError::InvalidPipeline(format!(
                "'{}': a {} cannot run on a source's worker threads",
                node.name,
                other.label()
            )))
        }
    };
    Ok((node.name.clone(), op))
}

/// One fused transform.
pub(super) enum LinkOp {
    ParDo(Box<ParDoOp>),
    WindowInto(WindowIntoOp),
}

impl LinkOp {
    fn op(&mut self) -> &mut dyn Op {
        match self {
            LinkOp::ParDo(p) => &mut **p,
            LinkOp::WindowInto(w) => w,
        }
    }
}

/// Most buffers a chain keeps for reuse: a bundle's batches and the links' outputs.
const MAX_POOL: usize = 64;

/// Buffers a chain keeps between bundles: enough for the links' outputs.
const KEEP_POOL: usize = 8;

/// The fused transforms of a source, with their names; one copy per worker thread.
#[derive(Default)]
pub(super) struct Chain {
    links: Vec<(String, LinkOp)>,
    /// Folds the links' output per key and window, for the CombinePerKey after them.
    precombine: Option<PreCombine>,
    /// Emptied batch buffers, reused for the links' outputs.
    pool: Vec<Vec<WindowedValue>>,
    /// Where the links' metrics go while the job runs, and when they last went.
    control: Option<(JobControl, std::time::Instant)>,
    /// Where the elements read are counted: the source's stage, and the stage of the
    /// grouping its pre-combiner feeds.
    meters: Option<(StageMeters, usize, Option<usize>)>,
    /// Elements fed and folded since the bundle began (counted at its end: no shared
    /// counter per batch).
    counted: (usize, usize),
}

impl Chain {
    pub(super) fn new(links: Vec<(String, LinkOp)>) -> Self {
        Chain {
            links,
            precombine: None,
            pool: Vec::new(),
            control: None,
            meters: None,
            counted: (0, 0),
        }
    }

    /// Counts the elements fed to the links as stage `stage`'s input, and those folded by
    /// the pre-combiner as its output and the input of stage `grouping`.
    pub(super) fn counting_into(
        mut self,
        meters: StageMeters,
        stage: usize,
        grouping: Option<usize>,
    ) -> Self {
        self.meters = Some((meters, stage, grouping));
        self
    }

    /// Reports the links' metrics to `control` every so often, at the end of a bundle.
    pub(super) fn reporting_to(mut self, control: JobControl) -> Self {
        self.control = Some((control, std::time::Instant::now()));
        self
    }

    /// Folds everything the links emit into partial results (see [`PreCombine`]).
    pub(super) fn with_precombine(mut self, pre: PreCombine) -> Self {
        self.precombine = Some(pre);
        self
    }

    pub(super) fn is_empty(&self) -> bool {
        self.links.is_empty() && self.precombine.is_none()
    }

    /// Calls link `i` with a one-output context; returns what it emitted, in a buffer
    /// with room for at least `room` elements.
    fn call(
        &mut self,
        i: usize,
        wm: i64,
        now: i64,
        room: usize,
        f: impl FnOnce(&mut dyn Op, &mut OpCx<'_>) -> Result<()>,
    ) -> Result<Vec<WindowedValue>> {
        let (name, op) = &mut self.links[i];
        let mut out = self.pool.pop().unwrap_or_default();
        out.reserve(room);
        let (mut more, mut spare) = (Vec::new(), Vec::new());
        let mut cx = OpCx {
            out: std::slice::from_mut(&mut out),
            more: &mut more,
            spare: &mut spare,
            now,
            input_watermark: wm,
            output_watermark: wm,
            name,
        };
        f(op.op(), &mut cx)?;
        Ok(out)
    }

    /// Pushes `batch` through links `from..`.
    fn push(
        &mut self,
        from: usize,
        mut batch: Vec<WindowedValue>,
        wm: i64,
        now: i64,
    ) -> Result<Vec<WindowedValue>> {
        for i in from..self.links.len() {
            if batch.is_empty() {
                break;
            }
            let mut out = self.call(i, wm, now, batch.len(), |op, cx| {
                op.process(0, &mut batch, cx)
            })?;
            std::mem::swap(&mut batch, &mut out);
            out.clear();
            self.pool.push(out);
        }
        Ok(batch)
    }

    /// Runs one bundle's batches through every link, then ends the bundle of each link
    /// in order (see [`Chain::end_bundle`]). `wm` is the source's watermark before the
    /// bundle; empty batches are left out.
    ///
    /// # Errors
    /// The first failure of a link, naming it.
    pub(super) fn run_bundle(
        &mut self,
        batches: Vec<Vec<WindowedValue>>,
        wm: i64,
        now: i64,
    ) -> Result<(Vec<Vec<WindowedValue>>, Vec<Partial>)> {
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            self.feed(batch, wm, now, &mut out)?;
        }
        let partials = self.end_bundle(wm, now, &mut out)?;
        Ok((out, partials))
    }

    /// Runs one batch of a bundle through every link, adding what comes out to `out`
    /// (with a pre-combiner, folding it into the bundle's partial results instead).
    ///
    /// # Errors
    /// The first failure of a link, naming it.
    pub(super) fn feed(
        &mut self,
        batch: Vec<WindowedValue>,
        wm: i64,
        now: i64,
        out: &mut Vec<Vec<WindowedValue>>,
    ) -> Result<()> {
        self.counted.0 += batch.len();
        let b = self.push(0, batch, wm, now)?;
        self.keep(b, out)
    }

    /// Ends the bundle of each link in order (what a `finish_bundle` emits goes through
    /// the links after it, into `out`); the bundle's partial results, with a pre-combiner.
    ///
    /// # Errors
    /// The first failure of a link, naming it.
    pub(super) fn end_bundle(
        &mut self,
        wm: i64,
        now: i64,
        out: &mut Vec<Vec<WindowedValue>>,
    ) -> Result<Vec<Partial>> {
        for i in 0..self.links.len() {
            let emitted = self.call(i, wm, now, 0, |op, cx| op.end_bundle(cx))?;
            let b = self.push(i + 1, emitted, wm, now)?;
            self.keep(b, out)?;
        }
        let (fed, folded) = std::mem::take(&mut self.counted);
        if let Some((meters, stage, grouping)) = &self.meters {
            meters.add_in(*stage, fed);
            if let Some(g) = grouping {
                meters.add_out(*stage, folded);
                meters.add_in(*g, folded);
            }
        }
        if let Some((control, last)) = &mut self.control {
            if last.elapsed() >= super::clock::REPORT_EVERY {
                *last = std::time::Instant::now();
                for (name, op) in &mut self.links {
                    op.op().report(name, control);
                }
            }
        }
        match self.precombine.as_mut() {
            Some(pre) => pre.take(),
            None => Ok(Vec::new()),
        }
    }

    /// An empty buffer for a batch, from the pool when it has one.
    pub(super) fn buffer(&mut self) -> Vec<WindowedValue> {
        self.pool.pop().unwrap_or_default()
    }

    /// A pooled buffer beyond the few the links reuse, if any.
    pub(super) fn surplus(&mut self) -> Option<Vec<WindowedValue>> {
        if self.pool.len() > KEEP_POOL {
            self.pool.pop()
        } else {
            None
        }
    }

    /// Gives back a buffer the rest of the pipeline emptied.
    pub(super) fn recycle(&mut self, mut buf: Vec<WindowedValue>) {
        if self.pool.len() < MAX_POOL {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// Adds a non-empty output batch to `out` (or folds it into the partial results);
    /// pools an emptied one.
    fn keep(&mut self, mut b: Vec<WindowedValue>, out: &mut Vec<Vec<WindowedValue>>) -> Result<()> {
        if let Some(pre) = &mut self.precombine {
            let before = b.len();
            pre.add(&mut b)?;
            self.counted.1 += before - b.len();
        }
        if b.is_empty() {
            self.recycle(b);
        } else {
            out.push(b);
        }
        Ok(())
    }

    /// Tears the links down; their metrics, and the first teardown failure.
    pub(super) fn finish(&mut self) -> (MetricResults, Result<()>) {
        let mut metrics = MetricResults::default();
        let mut result = Ok(());
        for (name, op) in &mut self.links {
            let r = op.op().finish(name, &mut metrics);
            if result.is_ok() {
                result = r;
            }
        }
        (metrics, result)
    }
}
