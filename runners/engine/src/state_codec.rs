//! State cells and timers as bytes, with the coders their declarations carry.
//!
//! What a checkpoint writes or another process receives: every cell kind (value, bag,
//! combining, map, set, ordered list) encodes with the coders of its [`StateKind`], a
//! combining cell as its accumulator; a timer as its name, domain and times. A cell starts
//! with one byte naming its kind, so decoding with the wrong declaration is an error, not
//! garbage.

use crate::coder::{read_timestamp, read_varint, write_timestamp, write_varint, Coder};
use crate::error::UserError;
use crate::state::{StateCell, StateKind, TimeDomain};
use crate::value::Value;
use std::collections::BTreeMap;

const EMPTY: u8 = 0;
const VALUE: u8 = 1;
const BAG: u8 = 2;
const COMBINING: u8 = 3;
const MAP: u8 = 4;
const SET: u8 = 5;
const ORDERED_LIST: u8 = 6;

fn count(n: usize, out: &mut Vec<u8>) {
    write_varint(n as u64, out);
}

fn read_count(input: &mut &[u8]) -> Result<usize, UserError> {
    let n = read_varint(input)?;
    // Every entry takes at least one byte: a larger count is corrupt, not a huge cell.
    if n > input.len() as u64 {
        return Err(format!("a state cell claims {n} entries in {} bytes", input.len()).into());
    }
    Ok(n as usize)
}

fn mismatch(kind: &StateKind, cell: &StateCell) -> UserError {
    format!("a {cell:?} cell cannot be encoded as declared ({kind:?})").into()
}

/// Appends `cell`, declared as `kind`, to `out`.
///
/// # Errors
/// When the cell does not match its declaration or a value does not fit its coder.
pub fn encode_cell(kind: &StateKind, cell: &StateCell, out: &mut Vec<u8>) -> Result<(), UserError> {
    match (kind, cell) {
        (_, StateCell::Empty) => out.push(EMPTY),
        (StateKind::Value(c), StateCell::Value(v)) => {
            out.push(VALUE);
            c.encode(v, out, true)?;
        }
        (StateKind::Bag(c), StateCell::Bag(items)) => {
            out.push(BAG);
            count(items.len(), out);
            for v in items {
                c.encode(v, out, true)?;
            }
        }
        (StateKind::Combining(f, c), StateCell::Combining(acc)) => {
            out.push(COMBINING);
            c.encode(&f.accumulator_to_value(acc)?, out, true)?;
        }
        (StateKind::Map(kc, vc), StateCell::Map(m)) => {
            out.push(MAP);
            count(m.len(), out);
            for (k, v) in m.values() {
                kc.encode(k, out, true)?;
                vc.encode(v, out, true)?;
            }
        }
        (StateKind::Set(c), StateCell::Set(s)) => {
            out.push(SET);
            count(s.len(), out);
            for v in s.values() {
                c.encode(v, out, true)?;
            }
        }
        (StateKind::OrderedList(c), StateCell::OrderedList(l)) => {
            out.push(ORDERED_LIST);
            count(l.len(), out);
            for ((ts, seq), v) in l {
                write_timestamp(*ts, out);
                write_varint(*seq, out);
                c.encode(v, out, true)?;
            }
        }
        _ => return Err(mismatch(kind, cell)),
    }
    Ok(())
}

fn decode_all(c: &Coder, input: &mut &[u8]) -> Result<Vec<Value>, UserError> {
    let n = read_count(input)?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(c.decode(input, true)?);
    }
    Ok(items)
}

/// Reads a cell declared as `kind` from the front of `input`, advancing it.
///
/// # Errors
/// When the bytes hold another kind of cell, or are not a valid encoding.
pub fn decode_cell(kind: &StateKind, input: &mut &[u8]) -> Result<StateCell, UserError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or("unexpected end of input while decoding a state cell")?;
    *input = rest;
    Ok(match (tag, kind) {
        (EMPTY, _) => StateCell::Empty,
        (VALUE, StateKind::Value(c)) => StateCell::Value(c.decode(input, true)?),
        (BAG, StateKind::Bag(c)) => StateCell::Bag(decode_all(c, input)?),
        (COMBINING, StateKind::Combining(f, c)) => {
            StateCell::Combining(f.accumulator_from_value(c.decode(input, true)?)?)
        }
        (MAP, StateKind::Map(kc, vc)) => {
            let n = read_count(input)?;
            let mut m = BTreeMap::new();
            for _ in 0..n {
                let k = kc.decode(input, true)?;
                let v = vc.decode(input, true)?;
                m.insert(kc.encode_to_vec(&k)?, (k, v));
            }
            StateCell::Map(m)
        }
        (SET, StateKind::Set(c)) => {
            let mut s = BTreeMap::new();
            for v in decode_all(c, input)? {
                s.insert(c.encode_to_vec(&v)?, v);
            }
            StateCell::Set(s)
        }
        (ORDERED_LIST, StateKind::OrderedList(c)) => {
            let n = read_count(input)?;
            let mut l = BTreeMap::new();
            for _ in 0..n {
                let ts = read_timestamp(input)?;
                let seq = read_varint(input)?;
                l.insert((ts, seq), c.decode(input, true)?);
            }
            StateCell::OrderedList(l)
        }
        (tag, kind) => {
            return Err(format!("state cell of kind tag {tag} does not match {kind:?}").into())
        }
    })
}

/// A set timer of one key and window: what [`encode_timer`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerData {
    /// The timer's declared name.
    pub name: String,
    /// Event or processing time.
    pub domain: TimeDomain,
    /// When it fires (ms, in its domain).
    pub fire: i64,
    /// Timestamp of what its callback outputs (and the watermark hold it keeps).
    pub output: i64,
}

/// Appends a timer to `out`.
pub fn encode_timer(t: &TimerData, out: &mut Vec<u8>) {
    count(t.name.len(), out);
    out.extend_from_slice(t.name.as_bytes());
    out.push(match t.domain {
        TimeDomain::Watermark => 0,
        TimeDomain::ProcessingTime => 1,
    });
    write_timestamp(t.fire, out);
    write_timestamp(t.output, out);
}

/// Reads a timer from the front of `input`, advancing it.
///
/// # Errors
/// When the bytes are not a timer's encoding.
pub fn decode_timer(input: &mut &[u8]) -> Result<TimerData, UserError> {
    let n = read_count(input)?;
    let (name, rest) = input.split_at(n);
    let name = std::str::from_utf8(name)
        .map_err(|_| "a timer name is not valid UTF-8")?
        .to_string();
    *input = rest;
    let (&d, rest) = input
        .split_first()
        .ok_or("unexpected end of input while decoding a timer")?;
    *input = rest;
    let domain = match d {
        0 => TimeDomain::Watermark,
        1 => TimeDomain::ProcessingTime,
        other => return Err(format!("unknown timer domain {other}").into()),
    };
    Ok(TimerData {
        name,
        domain,
        fire: read_timestamp(input)?,
        output: read_timestamp(input)?,
    })
}
