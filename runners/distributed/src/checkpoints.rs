//! Checkpoints of a distributed streaming job: each worker gathers what its operators saved
//! at the end of every epoch ([`crate::adapter`]'s times), writes it into a store of its
//! own, and commits an epoch once every worker's store holds it.
//!
//! `DIR/worker-W` is worker `W`'s store (the engine's [`Store`]: one file per checkpoint,
//! full or incremental). A worker whose operators all finished writes its last checkpoint
//! and an `ended-ID` marker: that checkpoint stands for every later one of the worker.
//! Checkpoint `N` of the job is whole when every worker has `N` or ended before it; a job
//! restores the newest whole one (each worker reading its own part), after checking the
//! pipeline and the number of workers, and numbers its epochs past every id on disk.

use crate::plan::{ended_marker, worker_dir, Listing, Plan};
use beamline_engine::checkpoint::codec::{Dec, Enc};
use beamline_engine::checkpoint::{
    incompatibility, CheckpointOptions, NodeState, Restore, Restored, Snapshot, StateOut, Store,
};
use beamline_engine::metrics::{MetricResults, MetricsContainer};
use beamline_engine::stream::CHECKPOINT_STEP;
use beamline_engine::EngineError;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Namespace of checkpoint metrics (the local runner's).
const NS: &str = "beamline.checkpoint";

/// How often a worker looks whether the other workers wrote a checkpoint it wrote.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Commit records, per transform.
pub(crate) type Commits = Vec<(String, Vec<Vec<u8>>)>;

/// The checkpoints of one worker, shared by its operators (all on the worker's thread).
pub(crate) type Shared = Rc<RefCell<Checkpoints>>;

/// Which operator of a worker delivers its state ([`Checkpoints::register`]).
pub(crate) type Participant = usize;

fn err(what: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(what.to_string())
}

/// A checkpoint handed to the writer thread.
struct Job {
    snap: Snapshot,
    ended: bool,
}

/// The writer thread of a worker: writes checkpoints in order, says when each is durable.
struct Writer {
    to: Option<mpsc::Sender<Job>>,
    from: mpsc::Receiver<(u64, Result<u64, EngineError>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(store: Store) -> Result<Writer, EngineError> {
        let (to, jobs) = mpsc::channel::<Job>();
        let (done, from) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("beamline-checkpoint".into())
            .spawn(move || {
                for job in jobs {
                    let id = job.snap.id;
                    let r = store.write(&job.snap).and_then(|bytes| {
                        if job.ended {
                            let marker = ended_marker(store.dir(), id);
                            std::fs::File::create(&marker)
                                .and_then(|f| f.sync_all())
                                .map_err(|e| err(format!("writing {}: {e}", marker.display())))?;
                        }
                        Ok(bytes)
                    });
                    if done.send((id, r)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| err(format!("cannot start its writer: {e}")))?;
        Ok(Writer {
            to: Some(to),
            from,
            thread: Some(thread),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it wrote what it was given.
        self.to = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One worker's checkpoints: see the module's documentation.
pub(crate) struct Checkpoints {
    dir: PathBuf,
    worker: usize,
    workers: usize,
    full_every: u64,
    fingerprint: String,
    store: Store,
    /// This run's first epoch (its checkpoint is full).
    first: u64,
    restored: Option<Restored>,
    /// Participants that have not taken their state back yet.
    restoring: usize,
    /// Per participant: the last epoch it delivered, and the epoch it finished at.
    delivered: Vec<u64>,
    finished: Vec<Option<u64>>,
    /// Full states of finished participants (part of every later full checkpoint).
    finals: Vec<(String, StateOut)>,
    /// What the participants saved, by epoch, until it is written.
    gathering: BTreeMap<u64, Vec<(String, StateOut)>>,
    /// The next epoch to write, and the last one written (with the base of its chain).
    next_write: u64,
    last_written: Option<(u64, u64)>,
    writer: Writer,
    /// Epochs handed to the writer, and those written durably, by id: the base of their
    /// chain.
    bases: BTreeMap<u64, u64>,
    durable: BTreeMap<u64, u64>,
    /// The newest checkpoint of the whole job, and this worker's base for the one before.
    complete: u64,
    keep_from: Option<u64>,
    /// Records to commit, by epoch: per transform.
    commits: BTreeMap<u64, Commits>,
    last_check: Instant,
    /// What the worker's checkpoints cost (the local runner's metric names).
    metrics: MetricsContainer,
    /// When each checkpoint handed to the writer was started.
    started: BTreeMap<u64, Instant>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("dir", &self.dir)
            .field("worker", &self.worker)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

/// What the scheduler saves of its own: the worker and the number of workers.
fn encode_job(worker: usize, workers: usize) -> Vec<u8> {
    let mut e = Enc::new();
    e.u64(worker as u64).u64(workers as u64);
    e.finish()
}

fn decode_job(bytes: &[u8]) -> Result<(usize, usize), EngineError> {
    let mut d = Dec::new(bytes, "the distributed runner's checkpoint");
    let w = d.u64()? as usize;
    let n = d.u64()? as usize;
    d.end()?;
    Ok((w, n))
}

impl Checkpoints {
    /// Opens worker `worker`'s checkpoints of a job of `workers` workers, reading its part
    /// of the checkpoint `plan` restores; with [`Restore::None`], removes the worker's
    /// earlier checkpoints (every process made its plan before: they connect first).
    ///
    /// # Errors
    /// A directory that cannot be used; checkpoints of another pipeline or of a job with
    /// another number of workers.
    pub(crate) fn open(
        opts: &CheckpointOptions,
        plan: &Plan,
        worker: usize,
        workers: usize,
        fingerprint: String,
    ) -> Result<Checkpoints, EngineError> {
        let dir = opts.dir.clone();
        let store = Store::open(&worker_dir(&dir, worker))?;
        if opts.restore == Restore::None {
            store.clear();
            for id in Listing::read(store.dir()).ended {
                let _ = std::fs::remove_file(ended_marker(store.dir(), id));
            }
        }
        let reading = Instant::now();
        let restored = match plan.parts.get(worker) {
            Some(&id) => Some(store.read_checkpoint(id)?),
            None => None,
        };
        let mut metrics = MetricsContainer::default();
        if restored.is_some() {
            metrics.set_gauge(NS, "restoredFrom", plan.id as i64);
            metrics.set_gauge(NS, "restoreMillis", reading.elapsed().as_millis() as i64);
        }
        if let Some(r) = &restored {
            if let Some(why) = incompatibility(&r.fingerprint, &fingerprint) {
                return Err(err(format!(
                    "the pipeline is not the one checkpoint {} in {} was taken of: {why}; run \
                     it with --restore=none (or another --checkpoint-dir) to start over",
                    plan.id,
                    dir.display()
                )));
            }
            let (w, n) = decode_job(&r.job)?;
            if (w, n) != (worker, workers) {
                return Err(err(format!(
                    "checkpoint {} in {} was taken by worker {w} of {n}; this job has {workers} \
                     workers: run it with as many, or with --restore=none to start over",
                    plan.id,
                    dir.display()
                )));
            }
        }
        let first = plan.newest + 1;
        let writer = Writer::start(store.clone())?;
        Ok(Checkpoints {
            dir,
            worker,
            workers,
            full_every: opts.full_every.max(1),
            fingerprint,
            store,
            first,
            restored,
            restoring: 0,
            delivered: Vec::new(),
            finished: Vec::new(),
            finals: Vec::new(),
            gathering: BTreeMap::new(),
            next_write: first,
            last_written: None,
            writer,
            bases: BTreeMap::new(),
            durable: BTreeMap::new(),
            complete: 0,
            keep_from: None,
            commits: BTreeMap::new(),
            last_check: Instant::now(),
            metrics,
            started: BTreeMap::new(),
        })
    }

    /// The epoch this run starts at.
    pub(crate) fn first_epoch(&self) -> u64 {
        self.first
    }

    /// What transform `name` saved in the checkpoint restored, if any.
    pub(crate) fn restored(&self, name: &str) -> Option<&NodeState> {
        self.restored.as_ref().and_then(|r| r.nodes.get(name))
    }

    /// One more participant took its state back; once all did, the checkpoint's files
    /// are let go (they may be collected as garbage, and an open file keeps its space).
    pub(crate) fn done_restoring(&mut self) {
        self.restoring = self.restoring.saturating_sub(1);
        if self.restoring == 0 {
            self.restored = None;
        }
    }

    /// Adds an operator that delivers its state every epoch.
    pub(crate) fn register(&mut self) -> Participant {
        self.delivered.push(self.first - 1);
        self.restoring += 1;
        self.finished.push(None);
        self.delivered.len() - 1
    }

    /// Whether operators save every state in epoch `epoch`'s checkpoint (this run's
    /// first), else what changed.
    pub(crate) fn full(&self, epoch: u64) -> bool {
        epoch == self.first
    }

    /// Whether epoch `epoch`'s checkpoint is made full by its writer, merging what
    /// changed into the state of the one before (every `full_every`-th).
    fn compacts(&self, epoch: u64) -> bool {
        epoch != self.first && (epoch - self.first).is_multiple_of(self.full_every)
    }

    /// An operator paused for `micros` to save its state (the local runner's
    /// `snapshotMicros`, there for the whole pipeline).
    pub(crate) fn paused(&mut self, micros: u128) {
        self.metrics
            .update_distribution(NS, "snapshotMicros", micros as i64);
    }

    /// Participant `who` saved `parts` at the end of `epoch`.
    ///
    /// # Errors
    /// When a checkpoint cannot be handed to the writer.
    pub(crate) fn deliver(
        &mut self,
        who: Participant,
        epoch: u64,
        parts: Vec<(String, StateOut)>,
    ) -> Result<(), EngineError> {
        debug_assert_eq!(self.delivered[who] + 1, epoch, "epochs in order");
        self.delivered[who] = epoch;
        self.gathering.entry(epoch).or_default().extend(parts);
        self.write_ready()
    }

    /// Participant `who` finished in `epoch` with `parts` (all its state): they stand for
    /// every later epoch.
    ///
    /// # Errors
    /// As [`Checkpoints::deliver`].
    pub(crate) fn finish(
        &mut self,
        who: Participant,
        epoch: u64,
        parts: Vec<(String, StateOut)>,
    ) -> Result<(), EngineError> {
        self.finished[who] = Some(epoch);
        self.delivered[who] = epoch;
        self.finals.extend(parts.iter().cloned());
        self.gathering.entry(epoch).or_default().extend(parts);
        self.write_ready()
    }

    /// Whether every participant delivered `epoch` or finished before it.
    fn ready(&self, epoch: u64) -> bool {
        self.delivered
            .iter()
            .zip(&self.finished)
            .all(|(&d, f)| d >= epoch || f.is_some_and(|f| f <= epoch))
    }

    /// Hands the epochs every participant delivered to the writer, in order; once every
    /// participant finished, the last one is marked ended.
    fn write_ready(&mut self) -> Result<(), EngineError> {
        let all_done = self.finished.iter().all(Option::is_some);
        let last = self.delivered.iter().copied().max().unwrap_or(0);
        while self.ready(self.next_write) && !(all_done && self.next_write > last) {
            let epoch = self.next_write;
            let full = self.full(epoch);
            let mut parts = self.gathering.remove(&epoch).unwrap_or_default();
            if full {
                // Finished participants' states stay in every full checkpoint.
                let have: Vec<String> = parts.iter().map(|(n, _)| n.clone()).collect();
                parts.extend(
                    self.finals
                        .iter()
                        .filter(|(n, _)| !have.contains(n))
                        .cloned(),
                );
            }
            let mut commits = Vec::new();
            for (name, out) in &parts {
                if !out.commit_records().is_empty() {
                    commits.push((name.clone(), out.commit_records().to_vec()));
                }
            }
            if !commits.is_empty() {
                self.commits.insert(epoch, commits);
            }
            let compact = self.compacts(epoch);
            let (base, parent, compact_from) = match (full, self.last_written) {
                (false, Some((id, _))) if compact => (epoch, None, Some(id)),
                (false, Some((id, base))) => (base, Some(id), None),
                _ => (epoch, None, None),
            };
            let snap = Snapshot {
                id: epoch,
                base,
                parent,
                compact_from,
                fingerprint: self.fingerprint.clone(),
                job: encode_job(self.worker, self.workers),
                nodes: parts,
            };
            let ended = all_done && epoch == last;
            self.writer
                .to
                .as_ref()
                .expect("open while the worker runs")
                .send(Job { snap, ended })
                .map_err(|_| err("its writer ended"))?;
            self.started.insert(epoch, Instant::now());
            self.metrics.inc_counter(
                NS,
                if full || compact {
                    "full"
                } else {
                    "incremental"
                },
                1,
            );
            self.last_written = Some((epoch, base));
            self.bases.insert(epoch, base);
            self.next_write += 1;
        }
        Ok(())
    }

    /// Takes the writer's news and, now and then, looks whether the job's checkpoints
    /// moved on (every worker wrote one this worker wrote).
    ///
    /// # Errors
    /// A checkpoint that could not be written (the job fails: its output could not be
    /// committed).
    pub(crate) fn poll(&mut self) -> Result<(), EngineError> {
        while let Ok((id, r)) = self.writer.from.try_recv() {
            let bytes = r?;
            let base = self.bases.remove(&id).unwrap_or(id);
            self.durable.insert(id, base);
            let m = &mut self.metrics;
            m.inc_counter(NS, "completed", 1);
            m.update_distribution(NS, "bytes", bytes as i64);
            if let Some(t) = self.started.remove(&id) {
                m.update_distribution(NS, "millis", t.elapsed().as_millis() as i64);
            }
        }
        let pending = self
            .durable
            .keys()
            .next_back()
            .is_some_and(|&n| n > self.complete);
        if pending && self.last_check.elapsed() >= CHECK_EVERY {
            self.last_check = Instant::now();
            self.check_complete();
        }
        Ok(())
    }

    /// Moves [`Checkpoints::complete`] to the newest checkpoint written here that every
    /// worker has (or ended before), and removes what no restore can need any more.
    ///
    /// A whole checkpoint at or after one of this worker's makes the latter committable:
    /// no restore goes back before it (and the other workers may have removed the
    /// checkpoint itself by then).
    fn check_complete(&mut self) {
        let listings: Vec<Listing> = (0..self.workers)
            .map(|w| Listing::read(&worker_dir(&self.dir, w)))
            .collect();
        let mut ids: Vec<u64> = listings.iter().flat_map(|l| l.ids.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let whole = ids
            .into_iter()
            .rev()
            .filter(|&n| n > self.complete)
            .find(|&n| listings.iter().all(|l| l.stands_for(n).is_some()));
        if let Some(n) = whole {
            self.complete = n;
            // Keep the chain of the checkpoint before too: a damaged newest one falls
            // back to it.
            let base = self
                .durable
                .range(..=n)
                .next_back()
                .map_or(n, |(_, &base)| base);
            if let Some(keep) = self.keep_from {
                self.store.collect_garbage(keep.min(base));
            }
            self.keep_from = Some(base);
        }
    }

    /// The metrics of this worker's checkpoints so far, as the local runner reports them
    /// (step `(checkpoints)`, namespace `beamline.checkpoint`).
    pub(crate) fn metrics(&self) -> MetricResults {
        let mut m = self.metrics.clone();
        m.set_gauge(NS, "lastId", self.complete as i64);
        let mut out = MetricResults::default();
        out.merge_container(CHECKPOINT_STEP, &m);
        out
    }

    /// Whether this worker's checkpoint of `epoch` is part of a whole checkpoint of the
    /// job (so what it holds may be committed).
    pub(crate) fn committed(&self, epoch: u64) -> bool {
        epoch <= self.complete
    }

    /// The records to commit now of transforms `names`, oldest first.
    pub(crate) fn take_commits(&mut self, names: &[String]) -> Commits {
        let mut out = Vec::new();
        for (_, list) in self.commits.range_mut(..=self.complete) {
            let mut i = 0;
            while i < list.len() {
                if names.contains(&list[i].0) {
                    out.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.commits.retain(|_, l| !l.is_empty());
        out
    }
}
