//! A streaming grouping's windows of one key as bytes, for checkpoints: pane contents,
//! trigger state and timers, hold and pane indexes; and for the spill store, which of
//! the timers are in the operator's timer index.

use super::pane::{Contents, TriggerPart, WinState, Windows};
use crate::checkpoint::codec::{Dec, Enc};
use crate::coder::Coder;
use crate::combine::{decode_accumulator, encode_accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result};
use crate::trigger::{Domain, TimerList, Trigger, TriggerState, TriggerTimer};
use crate::window::Window;

/// Encodes every window of a key (between bundles): contents (values with `coder`, or
/// an accumulator of `combine`), trigger state and timers, hold, pane indexes.
///
/// # Errors
/// A value or accumulator that cannot be encoded.
pub(crate) fn encode_windows(
    windows: &Windows,
    coder: &Coder,
    combine: Option<&dyn CombineFnInvoker>,
    name: &str,
) -> Result<Vec<u8>> {
    let mut e = Enc::new();
    let windows: Vec<_> = windows.iter().collect();
    e.u64(windows.len() as u64);
    for (w, ws) in windows {
        debug_assert!(
            ws.bundle_hold.is_none() && ws.bundle_added == 0,
            "between bundles"
        );
        e.window(w);
        match &ws.contents {
            Contents::Values(vs) => {
                e.u64(0).u64(vs.len() as u64);
                for v in vs {
                    coder
                        .encode(v, &mut e.0, true)
                        .map_err(|source| EngineError::Coder {
                            transform: name.to_string(),
                            source,
                        })?;
                }
            }
            Contents::Accumulator(acc) => {
                let f = combine.ok_or_else(|| {
                    EngineError::Checkpoint(format!(
                        "'{name}' holds an accumulator without a combine"
                    ))
                })?;
                let bytes = encode_accumulator(f, coder, acc).map_err(|u| {
                    EngineError::user(name, format!("cannot checkpoint an accumulator: {u}"))
                })?;
                e.u64(1).bytes(&bytes);
            }
        }
        e.u64(ws.pending as u64);
        let numbers = ws.trig.state.as_slice();
        e.u64(numbers.len() as u64);
        for &n in numbers {
            e.i64(n);
        }
        put_timers(&mut e, &ws.trig.timers);
        e.bool(ws.hold.is_some()).i64(ws.hold.unwrap_or(0));
        e.i64(ws.index).i64(ws.nonspeculative).bool(ws.tombstone);
    }
    Ok(e.finish())
}

/// Decodes what [`encode_windows`] wrote, for a grouping with `trigger` and `combine`
/// (`lifted`: panes hold accumulators).
///
/// # Errors
/// Corrupt bytes, or state of another trigger or combine (naming the transform).
pub(crate) fn decode_windows(
    bytes: &[u8],
    trigger: &Trigger,
    combine: Option<&dyn CombineFnInvoker>,
    lifted: bool,
    coder: &Coder,
    name: &str,
) -> Result<Vec<(Window, WinState)>> {
    let mut dec = Dec::new(bytes, name);
    let d = &mut dec;
    let n = d.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let w = d.window()?;
        let contents = match d.u64()? {
            0 => {
                let count = d.count()?;
                let mut vs = Vec::with_capacity(count);
                let mut bytes = d.rest();
                for _ in 0..count {
                    vs.push(coder.decode(&mut bytes, true).map_err(|source| {
                        EngineError::Coder {
                            transform: name.to_string(),
                            source,
                        }
                    })?);
                }
                d.advance_to(bytes);
                Contents::Values(vs)
            }
            1 => {
                let f = combine.ok_or_else(|| {
                    EngineError::Checkpoint(format!(
                        "'{name}' has a saved accumulator but no combine"
                    ))
                })?;
                let acc = decode_accumulator(f, coder, d.bytes()?).map_err(|u| {
                    EngineError::Checkpoint(format!("'{name}': a saved accumulator: {u}"))
                })?;
                Contents::Accumulator(acc)
            }
            t => {
                return Err(EngineError::Checkpoint(format!(
                    "the saved state of '{name}' is corrupt: pane contents of kind {t}"
                )))
            }
        };
        let pending = d.u64()? as usize;
        let count = d.count()?;
        let numbers = (0..count).map(|_| d.i64()).collect::<Result<Vec<_>>>()?;
        let state = TriggerState::from_slice(trigger, &numbers).ok_or_else(|| {
            EngineError::Checkpoint(format!(
                "the trigger of '{name}' is not the one its checkpoint was taken with"
            ))
        })?;
        let timers = get_timers(d)?;
        let has_hold = d.bool()?;
        let hold = d.i64()?;
        let mut ws = WinState::new(trigger, combine, lifted);
        ws.contents = contents;
        ws.pending = pending;
        ws.trig = Box::new(TriggerPart {
            state,
            timers,
            indexed: TimerList::new(),
        });
        ws.hold = has_hold.then_some(hold);
        ws.index = d.i64()?;
        ws.nonspeculative = d.i64()?;
        ws.tombstone = d.bool()?;
        out.push((w, ws));
    }
    d.end()?;
    Ok(out)
}

fn put_timers(e: &mut Enc, timers: &TimerList) {
    e.u64(timers.len() as u64);
    for t in timers {
        e.u64(match t.domain {
            Domain::Watermark => 0,
            Domain::ProcessingTime => 1,
        });
        e.u64(u64::from(t.id)).i64(t.timestamp);
    }
}

fn get_timers(d: &mut Dec<'_>) -> Result<TimerList> {
    let mut timers = TimerList::new();
    for _ in 0..d.count()? {
        let domain = match d.u64()? {
            0 => Domain::Watermark,
            _ => Domain::ProcessingTime,
        };
        let id = d.u64()? as u32;
        timers.push(TriggerTimer {
            domain,
            id,
            timestamp: d.i64()?,
        });
    }
    Ok(timers)
}

/// A key's windows as a spill row: what a checkpoint holds ([`encode_windows`]), then
/// which timers of each window the operator's timer index has (those it must not index
/// again when the key is read back).
///
/// # Errors
/// A value or accumulator that cannot be encoded.
pub(crate) fn encode_spilled(
    windows: &Windows,
    coder: &Coder,
    combine: Option<&dyn CombineFnInvoker>,
    name: &str,
) -> Result<Vec<u8>> {
    let mut e = Enc::new();
    e.bytes(&encode_windows(windows, coder, combine, name)?);
    for (_, ws) in windows.iter() {
        put_timers(&mut e, &ws.trig.indexed);
    }
    Ok(e.finish())
}

/// The checkpoint's part of a spill row (what [`encode_windows`] wrote).
///
/// # Errors
/// Corrupt bytes.
pub(crate) fn spilled_windows<'a>(row: &'a [u8], name: &'a str) -> Result<&'a [u8]> {
    Dec::new(row, name).bytes()
}

/// Decodes a spill row ([`encode_spilled`]).
///
/// # Errors
/// Corrupt bytes.
pub(crate) fn decode_spilled(
    row: &[u8],
    trigger: &Trigger,
    combine: Option<&dyn CombineFnInvoker>,
    lifted: bool,
    coder: &Coder,
    name: &str,
) -> Result<Vec<(Window, WinState)>> {
    let mut d = Dec::new(row, name);
    let mut windows = decode_windows(d.bytes()?, trigger, combine, lifted, coder, name)?;
    for (_, ws) in &mut windows {
        ws.trig.indexed = get_timers(&mut d)?;
    }
    d.end()?;
    Ok(windows)
}
