//! The fault test with Kafka in and out on the distributed runner (2 processes): at 20
//! random moments (at least 15 when the runs finish the input before) one worker process
//! of the job is killed with SIGKILL; the launcher then
//! ends the job (the other process killed, a clear error), and the job is started again
//! from its checkpoints. Afterwards the committed output holds every pane exactly once, as
//! in `checkpoint_kafka_fault` (the same job and checks, `common::kafka_fault`).
//!
//! A plain `main` (no test harness): the distributed runner re-executes this binary as its
//! worker processes.

mod common;

use common::kafka_fault::{child_main, fault_test, Runner};

fn main() {
    if child_main() {
        return;
    }
    // Each wait counts from the run's first checkpoint (after its start and restore).
    fault_test(Runner::Distributed, 20, 16, common::kill_a_worker);
}
