//! Parquet for Python pipelines: Rust reads and writes the files; rows and batches cross
//! to and from pyarrow without copying column data.

use crate::convert::{to_py, traceback};
use crate::py_thread::attach;
use crate::PColl;
use arrow_schema::SchemaRef;
use beamline::arrow::{take_batch, ArrowBatch};
use beamline::engine::time::GLOBAL_WINDOW_MAX_TIMESTAMP;
use beamline::engine::{UserError, Value, Window};
use beamline::io::parquet::{ReadFromParquet, WriteToParquet};
use beamline::{
    BundleContext, DoFn, DynValue, Element, PCollection, PTransform, ParDo, ProcessContext,
    WindowInto,
};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// ReadFromParquet: elements are pyarrow record batches.
pub(crate) fn read(
    p: &beamline::Pipeline,
    name: &str,
    pattern: String,
    columns: Option<Vec<String>>,
    batch_size: usize,
) -> PColl {
    let mut read = ReadFromParquet::new(pattern).with_batch_size(batch_size);
    if let Some(cols) = columns {
        read = read.with_columns(cols);
    }
    let batches = p.apply(name, read);
    PColl {
        pc: batches.map(&format!("{name}/AsPython"), |b: ArrowBatch| {
            DynValue(b.into_value())
        }),
    }
}

/// Turns Python rows (dicts) into record batches of `schema`, `batch_size` rows at most
/// (pyarrow builds them; the batches then reference pyarrow's buffers).
struct RowsToBatches {
    schema: SchemaRef,
    batch_size: usize,
    rows: Vec<Value>,
}

impl Clone for RowsToBatches {
    /// A clone starts with no buffered rows.
    fn clone(&self) -> Self {
        RowsToBatches {
            schema: self.schema.clone(),
            batch_size: self.batch_size,
            rows: Vec::new(),
        }
    }
}

impl RowsToBatches {
    fn flush(&mut self) -> Result<Option<ArrowBatch>, UserError> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows);
        let batch = attach(|py| -> Result<_, UserError> {
            let result = (|| -> PyResult<_> {
                let items = rows
                    .into_iter()
                    .map(|r| to_py(py, r))
                    .collect::<PyResult<Vec<_>>>()?;
                let schema = crate::arrow::schema_to_pyarrow(py, self.schema.clone())?;
                let batch = py
                    .import("pyarrow")?
                    .getattr("RecordBatch")?
                    .call_method1("from_pylist", (PyList::new(py, items)?, schema.bind(py)))?;
                crate::arrow::from_pyarrow(&batch)
            })();
            result.map_err(|e| {
                format!(
                    "rows do not fit the Parquet schema {}:\n{}",
                    self.schema,
                    traceback(py, &e)
                )
                .into()
            })
        })?;
        Ok(Some(ArrowBatch(batch)))
    }
}

impl DoFn for RowsToBatches {
    type In = DynValue;
    type Out = ArrowBatch;
    fn process(
        &mut self,
        row: DynValue,
        ctx: &mut ProcessContext<'_, '_, ArrowBatch>,
    ) -> Result<(), UserError> {
        self.rows.push(row.0);
        if self.rows.len() >= self.batch_size {
            if let Some(b) = self.flush()? {
                ctx.output(b);
            }
        }
        Ok(())
    }

    fn finish_bundle(
        &mut self,
        ctx: &mut BundleContext<'_, '_, ArrowBatch>,
    ) -> Result<(), UserError> {
        if let Some(b) = self.flush()? {
            ctx.output_at(b, GLOBAL_WINDOW_MAX_TIMESTAMP, Window::Global);
        }
        Ok(())
    }
}

/// Takes the record batches out of Python values (pyarrow batches crossed as Arrow).
#[derive(Clone)]
struct ExpectBatches;

impl DoFn for ExpectBatches {
    type In = DynValue;
    type Out = ArrowBatch;
    fn process(
        &mut self,
        v: DynValue,
        ctx: &mut ProcessContext<'_, '_, ArrowBatch>,
    ) -> Result<(), UserError> {
        match take_batch(v.0) {
            Ok(b) => {
                ctx.output(b);
                Ok(())
            }
            Err(other) => Err(format!(
                "WriteToParquetBatched expects pyarrow.RecordBatch or pyarrow.Table elements, \
                 got a {} value",
                other.kind()
            )
            .into()),
        }
    }
}

/// How WriteToParquet gets its input: rows to batch, or batches as they are.
pub(crate) enum Input {
    /// Dict rows, `batch_size` rows per record batch.
    Rows(usize),
    /// pyarrow record batches.
    Batches,
}

/// Everything WriteToParquet needs besides its input.
pub(crate) struct WriteConfig {
    pub(crate) prefix: String,
    pub(crate) suffix: String,
    pub(crate) num_shards: usize,
    pub(crate) codec: String,
    pub(crate) row_group_size: Option<usize>,
    pub(crate) schema: Option<SchemaRef>,
    pub(crate) input: Input,
}

/// WriteToParquet / WriteToParquetBatched; returns the names of the files written.
pub(crate) fn write(pcoll: &PColl, name: &str, c: WriteConfig) -> PyResult<PColl> {
    let mut sink = WriteToParquet::new(c.prefix)
        .with_suffix(c.suffix)
        .with_num_shards(c.num_shards)
        .with_codec(&c.codec)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    if let Some(n) = c.row_group_size {
        sink = sink.with_row_group_size(n);
    }
    if let Some(s) = &c.schema {
        sink = sink.with_schema(s.clone());
    }
    let batcher = match (c.input, c.schema) {
        (Input::Rows(n), Some(schema)) => Some(RowsToBatches {
            schema,
            batch_size: n.max(1),
            rows: Vec::new(),
        }),
        (Input::Rows(_), None) => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "WriteToParquet needs a schema (a pyarrow.Schema) to turn rows into columns",
            ))
        }
        (Input::Batches, _) => None,
    };
    struct Write(Option<RowsToBatches>, WriteToParquet);
    impl PTransform<PCollection<DynValue>> for Write {
        type Output = PCollection<DynValue>;
        fn expand(self, input: &PCollection<DynValue>) -> Self::Output {
            let batches = match self.0 {
                Some(batcher) => input
                    .apply("GlobalWindow", WindowInto::global())
                    .apply("ToBatches", ParDo::of(batcher)),
                None => input.apply("AsBatches", ParDo::of(ExpectBatches)),
            };
            batches
                .apply("Write", self.1)
                .map("AsPython", |f: String| DynValue(Value::Str(f)))
        }
    }
    Ok(PColl {
        pc: pcoll.pc.apply(name, Write(batcher, sink)),
    })
}
