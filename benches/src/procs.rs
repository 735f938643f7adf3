//! Watching a variant's processes: the peak memory of each process of its tree (a
//! distributed run's workers are the variant's grandchildren) and the CPU time they used.

use anyhow::Result;
use std::collections::HashMap;
use std::process::{Child, ExitStatus};

/// The processes under `pid` (children, their children, ...), from Linux's
/// `/proc/PID/task/TID/children`.
fn descendants(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for child in text.split_whitespace().filter_map(|c| c.parse().ok()) {
            out.push(child);
            descendants(child, out);
        }
    }
}

/// The high-water mark of process `pid`'s resident memory, in KiB.
fn peak_kb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Waits for `child`, reading every few milliseconds the peak memory of each process of
/// its tree; returns its exit status and the largest peak of one process, in MiB.
///
/// # Errors
/// When waiting for the child fails.
pub fn wait_sampling(child: &mut Child) -> Result<(ExitStatus, f64)> {
    let mut peaks: HashMap<u32, f64> = HashMap::new();
    loop {
        let mut tree = vec![child.id()];
        descendants(child.id(), &mut tree);
        for pid in tree {
            if let Some(kb) = peak_kb(pid) {
                let p = peaks.entry(pid).or_insert(0.0);
                *p = p.max(kb);
            }
        }
        if let Some(status) = child.try_wait()? {
            let max = peaks.values().copied().fold(0.0, f64::max);
            return Ok((status, max / 1024.0));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// CPU time (user + system, seconds) of this process's children that ended and were
/// waited for, theirs included: the difference around a variant is what it used.
pub fn children_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): cutime and cstime are the
    // 16th and 17th fields of the line, the 14th and 15th after it.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on Linux.
    (ticks(13) + ticks(14)) / 100.0
}
