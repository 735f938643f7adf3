//! Parquet files through Arrow: ReadFromParquet (one read per row group, in parallel) and
//! WriteToParquet (sharded, temporary files renamed on success).

use crate::arrow::ArrowBatch;
use crate::dofn::{BundleContext, CommitContext, DoFn, NamedDoFn, ProcessContext};
use crate::error::{Error, Result};
use crate::io::file_commits::{commit_renames, CommittedFiles};
use crate::io::sharded::{create_writer, EmptyShard, ShardedSink};
use crate::io::{IO_NAMESPACE, SOURCE_ANNOTATION};
use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use crate::transforms::{Impulse, ParDo, Reshuffle};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use beamline_engine::time::GLOBAL_WINDOW_MAX_TIMESTAMP;
use beamline_engine::{UserError, Window};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Reads Parquet files matching a glob as Arrow record batches.
///
/// Each row group is read separately, so files are read in parallel by row group; a
/// batch holds at most `batch_size` rows of one row group. With [`with_columns`]
/// only those columns are read, in the order given. A glob that matches nothing, an
/// unknown column or a file that is not Parquet fails the job with an error naming it.
///
/// [`with_columns`]: ReadFromParquet::with_columns
///
/// # Examples
///
/// ```no_run
/// use beamline::io::parquet::ReadFromParquet;
/// use beamline::{Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let batches = p.apply("Read", ReadFromParquet::new("data/*.parquet").with_columns(["user"]));
/// # let _ = batches;
/// ```
pub struct ReadFromParquet {
    config: ReadConfig,
}

#[derive(Clone, Serialize, Deserialize)]
struct ReadConfig {
    pattern: String,
    columns: Option<Vec<String>>,
    batch_size: usize,
}

impl ReadFromParquet {
    /// Reads the files matching `pattern` (a glob).
    pub fn new(pattern: impl Into<String>) -> Self {
        ReadFromParquet {
            config: ReadConfig {
                pattern: pattern.into(),
                columns: None,
                batch_size: 65536,
            },
        }
    }

    /// Reads only these top-level columns, in this order.
    pub fn with_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.config.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// At most this many rows per batch (default 65536).
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.config.batch_size = rows.max(1);
        self
    }
}

/// One row group of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowGroup {
    /// The file.
    pub path: String,
    /// The row group's index in the file.
    pub index: usize,
}
crate::serde_element!(RowGroup);

fn open_parquet(path: &str) -> Result<ParquetRecordBatchReaderBuilder<File>, UserError> {
    let file = File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{path} is not a readable Parquet file: {e}").into())
}

/// Indices of `columns` among the top-level fields of `schema`.
fn column_indices(
    path: &str,
    schema: &arrow_schema::Schema,
    columns: &[String],
) -> Result<Vec<usize>, UserError> {
    columns
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!("{path} has no column '{c}' (columns: {})", names.join(", ")).into()
            })
        })
        .collect()
}

/// Expands a glob into the row groups of the matching files.
#[derive(Clone, Serialize, Deserialize)]
struct ExpandParquet(ReadConfig);

impl DoFn for ExpandParquet {
    type In = ();
    type Out = RowGroup;
    fn process(
        &mut self,
        _: (),
        ctx: &mut ProcessContext<'_, '_, RowGroup>,
    ) -> Result<(), UserError> {
        let pattern = &self.0.pattern;
        let mut files = Vec::new();
        for p in
            glob::glob(pattern).map_err(|e| format!("invalid file pattern '{pattern}': {e}"))?
        {
            let p = p.map_err(|e| format!("reading files of '{pattern}': {e}"))?;
            if p.is_file() {
                files.push(p.to_string_lossy().into_owned());
            }
        }
        if files.is_empty() {
            return Err(format!("no files match '{pattern}'").into());
        }
        files.sort();
        for path in files {
            let builder = open_parquet(&path)?;
            if let Some(cols) = &self.0.columns {
                column_indices(&path, builder.schema(), cols)?;
            }
            let meta = builder.metadata();
            let bytes: i64 = meta.row_groups().iter().map(|g| g.compressed_size()).sum();
            ctx.inc_counter(IO_NAMESPACE, "bytesTotal", bytes);
            for index in 0..builder.metadata().num_row_groups() {
                ctx.output(RowGroup {
                    path: path.clone(),
                    index,
                });
            }
        }
        Ok(())
    }
}

impl NamedDoFn for ExpandParquet {
    const NAME: &'static str = "beamline.io.ExpandParquet";
}
crate::register_dofn!(ExpandParquet);

/// Reads one row group as record batches.
#[derive(Clone, Serialize, Deserialize)]
struct ReadRowGroup(ReadConfig);

impl DoFn for ReadRowGroup {
    type In = RowGroup;
    type Out = ArrowBatch;
    fn process(
        &mut self,
        rg: RowGroup,
        ctx: &mut ProcessContext<'_, '_, ArrowBatch>,
    ) -> Result<(), UserError> {
        let opened = open_parquet(&rg.path)?;
        let bytes = opened.metadata().row_group(rg.index).compressed_size();
        let mut builder = opened
            .with_row_groups(vec![rg.index])
            .with_batch_size(self.0.batch_size);
        // The projection reads columns in file order; `order` restores the requested one.
        let mut order = None;
        if let Some(cols) = &self.0.columns {
            let mut idx = column_indices(&rg.path, builder.schema(), cols)?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
            builder = builder.with_projection(mask);
            let mut sorted = idx.clone();
            sorted.sort_unstable();
            sorted.dedup();
            for i in &mut idx {
                *i = sorted.binary_search(i).expect("present");
            }
            order = Some(idx);
        }
        let reader = builder
            .build()
            .map_err(|e| format!("reading {}: {e}", rg.path))?;
        for batch in reader {
            let mut batch = batch.map_err(|e| format!("reading {}: {e}", rg.path))?;
            if let Some(order) = &order {
                batch = batch
                    .project(order)
                    .map_err(|e| format!("reading {}: {e}", rg.path))?;
            }
            ctx.inc_counter(IO_NAMESPACE, "elementsRead", batch.num_rows() as i64);
            ctx.output(ArrowBatch(batch));
        }
        ctx.inc_counter(IO_NAMESPACE, "bytesRead", bytes);
        Ok(())
    }
}

impl NamedDoFn for ReadRowGroup {
    const NAME: &'static str = "beamline.io.ReadParquetRowGroup";
}
crate::register_dofn!(ReadRowGroup);

impl PTransform<PBegin> for ReadFromParquet {
    type Output = PCollection<ArrowBatch>;
    fn expand(self, input: &PBegin) -> PCollection<ArrowBatch> {
        input.0.annotate(SOURCE_ANNOTATION, &self.config.pattern);
        input
            .0
            .apply("Impulse", Impulse)
            .apply(
                "ExpandGlob",
                ParDo::named(ExpandParquet(self.config.clone())),
            )
            .apply("Reshuffle", Reshuffle::new())
            .apply("ReadRowGroups", ParDo::named(ReadRowGroup(self.config)))
    }
}

/// The Parquet codecs [`WriteToParquet::with_codec`] accepts (Beam's names).
pub const CODECS: &[&str] = &["none", "snappy", "gzip", "lz4", "zstd"];

fn compression(codec: &str) -> Result<Compression> {
    Ok(match codec {
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        "snappy" => Compression::SNAPPY,
        "gzip" => Compression::GZIP(GzipLevel::default()),
        "lz4" => Compression::LZ4_RAW,
        "zstd" => Compression::ZSTD(ZstdLevel::default()),
        other => {
            return Err(Error::Construction(format!(
                "unsupported Parquet codec '{other}' (supported: {})",
                CODECS.join(", ")
            )))
        }
    })
}

/// Writes record batches to sharded Parquet files `PREFIX-SSSSS-of-NNNNN[SUFFIX]`.
///
/// Every batch of a file must have the file's schema: the one given with
/// [`with_schema`](WriteToParquet::with_schema), else the first batch's. Files are written
/// under temporary names and renamed once all are complete. Returns the final file names.
///
/// # Examples
///
/// ```no_run
/// use beamline::arrow::ArrowBatch;
/// use beamline::io::parquet::{ReadFromParquet, WriteToParquet};
/// use beamline::{Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let batches = p.apply("Read", ReadFromParquet::new("in/*.parquet"));
/// batches.apply("Write", WriteToParquet::new("out/part").with_codec("zstd").unwrap());
/// p.run().unwrap();
/// ```
pub struct WriteToParquet {
    prefix: String,
    suffix: String,
    num_shards: usize,
    sink: SinkConfig,
}

#[derive(Clone, Serialize, Deserialize)]
struct SinkConfig {
    codec: String,
    row_group_size: Option<usize>,
    /// The schema as an Arrow IPC stream of an empty batch.
    schema: Option<Vec<u8>>,
}

impl SinkConfig {
    fn properties(&self) -> Result<WriterProperties, UserError> {
        let mut b = WriterProperties::builder()
            .set_compression(compression(&self.codec).map_err(|e| e.to_string())?);
        if let Some(n) = self.row_group_size {
            b = b.set_max_row_group_row_count(Some(n.max(1)));
        }
        Ok(b.build())
    }

    fn schema(&self) -> Result<Option<SchemaRef>, UserError> {
        match &self.schema {
            None => Ok(None),
            Some(b) => Ok(Some(
                ArrowBatch::from_ipc(b)
                    .map_err(|e| e.to_string())?
                    .0
                    .schema(),
            )),
        }
    }

    /// Opens a writer for `path`, with the configured schema or `first`'s.
    fn open(&self, path: &str, first: &RecordBatch) -> Result<Writer, UserError> {
        let schema = self.schema()?.unwrap_or_else(|| first.schema());
        let w = create_writer(Path::new(path))?;
        let writer = ArrowWriter::try_new(w, schema.clone(), Some(self.properties()?))
            .map_err(|e| format!("creating {path}: {e}"))?;
        Ok(Writer {
            path: path.to_string(),
            schema,
            writer,
        })
    }
}

struct Writer {
    path: String,
    schema: SchemaRef,
    writer: ArrowWriter<BufWriter<File>>,
}

impl Writer {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), UserError> {
        let expected = &self.schema;
        if batch.schema().fields() != expected.fields() {
            return Err(format!(
                "writing {}: a record batch's schema {} differs from the file's schema {}",
                self.path,
                batch.schema(),
                expected
            )
            .into());
        }
        self.writer
            .write(batch)
            .map_err(|e| format!("writing {}: {e}", self.path).into())
    }

    fn close(self) -> Result<String, UserError> {
        self.writer
            .close()
            .map_err(|e| format!("writing {}: {e}", self.path))?;
        Ok(self.path)
    }

    /// Closes the file and syncs it to disk (a checkpoint's commit publishes it).
    fn close_synced(self) -> Result<String, UserError> {
        let path = self.path;
        let bad = |e: &dyn std::fmt::Display| format!("writing {path}: {e}");
        let file = self
            .writer
            .into_inner()
            .map_err(|e| bad(&e))?
            .into_inner()
            .map_err(|e| bad(&e))?;
        file.sync_all().map_err(|e| bad(&e))?;
        Ok(path)
    }
}

/// Rows buffered for a file kept open across bundles past which they are written out as
/// a row group (a checkpointed sink keeps its file open until the next checkpoint).
const ROW_GROUP_FLUSH_BYTES: usize = 32 << 20;

impl WriteToParquet {
    /// Writes to files starting with `prefix`, uncompressed; the runner picks the shards.
    pub fn new(prefix: impl Into<String>) -> Self {
        WriteToParquet {
            prefix: prefix.into(),
            suffix: String::new(),
            num_shards: 0,
            sink: SinkConfig {
                codec: "none".into(),
                row_group_size: None,
                schema: None,
            },
        }
    }

    /// Appends `suffix` (e.g. `.parquet`) to every file name.
    pub fn with_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Writes exactly `n` shards (0: chosen by the runner).
    pub fn with_num_shards(mut self, n: usize) -> Self {
        self.num_shards = n;
        self
    }

    /// Compresses pages with `codec`: one of [`CODECS`].
    ///
    /// # Errors
    /// [`Error::Construction`] for an unknown codec.
    pub fn with_codec(mut self, codec: &str) -> Result<Self> {
        compression(codec)?;
        self.sink.codec = codec.to_string();
        Ok(self)
    }

    /// At most `rows` rows per row group.
    pub fn with_row_group_size(mut self, rows: usize) -> Self {
        self.sink.row_group_size = Some(rows);
        self
    }

    /// The schema of every file; also lets shards without rows be written as valid files.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        let empty = ArrowBatch(RecordBatch::new_empty(schema));
        self.sink.schema = Some(empty.to_ipc().expect("an empty batch encodes"));
        self
    }

    fn empty_shard(&self) -> Result<EmptyShard, String> {
        let Some(schema) = self.sink.schema().map_err(|e| e.to_string())? else {
            return Ok(EmptyShard::ParquetLikeSibling {
                codec: self.sink.codec.clone(),
                no_sibling: "no rows to write and no schema to write an empty Parquet file \
                             with (give WriteToParquet a schema)"
                    .into(),
            });
        };
        Ok(EmptyShard::Contents(empty_file(schema, &self.sink)?))
    }
}

fn empty_file(schema: SchemaRef, sink: &SinkConfig) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let props = sink.properties().map_err(|e| e.to_string())?;
    ArrowWriter::try_new(&mut bytes, schema, Some(props))
        .and_then(|w| w.close())
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A Parquet file without rows, with the schema of the file at `sibling`.
pub(crate) fn empty_file_like(sibling: &str, codec: &str) -> Result<Vec<u8>, String> {
    let schema = open_parquet(sibling)
        .map_err(|e| e.to_string())?
        .schema()
        .clone();
    let sink = SinkConfig {
        codec: codec.to_string(),
        row_group_size: None,
        schema: None,
    };
    empty_file(schema, &sink)
}

/// Writes each bundle's batches to its own temporary file; emits the file's path. With
/// checkpoints a file stays open until the next checkpoint, which closes it and commits it
/// under a name of its own (`PREFIX-cNNNNNN-*`, as `WriteToText` does).
#[derive(Serialize, Deserialize)]
struct WriteBundles {
    temp_dir: String,
    sink: SinkConfig,
    /// Final names of files committed by checkpoints.
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    /// In a mutex only to make the DoFn `Sync`: Parquet's writer is `Send` but not `Sync`.
    #[serde(skip)]
    current: Option<std::sync::Mutex<Writer>>,
    /// The open file's path was emitted (with checkpoints).
    #[serde(skip)]
    announced: bool,
    /// With checkpoints: the files they commit.
    #[serde(skip)]
    files: CommittedFiles,
}

impl WriteBundles {
    fn new(temp_dir: String, sink: SinkConfig, prefix: String, suffix: String) -> Self {
        WriteBundles {
            temp_dir,
            sink,
            prefix,
            suffix,
            current: None,
            announced: false,
            files: CommittedFiles::default(),
        }
    }

    fn writer(&mut self) -> Result<Option<&mut Writer>, UserError> {
        match &mut self.current {
            None => Ok(None),
            Some(w) => Ok(Some(w.get_mut().map_err(|_| "a previous write panicked")?)),
        }
    }
}

impl Clone for WriteBundles {
    /// A clone starts without an open file (each worker writes its own).
    fn clone(&self) -> Self {
        WriteBundles::new(
            self.temp_dir.clone(),
            self.sink.clone(),
            self.prefix.clone(),
            self.suffix.clone(),
        )
    }
}

impl DoFn for WriteBundles {
    type In = ArrowBatch;
    type Out = String;
    fn process(
        &mut self,
        batch: ArrowBatch,
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        ctx.inc_counter(IO_NAMESPACE, "elementsWritten", batch.0.num_rows() as i64);
        if self.current.is_none() {
            self.files.opening(&self.temp_dir)?;
            let path = self.files.bundle_path(&self.temp_dir);
            self.current = Some(std::sync::Mutex::new(self.sink.open(&path, &batch.0)?));
            self.announced = false;
        }
        let w = self.current.as_mut().expect("opened above");
        w.get_mut()
            .map_err(|_| "a previous write panicked")?
            .write(&batch.0)
    }

    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, String>) -> Result<(), UserError> {
        if self.files.checkpointed {
            let announce = !std::mem::replace(&mut self.announced, true);
            let Some(w) = self.writer()? else {
                return Ok(());
            };
            if w.writer.in_progress_size() > ROW_GROUP_FLUSH_BYTES {
                w.writer
                    .flush()
                    .map_err(|e| format!("writing {}: {e}", w.path))?;
            }
            // The end of the job learns from the paths that checkpoints commit the files.
            if announce {
                let path = w.path.clone();
                ctx.output_at(path, GLOBAL_WINDOW_MAX_TIMESTAMP, Window::Global);
            }
            return Ok(());
        }
        if let Some(w) = self.current.take() {
            let w = w.into_inner().map_err(|_| "a previous write panicked")?;
            ctx.output_at(w.close()?, GLOBAL_WINDOW_MAX_TIMESTAMP, Window::Global);
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
            Some(w) => Some(
                w.into_inner()
                    .map_err(|_| "a previous write panicked")?
                    .close_synced()?,
            ),
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
    const NAME: &'static str = "beamline.io.WriteParquetBundles";
}
crate::register_dofn!(WriteBundles);

/// Writes one shard's batches to a temporary file named after the shard.
#[derive(Clone, Serialize, Deserialize)]
struct WriteShard {
    temp_dir: String,
    sink: SinkConfig,
}

impl DoFn for WriteShard {
    type In = (i64, Vec<ArrowBatch>);
    type Out = String;
    fn process(
        &mut self,
        (shard, batches): (i64, Vec<ArrowBatch>),
        ctx: &mut ProcessContext<'_, '_, String>,
    ) -> Result<(), UserError> {
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let path = format!("{}/shard-{shard:05}", self.temp_dir);
        let mut w = self.sink.open(&path, &first.0)?;
        for b in &batches {
            ctx.inc_counter(IO_NAMESPACE, "elementsWritten", b.0.num_rows() as i64);
            w.write(&b.0)?;
        }
        ctx.output(w.close()?);
        Ok(())
    }
}

impl NamedDoFn for WriteShard {
    const NAME: &'static str = "beamline.io.WriteParquetShard";
}
crate::register_dofn!(WriteShard);

impl PTransform<PCollection<ArrowBatch>> for WriteToParquet {
    type Output = PCollection<String>;
    fn expand(self, input: &PCollection<ArrowBatch>) -> PCollection<String> {
        // An invalid schema or codec cannot be here: both were checked when they were set.
        let empty_shard = self.empty_shard().unwrap_or_else(EmptyShard::Fail);
        let (prefix, suffix) = (self.prefix.clone(), self.suffix.clone());
        let sink = ShardedSink {
            prefix: self.prefix,
            suffix: self.suffix,
            num_shards: self.num_shards,
            empty_shard,
            checkpoint_files: true,
        };
        let config = self.sink;
        let shard_config = config.clone();
        sink.write(
            input,
            |temp_dir| WriteBundles::new(temp_dir.to_string(), config, prefix, suffix),
            |temp_dir| WriteShard {
                temp_dir: temp_dir.to_string(),
                sink: shard_config,
            },
        )
    }
}
