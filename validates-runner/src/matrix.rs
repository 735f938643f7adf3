//! Running cases on runners and summarizing the outcomes as a capability matrix.

use crate::{Case, Category, Expect, RunnerEntry};
use beamline::Pipeline;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The outcome of one case on one runner.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// As expected.
    Passed,
    /// Not as expected; the message says why.
    Failed(String),
    /// The runner skips a category of the case; the reason is from its skip list.
    Unsupported(String),
}

/// Runs `case` on `runner` (in a process of its own when the runner says so).
pub fn run_case(case: &Case, runner: &RunnerEntry) -> Outcome {
    if let Some((c, why)) = runner
        .skips
        .iter()
        .find(|(c, _)| case.categories.contains(c))
    {
        return Outcome::Unsupported(format!("{c:?}: {why}"));
    }
    if runner.own_process {
        return crate::isolated::run_case_in_own_process(case, runner);
    }
    run_case_here(case, runner)
}

/// Runs `case` on `runner` in this process.
pub(crate) fn run_case_here(case: &Case, runner: &RunnerEntry) -> Outcome {
    let options = match runner.pipeline_options() {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(e),
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let p = Pipeline::new(options);
        (case.build)(&p);
        p.run()
    }));
    let result = match result {
        Ok(r) => r,
        Err(_) => return Outcome::Failed("the case panicked while building or running".into()),
    };
    match (case.expect, result) {
        (Expect::Success, Ok(_)) => Outcome::Passed,
        (Expect::Result(check), Ok(r)) => match check(&r) {
            Ok(()) => Outcome::Passed,
            Err(e) => Outcome::Failed(e),
        },
        (Expect::Failure(text), Err(e)) if e.to_string().contains(text) => Outcome::Passed,
        (Expect::Failure(text), Err(e)) => {
            Outcome::Failed(format!("expected an error containing '{text}', got: {e}"))
        }
        (Expect::Failure(text), Ok(_)) => Outcome::Failed(format!(
            "expected an error containing '{text}', the job succeeded"
        )),
        (_, Err(e)) => Outcome::Failed(e.to_string()),
    }
}

/// Outcomes of every case on every runner.
pub struct Matrix {
    /// The runners, in column order.
    pub runners: Vec<RunnerEntry>,
    /// (case name, categories, outcome per runner).
    pub rows: Vec<(&'static str, &'static [Category], Vec<Outcome>)>,
    /// Wall time of the whole suite.
    pub elapsed: std::time::Duration,
}

/// Runs every case on every runner.
pub fn run_suite(cases: &[Case], runners: &[RunnerEntry]) -> Matrix {
    let start = std::time::Instant::now();
    let rows = cases
        .iter()
        .map(|c| {
            let outcomes = runners.iter().map(|r| run_case(c, r)).collect();
            (c.name, c.categories, outcomes)
        })
        .collect();
    Matrix {
        runners: runners.to_vec(),
        rows,
        elapsed: start.elapsed(),
    }
}

#[derive(Default, Clone, Copy)]
struct Tally {
    passed: usize,
    failed: usize,
    unsupported: usize,
}

impl Matrix {
    /// Failures as `(case, runner, message)`.
    pub fn failures(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut v = Vec::new();
        for (name, _, outcomes) in &self.rows {
            for (r, o) in self.runners.iter().zip(outcomes) {
                if let Outcome::Failed(m) = o {
                    v.push((*name, r.name, m.clone()));
                }
            }
        }
        v
    }

    fn tallies(&self) -> BTreeMap<Category, Vec<Tally>> {
        let mut t: BTreeMap<Category, Vec<Tally>> = BTreeMap::new();
        for (_, cats, outcomes) in &self.rows {
            for c in cats.iter() {
                let row = t
                    .entry(*c)
                    .or_insert_with(|| vec![Tally::default(); self.runners.len()]);
                for (i, o) in outcomes.iter().enumerate() {
                    match o {
                        Outcome::Passed => row[i].passed += 1,
                        Outcome::Failed(_) => row[i].failed += 1,
                        Outcome::Unsupported(_) => row[i].unsupported += 1,
                    }
                }
            }
        }
        t
    }

    /// The matrix as a Markdown table (category rows, runner columns).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| category |");
        for r in &self.runners {
            s.push_str(&format!(" {} |", r.name));
        }
        s.push_str("\n|---|");
        for _ in &self.runners {
            s.push_str("---|");
        }
        s.push('\n');
        for (cat, row) in self.tallies() {
            s.push_str(&format!("| {cat:?} |"));
            for (i, t) in row.iter().enumerate() {
                let cell = if t.failed > 0 {
                    format!("FAILED {} of {}", t.failed, t.passed + t.failed)
                } else if t.unsupported > 0 && t.passed == 0 {
                    let reason = self.runners[i]
                        .skips
                        .iter()
                        .find(|(c, _)| *c == cat)
                        .map(|(_, r)| *r)
                        .unwrap_or("skipped");
                    format!("unsupported ({reason})")
                } else if t.unsupported > 0 {
                    format!("passed {} (unsupported {})", t.passed, t.unsupported)
                } else {
                    format!("passed {}", t.passed)
                };
                s.push_str(&format!(" {cell} |"));
            }
            s.push('\n');
        }
        let n = self.rows.len();
        let cats = self.tallies().len();
        s.push_str(&format!(
            "\n{n} cases in {cats} categories on {} runners; suite time {:.1}s.\n",
            self.runners.len(),
            self.elapsed.as_secs_f64()
        ));
        s
    }
}
