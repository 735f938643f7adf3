//! A Python CombineFn object running in-process as a Beamline CombineFn.

use crate::convert::{to_py, to_value, traceback};
use crate::py_thread::attach;
use beamline::engine::coder::Coder;
use beamline::engine::Value;
use beamline::{CombineFn, DynValue, Element};
use pyo3::prelude::*;

/// A Python CombineFn object (create_accumulator / add_input / merge_accumulators /
/// extract_output) as a Beamline CombineFn; accumulators stay Python objects.
pub struct PyCombineFn(pub Py<PyAny>);

/// A Python CombineFn's accumulator: a Python object, encoded as a dynamic value when it
/// crosses a process boundary or reaches disk (numbers, strings, lists, tuples and dicts
/// natively, anything else pickled).
pub struct PyAcc(pub Py<PyAny>);

impl Clone for PyAcc {
    fn clone(&self) -> Self {
        attach(|py| PyAcc(self.0.clone_ref(py)))
    }
}

impl Element for PyAcc {
    fn coder() -> Coder {
        Coder::Dynamic
    }
    fn into_value(self) -> Value {
        attach(|py| match to_value(self.0.bind(py)) {
            Ok(v) => v,
            // Element conversions cannot fail; the engine turns this panic into a job
            // error naming the transform.
            Err(e) => panic!(
                "a CombineFn's accumulator cannot be encoded: {}",
                traceback(py, &e)
            ),
        })
    }
    fn from_value(v: Value) -> beamline::Result<Self> {
        attach(|py| to_py(py, v).map(PyAcc))
            .map_err(|e| beamline::Error::Construction(format!("decoding an accumulator: {e}")))
    }
}

fn fail(py: Python<'_>, e: PyErr) -> ! {
    // CombineFn methods cannot return errors through the typed trait; the engine turns
    // this panic into a job error naming the transform.
    panic!("{}", traceback(py, &e))
}

impl CombineFn for PyCombineFn {
    type In = DynValue;
    type Acc = PyAcc;
    type Out = DynValue;

    fn create_accumulator(&self) -> PyAcc {
        attach(
            |py| match self.0.bind(py).call_method0("create_accumulator") {
                Ok(a) => PyAcc(a.unbind()),
                Err(e) => fail(py, e),
            },
        )
    }

    fn add_input(&self, acc: &mut PyAcc, x: DynValue) {
        attach(|py| {
            let r = to_py(py, x.0).and_then(|x| {
                self.0
                    .bind(py)
                    .call_method1("add_input", (acc.0.bind(py), x))
            });
            match r {
                Ok(a) => acc.0 = a.unbind(),
                Err(e) => fail(py, e),
            }
        })
    }

    fn merge_accumulators(&self, accs: Vec<PyAcc>) -> PyAcc {
        let accs: Vec<Py<PyAny>> = accs.into_iter().map(|a| a.0).collect();
        attach(
            |py| match self.0.bind(py).call_method1("merge_accumulators", (accs,)) {
                Ok(a) => PyAcc(a.unbind()),
                Err(e) => fail(py, e),
            },
        )
    }

    fn extract_output(&self, acc: PyAcc) -> DynValue {
        attach(|py| {
            let r = self
                .0
                .bind(py)
                .call_method1("extract_output", (acc.0,))
                .and_then(|o| to_value(&o));
            match r {
                Ok(v) => DynValue(v),
                Err(e) => fail(py, e),
            }
        })
    }
}
