//! Conversions between Python objects and engine values.
//!
//! Python primitives map to the engine's own variants (None, bool, int, float, str, bytes;
//! 2-tuples become key/value pairs and lists become lists), so keys group by value and
//! Rust transforms (GroupByKey, Count, Sum...) handle them without calling Python. Other
//! objects are pickled and travel as opaque bytes, except pyarrow record batches, which
//! cross without copying (see [`crate::arrow`]).

use beamline::engine::coder::ForeignBytes;
use beamline::engine::Value;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

/// Converts a Python object to an engine value.
///
/// # Errors
/// When a non-primitive object cannot be pickled.
pub fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::I64(i));
        }
    } else if obj.is_instance_of::<PyFloat>() {
        return Ok(Value::F64(obj.extract()?));
    } else if obj.is_instance_of::<PyString>() {
        return Ok(Value::Str(obj.extract()?));
    } else if obj.is_instance_of::<PyBytes>() {
        return Ok(Value::Bytes(obj.extract()?));
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        if t.len() == 2 && obj.get_type().is(obj.py().get_type::<PyTuple>()) {
            return Ok(Value::kv(
                to_value(&t.get_item(0)?)?,
                to_value(&t.get_item(1)?)?,
            ));
        }
    } else if let Ok(l) = obj.cast::<PyList>() {
        if obj.get_type().is(obj.py().get_type::<PyList>()) {
            return l
                .iter()
                .map(|x| to_value(&x))
                .collect::<PyResult<Vec<_>>>()
                .map(Value::List);
        }
    }
    if crate::arrow::is_pyarrow_batch(obj) {
        let batch = crate::arrow::from_pyarrow(obj)?;
        return Ok(Value::Opaque(Box::new(beamline::arrow::ArrowBatch(batch))));
    }
    let pickled = obj
        .py()
        .import("pickle")?
        .call_method1("dumps", (obj,))
        .map_err(|e| PyValueError::new_err(format!("element {obj} cannot be pickled: {e}")))?;
    Ok(Value::Opaque(Box::new(ForeignBytes(pickled.extract()?))))
}

/// Converts an engine value to a Python object.
///
/// # Errors
/// When pickled bytes do not unpickle.
pub fn to_py(py: Python<'_>, v: Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_py_any(py)?,
        Value::I64(i) => i.into_py_any(py)?,
        Value::F64(f) => f.into_py_any(py)?,
        Value::Str(s) => s.into_py_any(py)?,
        Value::Bytes(b) => PyBytes::new(py, &b).into_any().unbind(),
        kv @ (Value::Kv(_) | Value::Pair(_) | Value::KeyOnly(_)) => {
            let (k, v) = kv.into_kv().expect("a key/value pair");
            PyTuple::new(py, [to_py(py, k)?, to_py(py, v)?])?
                .into_any()
                .unbind()
        }
        Value::List(items) => {
            let items = items
                .into_iter()
                .map(|x| to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Value::Opaque(o) => match beamline::arrow::take_batch(Value::Opaque(o)) {
            Ok(batch) => crate::arrow::to_pyarrow(py, batch.0)?,
            Err(Value::Opaque(o)) => {
                let mut bytes = Vec::new();
                o.encode(&mut bytes);
                py.import("pickle")?
                    .call_method1("loads", (PyBytes::new(py, &bytes),))?
                    .unbind()
            }
            Err(other) => to_py(py, other)?,
        },
    })
}

/// The Python traceback of an error, as text.
pub fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )
    });
    match formatted.and_then(|lines| lines.extract::<Vec<String>>()) {
        Ok(lines) => lines.concat().trim_end().to_string(),
        Err(_) => err.to_string(),
    }
}
