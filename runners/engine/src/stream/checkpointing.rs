//! The streaming executor's checkpoints: restoring every operator and the watermarks at
//! start, a snapshot between two rounds of the loop when one is due, commits once it is
//! durable, and a last checkpoint when the job ends.

use super::Executor;
use crate::checkpoint::codec::{Dec, Enc};
use crate::checkpoint::{Completed, Coordinator, Restored, StateOut};
use crate::error::{EngineError, Result};
use crate::metrics::MetricsContainer;

/// Where the checkpoint metrics are reported (a step of their own).
pub const CHECKPOINT_STEP: &str = "(checkpoints)";

/// Metric namespace of checkpoint metrics.
const NS: &str = "beamline.checkpoint";

impl Executor<'_> {
    fn encode_job(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.i64(self.now);
        for v in [&self.pc_wm, &self.in_wm, &self.out_wm] {
            e.u64(v.len() as u64);
            for &w in v.iter() {
                e.i64(w);
            }
        }
        e.finish()
    }

    fn decode_job(&mut self, bytes: &[u8]) -> Result<()> {
        let mut d = Dec::new(bytes, "the scheduler");
        let now = d.i64()?;
        let mut vecs = Vec::new();
        for expected in [self.pc_wm.len(), self.in_wm.len(), self.out_wm.len()] {
            let n = d.count()?;
            if n != expected {
                return Err(EngineError::Checkpoint(
                    "the pipeline's shape differs from the checkpoint's".into(),
                ));
            }
            vecs.push((0..n).map(|_| d.i64()).collect::<Result<Vec<_>>>()?);
        }
        d.end()?;
        self.out_wm = vecs.pop().expect("three");
        self.in_wm = vecs.pop().expect("three");
        self.pc_wm = vecs.pop().expect("three");
        self.now = if self.virtual_time {
            now
        } else {
            self.now.max(now)
        };
        Ok(())
    }

    /// Puts every operator and the watermarks back as checkpoint `r` saved them, then
    /// commits what the checkpoint left to commit (again: commits are idempotent).
    pub(super) fn restore(&mut self, r: &Restored) -> Result<()> {
        let started = std::time::Instant::now();
        self.decode_job(&r.job)?;
        for node in 0..self.ops.len() {
            let name = self.graph.nodes[node].name.clone();
            if let Some(state) = r.nodes.get(&name) {
                self.call(node, |op, cx| op.restore(state, cx))?;
            }
        }
        for node in 0..self.ops.len() {
            let name = self.graph.nodes[node].name.clone();
            if let Some(state) = r.nodes.get(&name) {
                if !state.commits.is_empty() {
                    self.call(node, |op, cx| op.commit(&state.commits, cx))?;
                }
            }
        }
        // Nothing was emitted by restoring; anything queued is a bug's, not data.
        debug_assert!(self.queue.is_empty());
        let m = &mut self.ckpt_metrics;
        m.set_gauge(NS, "restoredFrom", r.id as i64);
        m.set_gauge(NS, "restoreMillis", started.elapsed().as_millis() as i64);
        m.inc_counter(NS, "skippedDamaged", r.skipped.len() as i64);
        Ok(())
    }

    /// Commits a durable checkpoint's records.
    fn commit(&mut self, done: Completed) -> Result<()> {
        for (name, records) in &done.commits {
            let Some(node) = self.graph.nodes.iter().position(|n| &n.name == name) else {
                continue;
            };
            self.call(node, |op, cx| op.commit(records, cx))?;
        }
        let m = &mut self.ckpt_metrics;
        m.inc_counter(NS, "completed", 1);
        m.update_distribution(NS, "bytes", done.bytes as i64);
        m.update_distribution(NS, "millis", done.duration.as_millis() as i64);
        m.set_gauge(NS, "lastId", done.id as i64);
        self.control.report(CHECKPOINT_STEP, &mut self.ckpt_metrics);
        Ok(())
    }

    /// Takes a snapshot of every operator (no element is between them now) and hands it
    /// to the coordinator's writer.
    fn snapshot(&mut self, c: &mut Coordinator) -> Result<()> {
        let started = std::time::Instant::now();
        let (id, full) = c.next();
        let mut nodes = Vec::with_capacity(self.ops.len());
        for node in 0..self.ops.len() {
            let mut out = StateOut::new(id, full);
            self.call(node, |op, cx| op.snapshot(&mut out, cx))?;
            nodes.push((self.graph.nodes[node].name.clone(), out));
        }
        // Operators may emit while preparing commits: it goes downstream now.
        self.drain()?;
        let bytes: usize = nodes.iter().map(|(_, o)| o.bytes()).sum();
        let job = self.encode_job();
        c.submit(job, nodes)?;
        let m = &mut self.ckpt_metrics;
        m.update_distribution(NS, "snapshotMicros", started.elapsed().as_micros() as i64);
        m.update_distribution(NS, "stateBytes", bytes as i64);
        m.inc_counter(NS, if full { "full" } else { "incremental" }, 1);
        Ok(())
    }

    /// Between two rounds of the loop: commits a checkpoint that became durable, and
    /// starts the next one when it is due.
    pub(super) fn checkpoint_round(&mut self) -> Result<()> {
        let Some(mut c) = self.ckpt.take() else {
            return Ok(());
        };
        let r = (|| {
            if let Some(done) = c.poll()? {
                self.commit(done)?;
            }
            if c.due() {
                self.snapshot(&mut c)?;
            }
            Ok(())
        })();
        self.ckpt = Some(c);
        r
    }

    /// The job ended: waits for the checkpoint being written, then takes a last one and
    /// commits it, so everything the job wrote is committed and a restart has nothing
    /// left to do.
    pub(super) fn final_checkpoint(&mut self) -> Result<()> {
        let Some(mut c) = self.ckpt.take() else {
            return Ok(());
        };
        let r = (|| {
            if let Some(done) = c.wait()? {
                self.commit(done)?;
            }
            self.snapshot(&mut c)?;
            if let Some(done) = c.wait()? {
                self.commit(done)?;
            }
            Ok(())
        })();
        self.ckpt = Some(c);
        r
    }
}

/// An empty container for the executor's checkpoint metrics.
pub(super) fn metrics() -> MetricsContainer {
    MetricsContainer::default()
}
