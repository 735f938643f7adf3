//! A streaming grouping's panes in checkpoints: one entry per key (its encoding) holding
//! every window of the key: contents, trigger state and timers, hold, pane indexes.
//! Restoring rebuilds the timer, hold and expiry indexes from the windows.

use super::{add_hold, end_of, GbkOp, KeyBytes, KeyState};
use crate::checkpoint::codec::{Dec, Enc};
use crate::checkpoint::{NodeState, StateOut};
use crate::coder::Coder;
use crate::combine::{decode_accumulator, encode_accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result};
use crate::operators::pane::{Contents, TriggerPart, WinState, Windows};
use crate::trigger::{Domain, TimerList, TriggerState, TriggerTimer};

fn value_coder<'a>(op: &'a GbkOp, name: &str) -> Result<&'a Coder> {
    op.value_coder.as_ref().ok_or_else(|| {
        EngineError::Checkpoint(format!(
            "transform '{name}' was built without its value coder: it cannot be checkpointed"
        ))
    })
}

fn encode_key(
    ks: &KeyState,
    coder: &Coder,
    combine: Option<&dyn CombineFnInvoker>,
    name: &str,
) -> Result<Vec<u8>> {
    let mut e = Enc::new();
    let windows: Vec<_> = ks.windows.iter().collect();
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
        e.u64(ws.trig.timers.len() as u64);
        for t in &ws.trig.timers {
            e.u64(match t.domain {
                Domain::Watermark => 0,
                Domain::ProcessingTime => 1,
            });
            e.u64(u64::from(t.id)).i64(t.timestamp);
        }
        e.bool(ws.hold.is_some()).i64(ws.hold.unwrap_or(0));
        e.i64(ws.index).i64(ws.nonspeculative).bool(ws.tombstone);
    }
    Ok(e.finish())
}

/// Writes the panes of every key (full checkpoint) or of the keys changed since the last.
pub(super) fn snapshot(op: &mut GbkOp, out: &mut StateOut, name: &str) -> Result<()> {
    let coder = value_coder(op, name)?.clone();
    let panes = &mut op.panes;
    let combine = panes.combine.clone();
    let combine = combine.as_deref();
    match panes.dirty.take() {
        Some(mut dirty) if !out.full() => {
            for kb in dirty.drain() {
                match panes.keys.get(&kb) {
                    Some(ks) => out.put(kb.bytes(), encode_key(ks, &coder, combine, name)?),
                    None => out.delete(kb.bytes()),
                }
            }
            panes.dirty = Some(dirty);
        }
        _ => {
            for (kb, ks) in panes.keys.iter() {
                out.put(kb.bytes(), encode_key(ks, &coder, combine, name)?);
            }
            panes.dirty = Some(Default::default());
        }
    }
    Ok(())
}

fn decode_windows(
    d: &mut Dec<'_>,
    op: &GbkOp,
    coder: &Coder,
    name: &str,
) -> Result<Vec<(crate::window::Window, WinState)>> {
    let panes = &op.panes;
    let trigger = &panes.windowing.trigger;
    let combine = panes.combine.as_deref();
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
        let has_hold = d.bool()?;
        let hold = d.i64()?;
        let mut ws = WinState::new(trigger, combine, panes.lifted);
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

/// Puts back the panes of every key saved, with their timers, holds and expiry.
pub(super) fn restore(op: &mut GbkOp, state: &NodeState, name: &str) -> Result<()> {
    let coder = value_coder(op, name)?.clone();
    for (key_bytes, value) in &state.entries {
        let mut d = Dec::new(value, name);
        let windows = decode_windows(&mut d, op, &coder, name)?;
        let key = op
            .key_coder
            .decode(&mut key_bytes.as_slice(), false)
            .map_err(|source| EngineError::Coder {
                transform: name.to_string(),
                source,
            })?;
        let kb = KeyBytes::new(key_bytes);
        let panes = &mut op.panes;
        let lateness = panes.windowing.allowed_lateness;
        let mut ws_all = Windows::default();
        for (w, ws) in windows {
            if let Some(h) = ws.hold {
                add_hold(&mut panes.holds, h);
            }
            panes
                .expiry
                .push(end_of(&w).saturating_add(lateness), kb.clone(), w);
            ws_all.insert(w, ws);
        }
        let windows: Vec<_> = ws_all.windows().collect();
        panes.keys.get_or_insert_with(&kb, || KeyState {
            key,
            windows: ws_all,
            staged: Vec::new(),
        });
        for w in windows {
            panes.index_timers(&kb, w);
        }
    }
    op.panes.dirty = Some(Default::default());
    Ok(())
}
