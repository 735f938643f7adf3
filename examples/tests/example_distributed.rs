//! The examples on the distributed runner: the same output as the local runner on 2 and
//! on 3 processes x 2 threads; a failure's original error (transform name, message)
//! reported by the launcher; the streaming clickstream with the same panes as locally.

use std::process::Command;

mod common;
use common::{example, lines, output_within};

fn run(name: &str, args: &[String]) -> std::process::Output {
    Command::new(example(name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn wordcount_on_several_processes_matches_the_local_runner() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..30_000u64 {
        text.push_str(&format!("w{} x{} shared\n", i % 997, i % 13));
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let d = dir.path().display();
    let mut outputs = Vec::new();
    for (prefix, extra) in [
        ("local", vec!["--runner=local"]),
        ("two", vec!["--runner=distributed", "--processes=2"]),
        (
            "three",
            vec![
                "--runner=distributed",
                "--processes=3",
                "--threads-per-process=2",
            ],
        ),
    ] {
        let mut args = vec![
            format!("--input={d}/in.txt"),
            format!("--output={d}/{prefix}"),
        ];
        args.extend(extra.into_iter().map(String::from));
        let o = run("wordcount", &args);
        assert!(
            o.status.success(),
            "{prefix}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        outputs.push(lines(dir.path(), prefix));
    }
    assert_eq!(outputs[0].len(), 997 + 13 + 1);
    assert_eq!(outputs[1], outputs[0]);
    assert_eq!(outputs[2], outputs[0]);
    // Only the final shards are left: no temporary files of any process.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("beamline-temp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn clickstream_windows_triggers_and_state_match_the_local_runner() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let o = run(
        "clickstream",
        &[
            format!("--generate-csv={d}/clicks.csv"),
            "--count=20000".into(),
        ],
    );
    assert!(o.status.success());
    for (prefix, runner) in [
        ("local", "--runner=local"),
        ("dist", "--runner=distributed"),
    ] {
        let o = run(
            "clickstream",
            &[
                format!("--input={d}/clicks.csv"),
                format!("--panes={d}/{prefix}"),
                "--quiet".into(),
                runner.into(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let local = lines(dir.path(), "local");
    assert!(local.len() > 100, "{}", local.len());
    assert_eq!(lines(dir.path(), "dist"), local);
}

#[test]
fn a_failing_transform_fails_the_job_with_its_original_error() {
    let o = run(
        "clickstream",
        &[
            "--input=/nonexistent/clicks-*.csv".into(),
            "--runner=distributed".into(),
            "--processes=2".into(),
        ],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "process 0 failed: transform 'Read/ExpandGlob' failed: no files match '/nonexistent/clicks-*.csv'"
        ),
        "{stderr}"
    );
}

#[test]
fn streaming_clickstream_on_two_processes_matches_the_local_runner() {
    // The generator's events (event-time windows, early and late panes, map state):
    // every pane the same as on the local runner, the generator split over both processes.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let mut outputs = Vec::new();
    for (prefix, extra) in [
        ("local", vec!["--runner=local"]),
        ("two", vec!["--runner=distributed", "--processes=2"]),
    ] {
        let mut args = vec![
            "--streaming".to_string(),
            "--count=20000".to_string(),
            "--quiet".to_string(),
            format!("--panes={d}/{prefix}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = run("clickstream", &args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{prefix}: {stderr}");
        let panes = lines(dir.path(), prefix);
        assert!(
            stderr.contains(&format!("\n{} panes;", panes.len()))
                || stderr.starts_with(&format!("{} panes;", panes.len())),
            "{prefix}: {stderr}"
        );
        outputs.push(panes);
    }
    assert!(outputs[0].len() > 100, "{}", outputs[0].len());
    assert_eq!(outputs[0], outputs[1]);
}

/// Two free loopback addresses.
fn free_addresses() -> Vec<String> {
    let l: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    l.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

#[test]
fn a_job_over_a_hosts_file_matches_the_local_runner() {
    // What each machine of a multi-machine job runs: the same program with the hosts
    // file and its own process id (here both on loopback).
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..20_000u64 {
        text.push_str(&format!("w{} x{}\n", i % 501, i % 7));
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("# two processes\n{}\n", free_addresses().join("\n")),
    )
    .unwrap();
    let d = dir.path().display();
    let args = |prefix: &str| {
        vec![
            format!("--input={d}/in.txt"),
            format!("--output={d}/{prefix}"),
        ]
    };
    let local = run("wordcount", &args("local"));
    assert!(local.status.success());
    let children: Vec<_> = (0..2)
        .map(|id| {
            let mut a = args("hosts");
            a.push("--runner=distributed".into());
            a.push(format!("--hosts={}", hosts.display()));
            a.push(format!("--process-id={id}"));
            Command::new(example("wordcount"))
                .args(&a)
                .env("RUST_BACKTRACE", "0")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (lines(dir.path(), "local"), lines(dir.path(), "hosts"));
    assert!(a.len() > 500);
    assert_eq!(a, b);
}

#[test]
fn hosts_file_mistakes_and_a_missing_peer_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, free_addresses().join("\n")).unwrap();
    let base = vec![
        "--input=/nonexistent".to_string(),
        format!("--output={}/out", dir.path().display()),
        "--runner=distributed".to_string(),
        format!("--hosts={}", hosts.display()),
    ];
    for (extra, expected) in [
        (vec![], "--process-id: a job over several machines needs"),
        (
            vec!["--process-id=2".to_string()],
            "--process-id: '2' is not a line of the hosts file (0 to 1)",
        ),
    ] {
        let mut a = base.clone();
        a.extend(extra);
        let o = run("wordcount", &a);
        assert!(!o.status.success());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
    // Process 1 never starts: process 0 gives up after the connect timeout, naming it.
    let mut a = base.clone();
    a.push("--process-id=0".into());
    a.push("--connect-timeout=1s".into());
    let started = std::time::Instant::now();
    let o = run("wordcount", &a);
    assert!(!o.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("process(es) 1 did not connect in time"),
        "{stderr}"
    );
    // And a bad hosts file names its line.
    std::fs::write(&hosts, "127.0.0.1:1\nnot-an-address\n").unwrap();
    let o = run("wordcount", &base);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("hosts file, line 2"), "{stderr}");
}

#[test]
fn over_a_hosts_file_a_killed_peer_ends_the_others_with_a_clear_error() {
    // No launcher watches a multi-machine job: when one process dies, the others must
    // not hang waiting for it.
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, free_addresses().join("\n")).unwrap();
    let spawn = |id: usize| {
        Command::new(example("clickstream"))
            .args([
                "--streaming".to_string(),
                "--rate=2000".to_string(),
                "--quiet".to_string(),
                "--runner=distributed".to_string(),
                format!("--hosts={}", hosts.display()),
                format!("--process-id={id}"),
            ])
            .env("RUST_BACKTRACE", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn(0);
    let mut second = spawn(1);
    std::thread::sleep(std::time::Duration::from_secs(2));
    second.kill().unwrap();
    second.wait().unwrap();
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(first.wait_with_output().unwrap()));
    let o = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("process 0 ended after its peer was killed");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the connection to a peer process was lost"),
        "{stderr}"
    );
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A streaming clickstream process of a distributed job with a 2 s peer timeout.
fn clickstream(extra: &[String]) -> std::process::Child {
    Command::new(example("clickstream"))
        .args([
            "--streaming",
            "--rate=2000",
            "--quiet",
            "--runner=distributed",
        ])
        .arg("--peer-timeout=2s")
        .args(extra)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn over_a_hosts_file_a_frozen_peer_ends_the_others_after_the_peer_timeout() {
    // A machine that stops answering closes no connection: without heartbeats the others
    // would wait for it forever.
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, free_addresses().join("\n")).unwrap();
    let spawn = |id: usize| {
        clickstream(&[
            format!("--hosts={}", hosts.display()),
            format!("--process-id={id}"),
        ])
    };
    let first = spawn(0);
    let mut second = spawn(1);
    std::thread::sleep(std::time::Duration::from_secs(2));
    signal(second.id(), "STOP");
    let started = std::time::Instant::now();
    let o = output_within(first, std::time::Duration::from_secs(20));
    signal(second.id(), "KILL");
    second.wait().unwrap();
    let o = o.expect("process 0 ended after its peer froze");
    let took = started.elapsed();
    assert!(!o.status.success());
    // The last heartbeat came up to a quarter of the timeout before the peer froze.
    assert!(took >= std::time::Duration::from_secs(1), "{took:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("process 1 (") && stderr.contains(") sent no heartbeat for 2s"),
        "{stderr}"
    );
}

/// The worker processes the launcher `parent` started, with their process ids in the job.
fn workers_of(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent's pid is the second field after the command's closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let id = environ
            .split(|&b| b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix("BEAMLINE_PROCESS_ID="))
            .map(String::from);
        if let Some(id) = id {
            out.push((pid, id));
        }
    }
    out
}

#[test]
fn a_frozen_worker_process_fails_the_job_after_the_peer_timeout() {
    let launcher = clickstream(&["--processes=2".to_string()]);
    let parent = launcher.id();
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    while workers.len() < 2 && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        workers = workers_of(parent);
    }
    assert_eq!(workers.len(), 2, "{workers:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (frozen, id) = workers.iter().find(|(_, id)| id == "1").unwrap().clone();
    signal(frozen, "STOP");
    let o = output_within(launcher, std::time::Duration::from_secs(20));
    let gone = !std::path::Path::new(&format!("/proc/{frozen}")).exists()
        || std::fs::read_to_string(format!("/proc/{frozen}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
    if !gone {
        signal(frozen, "KILL");
    }
    let o = o.expect("the launcher ended after a worker froze");
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Its peer (no heartbeat) or the launcher (no progress report) notices first.
    assert!(
        (stderr.contains(&format!("process {id} ("))
            && stderr.contains("sent no heartbeat for 2s"))
            || stderr.contains(&format!("process {id} sent nothing for 2s: it is frozen")),
        "{stderr}"
    );
    // The launcher killed the frozen process too.
    assert!(gone, "the frozen worker {frozen} was left running");
}
