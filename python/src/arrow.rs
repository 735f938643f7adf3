//! Arrow record batches to and from pyarrow without copying (Arrow's PyCapsule interface).
//!
//! Batches cross as Arrow C Data Interface structs: the receiving side references the
//! sender's buffers and releases them through the struct's callback, so no column data is
//! copied in either direction.

use arrow_array::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{Array, RecordBatch, StructArray};
use arrow_schema::{Schema, SchemaRef};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCapsule;
use std::sync::Arc;

/// A Rust record batch offered to pyarrow through `__arrow_c_array__`.
#[pyclass(frozen, name = "_ArrowBatch", module = "beamline._native")]
pub struct ExportedBatch(RecordBatch);

#[pymethods]
impl ExportedBatch {
    /// The Arrow PyCapsule protocol: (schema capsule, array capsule) of a struct array.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        // The protocol lets a producer ignore the requested schema; pyarrow casts if needed.
        let _ = requested_schema;
        let data = StructArray::from(self.0.clone()).into_data();
        let (array, schema) = to_ffi(&data).map_err(|e| PyValueError::new_err(e.to_string()))?;
        // The consumer moves the structs out of the capsules (marking them released), so
        // dropping the capsules afterwards releases nothing twice.
        let schema = PyCapsule::new(py, schema, Some(c"arrow_schema".to_owned()))?;
        let array = PyCapsule::new(py, array, Some(c"arrow_array".to_owned()))?;
        Ok((schema, array))
    }
}

/// A Rust schema offered to pyarrow through `__arrow_c_schema__`.
#[pyclass(frozen, name = "_ArrowSchema", module = "beamline._native")]
pub struct ExportedSchema(SchemaRef);

#[pymethods]
impl ExportedSchema {
    /// The Arrow PyCapsule protocol for schemas.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema = FFI_ArrowSchema::try_from(self.0.as_ref())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyCapsule::new(py, schema, Some(c"arrow_schema".to_owned()))
    }
}

fn pyarrow(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static PYARROW: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    PYARROW
        .get_or_try_init(py, || {
            py.import("pyarrow").map(Bound::unbind).map_err(|e| {
                pyo3::exceptions::PyImportError::new_err(format!(
                    "Arrow record batches need pyarrow (pip install pyarrow): {e}"
                ))
            })
        })
        .map(|m| m.bind(py))
}

/// A pyarrow `RecordBatch` viewing the buffers of `batch`.
///
/// # Errors
/// When pyarrow is missing or rejects the batch.
pub fn to_pyarrow(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    let exported = Bound::new(py, ExportedBatch(batch))?;
    Ok(pyarrow(py)?
        .call_method1("record_batch", (exported,))?
        .unbind())
}

/// A pyarrow `Schema` equal to `schema`.
///
/// # Errors
/// When pyarrow is missing or rejects the schema.
pub fn schema_to_pyarrow(py: Python<'_>, schema: SchemaRef) -> PyResult<Py<PyAny>> {
    let exported = Bound::new(py, ExportedSchema(schema))?;
    Ok(pyarrow(py)?.call_method1("schema", (exported,))?.unbind())
}

/// Whether `obj` is a pyarrow `RecordBatch` (checked without importing pyarrow).
pub fn is_pyarrow_batch(obj: &Bound<'_, PyAny>) -> bool {
    let ty = obj.get_type();
    let named = |attr: &str, want: &str| {
        ty.getattr(attr)
            .and_then(|n| n.extract::<String>())
            .is_ok_and(|n| n == want)
    };
    named("__name__", "RecordBatch")
        && named("__module__", "pyarrow.lib")
        && obj.hasattr("__arrow_c_array__").unwrap_or(false)
}

fn capsule_pointer<T>(capsule: &Bound<'_, PyAny>, name: &std::ffi::CStr) -> PyResult<*mut T> {
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err(format!("expected a {name:?} capsule")))?;
    Ok(capsule.pointer_checked(Some(name))?.as_ptr().cast())
}

/// Takes a record batch from any object with `__arrow_c_array__` (a pyarrow
/// `RecordBatch`), referencing its buffers.
///
/// # Errors
/// When the object does not export a struct array, or the array has top-level nulls.
pub fn from_pyarrow(obj: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let (schema, array): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
        obj.call_method0("__arrow_c_array__")?.extract()?;
    let schema_ptr = capsule_pointer::<FFI_ArrowSchema>(&schema, c"arrow_schema")?;
    let array_ptr = capsule_pointer::<FFI_ArrowArray>(&array, c"arrow_array")?;
    #[allow(unsafe_code)]
    // SAFETY: both pointers come from capsules named as the Arrow PyCapsule interface
    // prescribes, so they point to valid C Data Interface structs that the capsules (alive
    // until the end of this function) own. `from_raw` moves the array out and marks the
    // capsule's copy released, as the interface requires of a consumer; the schema is only
    // borrowed for the duration of `from_ffi`.
    let data = unsafe {
        let array = FFI_ArrowArray::from_raw(array_ptr);
        from_ffi(array, &*schema_ptr)
    }
    .map_err(|e| PyValueError::new_err(format!("invalid Arrow array: {e}")))?;
    let data_type = data.data_type().clone();
    let arrow_schema::DataType::Struct(_) = data_type else {
        return Err(PyTypeError::new_err(format!(
            "expected a record batch (an Arrow struct array), got an array of {data_type}"
        )));
    };
    let strukt = StructArray::from(data);
    if strukt.null_count() > 0 {
        return Err(PyValueError::new_err(
            "a record batch cannot have null rows (the struct array has nulls)",
        ));
    }
    let (fields, columns, _) = strukt.into_parts();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Takes a schema from any object with `__arrow_c_schema__` (a pyarrow `Schema`).
///
/// # Errors
/// When the object is not a schema Arrow understands.
pub fn schema_from_pyarrow(obj: &Bound<'_, PyAny>) -> PyResult<SchemaRef> {
    if !obj.hasattr("__arrow_c_schema__")? {
        return Err(PyTypeError::new_err(format!(
            "expected a pyarrow.Schema, got {}",
            obj.get_type().name()?
        )));
    }
    let capsule = obj.call_method0("__arrow_c_schema__")?;
    let ptr = capsule_pointer::<FFI_ArrowSchema>(&capsule, c"arrow_schema")?;
    #[allow(unsafe_code)]
    // SAFETY: the capsule (alive for this scope) owns a valid FFI_ArrowSchema, as the Arrow
    // PyCapsule interface prescribes; it is only borrowed here.
    let ffi = unsafe { &*ptr };
    Schema::try_from(ffi)
        .map(Arc::new)
        .map_err(|e| PyValueError::new_err(format!("invalid Arrow schema: {e}")))
}

/// The address of the first buffer of column 0 (for tests proving batches are not copied).
pub fn first_buffer_address(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .first()
        .and_then(|c| c.to_data().buffers().first().map(|b| b.as_ptr() as usize))
        .unwrap_or(0)
}
