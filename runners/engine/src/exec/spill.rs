//! Spilling past the memory budget: bundles encoded into temporary files, decoded again
//! only when a worker takes them up, so memory holds a few bundles instead of whole
//! PCollections.

use crate::coder::Coder;
use crate::element_codec::{decode_windowed, encode_windowed};
use crate::error::{EngineError, Result};
use crate::value::Value;
use crate::window::WindowedValue;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bundles of a materialized PCollection.
pub(crate) type Bundles = Vec<Bundle>;
/// Bytes the executor may keep in memory before it spills, and where spill files go.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    /// The whole budget (bytes).
    pub(crate) bytes: usize,
    /// Directory of the spill files.
    pub(crate) dir: PathBuf,
    /// Bytes written to spill files so far (reported as `beamline/spilledBytes`).
    pub(crate) spilled: Arc<AtomicU64>,
}

impl Budget {
    /// In-memory bytes one shuffle may hold before spilling its grouping state.
    pub(crate) fn shuffle_bytes(&self) -> usize {
        self.bytes / 3
    }

    /// In-memory bytes one materialized PCollection may hold before its bundles spill.
    pub(crate) fn materialized_bytes(&self) -> usize {
        self.bytes / 4
    }

    /// Largest in-memory size of one bundle read back from a spill file.
    pub(crate) fn bundle_bytes(&self) -> usize {
        (self.bytes / 32).max(1 << 16)
    }
}

/// An append-only temporary file, deleted when the last reference goes.
pub(crate) struct SpillFile {
    spilled: Arc<AtomicU64>,
    path: PathBuf,
    writer: Mutex<BufWriter<File>>,
    len: AtomicU64,
}

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

fn io_err(what: &str, path: &std::path::Path, source: std::io::Error) -> EngineError {
    EngineError::Io {
        context: format!("{what} spill file {}", path.display()),
        source,
    }
}

impl SpillFile {
    /// Creates a new file in the budget's directory.
    pub(crate) fn create(budget: &Budget) -> Result<Arc<SpillFile>> {
        let dir = budget.dir.as_path();
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating the directory of", dir, e))?;
        let path = dir.join(format!(
            "beamline-spill-{}-{}",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let f = File::create(&path).map_err(|e| io_err("creating", &path, e))?;
        Ok(Arc::new(SpillFile {
            spilled: budget.spilled.clone(),
            path,
            writer: Mutex::new(BufWriter::with_capacity(1 << 20, f)),
            len: AtomicU64::new(0),
        }))
    }

    /// Appends `bytes`; returns their offset.
    pub(crate) fn append(&self, bytes: &[u8]) -> Result<u64> {
        let mut w = self.writer.lock();
        w.write_all(bytes)
            .map_err(|e| io_err("writing", &self.path, e))?;
        self.spilled
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(self.len.fetch_add(bytes.len() as u64, Ordering::Relaxed))
    }

    /// Reads `len` bytes at `offset` (written before).
    pub(crate) fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.writer
            .lock()
            .flush()
            .map_err(|e| io_err("writing", &self.path, e))?;
        let mut f = File::open(&self.path).map_err(|e| io_err("opening", &self.path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err("reading", &self.path, e))?;
        let mut buf = vec![0; len as usize];
        f.read_exact(&mut buf)
            .map_err(|e| io_err("reading", &self.path, e))?;
        Ok(buf)
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A bundle written to a spill file.
pub(crate) struct SpilledBundle {
    file: Arc<SpillFile>,
    offset: u64,
    len: u64,
    count: usize,
    coder: Coder,
}

/// Elements encoded in memory (decoded when a stage loads them).
pub(crate) struct EncodedBundle {
    /// The elements, each as [`encode_windowed`] writes it.
    pub(crate) bytes: Vec<u8>,
    pub(crate) count: usize,
    pub(crate) coder: Coder,
}

/// The elements of a [`Bundle`], read in batches.
pub(crate) enum BundleReader {
    Mem(std::vec::IntoIter<WindowedValue>),
    Encoded {
        bundle: Arc<EncodedBundle>,
        /// Byte offset of the next element.
        at: usize,
        /// Elements not yet read.
        count: usize,
    },
    Spilled {
        bundle: Arc<SpilledBundle>,
        bytes: Vec<u8>,
        at: usize,
        count: usize,
    },
}

impl BundleReader {
    /// Elements not yet read.
    pub(crate) fn remaining(&self) -> usize {
        match self {
            BundleReader::Mem(it) => it.len(),
            BundleReader::Encoded { count, .. } | BundleReader::Spilled { count, .. } => *count,
        }
    }

    /// Appends up to `max` more elements to `out`, fewer once decoding has read
    /// `max_bytes` (at least one; none once all were read).
    ///
    /// # Errors
    /// When an encoded element does not decode (naming the spill file when spilled).
    pub(crate) fn next_batch(
        &mut self,
        out: &mut Vec<WindowedValue>,
        max: usize,
        max_bytes: usize,
    ) -> Result<()> {
        match self {
            BundleReader::Mem(it) => out.extend(it.by_ref().take(max)),
            BundleReader::Encoded { bundle, at, count } => decode_some(
                &bundle.coder,
                &bundle.bytes,
                at,
                count,
                (max, max_bytes),
                out,
            )
            .map_err(|e| {
                EngineError::InvalidPipeline(format!(
                    "grouped elements do not decode (a runner bug): {e}"
                ))
            })?,
            BundleReader::Spilled {
                bundle,
                bytes,
                at,
                count,
            } => decode_some(&bundle.coder, bytes, at, count, (max, max_bytes), out).map_err(
                |e| {
                    io_err(
                        "decoding",
                        &bundle.file.path,
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    )
                },
            )?,
        }
        Ok(())
    }
}

/// Decodes up to `max` of the `count` elements left in `bytes` from offset `at` into `out`,
/// stopping early once `max_bytes` were read, advancing `at` and `count`.
///
/// The byte limit keeps a batch of grouped elements (a few bytes per value encoded, a
/// 32-byte value each decoded) small enough to stay in cache until it is processed.
fn decode_some(
    coder: &Coder,
    bytes: &[u8],
    at: &mut usize,
    count: &mut usize,
    (max, max_bytes): (usize, usize),
    out: &mut Vec<WindowedValue>,
) -> std::result::Result<(), crate::coder::CoderError> {
    let start = &bytes[*at..];
    let mut input = start;
    let n = max.min(*count);
    let mut read = 0;
    while read < n {
        out.push(decode_windowed(coder, &mut input)?);
        read += 1;
        if start.len() - input.len() >= max_bytes {
            break;
        }
    }
    *at = bytes.len() - input.len();
    *count -= read;
    Ok(())
}

/// A bundle of a materialized PCollection, in memory or spilled.
#[derive(Clone)]
pub(crate) enum Bundle {
    /// Elements in memory.
    Mem(Vec<WindowedValue>),
    /// Elements encoded in memory.
    Encoded(Arc<EncodedBundle>),
    /// Elements encoded in a spill file.
    Spilled(Arc<SpilledBundle>),
}

impl Bundle {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match self {
            Bundle::Mem(v) => v.len(),
            Bundle::Encoded(e) => e.count,
            Bundle::Spilled(s) => s.count,
        }
    }

    /// Whether the bundle has no elements.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements (read back from disk when spilled).
    pub(crate) fn load(self) -> Result<Vec<WindowedValue>> {
        let mut reader = self.reader()?;
        let mut out = Vec::with_capacity(reader.remaining());
        reader.next_batch(&mut out, usize::MAX, usize::MAX)?;
        Ok(out)
    }

    /// A reader handing the elements out a batch at a time (spilled bytes are read from
    /// disk here): encoded elements are decoded as they are needed, so a stage never
    /// holds a whole decoded bundle of, say, grouped values.
    pub(crate) fn reader(self) -> Result<BundleReader> {
        Ok(match self {
            Bundle::Mem(v) => BundleReader::Mem(v.into_iter()),
            Bundle::Encoded(e) => BundleReader::Encoded {
                count: e.count,
                at: 0,
                bundle: e,
            },
            Bundle::Spilled(s) => BundleReader::Spilled {
                bytes: s.file.read(s.offset, s.len)?,
                at: 0,
                count: s.count,
                bundle: s,
            },
        })
    }

    /// Moves an encoded bundle's bytes to `file` (the spilled format is the same).
    ///
    /// # Errors
    /// On I/O failure.
    pub(crate) fn spill_encoded(e: &EncodedBundle, file: &Arc<SpillFile>) -> Result<Bundle> {
        let offset = file.append(&e.bytes)?;
        Ok(Bundle::Spilled(Arc::new(SpilledBundle {
            file: file.clone(),
            offset,
            len: e.bytes.len() as u64,
            count: e.count,
            coder: e.coder.clone(),
        })))
    }

    /// Writes `elements` to `file`, encoded with `coder`.
    ///
    /// # Errors
    /// When an element does not fit the coder (naming `transform`), or on I/O failure.
    pub(crate) fn spill(
        elements: &[WindowedValue],
        coder: &Coder,
        file: &Arc<SpillFile>,
        transform: &str,
    ) -> Result<Bundle> {
        let mut buf = Vec::new();
        for wv in elements {
            encode_windowed(coder, wv, &mut buf).map_err(|source| EngineError::Coder {
                transform: transform.to_string(),
                source,
            })?;
        }
        let offset = file.append(&buf)?;
        Ok(Bundle::Spilled(Arc::new(SpilledBundle {
            file: file.clone(),
            offset,
            len: buf.len() as u64,
            count: elements.len(),
            coder: coder.clone(),
        })))
    }
}

/// Approximate bytes a value occupies in memory (for budget accounting).
pub(crate) fn value_size(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::Bytes(b) => b.capacity(),
            Value::Str(s) | Value::KeyOnly(s) => s.capacity(),
            Value::Kv(kv) => value_size(&kv.0) + value_size(&kv.1),
            Value::List(items) => {
                items.iter().map(value_size).sum::<usize>()
                    + (items.capacity() - items.len()) * std::mem::size_of::<Value>()
            }
            Value::Opaque(_) => 64,
            _ => 0,
        }
}

/// Approximate bytes a windowed value occupies in memory.
pub(crate) fn windowed_size(wv: &WindowedValue) -> usize {
    std::mem::size_of::<WindowedValue>() - std::mem::size_of::<Value>() + value_size(&wv.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{PaneInfo, Window};

    #[test]
    fn spilled_bundles_read_back_equal() {
        let dir = std::env::temp_dir().join(format!("beamline-spill-test-{}", std::process::id()));
        let budget = Budget {
            bytes: 1,
            dir: dir.clone(),
            spilled: Default::default(),
        };
        let file = SpillFile::create(&budget).unwrap();
        let coder = Coder::Kv(Box::new(Coder::StringUtf8), Box::new(Coder::VarInt));
        let wvs: Vec<WindowedValue> = (0..100)
            .map(|i| WindowedValue {
                value: Value::kv(Value::Str(format!("k{i}")), Value::I64(i)),
                timestamp: i * 7 - 50,
                window: if i % 2 == 0 {
                    Window::Global
                } else {
                    Window::Interval {
                        start: i,
                        end: i + 10,
                    }
                },
                pane: PaneInfo::ON_TIME_AND_ONLY_FIRING,
            })
            .collect();
        let a = Bundle::spill(&wvs[..60], &coder, &file, "t").unwrap();
        let b = Bundle::spill(&wvs[60..], &coder, &file, "t").unwrap();
        assert_eq!((a.len(), b.len()), (60, 40));
        assert!(budget.spilled.load(Ordering::Relaxed) > 100);
        // Read in batches of 7 (a stage's reader) and whole (side inputs, reshuffles).
        let mut back = Vec::new();
        {
            let mut reader = a.clone().reader().unwrap();
            while reader.remaining() > 0 {
                let before = back.len();
                reader.next_batch(&mut back, 7, usize::MAX).unwrap();
                assert!(back.len() - before <= 7);
            }
        }
        back.extend(b.load().unwrap());
        assert_eq!(back, wvs);
        assert_eq!(a.load().unwrap(), wvs[..60]);
        let path = file.path.clone();
        drop(file);
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn values_that_do_not_fit_the_coder_name_the_transform() {
        let budget = Budget {
            bytes: 1,
            dir: std::env::temp_dir(),
            spilled: Default::default(),
        };
        let file = SpillFile::create(&budget).unwrap();
        let wv = WindowedValue::in_global_window(Value::Str("x".into()));
        let err = Bundle::spill(&[wv], &Coder::VarInt, &file, "MyStep")
            .err()
            .unwrap();
        assert!(err.to_string().contains("MyStep"), "{err}");
    }

    #[test]
    fn encoded_bundles_read_in_batches_and_corrupt_bytes_are_errors() {
        let coder = Coder::Kv(Box::new(Coder::VarInt), Box::new(Coder::StringUtf8));
        let wvs: Vec<WindowedValue> = (0..10)
            .map(|i| {
                WindowedValue::in_global_window(Value::kv(Value::I64(i), Value::Str("v".into())))
            })
            .collect();
        let mut bytes = Vec::new();
        for wv in &wvs {
            encode_windowed(&coder, wv, &mut bytes).unwrap();
        }
        let bundle = |bytes: Vec<u8>| {
            Bundle::Encoded(Arc::new(EncodedBundle {
                bytes,
                count: 10,
                coder: coder.clone(),
            }))
        };
        let mut reader = bundle(bytes.clone()).reader().unwrap();
        let mut back = Vec::new();
        reader.next_batch(&mut back, 4, usize::MAX).unwrap();
        assert_eq!((back.len(), reader.remaining()), (4, 6));
        // Each element is 14 bytes: a 20-byte limit stops after the second.
        reader.next_batch(&mut back, 100, 20).unwrap();
        assert_eq!((back.len(), reader.remaining()), (6, 4));
        reader.next_batch(&mut back, 100, 1).unwrap();
        assert_eq!(
            (back.len(), reader.remaining()),
            (7, 3),
            "at least one element"
        );
        reader.next_batch(&mut back, 100, usize::MAX).unwrap();
        assert_eq!(back, wvs);
        bytes.truncate(bytes.len() - 3);
        let err = bundle(bytes).load().unwrap_err().to_string();
        assert!(err.contains("do not decode"), "{err}");
    }
}
