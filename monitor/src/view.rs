//! A job as monitors show it: state, stages with counts and rates, sources and sinks,
//! user metrics and the error; serialized as the job UI's JSON.

use crate::facts::{IoFact, PipelineFacts, IO_NAMESPACE};
use beamline_engine::job::JobState;
use beamline_engine::metrics::{MetricKey, MetricResults};
use beamline_engine::progress::{ProgressSnapshot, StageInfo, StageProgress};
use serde::Serialize;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Namespaces of the runners' and IO transforms' own metrics start with this; they are
/// left out of the user metrics.
const SYSTEM_PREFIX: &str = "beamline";

/// Rates are over windows of at least this long: runners that report once a second
/// (distributed workers) would otherwise show zero between reports.
const RATE_WINDOW_SECS: f64 = 1.0;

/// One stage of a job's view.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StageView {
    /// Index among the job's stages.
    pub id: usize,
    /// Short name.
    pub name: String,
    /// `source`, `fused`, `grouping` or `other`.
    pub kind: &'static str,
    /// Its transforms.
    pub transforms: Vec<String>,
    /// The stages it reads.
    pub inputs: Vec<usize>,
    /// Elements in (`None`: not counted by this runner).
    pub elements_in: Option<u64>,
    /// Elements out.
    pub elements_out: Option<u64>,
    /// Elements per second in, over the last sample.
    pub in_per_sec: f64,
    /// Elements per second out.
    pub out_per_sec: f64,
    /// Input watermark, ms since the epoch.
    pub input_watermark: Option<i64>,
    /// Output watermark, ms since the epoch.
    pub output_watermark: Option<i64>,
    /// Elements waiting to enter.
    pub backlog: Option<u64>,
    /// Finished.
    pub done: bool,
}

/// A source and how much it read.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SourceView {
    /// Transform name.
    pub transform: String,
    /// What it reads.
    pub what: String,
    /// Elements read.
    pub elements: i64,
    /// Bytes read.
    pub bytes: i64,
    /// Bytes to read in all (0: not known).
    pub bytes_total: i64,
}

/// A sink and how much it wrote.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SinkView {
    /// Transform name.
    pub transform: String,
    /// What it writes (a shard pattern).
    pub what: String,
    /// Elements written.
    pub elements: i64,
    /// Files written (final, once the job is done).
    pub files: i64,
}

/// A user metric.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricView {
    /// The transform reporting it.
    pub step: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `counter`, `distribution` or `gauge`.
    pub kind: &'static str,
    /// The value: a count, a gauge's value, or a distribution's sum.
    pub value: i64,
    /// A distribution's count, min, max (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distribution: Option<[i64; 3]>,
}

/// A job's checkpoints, when it takes them.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CheckpointView {
    /// The newest checkpoint committed.
    pub last: Option<i64>,
    /// The checkpoint the job (its last start) resumed from.
    pub restored_from: Option<i64>,
    /// How many times the runner started it again after a failure (`--restarts`).
    pub restarts: i64,
}

/// Everything shown of one job.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct JobView {
    /// Unique among the jobs a UI shows: `PID-N`.
    pub id: String,
    /// The job's name.
    pub name: String,
    /// The runner it runs on.
    pub runner: String,
    /// `RUNNING`, `DONE`, `FAILED`, `CANCELLED` (`LOST`: its process ended unseen).
    pub state: String,
    /// Streaming (or batch).
    pub streaming: bool,
    /// When it started, ms since the epoch.
    pub started_ms: i64,
    /// Seconds it ran.
    pub elapsed_sec: f64,
    /// The process running it.
    pub pid: u32,
    /// Where its UI is served (if with `--ui`).
    pub ui: Option<String>,
    /// Whether the stages are the runner's (true) or one per transform from the proto.
    pub runner_stages: bool,
    /// Stages.
    pub stages: Vec<StageView>,
    /// Sources.
    pub sources: Vec<SourceView>,
    /// Sinks.
    pub sinks: Vec<SinkView>,
    /// User metrics.
    pub metrics: Vec<MetricView>,
    /// Its checkpoints (none: it takes none, or took none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointView>,
    /// The error of a failed job.
    pub error: Option<String>,
    /// The transform the error names.
    pub error_transform: Option<String>,
}

/// Builds successive views of a job, with rates between samples.
#[derive(Debug)]
pub struct Sampler {
    facts: PipelineFacts,
    started: Instant,
    last: Option<(Instant, Vec<(u64, u64)>)>,
    rates: Vec<(f64, f64)>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sums an IO counter of the steps inside `transform`.
fn io_counter(m: &MetricResults, transform: &str, name: &str) -> i64 {
    let inside = format!("{transform}/");
    m.counters
        .iter()
        .filter(|(k, _)| {
            k.namespace == IO_NAMESPACE
                && k.name == name
                && (k.step == transform || k.step.starts_with(&inside))
        })
        .map(|(_, v)| *v)
        .sum()
}

impl Sampler {
    /// A sampler for a job of this pipeline, started now.
    pub fn new(facts: PipelineFacts) -> Sampler {
        Sampler {
            facts,
            started: Instant::now(),
            last: None,
            rates: Vec::new(),
        }
    }

    /// The pipeline's facts.
    pub fn facts(&self) -> &PipelineFacts {
        &self.facts
    }

    /// Fills `view` from the job's state, progress and metrics now.
    pub fn sample(
        &mut self,
        view: &mut JobView,
        state: JobState,
        progress: &ProgressSnapshot,
        metrics: &MetricResults,
    ) {
        let now = Instant::now();
        if view.started_ms == 0 {
            view.started_ms = now_ms();
        }
        view.state = state.name().to_string();
        view.elapsed_sec = self.started.elapsed().as_secs_f64();
        view.streaming = progress.streaming || self.facts.unbounded;
        view.runner_stages = !progress.stages.is_empty();
        let counts: Vec<(u64, u64)> = progress
            .stages
            .iter()
            .map(|s| (s.elements_in, s.elements_out))
            .collect();
        match &self.last {
            // The stages changed (the executor started): rates start from here.
            Some((_, before)) if before.len() != counts.len() => {
                self.rates.clear();
                self.last = Some((now, counts));
            }
            Some((then, before)) => {
                let dt = now.duration_since(*then).as_secs_f64();
                if dt >= RATE_WINDOW_SECS {
                    self.rates = counts
                        .iter()
                        .zip(before)
                        .map(|(c, b)| {
                            (
                                c.0.saturating_sub(b.0) as f64 / dt,
                                c.1.saturating_sub(b.1) as f64 / dt,
                            )
                        })
                        .collect();
                    self.last = Some((now, counts));
                }
            }
            None => self.last = Some((now, counts)),
        }
        view.stages = if progress.stages.is_empty() {
            self.facts
                .primitives
                .iter()
                .enumerate()
                .map(|(i, s)| stage_view(i, s, None))
                .collect()
        } else {
            progress
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut v = stage_view(i, &s.info, Some(s));
                    if state.is_terminal() {
                        v.backlog = Some(0);
                    } else if let Some(&(a, b)) = self.rates.get(i) {
                        (v.in_per_sec, v.out_per_sec) = (a, b);
                    }
                    v
                })
                .collect()
        };
        view.sources = self
            .facts
            .sources
            .iter()
            .map(|f| {
                let mut v = source(f, metrics);
                if v.elements == 0 {
                    // Sources without IO counters (unbounded ones): their stage's count.
                    v.elements = stage_reading(&view.stages, &f.transform).unwrap_or(0) as i64;
                }
                v
            })
            .collect();
        view.sinks = self.facts.sinks.iter().map(|f| sink(f, metrics)).collect();
        view.metrics = user_metrics(metrics);
        view.checkpoints = checkpoints(metrics);
    }

    /// Records the job's error (and the transform it names).
    pub fn fail(&self, view: &mut JobView, error: String) {
        view.error_transform = self.facts.transform_in(&error);
        view.error = Some(error);
    }
}

fn stage_view(id: usize, info: &StageInfo, p: Option<&StageProgress>) -> StageView {
    StageView {
        id,
        name: info.name.clone(),
        kind: info.kind.name(),
        transforms: info.transforms.clone(),
        inputs: info.inputs.clone(),
        elements_in: p.map(|p| p.elements_in),
        elements_out: p.map(|p| p.elements_out),
        in_per_sec: 0.0,
        out_per_sec: 0.0,
        input_watermark: p.and_then(|p| p.input_watermark),
        output_watermark: p.and_then(|p| p.output_watermark),
        backlog: p.map(|p| p.backlog),
        done: p.is_some_and(|p| p.done),
    }
}

/// What the source stage running `transform` (or its parts) read.
fn stage_reading(stages: &[StageView], transform: &str) -> Option<u64> {
    let inside = format!("{transform}/");
    stages
        .iter()
        .find(|s| {
            s.kind == "source"
                && s.transforms
                    .iter()
                    .any(|t| t == transform || t.starts_with(&inside))
        })
        .and_then(|s| s.elements_in.max(s.elements_out))
}

fn source(f: &IoFact, m: &MetricResults) -> SourceView {
    SourceView {
        transform: f.transform.clone(),
        what: f.what.clone(),
        elements: io_counter(m, &f.transform, "elementsRead"),
        bytes: io_counter(m, &f.transform, "bytesRead"),
        bytes_total: io_counter(m, &f.transform, "bytesTotal"),
    }
}

fn sink(f: &IoFact, m: &MetricResults) -> SinkView {
    SinkView {
        transform: f.transform.clone(),
        what: f.what.clone(),
        elements: io_counter(m, &f.transform, "elementsWritten"),
        files: io_counter(m, &f.transform, "filesWritten"),
    }
}

/// What the runners' checkpoint metrics (`beamline.checkpoint`) say, if anything.
fn checkpoints(m: &MetricResults) -> Option<CheckpointView> {
    const NS: &str = "beamline.checkpoint";
    let v = CheckpointView {
        last: m.gauge(NS, "lastId"),
        restored_from: m.gauge(NS, "restoredFrom"),
        restarts: m.counter(NS, "restarts").unwrap_or(0),
    };
    (v != CheckpointView::default()).then_some(v)
}

/// The metrics a user reported (not the runners' own).
pub fn user_metrics(m: &MetricResults) -> Vec<MetricView> {
    let view = |k: &MetricKey, kind, value, distribution| MetricView {
        step: k.step.clone(),
        namespace: k.namespace.clone(),
        name: k.name.clone(),
        kind,
        value,
        distribution,
    };
    let counters = m.counters.iter().map(|(k, v)| view(k, "counter", *v, None));
    let distributions = m
        .distributions
        .iter()
        .map(|(k, d)| view(k, "distribution", d.sum, Some([d.count, d.min, d.max])));
    let gauges = m
        .gauges
        .iter()
        .map(|(k, g)| view(k, "gauge", g.value, None));
    counters
        .chain(distributions)
        .chain(gauges)
        .filter(|v| !v.namespace.starts_with(SYSTEM_PREFIX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamline_engine::progress::{Progress, StageKind};

    #[test]
    fn rates_come_from_the_counts_between_samples() {
        let progress = Progress::default();
        let meters = progress.start(
            vec![StageInfo {
                name: "Read".into(),
                kind: StageKind::Source,
                transforms: vec!["Read".into()],
                inputs: vec![],
            }],
            true,
        );
        let mut sampler = Sampler::new(PipelineFacts::default());
        let mut view = JobView::default();
        let m = MetricResults::default();
        // Before the executor describes its stages.
        sampler.sample(
            &mut view,
            JobState::Running,
            &ProgressSnapshot::default(),
            &m,
        );
        sampler.sample(&mut view, JobState::Running, &progress.snapshot(), &m);
        meters.add_out(0, 3000);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        sampler.sample(&mut view, JobState::Running, &progress.snapshot(), &m);
        let r = view.stages[0].out_per_sec;
        assert!(r > 1500.0 && r <= 3000.0, "{r}");
        assert_eq!(view.stages[0].elements_out, Some(3000));
        sampler.sample(&mut view, JobState::Done, &progress.snapshot(), &m);
        assert_eq!(view.stages[0].out_per_sec, 0.0);
    }
}
