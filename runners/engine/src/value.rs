//! `Value`: the dynamic element representation every transform in the engine handles.

use std::any::Any;
use std::fmt;

/// A user value the engine cannot look into, carried as-is between fused transforms.
///
/// The SDK wraps user types (serde-encoded structs) in it, so elements need no encoding
/// while they stay inside one stage; [`OpaqueValue::encode`] is called only when bytes are
/// needed (grouping keys, spilling, crossing processes).
pub trait OpaqueValue: Any + Send + Sync + fmt::Debug {
    /// Appends the value's encoding (as its coder defines it) to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Clones the value behind the trait object.
    fn clone_box(&self) -> Box<dyn OpaqueValue>;
    /// Upcasts to `Any` for downcasting to the concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// The name of a registered [`OpaqueType`] that decodes this value's encoding, if any.
    ///
    /// Values with a type name keep their type through the dynamic coder (an Arrow record
    /// batch stays a record batch after a shuffle); others decode as foreign bytes.
    fn type_name(&self) -> Option<&'static str> {
        None
    }
}

/// Decodes bytes written by [`OpaqueValue::encode`] (the error says what was wrong).
pub type DecodeOpaque = fn(&[u8]) -> Result<Box<dyn OpaqueValue>, String>;

/// A decoder for [`OpaqueValue`]s of one type, registered with `inventory::submit!`.
pub struct OpaqueType {
    /// The name [`OpaqueValue::type_name`] returns.
    pub name: &'static str,
    /// Decodes bytes written by [`OpaqueValue::encode`].
    pub decode: DecodeOpaque,
}

inventory::collect!(OpaqueType);

/// Looks up the decoder registered under `name`.
pub fn opaque_type(name: &str) -> Option<&'static OpaqueType> {
    inventory::iter::<OpaqueType>
        .into_iter()
        .find(|t| t.name == name)
}

/// One element's value, independent of any Rust type.
///
/// Standard Beam types map to variants (`Str` for `string_utf8`, `I64` for `varint`, ...);
/// user types travel as [`Value::Opaque`] or, once decoded from bytes, as [`Value::Bytes`].
#[derive(Debug)]
pub enum Value {
    /// No value (`None`, unit).
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    I64(i64),
    /// A 64-bit float.
    F64(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A UTF-8 string.
    Str(String),
    /// A key/value pair.
    Kv(Box<(Value, Value)>),
    /// A sequence (iterables, grouped values).
    List(Vec<Value>),
    /// A user value not yet encoded.
    Opaque(Box<dyn OpaqueValue>),
}

impl Clone for Value {
    fn clone(&self) -> Self {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::I64(i) => Value::I64(*i),
            Value::F64(f) => Value::F64(*f),
            Value::Bytes(b) => Value::Bytes(b.clone()),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Kv(kv) => Value::Kv(kv.clone()),
            Value::List(l) => Value::List(l.clone()),
            Value::Opaque(o) => Value::Opaque(o.clone_box()),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::I64(a), Value::I64(b)) => a == b,
            (Value::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Kv(a), Value::Kv(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Opaque(a), Value::Opaque(b)) => {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                a.encode(&mut x);
                b.encode(&mut y);
                x == y
            }
            _ => false,
        }
    }
}

impl Value {
    /// Builds a key/value pair.
    #[inline]
    pub fn kv(key: Value, value: Value) -> Value {
        Value::Kv(Box::new((key, value)))
    }

    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::I64(_) => "int64",
            Value::F64(_) => "double",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "string",
            Value::Kv(_) => "kv",
            Value::List(_) => "list",
            Value::Opaque(_) => "opaque user value",
        }
    }

    /// Splits a `Kv` into key and value; `None` for any other variant.
    #[inline]
    pub fn into_kv(self) -> Option<(Value, Value)> {
        match self {
            Value::Kv(kv) => Some(*kv),
            _ => None,
        }
    }
}
