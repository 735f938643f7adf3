//! The wordcount example's output equals an independent count over a generated text file.

use std::collections::HashMap;
use std::process::Command;

mod common;
use common::example;

/// A deterministic text with a skewed (Zipf-like) word distribution and punctuation.
fn generate(lines: usize) -> String {
    let mut s = String::new();
    let mut x: u64 = 42;
    for _ in 0..lines {
        for w in 0..12 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) % 1000 + 1;
            let id = 1000 / r; // small ids are frequent
            s.push_str(&format!("word{id}"));
            s.push_str(if w % 5 == 4 { ", " } else { " " });
        }
        s.push_str("don't stop.\n");
    }
    s
}

#[test]
fn wordcount_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let text = generate(20_000);
    std::fs::write(dir.path().join("part-1.txt"), &text[..text.len() / 2]).unwrap();
    std::fs::write(dir.path().join("part-2.txt"), &text[text.len() / 2..]).unwrap();
    let mut expected: HashMap<String, i64> = HashMap::new();
    for w in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\'')) {
        if !w.is_empty() {
            *expected.entry(w.to_string()).or_default() += 1;
        }
    }

    let out = dir.path().join("counts");
    let status = Command::new(example("wordcount"))
        .arg(format!("--input={}/part-*.txt", dir.path().display()))
        .arg(format!("--output={}", out.display()))
        .arg("--runner=local")
        .status()
        .unwrap();
    assert!(status.success());

    let mut got: HashMap<String, i64> = HashMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with("counts-") {
            continue;
        }
        for line in std::fs::read_to_string(dir.path().join(&name))
            .unwrap()
            .lines()
        {
            let (w, n) = line.rsplit_once(": ").unwrap();
            assert!(
                got.insert(w.to_string(), n.parse().unwrap()).is_none(),
                "{w} twice"
            );
        }
    }
    assert_eq!(got, expected);
    assert!(expected["don't"] == 20_000);
}

#[test]
fn unknown_runner_exits_with_the_list_of_runners() {
    let out = Command::new(example("wordcount"))
        .args(["--input=x", "--output=y", "--runner=nope"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown runner 'nope'; available runners: distributed, local, portable"),
        "{stderr}"
    );
}

#[test]
fn proto_roundtrip_example_runs_in_a_child_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sq");
    let o = Command::new(example("proto_roundtrip"))
        .arg(format!("--output={}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "sum of squares: 385"
    );
}

#[test]
fn help_lists_the_programs_and_the_runners_options() {
    let out = Command::new(example("wordcount"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--input=VALUE",
        "text files to read",
        "--output=VALUE",
        "--runner=VALUE",
        "--threads=N",
        "--memory-budget=SIZE",
        "--max-bundle-size=N",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn a_misspelt_option_is_one_clear_line() {
    let out = Command::new(example("wordcount"))
        .args(["--input=x", "--output=y", "--thread=2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim(),
        "error: unknown option --thread; did you mean --threads?"
    );
}
