//! Text files: ReadFromText (glob, gzip, split for parallel reads) and WriteToText
//! (sharded `PREFIX-SSSSS-of-NNNNN`, written to temporary files and renamed on success).

use crate::dofn::{BundleContext, CommitContext, DoFn, NamedDoFn, ProcessContext};
use crate::io::file_commits::{commit_renames, CommittedFiles};
use crate::io::sharded::{create_writer, EmptyShard, ShardedSink};
use crate::io::{IO_NAMESPACE, SOURCE_ANNOTATION};
use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use crate::transforms::{Impulse, ParDo, Reshuffle};
use beamline_engine::time::GLOBAL_WINDOW_MAX_TIMESTAMP;
use beamline_engine::{UserError, Window};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Reads the lines of every file matching a glob, as `String`s without line terminators.
///
/// Uncompressed files are split into ranges read in parallel; `.gz` files, and files
/// whose size reads as zero (`/proc` files), are read whole. A glob that matches nothing fails the job with an error naming the glob.
///
/// # Examples
///
/// ```no_run
/// use beamline::{Pipeline, PipelineOptions, ReadFromText};
/// let p = Pipeline::new(PipelineOptions::default());
/// let lines = p.apply("Read", ReadFromText::new("data/*.txt"));
/// # let _ = lines;
/// ```
pub struct ReadFromText {
    pattern: String,
    split_size: u64,
}

impl ReadFromText {
    /// Reads files matching `pattern` (a glob such as `logs/*.txt` or `in.txt.gz`).
    pub fn new(pattern: impl Into<String>) -> Self {
        ReadFromText {
            pattern: pattern.into(),
            split_size: 16 << 20,
        }
    }

    /// Largest byte range uncompressed files are split into (default 16 MiB). Smaller
    /// ranges are used when the input is under 64 such ranges (down to 1 MiB), so every
    /// worker of a job reads a share.
    pub fn with_split_size(mut self, bytes: u64) -> Self {
        self.split_size = bytes.max(1);
        self
    }
}

/// A byte range of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRange {
    /// The file.
    pub path: String,
    /// First byte (a line belongs to the range it starts in).
    pub start: u64,
    /// End byte, exclusive.
    pub end: u64,
    /// Gzip-compressed (read whole).
    pub gzip: bool,
}
crate::serde_element!(FileRange);

/// Expands a glob into file ranges.
#[derive(Clone, Serialize, Deserialize)]
struct ExpandGlob {
    pattern: String,
    split_size: u64,
}

impl DoFn for ExpandGlob {
    type In = ();
    type Out = FileRange;
    fn process(
        &mut self,
        _: (),
        ctx: &mut ProcessContext<'_, '_, FileRange>,
    ) -> Result<(), UserError> {
        let paths = glob::glob(&self.pattern)
            .map_err(|e| format!("invalid file pattern '{}': {e}", self.pattern))?;
        let mut files = Vec::new();
        for p in paths {
            let p = p.map_err(|e| format!("reading files of '{}': {e}", self.pattern))?;
            if p.is_file() {
                files.push(p);
            }
        }
        if files.is_empty() {
            return Err(format!("no files match '{}'", self.pattern).into());
        }
        files.sort();
        let mut sized = Vec::with_capacity(files.len());
        for f in files {
            let len = std::fs::metadata(&f)
                .map_err(|e| format!("{}: {e}", f.display()))?
                .len();
            sized.push((f, len));
        }
        let split_size = range_size(&sized, self.split_size);
        let total: u64 = sized.iter().map(|(_, len)| len).sum();
        ctx.inc_counter(IO_NAMESPACE, "bytesTotal", total as i64);
        ctx.inc_counter(IO_NAMESPACE, "filesMatched", sized.len() as i64);
        for (f, len) in sized {
            let path = f.to_string_lossy().into_owned();
            if path.ends_with(".gz") {
                ctx.output(FileRange {
                    path,
                    start: 0,
                    end: len,
                    gzip: true,
                });
                continue;
            }
            if len == 0 {
                // Files whose size reads as zero can have content (`/proc/cpuinfo`,
                // files still being written): one range read to its end.
                ctx.output(FileRange {
                    path,
                    start: 0,
                    end: u64::MAX,
                    gzip: false,
                });
                continue;
            }
            let mut start = 0;
            while start < len {
                let end = (start + split_size).min(len);
                ctx.output(FileRange {
                    path: path.clone(),
                    start,
                    end,
                    gzip: false,
                });
                start = end;
            }
        }
        Ok(())
    }
}

/// Fewest ranges an input is split into when ranges of [`MIN_RANGE`] bytes allow it: a
/// share for every worker of a job (and several each, so that one slow range does not
/// leave the others idle), whatever the runner.
const MIN_RANGES: u64 = 64;

/// Smallest range that [`MIN_RANGES`] makes (below it, opening and seeking cost more than
/// the balance gains).
const MIN_RANGE: u64 = 1 << 20;

/// The size of the ranges of uncompressed `files` (path, length): at most `largest`, and
/// small enough for [`MIN_RANGES`] ranges in all, but not below [`MIN_RANGE`].
fn range_size(files: &[(std::path::PathBuf, u64)], largest: u64) -> u64 {
    let total: u64 = files
        .iter()
        .filter(|(f, _)| !f.to_string_lossy().ends_with(".gz"))
        .map(|(_, len)| *len)
        .sum();
    (total / MIN_RANGES).clamp(MIN_RANGE.min(largest), largest)
}

impl NamedDoFn for ExpandGlob {
    const NAME: &'static str = "beamline.io.ExpandGlob";
}
crate::register_dofn!(ExpandGlob);

/// Reads the lines that start inside a file range.
#[derive(Clone, Serialize, Deserialize)]
struct ReadRange;

pub(crate) fn strip_newline(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Emits the lines from `pos` that start before `end`; returns how many.
fn emit_lines(
    mut reader: impl BufRead,
    path: &str,
    mut pos: u64,
    end: Option<u64>,
    ctx: &mut ProcessContext<'_, '_, String>,
) -> Result<i64, UserError> {
    let mut buf = Vec::new();
    let mut lines = 0;
    loop {
        if end.is_some_and(|e| pos >= e) {
            return Ok(lines);
        }
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("reading {path}: {e}"))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += 1;
        let line_start = pos;
        pos += n as u64;
        strip_newline(&mut buf);
        let line = String::from_utf8(std::mem::take(&mut buf))
            .map_err(|_| format!("{path}: the line at byte {line_start} is not valid UTF-8"))?;
        ctx.output(line);
    }
}

impl DoFn for ReadRange {
    type In = FileRange;
    type Out = String;
    fn process(
        &mut self,
        r: FileRange,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let file = File::open(&r.path).map_err(|e| format!("opening {}: {e}", r.path))?;
        if r.gzip {
            let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
            let lines = emit_lines(reader, &r.path, 0, None, ctx)?;
            ctx.inc_counter(IO_NAMESPACE, "elementsRead", lines);
            ctx.inc_counter(IO_NAMESPACE, "bytesRead", r.end as i64);
            return Ok(());
        }
        // 256 KiB reads: few calls, and a buffer the allocator reuses from one range to
        // the next (a megabyte goes back to the system and faults in again each time).
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut pos = r.start;
        if r.start > 0 {
            // The line that straddles `start` belongs to the previous range: skip it.
            reader
                .seek(SeekFrom::Start(r.start - 1))
                .map_err(|e| format!("seeking in {}: {e}", r.path))?;
            let mut skipped = Vec::new();
            let n = reader
                .read_until(b'\n', &mut skipped)
                .map_err(|e| format!("reading {}: {e}", r.path))?;
            pos = r.start - 1 + n as u64;
        }
        let lines = emit_lines(reader, &r.path, pos, Some(r.end), ctx)?;
        ctx.inc_counter(IO_NAMESPACE, "elementsRead", lines);
        if r.end != u64::MAX {
            ctx.inc_counter(IO_NAMESPACE, "bytesRead", (r.end - r.start) as i64);
        }
        Ok(())
    }
}

impl NamedDoFn for ReadRange {
    const NAME: &'static str = "beamline.io.ReadRange";
}
crate::register_dofn!(ReadRange);

impl PTransform<PBegin> for ReadFromText {
    type Output = PCollection<String>;
    fn expand(self, input: &PBegin) -> PCollection<String> {
        input.0.annotate(SOURCE_ANNOTATION, &self.pattern);
        input
            .0
            .apply("Impulse", Impulse)
            .apply(
                "ExpandGlob",
                ParDo::named(ExpandGlob {
                    pattern: self.pattern,
                    split_size: self.split_size,
                }),
            )
            .apply("Reshuffle", Reshuffle::new())
            .apply("ReadRanges", ParDo::named(ReadRange))
    }
}

/// Writes lines to sharded text files `PREFIX-SSSSS-of-NNNNN[SUFFIX]`.
///
/// Lines go to temporary files first; they are renamed to their final names only when
/// everything was written, so a failed job leaves nothing under the final names.
/// Shards of an earlier run with another shard count (`PREFIX-SSSSS-of-MMMMM[SUFFIX]`)
/// are removed then, so `PREFIX-*` holds this run's output only; other files are kept.
/// Returns the final file names.
///
/// # Examples
///
/// ```no_run
/// use beamline::{Create, Pipeline, PipelineOptions, WriteToText};
/// let p = Pipeline::new(PipelineOptions::default());
/// let lines = p.apply("Lines", Create::of(vec!["a".to_string()]));
/// lines.apply("Write", WriteToText::new("out/result").with_num_shards(1));
/// p.run().unwrap();
/// ```
pub struct WriteToText {
    prefix: String,
    suffix: String,
    num_shards: usize,
}

impl WriteToText {
    /// Writes to files starting with `prefix`; the number of shards is chosen by the runner.
    pub fn new(prefix: impl Into<String>) -> Self {
        WriteToText {
            prefix: prefix.into(),
            suffix: String::new(),
            num_shards: 0,
        }
    }

    /// Appends `suffix` (e.g. `.txt`) to every file name.
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Writes exactly `n` shards (0: chosen by the runner).
    pub fn with_num_shards(mut self, n: usize) -> Self {
        self.num_shards = n;
        self
    }
}

/// Writes lines to temporary files and emits each file's path once: a file stays open
/// across bundles (flushed at the end of each) until it holds [`ROLL_BYTES`], so a
/// stream of small bundles makes a few files rather than one per bundle.
#[derive(Serialize, Deserialize)]
struct WriteBundles {
    temp_dir: String,
    /// Final names of files committed by checkpoints: `PREFIX-cNNNNNN-XXXX[SUFFIX]`.
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    #[serde(skip)]
    current: Option<OpenFile>,
    /// With checkpoints: the files they commit.
    #[serde(skip)]
    files: CommittedFiles,
    /// Lines written in this bundle.
    #[serde(skip)]
    lines: i64,
}

/// A temporary file being written.
struct OpenFile {
    path: String,
    writer: BufWriter<File>,
    /// Bytes written so far.
    written: u64,
    /// Its path was emitted.
    announced: bool,
}

/// Size past which a temporary file is closed at the end of a bundle and the next
/// bundle starts another.
const ROLL_BYTES: u64 = 64 << 20;

impl Clone for WriteBundles {
    /// A clone starts without an open file (each worker writes its own).
    fn clone(&self) -> Self {
        WriteBundles {
            temp_dir: self.temp_dir.clone(),
            prefix: self.prefix.clone(),
            suffix: self.suffix.clone(),
            current: None,
            files: CommittedFiles::default(),
            lines: 0,
        }
    }
}

impl DoFn for WriteBundles {
    type In = String;
    type Out = String;
    fn process(
        &mut self,
        line: String,
        _ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        if self.current.is_none() {
            self.files.opening(&self.temp_dir)?;
            let path = self.files.bundle_path(&self.temp_dir);
            let writer = create_writer(Path::new(&path))?;
            self.current = Some(OpenFile {
                path,
                writer,
                written: 0,
                announced: false,
            });
        }
        let f = self.current.as_mut().expect("opened above");
        f.writer
            .write_all(line.as_bytes())
            .and_then(|_| f.writer.write_all(b"\n"))
            .map_err(|e| format!("writing {}: {e}", f.path))?;
        f.written += line.len() as u64 + 1;
        self.lines += 1;
        Ok(())
    }

    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, String>) -> Result<(), UserError> {
        ctx.inc_counter(
            IO_NAMESPACE,
            "elementsWritten",
            std::mem::take(&mut self.lines),
        );
        let Some(f) = &mut self.current else {
            return Ok(());
        };
        // Everything a bundle wrote is in the file when the bundle ends: the files are
        // renamed once every bundle ended, whether or not they are still open.
        f.writer
            .flush()
            .map_err(|e| format!("writing {}: {e}", f.path))?;
        if !f.announced {
            f.announced = true;
            ctx.output_at(f.path.clone(), GLOBAL_WINDOW_MAX_TIMESTAMP, Window::Global);
        }
        if f.written >= ROLL_BYTES {
            let path = f.path.clone();
            self.current = None;
            self.files.closed.push(path);
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), UserError> {
        self.current = None;
        Ok(())
    }

    fn commits(&self) -> bool {
        true
    }

    fn commits_enabled(&mut self, instance: usize) {
        self.files.enable(instance);
    }

    fn prepare_commit(
        &mut self,
        checkpoint: u64,
        last: bool,
    ) -> Result<Option<Vec<u8>>, UserError> {
        let current = match self.current.take() {
            Some(mut f) => {
                f.writer
                    .flush()
                    .and_then(|()| f.writer.get_ref().sync_all())
                    .map_err(|e| format!("writing {}: {e}", f.path))?;
                Some(f.path)
            }
            None => None,
        };
        let names = (
            self.temp_dir.as_str(),
            self.prefix.as_str(),
            self.suffix.as_str(),
        );
        self.files.prepare(names, checkpoint, last, current)
    }

    fn commit(&mut self, record: &[u8], ctx: &mut CommitContext<'_>) -> Result<(), UserError> {
        commit_renames(record, ctx)
    }
}

impl NamedDoFn for WriteBundles {
    const NAME: &'static str = "beamline.io.WriteBundles";
}
crate::register_dofn!(WriteBundles);

/// Writes one shard's lines to a temporary file named after the shard.
#[derive(Clone, Serialize, Deserialize)]
struct WriteShard {
    temp_dir: String,
}

impl DoFn for WriteShard {
    type In = (i64, Vec<String>);
    type Out = String;
    fn process(
        &mut self,
        (shard, lines): (i64, Vec<String>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let path = format!("{}/shard-{shard:05}", self.temp_dir);
        let mut w = create_writer(Path::new(&path))?;
        ctx.inc_counter(IO_NAMESPACE, "elementsWritten", lines.len() as i64);
        for l in lines {
            w.write_all(l.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| format!("writing {path}: {e}"))?;
        }
        w.flush().map_err(|e| format!("writing {path}: {e}"))?;
        ctx.output(path);
        Ok(())
    }
}

impl NamedDoFn for WriteShard {
    const NAME: &'static str = "beamline.io.WriteShard";
}
crate::register_dofn!(WriteShard);

impl PTransform<PCollection<String>> for WriteToText {
    type Output = PCollection<String>;
    fn expand(self, input: &PCollection<String>) -> PCollection<String> {
        let (prefix, suffix) = (self.prefix.clone(), self.suffix.clone());
        let sink = ShardedSink {
            prefix: self.prefix,
            suffix: self.suffix,
            num_shards: self.num_shards,
            empty_shard: EmptyShard::Blank,
            checkpoint_files: true,
        };
        sink.write(
            input,
            |temp_dir| WriteBundles {
                temp_dir: temp_dir.to_string(),
                prefix,
                suffix,
                current: None,
                files: CommittedFiles::default(),
                lines: 0,
            },
            |temp_dir| WriteShard {
                temp_dir: temp_dir.to_string(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_split_into_enough_ranges_within_bounds() {
        let f = |name: &str, len| (std::path::PathBuf::from(name), len);
        // 100 MB: 64 ranges of ~1.6 MB rather than 7 of 16 MB.
        assert_eq!(
            range_size(&[f("a.txt", 100 << 20)], 16 << 20),
            (100 << 20) / 64
        );
        // Small inputs: ranges of 1 MiB, not smaller.
        assert_eq!(range_size(&[f("a.txt", 3 << 20)], 16 << 20), 1 << 20);
        // Huge inputs: the largest size asked for.
        assert_eq!(range_size(&[f("a.txt", 10 << 30)], 16 << 20), 16 << 20);
        // Compressed files are read whole: they do not count.
        assert_eq!(range_size(&[f("a.gz", 10 << 30)], 16 << 20), 1 << 20);
        // A largest size below 1 MiB is kept.
        assert_eq!(range_size(&[f("a.txt", 100 << 20)], 97), 97);
    }
}
