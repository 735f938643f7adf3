//! The whole validates-runner suite on every runner (part of `cargo test`), and proof that
//! the suite can fail: a deliberately broken runner that drops late data fails it.
//!
//! Without libtest's harness: the distributed columns re-run this program to run one case
//! ([`serve_case`]), which libtest's argument parsing would refuse.

use beamline::engine::job::JobHandle;
use beamline::engine::options::OptionSpec;
use beamline::engine::runner::{JobContext, Runner, RunnerRegistration};
use beamline::engine::EngineError;
use beamline::proto::pipeline as pb;
use beamline::proto::prost::Message;
use beamline_validates_runner::{
    cases, run_suite, serve_case, Category, Outcome, RunnerEntry, ScratchDir, RUNNERS,
};

fn main() {
    serve_case(&cases::all(), RUNNERS);
    let _scratch = ScratchDir::enter().expect("a scratch directory");
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, fn()); 2] = [
        (
            "every_runner_passes_every_case_it_claims",
            every_runner_passes_every_case_it_claims,
        ),
        (
            "a_broken_runner_fails_the_suite",
            a_broken_runner_fails_the_suite,
        ),
    ];
    for (name, test) in tests {
        if filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())) {
            eprintln!("test {name} ...");
            test();
            eprintln!("test {name} ... ok");
        }
    }
}

fn every_runner_passes_every_case_it_claims() {
    let all = cases::all();
    assert!(all.len() >= 100, "only {} cases", all.len());
    let mut names: Vec<&str> = all.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "case names must be unique");
    // `BEAMLINE_SUITE_RUNNERS=streaming` runs only the columns whose name contains it.
    let only = std::env::var("BEAMLINE_SUITE_RUNNERS").unwrap_or_default();
    let runners: Vec<RunnerEntry> = RUNNERS
        .iter()
        .filter(|r| r.name.contains(only.as_str()))
        .cloned()
        .collect();
    let m = run_suite(&all, &runners);
    let failures = m.failures();
    assert!(failures.is_empty(), "{failures:#?}");
    eprintln!("{}", m.to_markdown());
}

/// Runs pipelines on the local runner after setting every allowed lateness to zero:
/// late data is dropped instead of producing late panes.
struct DropsLateData;

impl Runner for DropsLateData {
    fn options(&self) -> Vec<OptionSpec> {
        beamline_runner_local::LocalRunner.options()
    }

    fn start(&self, pipeline: &[u8], job: JobContext) -> Result<Box<dyn JobHandle>, EngineError> {
        let mut p = pb::Pipeline::decode(pipeline)
            .map_err(|e| EngineError::InvalidPipeline(e.to_string()))?;
        if let Some(c) = p.components.as_mut() {
            for ws in c.windowing_strategies.values_mut() {
                ws.allowed_lateness = 0;
            }
        }
        beamline_runner_local::LocalRunner.start(&p.encode_to_vec(), job)
    }
}

inventory::submit! {
    RunnerRegistration {
        name: "broken-drops-late-data",
        description: "test-only: the local runner with allowed lateness forced to zero",
        create: || Box::new(DropsLateData),
    }
}

fn a_broken_runner_fails_the_suite() {
    let broken = [RunnerEntry {
        name: "broken",
        runner: "broken-drops-late-data",
        options: &[],
        skips: &[(Category::ManyKeys, "kept short in this test")],
        own_process: false,
        beam_job_service: false,
    }];
    let all = cases::all();
    let m = run_suite(&all, &broken);
    let failed: Vec<&str> = m.failures().iter().map(|(c, _, _)| *c).collect();
    // With no allowed lateness, the late pane of Beam's recorded scenario is missing.
    assert_eq!(
        failed,
        vec!["beam_fixed_default_trigger_late_and_dropped"],
        "{failed:?}"
    );
    // Unaffected cases still pass, and skips are reported with their reason.
    let row = m.rows.iter().find(|r| r.0 == "map").unwrap();
    assert_eq!(row.2[0], Outcome::Passed);
    let many = m
        .rows
        .iter()
        .find(|r| r.0 == "more_than_a_million_keys")
        .unwrap();
    assert_eq!(
        many.2[0],
        Outcome::Unsupported("ManyKeys: kept short in this test".into())
    );
    assert!(m.to_markdown().contains("FAILED"));
}
