//! Estimates of how much memory keyed state takes (what a memory budget counts): a
//! stateful DoFn's state (the table entry, the key, the cells by their length and first
//! element) and a streaming grouping's key (its windows' contents and trigger parts).

use super::pane::{Contents, TriggerPart, WinState, Windows};
use super::state_spill::StateId;
use crate::state::StateCell;
use crate::value::Value;
use std::mem::size_of;

/// Bytes a map or set entry takes in a B-tree node, beyond its key and value: nodes hold
/// up to 11 entries and are about two-thirds full, plus the node's own fields.
const BTREE_SLACK: usize = 24;

/// Estimated bytes of one state in memory: its map entry of `entry` bytes (with the
/// table's slack), its key, its cells and its timers (named `timers`, each also in an
/// index).
pub(crate) fn estimate<'a>(
    entry: usize,
    id: &StateId,
    key: &Value,
    cells: &Vec<StateCell>,
    timers: impl Iterator<Item = &'a String>,
) -> usize {
    let cell_bytes: usize =
        cells.capacity() * size_of::<StateCell>() + cells.iter().map(cell_bytes).sum::<usize>();
    let timer_bytes: usize = timers.map(|n| 2 * (n.len() + 16) + 96 + id.0.len()).sum();
    entry * 2 + 16 + id.0.capacity() + 16 + value_heap(key) + cell_bytes + timer_bytes
}

/// Estimated bytes of a grouping's key in memory: its table entry of `entry` bytes, key
/// (`key_len` bytes encoded) and windows (contents by their length and first value, an
/// accumulator as 64 bytes; trigger part and timers).
pub(crate) fn panes_estimate(
    entry: usize,
    key_len: usize,
    key: &Value,
    windows: &Windows,
) -> usize {
    let window_bytes: usize = windows
        .iter()
        .map(|(_, ws)| {
            let contents = match &ws.contents {
                Contents::Values(vs) => {
                    vs.capacity() * size_of::<Value>() + vs.len() * vs.first().map_or(0, value_heap)
                }
                Contents::Accumulator(_) => 64,
            };
            size_of::<(crate::window::Window, WinState)>()
                + size_of::<TriggerPart>()
                + 16 * ws.trig.state.as_slice().len()
                + 32 * (ws.trig.timers.len() + ws.trig.indexed.len())
                + contents
        })
        .sum();
    entry * 2 + key_len.saturating_sub(22) + value_heap(key) + window_bytes
}

/// Estimated heap bytes of a cell: collections by their length and first element.
fn cell_bytes(c: &StateCell) -> usize {
    let value = size_of::<Value>();
    match c {
        StateCell::Empty => 0,
        StateCell::Value(v) => value_heap(v),
        StateCell::Combining(_) => 64,
        StateCell::Bag(b) => b.capacity() * value + b.len() * b.first().map_or(0, value_heap),
        StateCell::Map(m) => {
            let per = m.first_key_value().map_or(0, |(k, (a, b))| {
                k.capacity() + 16 + value_heap(a) + value_heap(b)
            });
            btree(m.len(), size_of::<Vec<u8>>() + 2 * value, per)
        }
        StateCell::Set(s) => {
            let per = s
                .first_key_value()
                .map_or(0, |(k, v)| k.capacity() + 16 + value_heap(v));
            btree(s.len(), size_of::<Vec<u8>>() + value, per)
        }
        StateCell::OrderedList(l) => {
            let per = l.first_key_value().map_or(0, |(_, v)| value_heap(v));
            btree(l.len(), 16 + value, per)
        }
    }
}

/// A B-tree of `n` entries of `entry` bytes each and `heap` more per entry: a new tree's
/// first node has room for 11.
fn btree(n: usize, entry: usize, heap: usize) -> usize {
    let slots = if n == 0 { 0 } else { (n * 3 / 2).max(11) };
    slots * (entry + BTREE_SLACK) / 2 + n * (entry / 2 + heap)
}

/// Estimated heap bytes of a value (beyond its own size).
fn value_heap(v: &Value) -> usize {
    match v {
        Value::Bytes(b) => b.capacity() + 16,
        Value::Str(s) | Value::KeyOnly(s) => s.capacity() + 16,
        Value::Kv(kv) => 2 * size_of::<Value>() + 16 + value_heap(&kv.0) + value_heap(&kv.1),
        Value::List(l) => {
            l.capacity() * size_of::<Value>() + l.len() * l.first().map_or(0, value_heap) + 16
        }
        Value::Opaque(_) => 64,
        _ => 0,
    }
}
