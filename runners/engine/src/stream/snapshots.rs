//! The streaming executor's checkpoints: opening them and restoring the newest, a
//! snapshot of every operator between two rounds of its loop, and the commits of the
//! checkpoints that became durable.

use super::checkpointing::{self, NS};
use super::{Executor, StreamOptions, CHECKPOINT_STEP};
use crate::checkpoint::{fingerprint, Completed, Coordinator, Restored, StateOut};
use crate::error::Result;

impl Executor<'_> {
    /// Opens the job's checkpoints (when it has them) and restores the newest.
    pub(super) fn start_checkpoints(&mut self, opts: &StreamOptions) -> Result<()> {
        let Some(c) = &opts.checkpoint else {
            return Ok(());
        };
        let (coordinator, restored) = Coordinator::start(c, fingerprint(self.graph))?;
        for op in &mut self.ops {
            op.enable_commits(0);
        }
        if let Some(r) = restored {
            self.restore(&r)?;
        }
        self.ckpt = Some(coordinator);
        Ok(())
    }

    fn decode_job(&mut self, bytes: &[u8]) -> Result<()> {
        let lens = [self.pc_wm.len(), self.in_wm.len(), self.out_wm.len()];
        let (now, [pc, inw, outw]) = checkpointing::decode_job(bytes, lens)?;
        (self.pc_wm, self.in_wm, self.out_wm) = (pc, inw, outw);
        self.now = if self.virtual_time {
            now
        } else {
            self.now.max(now)
        };
        Ok(())
    }

    /// Puts every operator and the watermarks back as checkpoint `r` saved them, then
    /// commits what the checkpoint left to commit (again: commits are idempotent).
    fn restore(&mut self, r: &Restored) -> Result<()> {
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
    fn snapshot(&mut self, c: &mut Coordinator, last: bool) -> Result<()> {
        let started = std::time::Instant::now();
        let (id, full) = c.next();
        let mut nodes = Vec::with_capacity(self.ops.len());
        for node in 0..self.ops.len() {
            let mut out = StateOut::new(id, full).with_last(last);
            if let Some((dir, limit)) = &self.ckpt_overflow {
                out = out.overflow_into(dir, *limit);
            }
            self.call(node, |op, cx| op.snapshot(&mut out, cx))?;
            nodes.push((self.graph.nodes[node].name.clone(), out));
        }
        // Operators may emit while preparing commits: it goes downstream now.
        self.drain()?;
        let bytes: usize = nodes.iter().map(|(_, o)| o.bytes()).sum();
        let job = checkpointing::encode_job(self.now, [&self.pc_wm, &self.in_wm, &self.out_wm]);
        let whole = full || c.compacts();
        c.submit(job, nodes)?;
        let m = &mut self.ckpt_metrics;
        m.update_distribution(NS, "snapshotMicros", started.elapsed().as_micros() as i64);
        m.update_distribution(NS, "stateBytes", bytes as i64);
        m.inc_counter(NS, if whole { "full" } else { "incremental" }, 1);
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
                self.snapshot(&mut c, false)?;
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
            self.snapshot(&mut c, true)?;
            if let Some(done) = c.wait()? {
                self.commit(done)?;
            }
            Ok(())
        })();
        self.ckpt = Some(c);
        r
    }
}
