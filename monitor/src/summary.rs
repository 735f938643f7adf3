//! The summary every job ends with: state and time, what each source read and each sink
//! wrote (with its files), and the user metrics.

use crate::format::{bytes, count, duration};
use crate::view::JobView;
use std::fmt::Write;

/// The end-of-job summary of `view`, several lines, each ending in a newline.
pub fn summary(view: &JobView) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "beamline: job '{}' {} in {} on the {} runner",
        view.name,
        view.state,
        duration(view.elapsed_sec),
        view.runner
    );
    if let Some(e) = &view.error {
        let at = view
            .error_transform
            .as_ref()
            .map(|t| format!(" (in '{t}')"))
            .unwrap_or_default();
        let _ = writeln!(s, "  error{at}: {e}");
    }
    for src in &view.sources {
        let size = if src.bytes > 0 {
            format!(" ({})", bytes(src.bytes))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  read    {}: {} elements{size} from {}",
            src.transform,
            count(src.elements),
            src.what
        );
    }
    for sink in &view.sinks {
        let files = match (view.state.as_str(), sink.files) {
            // Kafka and checkpointed file sinks count no files.
            ("DONE", 0) => format!(" to {}", sink.what),
            ("DONE", n) => format!(" into {} file(s) {}", count(n), sink.what),
            _ => format!(" (not committed: {})", sink.what),
        };
        let _ = writeln!(
            s,
            "  wrote   {}: {} elements{files}",
            sink.transform,
            count(sink.elements)
        );
    }
    if view.sources.is_empty() {
        // No annotated source: the source stages' own counts say what was read.
        for st in view.stages.iter().filter(|st| st.kind == "source") {
            if let Some(n) = st.elements_in.max(st.elements_out) {
                let _ = writeln!(s, "  read    {}: {} elements", st.name, count(n as i64));
            }
        }
    }
    if let Some(c) = &view.checkpoints {
        let mut parts = Vec::new();
        if let Some(id) = c.last {
            parts.push(format!("checkpoint {id} committed last"));
        }
        if let Some(id) = c.restored_from {
            parts.push(format!("resumed from {id}"));
        }
        if c.restarts > 0 {
            parts.push(format!("restarted {} time(s) after failures", c.restarts));
        }
        let _ = writeln!(s, "  checkpoints: {}", parts.join("; "));
    }
    if !view.metrics.is_empty() {
        let _ = writeln!(s, "  metrics:");
        for m in &view.metrics {
            let value = match m.distribution {
                Some([n, min, max]) => format!(
                    "count {} sum {} min {} max {}",
                    count(n),
                    count(m.value),
                    count(min),
                    count(max)
                ),
                None => count(m.value),
            };
            let _ = writeln!(s, "    {} {}/{}: {value}", m.step, m.namespace, m.name);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{MetricView, SinkView, SourceView};

    #[test]
    fn a_summary_names_inputs_outputs_files_and_metrics() {
        let mut view = JobView {
            name: "wordcount".into(),
            runner: "local".into(),
            state: "DONE".into(),
            elapsed_sec: 1.5,
            sources: vec![SourceView {
                transform: "Read".into(),
                what: "*.md".into(),
                elements: 1200,
                bytes: 52_000,
                bytes_total: 52_000,
            }],
            sinks: vec![SinkView {
                transform: "Write".into(),
                what: "/tmp/out-SSSSS-of-NNNNN".into(),
                elements: 300,
                files: 2,
            }],
            metrics: vec![MetricView {
                step: "Split".into(),
                namespace: "words".into(),
                name: "empty".into(),
                kind: "counter",
                value: 7,
                distribution: None,
            }],
            ..Default::default()
        };
        let s = summary(&view);
        assert!(s.starts_with("beamline: job 'wordcount' DONE in 1.50 s on the local runner\n"));
        assert!(s.contains("read    Read: 1,200 elements (52.0 KB) from *.md"));
        assert!(s.contains("wrote   Write: 300 elements into 2 file(s) /tmp/out-SSSSS-of-NNNNN"));
        assert!(s.contains("Split words/empty: 7"));
        view.sinks[0].files = 0;
        view.sinks[0].what = "kafka topic 'counts' at 127.0.0.1:9092".into();
        let s = summary(&view);
        assert!(s.contains("wrote   Write: 300 elements to kafka topic 'counts'"));
        assert!(!s.contains("checkpoints:"));
        view.checkpoints = Some(crate::view::CheckpointView {
            last: Some(12),
            restored_from: Some(8),
            restarts: 2,
        });
        let s = summary(&view);
        assert!(
            s.contains(
                "  checkpoints: checkpoint 12 committed last; resumed from 8; restarted 2 \
                 time(s) after failures\n"
            ),
            "{s}"
        );
    }
}
