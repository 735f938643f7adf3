//! ReadFromText and WriteToText: globs, gzip, split boundaries, sharding, atomic output.

use beamline::testing::capture;
use beamline::{Create, Pipeline, PipelineOptions, ReadFromText, WriteToText};
use std::io::Write;
use std::path::Path;

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineOptions::default())
}

fn read_shards(prefix: &Path) -> (Vec<String>, Vec<String>) {
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_string_lossy().into_owned();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&stem))
        .collect();
    names.sort();
    let mut lines: Vec<String> = names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    (names, lines)
}

#[test]
fn reads_glob_gzip_and_split_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    // A file read in many small ranges: lines must be neither lost nor duplicated.
    let mut f = std::fs::File::create(dir.path().join("a.txt")).unwrap();
    for i in 0..500 {
        let line = format!("line {i} {}", "x".repeat(i % 37));
        writeln!(f, "{line}").unwrap();
        expected.push(line);
    }
    // CRLF endings and no final newline.
    std::fs::write(dir.path().join("b.txt"), "crlf one\r\ncrlf two").unwrap();
    expected.extend(["crlf one".to_string(), "crlf two".to_string()]);
    // Gzip.
    let gz = std::fs::File::create(dir.path().join("c.txt.gz")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
    enc.write_all(b"zipped 1\nzipped 2\n").unwrap();
    enc.finish().unwrap();
    expected.extend(["zipped 1".to_string(), "zipped 2".to_string()]);
    // Not matched by the glob.
    std::fs::write(dir.path().join("skip.csv"), "nope\n").unwrap();

    let p = pipeline();
    let pattern = format!("{}/*.txt*", dir.path().display());
    let lines = p.apply("Read", ReadFromText::new(pattern).with_split_size(97));
    let got = capture(&lines);
    p.run().unwrap();
    expected.sort();
    assert_eq!(got.sorted(), expected);
}

#[test]
fn missing_input_names_the_glob() {
    let p = pipeline();
    p.apply("Read", ReadFromText::new("/definitely/not/here/*.txt"));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("no files match '/definitely/not/here/*.txt'"),
        "{err}"
    );
    assert!(err.contains("Read/ExpandGlob"), "{err}");
}

#[test]
fn invalid_utf8_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, b"ok\n\xff\xfe\n").unwrap();
    let p = pipeline();
    p.apply("Read", ReadFromText::new(path.to_string_lossy()));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("bad.txt") && err.contains("not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn writes_fixed_and_runner_chosen_shards() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..1000).map(|i| format!("row {i}")).collect();
    let p = pipeline();
    let input = p.apply("Lines", Create::of(lines.clone()));
    let fixed = dir.path().join("fixed");
    let auto = dir.path().join("auto");
    let names = capture(
        &input.apply(
            "WriteFixed",
            WriteToText::new(fixed.to_string_lossy())
                .with_num_shards(3)
                .with_suffix(".txt"),
        ),
    );
    input.apply("WriteAuto", WriteToText::new(auto.to_string_lossy()));
    p.run().unwrap();

    let mut sorted = lines.clone();
    sorted.sort();
    let (fixed_names, fixed_lines) = read_shards(&fixed);
    assert_eq!(
        fixed_names,
        vec![
            "fixed-00000-of-00003.txt",
            "fixed-00001-of-00003.txt",
            "fixed-00002-of-00003.txt"
        ]
    );
    assert_eq!(fixed_lines, sorted);
    assert_eq!(names.sorted().len(), 3);
    let (auto_names, auto_lines) = read_shards(&auto);
    assert!(!auto_names.is_empty());
    let n = auto_names.len();
    for (i, name) in auto_names.iter().enumerate() {
        assert_eq!(name, &format!("auto-{i:05}-of-{n:05}"));
    }
    assert_eq!(auto_lines, sorted);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("beamline-temp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn fixed_shards_share_the_elements_evenly() {
    // Round robin from a random start: 7 lines over 3 shards are 3, 2 and 2 lines in some
    // order, every time (random shards would leave one empty now and then).
    for run in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("even");
        let p = pipeline();
        p.apply("Lines", Create::of((0..7).map(|i| format!("row {i}"))))
            .apply(
                "Write",
                WriteToText::new(prefix.to_string_lossy()).with_num_shards(3),
            );
        p.run().unwrap();
        let mut sizes: Vec<usize> = (0..3)
            .map(|i| {
                let name = format!("even-{i:05}-of-00003");
                std::fs::read_to_string(dir.path().join(name))
                    .unwrap()
                    .lines()
                    .count()
            })
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![2, 2, 3], "run {run}");
    }
}

#[test]
fn empty_input_writes_one_empty_shard() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("empty");
    let p = pipeline();
    p.apply("None", Create::of(Vec::<String>::new()))
        .apply("Write", WriteToText::new(prefix.to_string_lossy()));
    p.run().unwrap();
    let (names, lines) = read_shards(&prefix);
    assert_eq!(names, vec!["empty-00000-of-00001"]);
    assert!(lines.is_empty());
}

#[test]
fn failed_job_leaves_no_final_files() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out");
    let p = pipeline();
    p.apply("Lines", Create::of((0..5000).map(|i| i.to_string())))
        .map("FailOnOne", |s: String| {
            if s == "4321" {
                panic!("bad record {s}");
            }
            s
        })
        .apply("Write", WriteToText::new(prefix.to_string_lossy()));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("'FailOnOne'") && err.contains("bad record 4321"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left after a failed job: {left:?}");
}

/// A stream of many small bundles writes one file per worker, not one per bundle.
#[test]
fn streaming_writes_many_bundles_to_few_files() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("stream");
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("streaming", true)
            .set("max_bundle_size", 100),
    );
    p.apply(
        "Events",
        beamline::io::generator::Generator::new(10).with_count(5_000),
    )
    .map("Line", |(k, seq): (i64, i64)| format!("{k},{seq}"))
    .apply("Write", WriteToText::new(prefix.to_string_lossy()));
    p.run().unwrap();
    let (names, lines) = read_shards(&prefix);
    // The writer runs on the source's worker threads (at most four): a file for each.
    assert!(
        (1..=4).contains(&names.len()),
        "50 bundles written to {names:?}"
    );
    let mut seqs: Vec<i64> = lines
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..5_000).collect::<Vec<_>>());
}

/// Issue 21: a file whose size reads as zero but has content is read in full.
#[cfg(target_os = "linux")]
#[test]
fn files_whose_size_reads_as_zero_are_read_whole() {
    assert_eq!(std::fs::metadata("/proc/cpuinfo").unwrap().len(), 0);
    let p = pipeline();
    let lines = capture(&p.apply("Read", ReadFromText::new("/proc/cpuinfo")));
    p.run().unwrap();
    let want = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    assert!(!want.is_empty());
    assert_eq!(lines.items().len(), want.lines().count());
    // An empty regular file still reads as nothing.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    let p = pipeline();
    let none = capture(&p.apply(
        "Read",
        ReadFromText::new(dir.path().join("empty.txt").to_string_lossy()),
    ));
    p.run().unwrap();
    assert!(none.items().is_empty());
}

/// Issue 21: writing to a prefix that holds shards of an earlier run with another shard
/// count replaces them, so `PREFIX-*` holds one run's output; other files stay.
#[test]
fn stale_shards_of_another_count_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out");
    let prefix_s = prefix.to_string_lossy().into_owned();
    std::fs::write(dir.path().join("out-notes.txt"), "keep me").unwrap();
    for (shards, values) in [(5usize, 0i64..50), (2, 100..110)] {
        let p = pipeline();
        p.apply("Nums", Create::of(values))
            .map("Fmt", |x: i64| x.to_string())
            .apply("Write", WriteToText::new(&prefix_s).with_num_shards(shards));
        p.run().unwrap();
    }
    let (names, lines) = read_shards(&prefix);
    assert_eq!(
        names,
        vec!["out-00000-of-00002", "out-00001-of-00002", "out-notes.txt"]
    );
    let mut want: Vec<String> = (100..110).map(|x: i64| x.to_string()).collect();
    want.push("keep me".into());
    want.sort();
    assert_eq!(lines, want);
}
