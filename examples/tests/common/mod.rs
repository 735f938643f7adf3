//! Helpers the example tests share: where cargo put an example binary, and reading the
//! shards it wrote.

use std::path::{Path, PathBuf};

/// The binary of example `name`, built by cargo next to this test.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// The sorted lines of every file `dir/prefix-*`.
#[allow(dead_code)] // not every test file reads shards
pub fn lines(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{prefix}-")) {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            out.extend(text.lines().map(String::from));
        }
    }
    out.sort();
    out
}

/// The output of `child` once it ends, or `None` after `limit` (it is then killed).
#[allow(dead_code)] // not every test file waits on children
pub fn output_within(
    child: std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let o = rx.recv_timeout(limit).ok();
    if o.is_none() {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    o
}
