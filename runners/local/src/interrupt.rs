//! Ctrl-C and SIGTERM: the first one drains the streaming jobs running and cancels the
//! batch ones; a second one, or one with no job running, exits as without a handler.

use beamline_engine::job::JobControl;
use std::sync::{Mutex, OnceLock};

/// A running job and what a signal does to it.
struct Target {
    control: JobControl,
    drain: bool,
}

static TARGETS: OnceLock<Mutex<Vec<Target>>> = OnceLock::new();

/// Exit status of a process ended by SIGINT, as shells report it.
const INTERRUPTED: i32 = 130;

/// Watches the job of `control` until it ends: on SIGINT or SIGTERM, a streaming job
/// (`drain`) drains and a batch job is cancelled.
pub(crate) fn watch(control: JobControl, drain: bool) {
    let targets = TARGETS.get_or_init(|| {
        // Installing can fail if the program has its own handler; then the signals keep
        // their default behaviour, which is acceptable.
        let _ = ctrlc::set_handler(on_signal);
        Mutex::new(Vec::new())
    });
    if let Ok(mut list) = targets.lock() {
        list.push(Target { control, drain });
    }
}

/// Stops watching the job of `control` (it ended).
pub(crate) fn forget(control: &JobControl) {
    if let Some(Ok(mut list)) = TARGETS.get().map(Mutex::lock) {
        list.retain(|t| !t.control.same_job(control));
    }
}

fn on_signal() {
    let Some(Ok(list)) = TARGETS.get().map(Mutex::lock) else {
        return;
    };
    let asked = |t: &Target| t.control.is_cancelled() || t.control.is_draining();
    if list.iter().all(asked) {
        // No job left to ask: behave as the default handler would.
        std::process::exit(INTERRUPTED);
    }
    for t in list.iter() {
        if t.drain {
            t.control.drain();
        } else {
            t.control.cancel();
        }
    }
}
