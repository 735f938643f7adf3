//! The launcher owns its worker processes: success, an error in one process (its original
//! message, the others killed within 5 s), a process killed with SIGKILL, a process that
//! never connects, one that ends without joining, one that joins and then says nothing
//! (frozen), a program that cannot start. Never a hang.
//!
//! A plain `main` (no test harness): the launcher re-executes this binary as its workers,
//! which behave as the scenario in `SCENARIO` says.

use beamline_runner_distributed::worker::{fail, ready, worker_env};
use beamline_runner_distributed::{launch, LaunchError, LaunchOptions};
use std::time::{Duration, Instant};

const SCENARIO: &str = "BEAMLINE_TEST_SCENARIO";

/// What a worker does in each scenario.
fn worker(scenario: &str, id: usize) {
    match (scenario, id) {
        ("ok", _) => {
            ready();
            eprintln!("hello from {id}");
        }
        ("error", 1) => {
            ready();
            std::thread::sleep(Duration::from_millis(300));
            fail("transform 'Parse' failed: bad record on line 7");
            std::process::exit(1);
        }
        ("panic", 1) => {
            ready();
            panic!("worker 1 panicked in 'Explode'");
        }
        ("sigkill", 1) => {
            ready();
            std::thread::sleep(Duration::from_millis(300));
            // SIGKILL itself, as an operator's `kill -9` would.
            let _ = std::process::Command::new("kill")
                .args(["-9", &std::process::id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(60));
        }
        ("never-ready", 1) => std::thread::sleep(Duration::from_secs(60)),
        // Process 0 keeps talking, process 1 joins and falls silent (as a frozen one).
        ("silent", 0) => {
            ready();
            for _ in 0..600 {
                eprintln!("still here");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Ends well without joining (a program that skipped the job's pipeline).
        ("no-share", 1) => {}
        (_, _) => {
            ready();
            // Others wait far longer than any test: the launcher must kill them.
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

fn run(
    scenario: &str,
    processes: usize,
    connect_timeout: Duration,
) -> (Result<(), LaunchError>, Duration) {
    run_with(
        scenario,
        processes,
        connect_timeout,
        Duration::from_secs(30),
    )
}

fn run_with(
    scenario: &str,
    processes: usize,
    connect_timeout: Duration,
    silence_timeout: Duration,
) -> (Result<(), LaunchError>, Duration) {
    let exe = std::env::current_exe().unwrap();
    let opts = LaunchOptions {
        processes,
        connect_timeout,
        silence_timeout,
        env: vec![(SCENARIO.to_string(), scenario.to_string())],
    };
    let start = Instant::now();
    let r = launch::<&str>(&exe, &[], &opts)
        .and_then(|s| s.wait())
        .map(drop);
    (r, start.elapsed())
}

fn main() {
    if let Some(env) = worker_env().unwrap() {
        let scenario = std::env::var(SCENARIO).unwrap();
        worker(&scenario, env.process_id);
        return;
    }
    let long = Duration::from_secs(30);

    let (r, _) = run("ok", 3, long);
    assert_eq!(r, Ok(()), "three workers that succeed");

    // The original error, the others (sleeping 60 s) killed at once.
    let (r, took) = run("error", 3, long);
    assert_eq!(
        r,
        Err(LaunchError::Failed {
            process: 1,
            error: "transform 'Parse' failed: bad record on line 7".into()
        })
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    let (r, took) = run("panic", 2, long);
    match r {
        Err(LaunchError::Exited {
            process: 1,
            status,
            stderr,
        }) => {
            assert_eq!(status, "exit code 101");
            assert!(
                stderr
                    .iter()
                    .any(|l| l.contains("worker 1 panicked in 'Explode'")),
                "{stderr:?}"
            );
        }
        other => panic!("panic: {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "{took:?}");

    let (r, took) = run("sigkill", 2, long);
    match r {
        Err(LaunchError::Exited {
            process: 1, status, ..
        }) => {
            assert_eq!(status, "signal 9 (SIGKILL)")
        }
        other => panic!("sigkill: {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "{took:?}");
    let msg = LaunchError::Exited {
        process: 1,
        status: "signal 9 (SIGKILL)".into(),
        stderr: vec![],
    }
    .to_string();
    assert_eq!(msg, "process 1 exited with signal 9 (SIGKILL)");

    let (r, took) = run("never-ready", 2, Duration::from_secs(1));
    assert_eq!(
        r,
        Err(LaunchError::ConnectTimeout {
            process: 1,
            seconds: 1
        })
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A process that ends well without ever joining ran none of the job: an error, not
    // a job that succeeds with its share missing.
    let (r, took) = run("no-share", 2, long);
    assert_eq!(r, Err(LaunchError::NoShare { process: 1 }));
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A process that joined and then says nothing (frozen): the job fails naming it.
    let (r, took) = run_with("silent", 2, long, Duration::from_secs(1));
    assert_eq!(
        r,
        Err(LaunchError::Silent {
            process: 1,
            timeout: Duration::from_secs(1)
        })
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        r.unwrap_err().to_string(),
        "process 1 sent nothing for 1s: it is frozen (--peer-timeout)"
    );

    let missing = std::path::Path::new("/nonexistent/beamline-worker");
    let opts = LaunchOptions {
        processes: 2,
        connect_timeout: long,
        silence_timeout: long,
        env: vec![],
    };
    match launch::<&str>(missing, &[], &opts) {
        Err(LaunchError::Start { process: 0, .. }) => {}
        other => panic!("missing program: {other:?}"),
    }
    eprintln!("launch_supervision: 8 scenarios passed");
}
