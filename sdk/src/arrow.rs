//! `ArrowBatch`: Arrow record batches as elements (held as-is in a stage, Arrow IPC on the wire).

use crate::element::{mismatch, Element};
use crate::error::{Error, Result};
use arrow_array::RecordBatch;
use beamline_engine::coder::Coder;
use beamline_engine::{OpaqueType, OpaqueValue, Value};
use std::any::Any;

pub use arrow_array;
pub use arrow_schema;

/// The name of record batch values in the engine (and of their coder).
pub const ARROW_BATCH_TYPE: &str = "beamline.arrow.RecordBatch";

/// An Arrow [`RecordBatch`] as a `PCollection` element.
///
/// Inside a fused stage the batch moves by reference (its buffers are never copied, also
/// not to or from pyarrow); it is encoded as an Arrow IPC stream only when it crosses a
/// shuffle. Equality compares schema and contents.
///
/// # Examples
///
/// ```
/// use beamline::arrow::{arrow_array::{Int64Array, RecordBatch}, ArrowBatch};
/// use std::sync::Arc;
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)])
///     .unwrap();
/// let b = ArrowBatch(batch);
/// assert_eq!(b.0.num_rows(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ArrowBatch(pub RecordBatch);

impl ArrowBatch {
    /// Encodes the batch as an Arrow IPC stream (schema message, one batch, end marker).
    ///
    /// # Errors
    /// [`Error::Arrow`] when Arrow cannot write the batch.
    pub fn to_ipc(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &self.0.schema())
            .map_err(|e| Error::Arrow(e.to_string()))?;
        w.write(&self.0).map_err(|e| Error::Arrow(e.to_string()))?;
        w.finish().map_err(|e| Error::Arrow(e.to_string()))?;
        drop(w);
        Ok(out)
    }

    /// Decodes a batch written by [`ArrowBatch::to_ipc`].
    ///
    /// # Errors
    /// [`Error::Arrow`] when the bytes are not an IPC stream holding exactly one batch.
    pub fn from_ipc(bytes: &[u8]) -> Result<Self> {
        let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| Error::Arrow(format!("invalid Arrow IPC stream: {e}")))?;
        let batch = match r.next() {
            Some(b) => b.map_err(|e| Error::Arrow(format!("invalid Arrow IPC stream: {e}")))?,
            None => {
                return Err(Error::Arrow(
                    "Arrow IPC stream holds no record batch".into(),
                ))
            }
        };
        if r.next().is_some() {
            return Err(Error::Arrow(
                "Arrow IPC stream holds more than one record batch".into(),
            ));
        }
        Ok(ArrowBatch(batch))
    }
}

impl OpaqueValue for ArrowBatch {
    fn encode(&self, out: &mut Vec<u8>) {
        // Writing a valid in-memory batch to a Vec cannot fail short of running out of memory.
        out.extend(
            self.to_ipc()
                .expect("an in-memory record batch encodes as Arrow IPC"),
        );
    }
    fn clone_box(&self) -> Box<dyn OpaqueValue> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn type_name(&self) -> Option<&'static str> {
        Some(ARROW_BATCH_TYPE)
    }
}

inventory::submit! {
    OpaqueType {
        name: ARROW_BATCH_TYPE,
        decode: |b| {
            ArrowBatch::from_ipc(b)
                .map(|x| Box::new(x) as Box<dyn OpaqueValue>)
                .map_err(|e| e.to_string())
        },
    }
}

/// Takes the batch out of an engine value holding one, or gives the value back.
pub fn take_batch(v: Value) -> std::result::Result<ArrowBatch, Value> {
    match v {
        Value::Opaque(o) if o.type_name() == Some(ARROW_BATCH_TYPE) => Ok(*o
            .into_any()
            .downcast::<ArrowBatch>()
            .expect("values named as record batches are ArrowBatch")),
        other => Err(other),
    }
}

impl Element for ArrowBatch {
    fn coder() -> Coder {
        Coder::Opaque(ARROW_BATCH_TYPE.to_string())
    }
    fn into_value(self) -> Value {
        Value::Opaque(Box::new(self))
    }
    fn from_value(v: Value) -> Result<Self> {
        match take_batch(v) {
            Ok(b) => Ok(b),
            Err(Value::Bytes(b)) => ArrowBatch::from_ipc(&b),
            Err(other) => Err(mismatch::<Self>(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn batch() -> ArrowBatch {
        ArrowBatch(
            RecordBatch::try_from_iter([
                ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
                ("s", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn ipc_roundtrip_and_dynamic_coder_keep_the_type() {
        let b = batch();
        assert_eq!(ArrowBatch::from_ipc(&b.to_ipc().unwrap()).unwrap(), b);
        let bytes = Coder::Dynamic
            .encode_to_vec(&Value::kv(Value::I64(1), b.clone().into_value()))
            .unwrap();
        let back = Coder::Dynamic.decode(&mut bytes.as_slice(), false).unwrap();
        let (_, v) = back.into_kv().unwrap();
        assert_eq!(ArrowBatch::from_value(v).unwrap(), b);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let err = ArrowBatch::from_ipc(b"not arrow").unwrap_err();
        assert!(
            err.to_string().contains("invalid Arrow IPC stream"),
            "{err}"
        );
        // A typed value whose name no decoder knows.
        let mut bytes = vec![9, 3];
        bytes.extend_from_slice(b"xyz");
        bytes.extend_from_slice(&[1, 0]);
        let err = Coder::Dynamic
            .decode(&mut bytes.as_slice(), false)
            .unwrap_err();
        assert!(err.to_string().contains("'xyz'"), "{err}");
    }
}
