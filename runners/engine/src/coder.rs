//! Beam's standard coders, byte-for-byte, over [`Value`]s (windows, panes and windowed
//! values are in [`crate::windowed_coder`]).
//!
//! Every coder encodes in one of two contexts: *nested* (the value is followed by more
//! data, so variable-length encodings carry a length prefix) or *outer* (the value runs to
//! the end of the buffer). The byte layouts are those of Apache Beam's
//! `standard_coders.yaml`.

use crate::time::Timestamp;
use crate::value::Value;

/// A coder failure: the value does not fit the coder, or the bytes are malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoderError {
    /// The value's variant is not what the coder encodes.
    #[error("coder {coder} cannot encode a {found} value")]
    Mismatch {
        /// The coder's name.
        coder: String,
        /// The value's kind.
        found: &'static str,
    },
    /// The input ended in the middle of a value.
    #[error("unexpected end of input while decoding {0}")]
    Eof(&'static str),
    /// The bytes are not a valid encoding.
    #[error("invalid encoding for {coder}: {reason}")]
    Invalid {
        /// The coder's name.
        coder: &'static str,
        /// What was wrong.
        reason: String,
    },
}

pub(crate) type CResult<T> = Result<T, CoderError>;

/// A coder for [`Value`]s: Beam's standard coders plus an opaque coder for user types.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Coder {
    /// `beam:coder:bytes:v1`
    Bytes,
    /// `beam:coder:string_utf8:v1`
    StringUtf8,
    /// `beam:coder:varint:v1` (signed 64-bit, two's complement as unsigned varint)
    VarInt,
    /// `beam:coder:bool:v1`
    Bool,
    /// `beam:coder:double:v1`
    Double,
    /// `beam:coder:kv:v1`
    Kv(Box<Coder>, Box<Coder>),
    /// `beam:coder:iterable:v1`
    Iterable(Box<Coder>),
    /// `beam:coder:length_prefix:v1`
    LengthPrefix(Box<Coder>),
    /// `beam:coder:nullable:v1`
    Nullable(Box<Coder>),
    /// Any value, with a tag byte per variant (dynamically typed SDKs such as Python);
    /// opaque values are carried as their encoded bytes and decode to [`ForeignBytes`].
    Dynamic,
    /// A user type encoded by the SDK (serde); the string names the type.
    ///
    /// Values are [`Value::Opaque`] (encoded by the value itself) or [`Value::Bytes`]
    /// (already encoded); decoding yields `Bytes`.
    Opaque(String),
}

impl std::fmt::Display for Coder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Coder::Bytes => write!(f, "bytes"),
            Coder::StringUtf8 => write!(f, "string_utf8"),
            Coder::VarInt => write!(f, "varint"),
            Coder::Bool => write!(f, "bool"),
            Coder::Double => write!(f, "double"),
            Coder::Kv(k, v) => write!(f, "kv<{k}, {v}>"),
            Coder::Iterable(e) => write!(f, "iterable<{e}>"),
            Coder::LengthPrefix(e) => write!(f, "length_prefix<{e}>"),
            Coder::Nullable(e) => write!(f, "nullable<{e}>"),
            Coder::Opaque(name) => write!(f, "serde<{name}>"),
            Coder::Dynamic => write!(f, "dynamic"),
        }
    }
}

impl Coder {
    fn mismatch(&self, v: &Value) -> CoderError {
        CoderError::Mismatch {
            coder: self.to_string(),
            found: v.kind(),
        }
    }

    /// Appends the encoding of `v` to `out`.
    ///
    /// # Errors
    /// [`CoderError::Mismatch`] when `v` is not a value this coder encodes.
    #[inline(always)]
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>, nested: bool) -> CResult<()> {
        // The most common scalars are encoded inline at the call site (keys and values of
        // every shuffled element: always, as a plain hint left it out of line there);
        // everything else goes through the general encoder.
        match (self, v) {
            (Coder::VarInt, Value::I64(i)) => {
                write_varint(*i as u64, out);
                Ok(())
            }
            (Coder::StringUtf8, Value::Str(s)) => {
                if nested {
                    write_varint(s.len() as u64, out);
                }
                out.extend_from_slice(s.as_bytes());
                Ok(())
            }
            _ => self.encode_general(v, out, nested),
        }
    }

    fn encode_general(&self, v: &Value, out: &mut Vec<u8>, nested: bool) -> CResult<()> {
        match (self, v) {
            (Coder::Dynamic, v) => encode_dynamic(v, out),
            (Coder::Bytes, Value::Bytes(b)) => {
                if nested {
                    write_varint(b.len() as u64, out);
                }
                out.extend_from_slice(b);
            }
            (Coder::StringUtf8, Value::Str(s)) => {
                if nested {
                    write_varint(s.len() as u64, out);
                }
                out.extend_from_slice(s.as_bytes());
            }
            (Coder::VarInt, Value::I64(i)) => write_varint(*i as u64, out),
            (Coder::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
            (Coder::Double, Value::F64(f)) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
            (Coder::Kv(kc, vc), Value::Kv(kv)) => {
                kc.encode(&kv.0, out, true)?;
                vc.encode(&kv.1, out, nested)?;
            }
            (Coder::Kv(kc, vc), Value::Pair(p)) => {
                kc.encode(&p.key(), out, true)?;
                vc.encode(&p.value(), out, nested)?;
            }
            (Coder::Kv(kc, vc), Value::KeyOnly(s)) => {
                match &**kc {
                    Coder::StringUtf8 => {
                        write_varint(s.len() as u64, out);
                        out.extend_from_slice(s.as_bytes());
                    }
                    // Rare (a string key under another coder): build the key once.
                    kc => kc.encode(&Value::Str(s.clone()), out, true)?,
                }
                vc.encode(&Value::Bytes(Vec::new()), out, nested)?;
            }
            (Coder::Iterable(ec), Value::List(items)) => {
                out.extend_from_slice(&(items.len() as i32).to_be_bytes());
                for item in items {
                    ec.encode(item, out, true)?;
                }
            }
            (Coder::LengthPrefix(ec), v) => {
                let mut inner = Vec::new();
                ec.encode(v, &mut inner, false)?;
                write_varint(inner.len() as u64, out);
                out.extend_from_slice(&inner);
            }
            (Coder::Nullable(_), Value::Null) => out.push(0),
            (Coder::Nullable(ec), v) => {
                out.push(1);
                ec.encode(v, out, nested)?;
            }
            (Coder::Opaque(_), Value::Opaque(o)) => {
                if nested {
                    let mut inner = Vec::new();
                    o.encode(&mut inner);
                    write_varint(inner.len() as u64, out);
                    out.extend_from_slice(&inner);
                } else {
                    o.encode(out);
                }
            }
            (Coder::Opaque(_), Value::Bytes(b)) => {
                if nested {
                    write_varint(b.len() as u64, out);
                }
                out.extend_from_slice(b);
            }
            _ => return Err(self.mismatch(v)),
        }
        Ok(())
    }

    /// Encodes `v` into a fresh buffer in the outer context.
    ///
    /// # Errors
    /// As [`Coder::encode`].
    pub fn encode_to_vec(&self, v: &Value) -> CResult<Vec<u8>> {
        let mut out = Vec::new();
        self.encode(v, &mut out, false)?;
        Ok(out)
    }

    /// Decodes one value from the front of `input`, advancing it.
    ///
    /// # Errors
    /// [`CoderError::Eof`] or [`CoderError::Invalid`] on malformed input.
    pub fn decode(&self, input: &mut &[u8], nested: bool) -> CResult<Value> {
        Ok(match self {
            Coder::Dynamic => decode_dynamic(input)?,
            Coder::Bytes | Coder::Opaque(_) => {
                let b = read_len_or_rest(input, nested, "bytes")?;
                Value::Bytes(b.to_vec())
            }
            Coder::StringUtf8 => {
                let b = read_len_or_rest(input, nested, "string_utf8")?;
                Value::Str(
                    String::from_utf8(b.to_vec()).map_err(|e| CoderError::Invalid {
                        coder: "string_utf8",
                        reason: e.to_string(),
                    })?,
                )
            }
            Coder::VarInt => Value::I64(read_varint(input)? as i64),
            Coder::Bool => match take(input, 1, "bool")?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(CoderError::Invalid {
                        coder: "bool",
                        reason: format!("byte {b:#x} is neither 0 nor 1"),
                    })
                }
            },
            Coder::Double => {
                let b = take(input, 8, "double")?;
                Value::F64(f64::from_bits(u64::from_be_bytes(
                    b.try_into().expect("8 bytes"),
                )))
            }
            Coder::Kv(kc, vc) => {
                let k = kc.decode(input, true)?;
                let v = vc.decode(input, nested)?;
                Value::kv(k, v)
            }
            Coder::Iterable(ec) => Value::List(match **ec {
                // Grouped integers (the values of most keyed sums and counts): one
                // inlined loop instead of a coder dispatch per value.
                Coder::VarInt => {
                    // Integers first, then values: a `Value` pushed as it is decoded is
                    // built on the stack and copied by wide loads that wait for its narrow
                    // stores (a stall per item); collected, it is written in place.
                    let ints = decode_iterable(input, |i, out| {
                        out.push(read_varint(i)? as i64);
                        Ok(())
                    })?;
                    ints.into_iter().map(Value::I64).collect()
                }
                _ => decode_iterable(input, |i, out| {
                    out.push(ec.decode(i, true)?);
                    Ok(())
                })?,
            }),
            Coder::LengthPrefix(ec) => {
                let mut b = read_len_or_rest(input, true, "length_prefix")?;
                ec.decode(&mut b, false)?
            }
            Coder::Nullable(ec) => match take(input, 1, "nullable")?[0] {
                0 => Value::Null,
                1 => ec.decode(input, nested)?,
                b => {
                    return Err(CoderError::Invalid {
                        coder: "nullable",
                        reason: format!("null marker {b:#x} is neither 0 nor 1"),
                    })
                }
            },
        })
    }
}

/// The encoded bytes of an object of another SDK (for example a pickled Python object):
/// opaque to the engine, compared and grouped by its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForeignBytes(pub Vec<u8>);

impl crate::value::OpaqueValue for ForeignBytes {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn clone_box(&self) -> Box<dyn crate::value::OpaqueValue> {
        Box::new(self.clone())
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

fn encode_dynamic(v: &Value, out: &mut Vec<u8>) {
    let bytes = |b: &[u8], out: &mut Vec<u8>| {
        write_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    };
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::I64(i) => {
            out.push(2);
            write_varint(*i as u64, out);
        }
        Value::F64(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Bytes(b) => {
            out.push(4);
            bytes(b, out);
        }
        Value::Str(s) => {
            out.push(5);
            bytes(s.as_bytes(), out);
        }
        Value::Kv(kv) => {
            out.push(6);
            encode_dynamic(&kv.0, out);
            encode_dynamic(&kv.1, out);
        }
        Value::Pair(p) => {
            out.push(6);
            encode_dynamic(&p.key(), out);
            encode_dynamic(&p.value(), out);
        }
        Value::KeyOnly(s) => {
            out.push(6);
            out.push(5);
            bytes(s.as_bytes(), out);
            encode_dynamic(&Value::Bytes(Vec::new()), out);
        }
        Value::List(items) => {
            out.push(7);
            write_varint(items.len() as u64, out);
            for i in items {
                encode_dynamic(i, out);
            }
        }
        Value::Opaque(o) => {
            let mut inner = Vec::new();
            o.encode(&mut inner);
            match o.type_name() {
                Some(name) => {
                    out.push(9);
                    bytes(name.as_bytes(), out);
                }
                None => out.push(8),
            }
            bytes(&inner, out);
        }
    }
}

fn decode_dynamic(input: &mut &[u8]) -> CResult<Value> {
    let tag = take(input, 1, "dynamic value")?[0];
    Ok(match tag {
        0 => Value::Null,
        1 => Value::Bool(take(input, 1, "bool")?[0] != 0),
        2 => Value::I64(read_varint(input)? as i64),
        3 => {
            let b = take(input, 8, "double")?;
            Value::F64(f64::from_bits(u64::from_be_bytes(
                b.try_into().expect("8 bytes"),
            )))
        }
        4 => Value::Bytes(read_len_or_rest(input, true, "bytes")?.to_vec()),
        5 => {
            let b = read_len_or_rest(input, true, "string")?;
            Value::Str(
                String::from_utf8(b.to_vec()).map_err(|e| CoderError::Invalid {
                    coder: "dynamic",
                    reason: e.to_string(),
                })?,
            )
        }
        6 => {
            let k = decode_dynamic(input)?;
            let v = decode_dynamic(input)?;
            Value::kv(k, v)
        }
        7 => {
            let n = read_varint(input)?;
            let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
            for _ in 0..n {
                items.push(decode_dynamic(input)?);
            }
            Value::List(items)
        }
        8 => Value::Opaque(Box::new(ForeignBytes(
            read_len_or_rest(input, true, "foreign object")?.to_vec(),
        ))),
        9 => {
            let name = read_len_or_rest(input, true, "type name")?;
            let name = String::from_utf8_lossy(name).into_owned();
            let body = read_len_or_rest(input, true, "typed object")?;
            let ty = crate::value::opaque_type(&name).ok_or_else(|| CoderError::Invalid {
                coder: "dynamic",
                reason: format!("no decoder is registered for values of type '{name}'"),
            })?;
            Value::Opaque((ty.decode)(body).map_err(|reason| CoderError::Invalid {
                coder: "dynamic",
                reason: format!("decoding a '{name}' value: {reason}"),
            })?)
        }
        t => {
            return Err(CoderError::Invalid {
                coder: "dynamic",
                reason: format!("unknown type tag {t}"),
            })
        }
    })
}

/// Decodes an iterable's framing (known length, or length-unknown blocks); `item` decodes
/// one item and pushes it onto the output.
pub(crate) fn decode_iterable<T>(
    input: &mut &[u8],
    mut item: impl FnMut(&mut &[u8], &mut Vec<T>) -> CResult<()>,
) -> CResult<Vec<T>> {
    let n = i32::from_be_bytes(take(input, 4, "iterable")?.try_into().expect("4 bytes"));
    let mut out = Vec::new();
    if n >= 0 {
        // Every item takes at least one byte: a corrupt count cannot reserve more than
        // the input could hold.
        out.reserve((n as usize).min(input.len()));
        for _ in 0..n {
            item(input, &mut out)?;
        }
    } else {
        loop {
            let block = read_varint(input)?;
            if block == 0 {
                break;
            }
            if block as i64 == -1 {
                return Err(CoderError::Invalid {
                    coder: "iterable",
                    reason: "state-backed continuation tokens are not supported".into(),
                });
            }
            for _ in 0..block {
                item(input, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Appends `v` as an unsigned LEB128 varint.
#[inline]
pub fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint.
///
/// # Errors
/// [`CoderError::Eof`] if the input ends early, [`CoderError::Invalid`] past 10 bytes.
#[inline]
pub fn read_varint(input: &mut &[u8]) -> CResult<u64> {
    // Most varints (lengths, small numbers) are one byte; numbers below 16384 two.
    match **input {
        [b, ..] if b < 0x80 => {
            *input = &input[1..];
            Ok(u64::from(b))
        }
        [b, c, ..] if c < 0x80 => {
            *input = &input[2..];
            Ok(u64::from(b & 0x7f) | u64::from(c) << 7)
        }
        _ => read_varint_slow(input),
    }
}

fn read_varint_slow(input: &mut &[u8]) -> CResult<u64> {
    let mut result = 0u64;
    let mut shift = 0;
    loop {
        let b = take(input, 1, "varint")?[0];
        if shift >= 64 {
            return Err(CoderError::Invalid {
                coder: "varint",
                reason: "more than 10 bytes".into(),
            });
        }
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(result);
        }
        shift += 7;
    }
}

pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize, what: &'static str) -> CResult<&'a [u8]> {
    if input.len() < n {
        return Err(CoderError::Eof(what));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn read_len_or_rest<'a>(
    input: &mut &'a [u8],
    nested: bool,
    what: &'static str,
) -> CResult<&'a [u8]> {
    if nested {
        let n = read_varint(input)?;
        let n = usize::try_from(n).map_err(|_| CoderError::Eof(what))?;
        take(input, n, what)
    } else {
        Ok(std::mem::take(input))
    }
}

/// Appends a timestamp as Beam does: big-endian, shifted so negatives sort first.
pub fn write_timestamp(ts: Timestamp, out: &mut Vec<u8>) {
    out.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
}

/// Reads a timestamp written by [`write_timestamp`].
///
/// # Errors
/// [`CoderError::Eof`] if fewer than 8 bytes remain.
pub fn read_timestamp(input: &mut &[u8]) -> CResult<Timestamp> {
    let b = take(input, 8, "timestamp")?;
    Ok((u64::from_be_bytes(b.try_into().expect("8 bytes")) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_of_every_length_round_trip_and_truncated_ones_fail() {
        let mut values = vec![0u64, 1, 127, 128, 255, 16_383, 16_384, 1 << 21, u64::MAX];
        values.extend((0..64).map(|s| 1u64 << s));
        for v in values {
            let mut out = Vec::new();
            write_varint(v, &mut out);
            out.push(0xAB);
            let mut input = &out[..];
            assert_eq!(read_varint(&mut input).unwrap(), v);
            assert_eq!(input, &[0xAB], "{v} leaves the next byte");
            let mut truncated = &out[..out.len() - 2];
            assert!(read_varint(&mut truncated).is_err(), "{v} cut short");
        }
    }

    #[test]
    fn opaque_bytes_round_trip_nested() {
        let c = Coder::Kv(Box::new(Coder::Opaque("T".into())), Box::new(Coder::VarInt));
        let v = Value::kv(Value::Bytes(vec![1, 2, 3]), Value::I64(-5));
        let mut out = Vec::new();
        c.encode(&v, &mut out, false).unwrap();
        assert_eq!(c.decode(&mut out.as_slice(), false).unwrap(), v);
    }

    #[test]
    fn dynamic_round_trip() {
        let v = Value::List(vec![
            Value::kv(Value::Str("k".into()), Value::I64(-3)),
            Value::Null,
            Value::F64(0.5),
            Value::Bool(true),
            Value::Bytes(vec![1, 2]),
            Value::Opaque(Box::new(ForeignBytes(vec![9, 9]))),
        ]);
        let b = Coder::Dynamic.encode_to_vec(&v).unwrap();
        assert_eq!(Coder::Dynamic.decode(&mut b.as_slice(), false).unwrap(), v);
    }

    #[test]
    fn mismatch_names_coder_and_value() {
        let err = Coder::VarInt
            .encode_to_vec(&Value::Str("x".into()))
            .unwrap_err();
        assert_eq!(err.to_string(), "coder varint cannot encode a string value");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let err = Coder::StringUtf8
            .decode(&mut &[5u8, b'a'][..], true)
            .unwrap_err();
        assert!(matches!(err, CoderError::Eof(_)));
    }

    #[test]
    fn iterables_of_integers_round_trip_and_corrupt_counts_are_errors() {
        let c = Coder::Iterable(Box::new(Coder::VarInt));
        let v = Value::List(vec![Value::I64(0), Value::I64(-1), Value::I64(300)]);
        let b = c.encode_to_vec(&v).unwrap();
        assert_eq!(c.decode(&mut b.as_slice(), false).unwrap(), v);
        // A count of i32::MAX with three bytes behind it: an error, not a huge allocation.
        for ec in [Coder::VarInt, Coder::StringUtf8] {
            let c = Coder::Iterable(Box::new(ec));
            let mut corrupt = i32::MAX.to_be_bytes().to_vec();
            corrupt.extend([1, 2, 3]);
            let err = c.decode(&mut corrupt.as_slice(), false).unwrap_err();
            assert!(matches!(err, CoderError::Eof(_)), "{err}");
        }
    }
}
