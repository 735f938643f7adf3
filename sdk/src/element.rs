//! `Element`: how Rust types map to engine values and to Beam's standard coders.

use crate::error::{Error, Result};
use beamline_engine::coder::Coder;
use beamline_engine::{OpaqueValue, Value};
use std::any::Any;

/// A type that can be an element of a `PCollection`.
///
/// Standard types use Beam's standard coders (`String` is `string_utf8`, `i64` is
/// `varint`, `(K, V)` is `kv`, `Vec<T>` is `iterable`, `Option<T>` is `nullable`, ...),
/// so their bytes match every other Beam SDK. Your own types get a serde coder with
/// [`serde_element!`](crate::serde_element).
pub trait Element: Clone + Send + Sync + 'static {
    /// The coder of this type.
    fn coder() -> Coder;
    /// Converts into an engine value.
    fn into_value(self) -> Value;
    /// Converts back from an engine value.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] when the value is of another type.
    fn from_value(v: Value) -> Result<Self>;
}

// Cold and out of line: conversions are inlined per element, their error path is not.
#[cold]
#[inline(never)]
pub(crate) fn mismatch<T>(v: &Value) -> Error {
    Error::TypeMismatch {
        expected: std::any::type_name::<T>(),
        found: v.kind().to_string(),
    }
}

impl Element for String {
    fn coder() -> Coder {
        Coder::StringUtf8
    }
    #[inline]
    fn into_value(self) -> Value {
        Value::Str(self)
    }
    #[inline]
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Str(s) => Ok(s),
            other => Err(mismatch::<Self>(&other)),
        }
    }
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn coder() -> Coder {
                Coder::VarInt
            }
            #[inline(always)]
            fn into_value(self) -> Value {
                Value::I64(self as i64)
            }
            #[inline(always)]
            fn from_value(v: Value) -> Result<Self> {
                if let Value::I64(i) = v {
                    v.release();
                    return Ok(i as $t);
                }
                Err(mismatch::<Self>(&v))
            }
        }
    )*};
}
int_element!(i64, i32, i16, u32, u16, u64, usize);

impl Element for f64 {
    fn coder() -> Coder {
        Coder::Double
    }
    #[inline(always)]
    fn into_value(self) -> Value {
        Value::F64(self)
    }
    #[inline(always)]
    fn from_value(v: Value) -> Result<Self> {
        if let Value::F64(f) = v {
            v.release();
            return Ok(f);
        }
        Err(mismatch::<Self>(&v))
    }
}

impl Element for bool {
    fn coder() -> Coder {
        Coder::Bool
    }
    #[inline(always)]
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
    #[inline(always)]
    fn from_value(v: Value) -> Result<Self> {
        if let Value::Bool(b) = v {
            v.release();
            return Ok(b);
        }
        Err(mismatch::<Self>(&v))
    }
}

/// Raw bytes, encoded with Beam's `bytes` coder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Element for Bytes {
    fn coder() -> Coder {
        Coder::Bytes
    }
    #[inline]
    fn into_value(self) -> Value {
        Value::Bytes(self.0)
    }
    #[inline]
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Bytes(b) => Ok(Bytes(b)),
            other => Err(mismatch::<Self>(&other)),
        }
    }
}

/// The unit type travels as empty bytes (what Impulse emits).
impl Element for () {
    fn coder() -> Coder {
        Coder::Bytes
    }
    #[inline(always)]
    fn into_value(self) -> Value {
        Value::Bytes(Vec::new())
    }
    #[inline(always)]
    fn from_value(v: Value) -> Result<Self> {
        v.release();
        Ok(())
    }
}

impl<K: Element, V: Element> Element for (K, V) {
    fn coder() -> Coder {
        Coder::Kv(Box::new(K::coder()), Box::new(V::coder()))
    }
    #[inline(always)]
    fn into_value(self) -> Value {
        Value::kv(self.0.into_value(), self.1.into_value())
    }
    #[inline(always)]
    fn from_value(v: Value) -> Result<Self> {
        match v.try_into_kv() {
            Ok((k, v)) => Ok((K::from_value(k)?, V::from_value(v)?)),
            Err(other) => Err(mismatch::<Self>(&other)),
        }
    }
}

impl<T: Element> Element for Vec<T> {
    fn coder() -> Coder {
        Coder::Iterable(Box::new(T::coder()))
    }
    #[inline]
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(Element::into_value).collect())
    }
    #[inline]
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::List(items) => items.into_iter().map(T::from_value).collect(),
            other => Err(mismatch::<Self>(&other)),
        }
    }
}

impl<T: Element> Element for Option<T> {
    fn coder() -> Coder {
        Coder::Nullable(Box::new(T::coder()))
    }
    #[inline]
    fn into_value(self) -> Value {
        match self {
            None => Value::Null,
            Some(v) => v.into_value(),
        }
    }
    #[inline]
    fn from_value(v: Value) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// Carries a serde type through the engine unencoded; encodes with `postcard` on demand.
#[derive(Clone, Debug)]
pub struct SerdeValue<T>(pub T);

impl<T> OpaqueValue for SerdeValue<T>
where
    T: serde::Serialize + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, out: &mut Vec<u8>) {
        // Serializing a plain data type into a Vec cannot fail.
        let bytes = postcard::to_allocvec(&self.0).expect("serde encoding of an element");
        out.extend_from_slice(&bytes);
    }
    fn clone_box(&self) -> Box<dyn OpaqueValue> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Converts a serde element to a value (used by [`serde_element!`](crate::serde_element)).
pub fn serde_into_value<T>(v: T) -> Value
where
    T: serde::Serialize + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    Value::Opaque(Box::new(SerdeValue(v)))
}

/// Converts a value back to a serde element (used by [`serde_element!`](crate::serde_element)).
///
/// # Errors
/// When the value is neither this type unencoded nor valid bytes of it.
pub fn serde_from_value<T>(v: Value) -> Result<T>
where
    T: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    match v {
        Value::Opaque(o) => o
            .into_any()
            .downcast::<SerdeValue<T>>()
            .map(|b| b.0)
            .map_err(|_| Error::TypeMismatch {
                expected: std::any::type_name::<T>(),
                found: "another user type".into(),
            }),
        Value::Bytes(b) => postcard::from_bytes(&b).map_err(|e| Error::TypeMismatch {
            expected: std::any::type_name::<T>(),
            found: format!("bytes that do not decode ({e})"),
        }),
        other => Err(mismatch::<T>(&other)),
    }
}

/// Makes a serde type usable as a `PCollection` element, encoded with a serde coder.
///
/// # Examples
///
/// ```
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct Click { user: String, page: u32 }
/// beamline::serde_element!(Click);
/// ```
#[macro_export]
macro_rules! serde_element {
    ($t:ty) => {
        impl $crate::Element for $t {
            fn coder() -> $crate::engine::coder::Coder {
                $crate::engine::coder::Coder::Opaque(::std::any::type_name::<$t>().to_string())
            }
            #[inline]
            fn into_value(self) -> $crate::engine::Value {
                $crate::element::serde_into_value(self)
            }
            #[inline]
            fn from_value(v: $crate::engine::Value) -> $crate::Result<Self> {
                $crate::element::serde_from_value(v)
            }
        }
    };
}

/// Any engine value, encoded with the dynamic coder: the element type of dynamically typed
/// SDKs (Python). Equality and hashing use the encoding.
#[derive(Clone, Debug)]
pub struct DynValue(pub Value);

impl DynValue {
    fn encoded(&self) -> Vec<u8> {
        Coder::Dynamic
            .encode_to_vec(&self.0)
            .expect("the dynamic coder encodes every value")
    }
}

impl PartialEq for DynValue {
    fn eq(&self, other: &Self) -> bool {
        self.encoded() == other.encoded()
    }
}

impl Eq for DynValue {}

impl std::hash::Hash for DynValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.encoded().hash(state);
    }
}

impl Element for DynValue {
    fn coder() -> Coder {
        Coder::Dynamic
    }
    #[inline]
    fn into_value(self) -> Value {
        self.0
    }
    #[inline]
    fn from_value(v: Value) -> Result<Self> {
        Ok(DynValue(v))
    }
}
