//! Automatic restarts of the distributed runner (`--restarts=N`): a streaming job on 2
//! processes with checkpoints, one of its worker processes killed with SIGKILL twice while
//! it runs; the launcher starts the processes again from the newest checkpoint each time
//! and the job ends well, its committed output exactly the counts of its input. With
//! fewer restarts allowed than failures, the job fails with the last failure, naming the
//! process. `--restarts` without checkpoints, or over several machines, is refused.
//!
//! A plain `main` (no test harness): the job's launcher is a child process of this test
//! (`BEAMLINE_RESTART_CHILD=OUT|CHECKPOINTS|RESTARTS`), its workers children of that.

mod common;

use beamline::io::generator::Generator;
use beamline::{Pipeline, PipelineOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "BEAMLINE_RESTART_CHILD";
const EVENTS: u64 = 300_000;
const WINDOW_MS: i64 = 10_000;

fn generator() -> Generator {
    Generator::new(50).with_count(EVENTS).with_seed(5)
}

/// `key,window start,count` per key and window, from the generator's own events.
fn expected() -> Vec<String> {
    common::window_counts(generator().events(), WINDOW_MS)
}

fn options(checkpoints: Option<&Path>, restarts: &str) -> PipelineOptions {
    let mut o = PipelineOptions::default()
        .set("runner", "distributed")
        .set("processes", "2")
        .set("streaming", "true")
        .set("max_bundle_size", "500")
        .set("restarts", restarts)
        .set("restart_delay", "100ms");
    if let Some(dir) = checkpoints {
        o = o
            .set("checkpoint_dir", dir.to_string_lossy())
            .set("checkpoint_interval", "100ms");
    }
    o
}

/// The job: counts per key in fixed windows (one on-time pane each), paced so that it
/// runs for seconds.
fn job(out: &Path, checkpoints: &Path, restarts: &str) -> beamline::Result<i64> {
    let p = Pipeline::new(options(Some(checkpoints), restarts));
    let events = p.apply("Events", generator()).map("Pace", |e: (i64, i64)| {
        if e.1 % 1_000 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        e
    });
    common::write_window_counts(events, WINDOW_MS, &out.join("counts"));
    let result = p.run()?;
    Ok(result
        .metrics()
        .counter("beamline.checkpoint", "restarts")
        .unwrap_or(0))
}

/// Starts the job's launcher, kills one of its workers `kills` times (each once the run
/// wrote a new checkpoint and a while passed), and returns whether it succeeded and what
/// it wrote to standard error and output.
fn run(dir: &Path, restarts: u32, kills: u32) -> (bool, String, String) {
    let out = dir.join("out");
    let ckpt = dir.join("checkpoints");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(
            CHILD,
            format!("{}|{}|{restarts}", out.display(), ckpt.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Standard error is read as it comes (a full pipe would stall the launcher), and
    // looked at while the job runs.
    let stderr = child.stderr.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let err = std::thread::spawn({
        let seen = seen.clone();
        move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let line = line.unwrap();
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
            seen.lock().unwrap().clone()
        }
    });
    let mut victims: Vec<u32> = Vec::new();
    for k in 0..kills {
        // After a kill, the launcher announces its restart (the killed run's processes
        // are gone by then): a worker of the killed run, still writing a checkpoint or
        // ending, is not the next victim.
        let until = Instant::now() + Duration::from_secs(90);
        while k > 0
            && !seen
                .lock()
                .unwrap()
                .contains(&format!("restart {k} of at most"))
        {
            assert!(
                Instant::now() < until,
                "restart {k} not announced within 90 s"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the job ended before kill {k}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // A checkpoint newer than any before: the run (restarted) got going.
        let before = common::newest_checkpoint(&ckpt);
        while common::newest_checkpoint(&ckpt) <= before {
            assert!(Instant::now() < until, "no new checkpoint within 90 s");
            assert!(
                child.try_wait().unwrap().is_none(),
                "the job ended before kill {k}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        let workers = common::children_of(child.id());
        let victim = *workers
            .get(k as usize % workers.len().max(1))
            .expect("a worker process to kill");
        assert!(!victims.contains(&victim), "the same process twice");
        victims.push(victim);
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap();
    }
    let until = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the job did not end within 180 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    (status.success(), err.join().unwrap(), stdout)
}

fn main() {
    if let Ok(arg) = std::env::var(CHILD) {
        let f: Vec<&str> = arg.split('|').collect();
        match job(Path::new(f[0]), Path::new(f[1]), f[2]) {
            Ok(restarts) => println!("restarts={restarts}"),
            Err(e) => {
                eprintln!("job failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }

    // Refused: restarts without checkpoints, or over several machines.
    let p = Pipeline::new(options(None, "3"));
    p.apply("Events", generator());
    let Err(e) = p.run() else {
        panic!("--restarts without checkpoints is refused")
    };
    assert!(
        e.to_string().contains("--restarts") && e.to_string().contains("--checkpoint-dir"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1:1\n127.0.0.1:2\n").unwrap();
    let p = Pipeline::new(
        options(Some(&dir.path().join("c")), "3")
            .set("hosts", hosts.to_string_lossy())
            .set("process_id", "0"),
    );
    p.apply("Events", generator());
    let Err(e) = p.run() else {
        panic!("--restarts with --hosts is refused")
    };
    assert!(e.to_string().contains("--restarts"), "{e}");

    // Two kills, three restarts allowed: the job gets through, every count once.
    let dir = tempfile::tempdir().unwrap();
    let (ok, err, out) = run(dir.path(), 3, 2);
    assert!(ok, "the job failed despite its restarts: {err}");
    assert!(out.contains("restarts=2"), "{out}\n{err}");
    for n in 1..=2 {
        assert!(
            err.contains(&format!("restart {n} of at most 3")),
            "restart {n} not announced: {err}"
        );
    }
    assert!(err.contains("exited with signal 9"), "{err}");
    assert!(
        err.contains("restarted 2 time(s) after failures"),
        "the summary does not say: {err}"
    );
    let want = expected();
    common::assert_committed_exactly(&dir.path().join("out"), "counts", &want);

    // Two kills, one restart allowed: the second kill fails the job, naming the process.
    let dir = tempfile::tempdir().unwrap();
    let (ok, err, _) = run(dir.path(), 1, 2);
    assert!(!ok, "the job succeeded after more failures than restarts");
    assert!(
        err.contains("after 1 restart(s) from checkpoints") && err.contains("process "),
        "{err}"
    );
    let last = err
        .lines()
        .find(|l| l.contains("after 1 restart(s)"))
        .unwrap_or_default();
    println!(
        "restarts: 2 kills survived with --restarts=3 ({} windows exactly once), a job \
         with --restarts=1 failed at its second kill: {last}",
        want.len()
    );
}
