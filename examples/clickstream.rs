//! Clickstream: per-user click counts in 1-minute event-time windows over an out-of-order
//! click stream, with allowed lateness, early and late firings; prints the top users per
//! window as panes fire. The same pipeline code runs in batch over a CSV file or in
//! streaming over the generator.
//!
//! ```text
//! # write a CSV of generated clicks, then count it in batch
//! cargo run --release --example clickstream -- --generate-csv /tmp/clicks.csv --count 100000
//! cargo run --release --example clickstream -- --input /tmp/clicks.csv
//! # stream from the generator (Ctrl-C drains and stops)
//! cargo run --release --example clickstream -- --streaming --rate 2000 [--count 100000]
//! ```
//! Options: `--users N` (100), `--seed S` (1), `--top N` (3), `--panes PREFIX` (write every
//! pane as `user,window_start,pane_index,timing,count`), `--quiet` (no rankings, no progress).

use beamline::{
    OptionKind, OptionSpec, PCollection, Pipeline, ReadFromText, WithTimestamps, WriteToText,
};
use beamline_examples::clickstream::{self, CountPanes, DescribePane};
use std::io::Write;

fn main() -> std::process::ExitCode {
    beamline::main(run)
}

fn run() -> anyhow::Result<()> {
    let opt = OptionSpec::new;
    let p = Pipeline::from_env_with(vec![
        opt(
            "input",
            OptionKind::Text,
            "CSV of user,timestamp_ms clicks (batch)",
        ),
        opt(
            "generate-csv",
            OptionKind::Text,
            "write generated clicks to this CSV and stop",
        ),
        opt(
            "count",
            OptionKind::Integer,
            "events to generate (default: unbounded when streaming)",
        ),
        opt(
            "rate",
            OptionKind::Integer,
            "streaming: events per second (0: as fast as possible)",
        )
        .default_value(0),
        opt("users", OptionKind::Integer, "distinct users").default_value(100),
        opt("seed", OptionKind::Integer, "generator seed").default_value(1),
        opt("top", OptionKind::Integer, "users ranked per window").default_value(3),
        opt(
            "panes",
            OptionKind::Text,
            "write every pane as user,window_start,index,timing,count",
        ),
    ])?;
    let o = p.options();
    let users: u64 = o.get("users")?.unwrap_or(100);
    let seed: u64 = o.get("seed")?.unwrap_or(1);
    let count: Option<u64> = o.get("count")?;
    if let Some(path) = o.get::<String>("generate_csv")? {
        let g = clickstream::generator(users, Some(count.unwrap_or(100_000)), 0, seed);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for ((key, _), ts) in g.events() {
            writeln!(f, "{},{ts}", clickstream::user_of(key))?;
        }
        f.flush()?;
        eprintln!("wrote {path}");
        return Ok(());
    }

    let clicks: PCollection<String> = if o.flag("streaming") {
        let rate: u64 = o.get("rate")?.unwrap_or(0);
        p.apply("Clicks", clickstream::generator(users, count, rate, seed))
            .map("User", |(key, _): (i64, i64)| clickstream::user_of(key))
    } else {
        let input: String = o.require("input")?;
        p.apply("Read", ReadFromText::new(input))
            .map("Parse", |line: String| {
                clickstream::parse_csv(&line).unwrap_or_else(|e| panic!("{e}"))
            })
            .apply(
                "EventTime",
                WithTimestamps::of(|(_, ts): &(String, i64)| *ts),
            )
            .map("User", |(user, _): (String, i64)| user)
    };

    let counts = clickstream::counts(&clicks);
    let top: usize = o.get("top")?.unwrap_or(3);
    let rankings = clickstream::ranking(&counts, top);
    if !o.flag("quiet") {
        rankings.map("Print", |line: String| {
            println!("{line}");
        });
    }
    if let Some(prefix) = o.get::<String>("panes")? {
        counts
            .par_do("DescribePane", DescribePane)
            .apply("WritePanes", WriteToText::new(prefix));
    }
    counts.par_do("CountPanes", CountPanes);
    let result = p.run()?;
    eprintln!(
        "{} panes; late clicks dropped: {}",
        result
            .metrics()
            .counter("clickstream", "panes")
            .unwrap_or(0),
        result
            .metrics()
            .counter("beamline", "droppedDueToLateness")
            .unwrap_or(0)
    );
    Ok(())
}
