//! Ctrl-C handling for streaming jobs: the first Ctrl-C requests a drain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

static TARGETS: OnceLock<Mutex<Vec<Arc<AtomicBool>>>> = OnceLock::new();

/// Sets `flag` when the process receives Ctrl-C (SIGINT).
pub(crate) fn watch(flag: Arc<AtomicBool>) {
    let targets = TARGETS.get_or_init(|| {
        // Installing can fail if the program has its own handler; then Ctrl-C keeps its
        // default behaviour, which is acceptable.
        let _ = ctrlc::set_handler(|| {
            if let Some(t) = TARGETS.get() {
                if let Ok(list) = t.lock() {
                    for f in list.iter() {
                        f.store(true, Ordering::SeqCst);
                    }
                }
            }
        });
        Mutex::new(Vec::new())
    });
    if let Ok(mut list) = targets.lock() {
        list.retain(|f| !f.load(Ordering::SeqCst));
        list.push(flag);
    }
}
