//! `Value`: the dynamic element representation every transform in the engine handles.

use std::any::Any;
use std::borrow::Cow;
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
    /// A key/value pair (of two scalars, [`Value::Pair`] instead: [`Value::kv`] chooses).
    Kv(Box<(Value, Value)>),
    /// A key/value pair of two scalars, held inline: building one allocates nothing.
    Pair(ScalarPair),
    /// A key/value pair of a string key and an empty byte string (what `()` is: an
    /// element paired with it to be counted or deduplicated), held inline: no box per
    /// element.
    KeyOnly(String),
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
            Value::Pair(p) => Value::Pair(*p),
            Value::KeyOnly(s) => Value::KeyOnly(s.clone()),
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
            (Value::Pair(a), Value::Pair(b)) => a == b,
            (Value::Pair(p), Value::Kv(kv)) | (Value::Kv(kv), Value::Pair(p)) => {
                p.key() == kv.0 && p.value() == kv.1
            }
            (Value::KeyOnly(a), Value::KeyOnly(b)) => a == b,
            (Value::KeyOnly(s), Value::Kv(kv)) | (Value::Kv(kv), Value::KeyOnly(s)) => {
                matches!(&kv.0, Value::Str(k) if k == s)
                    && matches!(&kv.1, Value::Bytes(b) if b.is_empty())
            }
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
    /// Builds a key/value pair: inline when both are scalars ([`Value::Pair`]) or the key
    /// is a string and the value empty bytes ([`Value::KeyOnly`]), boxed otherwise.
    // Always inlined: called out of line, its arguments go through memory and are read
    // back wider than they were written (a stall per pair).
    #[inline(always)]
    pub fn kv(key: Value, value: Value) -> Value {
        match ScalarPair::of(&key, &value) {
            Some(p) => {
                // Scalars own nothing: skipping their drop glue saves a call per pair.
                std::mem::forget(key);
                std::mem::forget(value);
                Value::Pair(p)
            }
            None => match (key, value) {
                (Value::Str(s), Value::Bytes(b)) if b.is_empty() => {
                    drop(b);
                    Value::KeyOnly(s)
                }
                (key, value) => Value::Kv(Box::new((key, value))),
            },
        }
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
            Value::Kv(_) | Value::Pair(_) | Value::KeyOnly(_) => "kv",
            Value::List(_) => "list",
            Value::Opaque(_) => "opaque user value",
        }
    }

    /// Splits a key/value pair into key and value; `None` for any other value.
    #[inline]
    pub fn into_kv(self) -> Option<(Value, Value)> {
        self.try_into_kv().ok()
    }

    /// Splits a key/value pair into key and value; any other value back as the error.
    ///
    /// # Errors
    /// When the value is not a key/value pair.
    #[inline(always)]
    pub fn try_into_kv(self) -> Result<(Value, Value), Value> {
        if let Value::Pair(p) = self {
            self.release();
            return Ok((p.key(), p.value()));
        }
        match self {
            Value::Kv(kv) => Ok(*kv),
            Value::KeyOnly(s) => Ok((Value::Str(s), Value::Bytes(Vec::new()))),
            other => Err(other),
        }
    }

    /// Drops the value, without a call into its drop code when it owns nothing (null,
    /// booleans, numbers, scalar pairs) or a single buffer (strings, bytes): per-element
    /// code drops many of those.
    #[inline(always)]
    pub fn release(self) {
        match self {
            // Strings and bytes free their buffer directly, not through `Value`'s drop code.
            Value::Str(s) | Value::KeyOnly(s) => drop(s),
            Value::Bytes(b) => drop(b),
            Value::Null | Value::Bool(_) | Value::I64(_) | Value::F64(_) | Value::Pair(_) => {
                std::mem::forget(self)
            }
            other => drop(other),
        }
    }

    /// The key and value of a key/value pair, borrowed (or, from a [`Value::Pair`], built:
    /// scalars cost nothing to build; from a [`Value::KeyOnly`], the key is copied);
    /// `None` for any other value.
    pub fn as_kv(&self) -> Option<(Cow<'_, Value>, Cow<'_, Value>)> {
        match self {
            Value::Kv(kv) => Some((Cow::Borrowed(&kv.0), Cow::Borrowed(&kv.1))),
            Value::Pair(p) => Some((Cow::Owned(p.key()), Cow::Owned(p.value()))),
            Value::KeyOnly(s) => Some((
                Cow::Owned(Value::Str(s.clone())),
                Cow::Owned(Value::Bytes(Vec::new())),
            )),
            _ => None,
        }
    }
}

/// Two scalars (null, bool, int64, double, or the unit value `()`: empty bytes) as a
/// key/value pair, without a heap box: a kind per side and the payloads' bits.
/// [`Value::kv`] builds one when it can.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalarPair {
    /// The key's kind in the low three bits, the value's in the next three.
    kinds: u8,
    key: u64,
    value: u64,
}

impl ScalarPair {
    /// The pair of `key` and `value`, when both are scalars.
    #[inline]
    pub fn of(key: &Value, value: &Value) -> Option<ScalarPair> {
        let (kk, key) = scalar_bits(key)?;
        let (vk, value) = scalar_bits(value)?;
        Some(ScalarPair {
            kinds: kk | (vk << 3),
            key,
            value,
        })
    }

    /// The key.
    #[inline(always)]
    pub fn key(&self) -> Value {
        scalar_value(self.kinds & 7, self.key)
    }

    /// The value.
    #[inline(always)]
    pub fn value(&self) -> Value {
        scalar_value(self.kinds >> 3, self.value)
    }
}

impl fmt::Debug for ScalarPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("")
            .field(&self.key())
            .field(&self.value())
            .finish()
    }
}

/// A scalar's kind (0 null, 1 bool, 2 int64, 3 double, 4 unit) and bits; `None` for
/// others. The unit value `()` is empty bytes; only unallocated ones count (a pair's
/// parts are forgotten, not dropped).
#[inline]
fn scalar_bits(v: &Value) -> Option<(u8, u64)> {
    match v {
        Value::Null => Some((0, 0)),
        Value::Bool(b) => Some((1, u64::from(*b))),
        Value::I64(i) => Some((2, *i as u64)),
        Value::F64(f) => Some((3, f.to_bits())),
        Value::Bytes(b) if b.capacity() == 0 => Some((4, 0)),
        _ => None,
    }
}

#[inline(always)]
fn scalar_value(kind: u8, bits: u64) -> Value {
    match kind {
        0 => Value::Null,
        1 => Value::Bool(bits != 0),
        2 => Value::I64(bits as i64),
        3 => Value::F64(f64::from_bits(bits)),
        _ => Value::Bytes(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_of_scalars_is_held_inline_and_equals_the_boxed_pair() {
        assert_eq!(
            std::mem::size_of::<Value>(),
            32,
            "a pair must not grow values"
        );
        let scalars = [
            Value::Null,
            Value::Bool(true),
            Value::I64(-7),
            Value::F64(2.5),
            Value::Bytes(Vec::new()),
        ];
        for k in &scalars {
            for v in &scalars {
                let kv = Value::kv(k.clone(), v.clone());
                assert!(matches!(kv, Value::Pair(_)), "{kv:?}");
                assert_eq!(kv, Value::Kv(Box::new((k.clone(), v.clone()))));
                let (bk, bv) = kv.as_kv().unwrap();
                assert_eq!((&*bk, &*bv), (k, v));
                assert_eq!(kv.clone().into_kv(), Some((k.clone(), v.clone())));
                assert_eq!(kv.kind(), "kv");
            }
        }
        let unit = || Value::Bytes(Vec::new());
        let key_only = Value::kv(Value::Str("w".into()), unit());
        assert!(matches!(key_only, Value::KeyOnly(_)), "{key_only:?}");
        let boxed_key_only = Value::Kv(Box::new((Value::Str("w".into()), unit())));
        assert_eq!(key_only, boxed_key_only);
        assert_eq!(boxed_key_only, key_only);
        assert_ne!(key_only, Value::kv(Value::Str("v".into()), unit()));
        let other_value = Value::kv(Value::Str("w".into()), Value::Bytes(vec![0]));
        assert!(matches!(other_value, Value::Kv(_)));
        assert_ne!(key_only, other_value);
        assert_eq!(key_only.kind(), "kv");
        let (k, v) = key_only.as_kv().unwrap();
        assert_eq!((&*k, &*v), (&Value::Str("w".into()), &unit()));
        assert_eq!(key_only.try_into_kv(), Ok((Value::Str("w".into()), unit())));
        // Empty bytes with room allocated are not a unit: the pair keeps them, boxed.
        let roomy = Value::kv(Value::I64(1), Value::Bytes(Vec::with_capacity(4)));
        assert!(matches!(roomy, Value::Kv(_)));
        assert_eq!(roomy, Value::kv(Value::I64(1), Value::Bytes(Vec::new())));
        let boxed = Value::kv(Value::Str("a".into()), Value::I64(1));
        assert!(matches!(boxed, Value::Kv(_)));
        assert_ne!(boxed, Value::kv(Value::I64(1), Value::I64(1)));
        assert_eq!(
            format!("{:?}", Value::kv(Value::I64(1), Value::Null)),
            "Pair((I64(1), Null))"
        );
        assert_eq!(Value::I64(3).try_into_kv(), Err(Value::I64(3)));
    }
}
