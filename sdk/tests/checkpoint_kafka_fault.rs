//! The fault test with Kafka in and out on the local runner: the job of
//! `common::kafka_fault` is killed with SIGKILL at 20 random moments and restarted each
//! time from its checkpoints; afterwards the committed output holds every pane exactly
//! once (the files and the Kafka topic hold the same panes, no pane of a key and window is
//! missing or repeated, and each window's final count is the number of its events).

mod common;

use common::kafka_fault::{child_main, fault_test, Runner};

fn main() {
    if child_main() {
        return;
    }
    fault_test(Runner::Local, 20, 8, |child, ms, what, _| {
        common::kill_after(child, ms, what);
        true
    });
}
