//! An operator's part in its worker's checkpoints: it delivers its state at the end of
//! every epoch, commits what became committable, and, once it finished, waits for its
//! last checkpoint to be whole.

use crate::checkpoints::{Participant, Shared};
use beamline_engine::checkpoint::{NodeState, StateOut};
use beamline_engine::EngineError;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long an operator that finished waits for its last checkpoint to be whole (every
/// other worker writing its part) before the job fails.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);

/// One operator's part in its worker's checkpoints.
pub(crate) struct Member {
    shared: Shared,
    who: Participant,
    /// The transforms whose commits it makes.
    names: Vec<String>,
    /// The epoch it finished in, and since when it waits for that checkpoint.
    finishing: Option<(u64, Instant)>,
    /// Whether it took its state back.
    restored: Cell<bool>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("who", &self.who)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Adds an operator running transforms `names` to the worker's checkpoints.
    pub(crate) fn join(shared: &Shared, names: Vec<String>) -> Member {
        let who = shared.borrow_mut().register();
        Member {
            shared: shared.clone(),
            who,
            names,
            finishing: None,
            restored: Cell::new(false),
        }
    }

    /// The epoch the run starts at.
    pub(crate) fn first_epoch(&self) -> u64 {
        self.shared.borrow().first_epoch()
    }

    /// Whether checkpoint `epoch` holds every state.
    pub(crate) fn full(&self, epoch: u64) -> bool {
        self.shared.borrow().full(epoch)
    }

    /// What transform `name` saved in the checkpoint restored.
    pub(crate) fn restored(&self, name: &str) -> Option<NodeState> {
        self.shared.borrow().restored(name).cloned()
    }

    /// Says it took back what it needed of the checkpoint restored (call once).
    pub(crate) fn done_restoring(&self) {
        if !self.restored.replace(true) {
            self.shared.borrow_mut().done_restoring();
        }
    }

    /// Records that saving its state took `micros`.
    pub(crate) fn paused(&self, micros: u128) {
        self.shared.borrow_mut().paused(micros);
    }

    /// Delivers the state saved at the end of `epoch`.
    ///
    /// # Errors
    /// As [`Checkpoints::deliver`].
    pub(crate) fn deliver(
        &self,
        epoch: u64,
        parts: Vec<(String, StateOut)>,
    ) -> Result<(), EngineError> {
        self.shared.borrow_mut().deliver(self.who, epoch, parts)
    }

    /// Delivers the operator's last state (all of it), in `epoch`; it then waits for that
    /// checkpoint to be whole ([`Member::done`]).
    ///
    /// # Errors
    /// As [`Checkpoints::deliver`].
    pub(crate) fn finish(
        &mut self,
        epoch: u64,
        parts: Vec<(String, StateOut)>,
    ) -> Result<(), EngineError> {
        self.finishing = Some((epoch, Instant::now()));
        self.shared.borrow_mut().finish(self.who, epoch, parts)
    }

    /// Whether the operator finished ([`Member::finish`]).
    pub(crate) fn finishing(&self) -> bool {
        self.finishing.is_some()
    }

    /// Whether the operator may deliver its state for `epoch`: the checkpoint before is
    /// whole and its commits were made ([`Member::commit_due`] ran since). Otherwise a
    /// kill between `epoch` becoming whole and those commits would restore `epoch`, whose
    /// records are only its own, and the commits before would never be made.
    pub(crate) fn may_end(&self, epoch: u64) -> bool {
        epoch == self.first_epoch() || self.committed(epoch - 1)
    }

    /// Whether the checkpoint of `epoch` is part of a whole checkpoint of the job.
    pub(crate) fn committed(&self, epoch: u64) -> bool {
        self.shared.borrow().committed(epoch)
    }

    /// Takes the writer's news and the commits that became due, for `commit` to make.
    ///
    /// # Errors
    /// A checkpoint that could not be written; a commit that fails.
    pub(crate) fn commit_due(
        &self,
        mut commit: impl FnMut(&str, &[Vec<u8>]) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let due = {
            let mut s = self.shared.borrow_mut();
            s.poll()?;
            s.take_commits(&self.names)
        };
        for (name, records) in due {
            commit(&name, &records)?;
        }
        Ok(())
    }

    /// After [`Member::finish`]: whether the last checkpoint is whole (its commits then
    /// are due).
    ///
    /// # Errors
    /// When it is not whole within two minutes (a worker was lost).
    pub(crate) fn done(&self) -> Result<bool, EngineError> {
        let Some((epoch, since)) = self.finishing else {
            return Ok(false);
        };
        if self.committed(epoch) {
            return Ok(true);
        }
        if since.elapsed() > FINISH_TIMEOUT {
            return Err(EngineError::Checkpoint(format!(
                "checkpoint {epoch} was not written by every worker within {} s",
                FINISH_TIMEOUT.as_secs()
            )));
        }
        Ok(false)
    }
}
