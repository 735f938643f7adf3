//! WatchText: an unbounded source of the lines of the files that appear in a directory,
//! each read once complete, resuming from checkpoints (the files read and the position in
//! the file being read).

use crate::io::text::strip_newline;
use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use beamline_engine::source::{Polled, SourceOutput, UnboundedSource};
use beamline_engine::UserError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

/// Watches a directory for new text files and streams their lines (an unbounded source).
///
/// Files matching the glob are read once their size stopped changing between two polls;
/// each line is timestamped with the processing time it was read at, and the watermark
/// follows processing time. The source runs until the job is cancelled (Ctrl-C drains),
/// or until no new file appeared for `stop_after_idle_ms`, if set.
///
/// # Examples
///
/// ```no_run
/// use beamline::io::watch_text::WatchText;
/// use beamline::{Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let lines = p.apply("Watch", WatchText::new("incoming/*.txt"));
/// # let _ = lines;
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WatchText {
    /// Glob of the files to read.
    pub pattern: String,
    /// How often to look for new files (ms).
    pub poll_interval_ms: i64,
    /// Stop after this long without new files (ms); `None`: run until cancelled.
    pub stop_after_idle_ms: Option<i64>,
}

impl WatchText {
    /// Watches `pattern`, polling every 500 ms, until cancelled.
    pub fn new(pattern: impl Into<String>) -> Self {
        WatchText {
            pattern: pattern.into(),
            poll_interval_ms: 500,
            stop_after_idle_ms: None,
        }
    }

    /// Polling interval.
    pub fn with_poll_interval(mut self, ms: i64) -> Self {
        self.poll_interval_ms = ms.max(1);
        self
    }

    /// Stops once no new file appeared for `ms`.
    pub fn stop_after_idle(mut self, ms: i64) -> Self {
        self.stop_after_idle_ms = Some(ms);
        self
    }
}

struct WatchReader {
    config: WatchText,
    /// Files read to their end.
    done: std::collections::BTreeSet<PathBuf>,
    /// Size seen at the previous poll, for files not read yet.
    sizes: std::collections::HashMap<PathBuf, u64>,
    /// Complete files waiting to be read, in name order.
    queue: std::collections::VecDeque<PathBuf>,
    /// The file being read and the byte offset of its next line.
    current: Option<(PathBuf, u64)>,
    last_poll: i64,
    last_new: Option<i64>,
}

impl WatchReader {
    fn new(config: WatchText) -> Self {
        WatchReader {
            config,
            done: Default::default(),
            sizes: Default::default(),
            queue: Default::default(),
            current: None,
            last_poll: i64::MIN / 2,
            last_new: None,
        }
    }

    /// Queues the files that matched and kept their size since the previous scan.
    fn scan(&mut self) -> Result<(), UserError> {
        let paths = glob::glob(&self.config.pattern)
            .map_err(|e| format!("invalid file pattern '{}': {e}", self.config.pattern))?;
        let mut ready = Vec::new();
        for p in paths.flatten() {
            let taken = self.done.contains(&p)
                || self.queue.contains(&p)
                || self.current.as_ref().is_some_and(|(c, _)| *c == p);
            if taken || !p.is_file() {
                continue;
            }
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            // A file is complete once its size did not change since the previous poll.
            if self.sizes.insert(p.clone(), size) == Some(size) {
                ready.push(p);
            }
        }
        ready.sort();
        for p in ready {
            self.sizes.remove(&p);
            self.queue.push_back(p);
        }
        Ok(())
    }

    /// Reads up to `max` lines from the current file (or the next queued one).
    fn read(
        &mut self,
        now_ms: i64,
        max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<(), UserError> {
        use std::io::{BufRead, Seek};
        let mut n = 0;
        while n < max {
            if self.current.is_none() {
                match self.queue.pop_front() {
                    Some(p) => self.current = Some((p, 0)),
                    None => return Ok(()),
                }
            }
            let (path, offset) = self.current.as_mut().expect("set above");
            let mut f =
                File::open(&*path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            f.seek(std::io::SeekFrom::Start(*offset))
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let mut reader = BufReader::with_capacity(1 << 16, f);
            let mut line = Vec::new();
            let mut at_end = false;
            while n < max {
                line.clear();
                let got = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                if got == 0 {
                    at_end = true;
                    break;
                }
                *offset += got as u64;
                strip_newline(&mut line);
                let text = String::from_utf8(std::mem::take(&mut line)).map_err(|_| {
                    format!(
                        "{}: a line before byte {offset} is not UTF-8",
                        path.display()
                    )
                })?;
                out.push(beamline_engine::Value::Str(text), now_ms);
                n += 1;
            }
            if at_end {
                let (p, _) = self.current.take().expect("set above");
                self.done.insert(p);
                self.last_new = Some(now_ms);
            }
        }
        Ok(())
    }
}

impl UnboundedSource for WatchReader {
    fn poll(
        &mut self,
        now_ms: i64,
        max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError> {
        let mut polled = Polled {
            watermark: now_ms,
            finished: false,
        };
        let last_new = *self.last_new.get_or_insert(now_ms);
        if now_ms - self.last_poll >= self.config.poll_interval_ms {
            self.last_poll = now_ms;
            self.scan()?;
        }
        self.read(now_ms, max.max(1), out)?;
        if let Some(idle) = self.config.stop_after_idle_ms {
            if out.is_empty()
                && self.sizes.is_empty()
                && self.queue.is_empty()
                && self.current.is_none()
                && now_ms - self.last_new.unwrap_or(last_new) >= idle
            {
                polled.finished = true;
            }
        }
        Ok(polled)
    }

    fn position(&self) -> Option<Vec<u8>> {
        // The files read, and the one being read with the offset of its next line.
        let mut e = beamline_engine::checkpoint::codec::Enc::new();
        e.u64(self.done.len() as u64);
        for p in &self.done {
            e.bytes(p.to_string_lossy().as_bytes());
        }
        match &self.current {
            Some((p, offset)) => e
                .bool(true)
                .bytes(p.to_string_lossy().as_bytes())
                .u64(*offset),
            None => e.bool(false),
        };
        Some(e.finish())
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), UserError> {
        let bad = |e: beamline_engine::EngineError| UserError::from(e.to_string());
        let mut d = beamline_engine::checkpoint::codec::Dec::new(position, "a WatchText position");
        let path =
            |d: &mut beamline_engine::checkpoint::codec::Dec<'_>| -> Result<PathBuf, UserError> {
                Ok(PathBuf::from(
                    String::from_utf8_lossy(d.bytes().map_err(bad)?).into_owned(),
                ))
            };
        for _ in 0..d.count().map_err(bad)? {
            let p = path(&mut d)?;
            self.done.insert(p);
        }
        if d.bool().map_err(bad)? {
            let p = path(&mut d)?;
            let offset = d.u64().map_err(bad)?;
            self.current = Some((p, offset));
        }
        d.end().map_err(bad)?;
        Ok(())
    }
}

const WATCH_TEXT: &str = "beamline.io.WatchText";

inventory::submit! {
    beamline_engine::source::NamedSource {
        name: WATCH_TEXT,
        build: |config| {
            let c: WatchText = serde_json::from_str(config)?;
            Ok(Box::new(WatchReader::new(c)))
        },
    }
}

impl PTransform<PBegin> for WatchText {
    type Output = PCollection<String>;
    fn expand(self, input: &PBegin) -> PCollection<String> {
        crate::io::generator::apply_named_source(
            &input.0,
            WATCH_TEXT,
            serde_json::to_value(&self).expect("serializes"),
        )
    }
}
