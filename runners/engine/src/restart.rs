//! Starting a failed job again from its newest checkpoint, a few times at most, each
//! after a delay (Flink's fixed-delay restart strategy), for every runner that
//! checkpoints.

use crate::error::EngineError;
use crate::job::JobControl;
use crate::metrics::MetricsContainer;
use std::time::{Duration, Instant};

/// How a runner restarts a failed job (`--restarts=N`, `--restart-delay=1s`).
///
/// # Examples
///
/// ```
/// use beamline_engine::job::JobControl;
/// use beamline_engine::restart::{Failure, Restarts};
/// use beamline_engine::EngineError;
/// use std::time::Duration;
///
/// let restarts = Restarts { max: 2, delay: Duration::ZERO };
/// // Fails once, then succeeds.
/// let r = restarts.run(&JobControl::default(), |attempt| match attempt {
///     0 => Err(Failure::Restartable(EngineError::Runner("lost a connection".into()))),
///     _ => Ok(attempt),
/// });
/// assert_eq!(r.unwrap(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// Most restarts of one job (0: a failure fails the job).
    pub max: usize,
    /// Time between a failure and the restart.
    pub delay: Duration,
}

/// Default of [`Restarts::delay`].
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Why one run of a job failed.
#[derive(Debug)]
pub enum Failure {
    /// A run from the newest checkpoint may get past it (a process lost, a transform's
    /// error, an IO error).
    Restartable(EngineError),
    /// Another run would fail the same way, or the job was cancelled.
    Final(EngineError),
}

impl Failure {
    /// How the local runner's executors fail: cancels, invalid pipelines and
    /// unresolvable functions are final, everything else may pass in a new run.
    pub fn of(e: EngineError) -> Failure {
        let inner = match &e {
            EngineError::Failed(inner) => &**inner,
            other => other,
        };
        match inner {
            EngineError::Cancelled
            | EngineError::InvalidPipeline(_)
            | EngineError::UnresolvedFunction { .. } => Failure::Final(e),
            _ => Failure::Restartable(e),
        }
    }
}

impl Restarts {
    /// Runs `attempt` (given the number of restarts before it) until it succeeds, fails
    /// for good, or failed [`Restarts::max`] times after the first run; each restart is
    /// a warning naming the failure, after [`Restarts::delay`] (a cancel meanwhile ends
    /// the job). After restarts, the result's `beamline.checkpoint/restarts` counter
    /// says how many there were.
    ///
    /// # Errors
    /// A final failure as it is; the last restartable one as it is without restarts,
    /// else as [`EngineError::Runner`] with "(after N restart(s) from checkpoints)"; or
    /// [`EngineError::Cancelled`] when cancelled during a delay.
    pub fn run<T>(
        &self,
        control: &JobControl,
        mut attempt: impl FnMut(usize) -> Result<T, Failure>,
    ) -> Result<T, EngineError> {
        let mut done = 0;
        loop {
            let e = match attempt(done) {
                Ok(t) => {
                    if done > 0 {
                        let mut m = MetricsContainer::default();
                        m.inc_counter("beamline.checkpoint", "restarts", done as i64);
                        control.report(crate::stream::CHECKPOINT_STEP, &mut m);
                    }
                    return Ok(t);
                }
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Restartable(e)) => e,
            };
            if done == self.max {
                return Err(match done {
                    0 => e,
                    n => {
                        EngineError::Runner(format!("{e} (after {n} restart(s) from checkpoints)"))
                    }
                });
            }
            done += 1;
            tracing::warn!(
                "{e}; starting the job again from its newest checkpoint in {} ms (restart \
                 {done} of at most {})",
                self.delay.as_millis(),
                self.max
            );
            let until = Instant::now() + self.delay;
            while Instant::now() < until {
                control.check()?;
                std::thread::sleep(Duration::from_millis(20).min(self.delay));
            }
            control.check()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(n: usize) -> impl FnMut(usize) -> Result<usize, Failure> {
        move |attempt| {
            if attempt < n {
                Err(Failure::Restartable(EngineError::Runner(format!(
                    "run {attempt} lost"
                ))))
            } else {
                Ok(attempt)
            }
        }
    }

    #[test]
    fn a_job_restarts_at_most_max_times() {
        let r = Restarts {
            max: 2,
            delay: Duration::from_millis(1),
        };
        let control = JobControl::default();
        assert_eq!(r.run(&control, failing(2)).unwrap(), 2);
        let e = r.run(&control, failing(3)).unwrap_err().to_string();
        assert_eq!(e, "run 2 lost (after 2 restart(s) from checkpoints)");
        // Without restarts the error is the run's own.
        let none = Restarts::default();
        let e = none.run(&control, failing(1)).unwrap_err();
        assert!(matches!(e, EngineError::Runner(m) if m == "run 0 lost"));
    }

    #[test]
    fn final_failures_and_cancels_do_not_restart() {
        let r = Restarts {
            max: 5,
            delay: Duration::from_millis(1),
        };
        let control = JobControl::default();
        let mut runs = 0;
        let e = r
            .run(&control, |_| -> Result<(), Failure> {
                runs += 1;
                Err(Failure::of(EngineError::InvalidPipeline("bad".into())))
            })
            .unwrap_err();
        assert_eq!((runs, e.to_string().as_str()), (1, "invalid pipeline: bad"));
        assert!(matches!(
            Failure::of(EngineError::Cancelled),
            Failure::Final(_)
        ));
        assert!(matches!(
            Failure::of(EngineError::Checkpoint("a write failed".into())),
            Failure::Restartable(_)
        ));
        // Cancelled while waiting to restart: the job ends as cancelled.
        let slow = Restarts {
            max: 5,
            delay: Duration::from_secs(60),
        };
        let c = control.clone();
        let e = slow
            .run(&control, |_| -> Result<(), Failure> {
                c.cancel();
                Err(Failure::Restartable(EngineError::Runner("lost".into())))
            })
            .unwrap_err();
        assert!(matches!(e, EngineError::Cancelled), "{e}");
    }
}
