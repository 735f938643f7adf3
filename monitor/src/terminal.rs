//! Live progress on stderr: a progress bar for batch jobs (on a terminal only) and a
//! status line every few seconds for streaming jobs.

use crate::format::{count, duration, rate, timestamp};
use crate::view::JobView;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A watermark's lag behind the wall clock is shown when it is less than this (a week).
const LAG_SHOWN_WITHIN_MS: i64 = 7 * 24 * 3_600_000;

/// How often a streaming job's status line is printed.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// What the terminal shows of one job.
#[derive(Debug)]
pub struct Terminal {
    bar: Option<ProgressBar>,
    sized: bool,
    status: bool,
    last_status: Instant,
}

impl Terminal {
    /// A display: nothing when `quiet`; a bar only when stderr is a terminal.
    pub fn new(quiet: bool) -> Terminal {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        Terminal {
            bar,
            sized: false,
            status: !quiet,
            last_status: Instant::now(),
        }
    }

    /// Shows `view` (called every few hundred milliseconds).
    pub fn update(&mut self, view: &JobView) {
        if view.streaming {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
            if self.status && self.last_status.elapsed() >= STATUS_EVERY {
                self.last_status = Instant::now();
                eprintln!("{}", status_line(view));
            }
            return;
        }
        let Some(bar) = &self.bar else {
            return;
        };
        let total: i64 = view.sources.iter().map(|s| s.bytes_total).sum();
        let read: i64 = view.sources.iter().map(|s| s.bytes).sum();
        if total > 0 && !self.sized {
            self.sized = true;
            bar.set_length(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed:>4} [{bar:20}] {bytes}/{total_bytes} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
        if self.sized {
            bar.set_position(read.max(0) as u64);
        } else {
            bar.tick();
        }
        bar.set_message(stage_counts(view));
    }

    /// Removes the bar (before the summary is printed).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `1.2M/s | 2/6 stages done | ReadRanges 3,000 > Count 1,200`: the fastest stage's rate,
/// how many stages finished, and the output counts of the (at most three) next ones.
fn stage_counts(view: &JobView) -> String {
    let fastest = view
        .stages
        .iter()
        .map(|s| s.out_per_sec.max(s.in_per_sec))
        .fold(0.0, f64::max);
    let done = view.stages.iter().filter(|s| s.done).count();
    let next: Vec<String> = view
        .stages
        .iter()
        .filter(|s| !s.done)
        .take(3)
        .map(|s| {
            let name = s.name.rsplit('/').next().unwrap_or(&s.name);
            format!("{name} {}", count(s.elements_out.unwrap_or(0) as i64))
        })
        .collect();
    format!(
        "{} | {done}/{} stages done | {}",
        rate(fastest),
        view.stages.len(),
        next.join(" > ")
    )
}

/// A streaming job's status: events read per second, the sources' watermark and its lag
/// behind the wall clock, panes fired, elapsed time.
pub fn status_line(view: &JobView) -> String {
    let sources = view.stages.iter().filter(|s| s.kind == "source");
    let events: f64 = sources.clone().map(|s| s.out_per_sec).sum();
    let wm = sources.filter_map(|s| s.output_watermark).min();
    let panes: u64 = view
        .stages
        .iter()
        .filter(|s| s.kind == "grouping")
        .filter_map(|s| s.elements_out)
        .sum();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let watermark = match wm {
        // Lag behind the wall clock means something for event times near it only (a
        // replay of old data, a generator starting at 0, would show years).
        Some(w) if (now - w).abs() < LAG_SHOWN_WITHIN_MS => format!(
            "watermark {} (lag {})",
            timestamp(w),
            duration(((now - w) as f64 / 1000.0).max(0.0))
        ),
        Some(w) => format!("watermark {}", timestamp(w)),
        None => "watermark -inf".into(),
    };
    format!(
        "beamline: {} {} events/s, {watermark}, {} panes fired, {} elapsed",
        view.name,
        rate(events).trim_end_matches("/s"),
        count(panes as i64),
        duration(view.elapsed_sec)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::StageView;

    #[test]
    fn a_status_line_reports_events_watermark_lag_and_panes() {
        let view = JobView {
            name: "clicks".into(),
            streaming: true,
            elapsed_sec: 12.0,
            stages: vec![
                StageView {
                    kind: "source",
                    out_per_sec: 2500.0,
                    output_watermark: Some(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis() as i64
                            - 3_000,
                    ),
                    ..Default::default()
                },
                StageView {
                    kind: "grouping",
                    elements_out: Some(42),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let line = status_line(&view);
        assert!(
            line.starts_with("beamline: clicks 2.5K events/s, watermark 20"),
            "{line}"
        );
        assert!(line.contains("Z (lag 3."), "{line}");
        assert!(line.ends_with("42 panes fired, 12.0 s elapsed"), "{line}");
    }
}
