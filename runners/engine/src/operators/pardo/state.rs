//! A streaming ParDo in checkpoints: side inputs and the elements waiting for them (one
//! entry), a stateful DoFn's cells and timers (one entry per key and window), and the
//! commit records of a DoFn that writes output in two phases.

use super::{st_indexes, KeyWindow, ParDoOp};
use crate::checkpoint::codec::{Dec, Enc};
use crate::checkpoint::{NodeState, StateOut};
use crate::element_codec::{decode_windowed, encode_windowed};
use crate::error::{EngineError, Result};
use crate::operators::guard::guarded;
use crate::state::TimeDomain;
use crate::state_codec::{decode_cell, encode_cell};
use crate::window::{PaneInfo, Window, WindowedValue};
use rustc_hash::FxHashMap;

/// The entry of the side inputs and waiting elements.
const SIDES: &[u8] = &[0];

fn state_key(kb: &[u8], w: &Window) -> Vec<u8> {
    let mut e = Enc(vec![1]);
    e.bytes(kb).window(w);
    e.finish()
}

fn coder_err(name: &str) -> impl Fn(crate::coder::CoderError) -> EngineError + '_ {
    move |source| EngineError::Coder {
        transform: name.to_string(),
        source,
    }
}

fn encode_sides(op: &ParDoOp, name: &str) -> Result<Vec<u8>> {
    let mut e = Enc::new();
    e.u64(op.sides.len() as u64);
    for (side, coder) in op.sides.iter().zip(&op.coders.1) {
        let windows: Vec<_> = side.windows().collect();
        e.u64(windows.len() as u64);
        for (w, values) in windows {
            e.window(w).u64(values.len() as u64);
            for v in values {
                coder.encode(v, &mut e.0, true).map_err(coder_err(name))?;
            }
        }
    }
    e.u64(op.pushback.len() as u64);
    for wv in &op.pushback {
        encode_windowed(&op.coders.0, wv, &mut e.0).map_err(coder_err(name))?;
    }
    Ok(e.finish())
}

fn encode_entry(entry: &KeyWindow, op: &ParDoOp, name: &str) -> Result<Vec<u8>> {
    let st = op.stateful.as_ref().expect("stateful");
    let mut e = Enc::new();
    for ((_, kind), cell) in st.decls.iter().zip(&entry.cells) {
        encode_cell(kind, cell, &mut e.0).map_err(|u| EngineError::user(name, u))?;
    }
    // Cells never written are empty: a key's cells may be fewer than the declarations.
    for (_, kind) in st.decls.iter().skip(entry.cells.len()) {
        encode_cell(kind, &Default::default(), &mut e.0).map_err(|u| EngineError::user(name, u))?;
    }
    let mut timers: Vec<_> = entry.timers.iter().collect();
    timers.sort_by(|a, b| a.0.cmp(b.0));
    e.u64(timers.len() as u64);
    for (timer, (domain, fire, output)) in timers {
        e.bytes(timer.as_bytes());
        e.u64(matches!(domain, TimeDomain::ProcessingTime) as u64);
        e.i64(*fire).i64(*output);
    }
    Ok(e.finish())
}

/// Saves the side inputs (when changed), the changed keys and windows of a stateful DoFn
/// (all of them in a full checkpoint), and the DoFn's commit record.
pub(super) fn snapshot(op: &mut ParDoOp, out: &mut StateOut, name: &str) -> Result<()> {
    if op.backend.is_some() {
        return Err(EngineError::Checkpoint(format!(
            "'{name}' keeps its state in the runner's state service, which checkpoints it"
        )));
    }
    // Every checkpoint asks the DoFn (created if it saw nothing yet): a sink's record
    // also says which checkpoint its visible output is as of.
    ensure_instance(op, name)?;
    let inv = op.inst.as_mut().expect("created");
    let id = out.id();
    if let Some(record) = guarded(name, || inv.prepare_commit(id))? {
        out.commit_record(record);
    }
    if out.full() || op.sides_changed {
        if op.sides.is_empty() && op.pushback.is_empty() {
            out.delete(SIDES);
        } else {
            out.put(SIDES, encode_sides(op, name)?);
        }
        op.sides_changed = false;
    }
    let Some(st) = &mut op.stateful else {
        return Ok(());
    };
    let dirty = st.dirty.take();
    let keys: Vec<(Vec<u8>, Window)> = match dirty {
        Some(d) if !out.full() => d.into_iter().collect(),
        _ => st.states.keys().cloned().collect(),
    };
    for (kb, w) in keys {
        let key = state_key(&kb, &w);
        match op.stateful.as_ref().expect("stateful").states.get(&(kb, w)) {
            Some(entry) => out.put(&key, encode_entry(entry, op, name)?),
            None => out.delete(&key),
        }
    }
    op.stateful.as_mut().expect("stateful").dirty = Some(Default::default());
    Ok(())
}

fn restore_sides(op: &mut ParDoOp, bytes: &[u8], name: &str) -> Result<()> {
    let mut d = Dec::new(bytes, name);
    let n = d.count()?;
    if n != op.sides.len() {
        return Err(EngineError::Checkpoint(format!(
            "'{name}' had {n} side inputs when checkpointed, now {}",
            op.sides.len()
        )));
    }
    for i in 0..n {
        for _ in 0..d.count()? {
            let window = d.window()?;
            let count = d.count()?;
            let mut rest = d.rest();
            for _ in 0..count {
                let value = op.coders.1[i]
                    .decode(&mut rest, true)
                    .map_err(coder_err(name))?;
                op.sides[i].push(WindowedValue {
                    value,
                    timestamp: window.max_timestamp(),
                    window,
                    pane: PaneInfo::NO_FIRING,
                });
            }
            d.advance_to(rest);
        }
    }
    let count = d.count()?;
    let mut rest = d.rest();
    for _ in 0..count {
        op.pushback
            .push(decode_windowed(&op.coders.0, &mut rest).map_err(coder_err(name))?);
    }
    d.advance_to(rest);
    d.end()
}

fn restore_entry(op: &mut ParDoOp, key: &[u8], bytes: &[u8], name: &str) -> Result<()> {
    let mut k = Dec::new(&key[1..], name);
    let kb = k.bytes()?.to_vec();
    let window = k.window()?;
    k.end()?;
    let st = op.stateful.as_mut().ok_or_else(|| {
        EngineError::Checkpoint(format!(
            "'{name}' has saved state but is no longer stateful"
        ))
    })?;
    let mut rest = bytes;
    let mut cells = Vec::with_capacity(st.decls.len());
    for (_, kind) in &st.decls {
        cells.push(
            decode_cell(kind, &mut rest).map_err(|u| {
                EngineError::Checkpoint(format!("the saved state of '{name}': {u}"))
            })?,
        );
    }
    let mut d = Dec::new(rest, name);
    let mut timers = FxHashMap::default();
    for _ in 0..d.count()? {
        let timer = String::from_utf8(d.bytes()?.to_vec()).map_err(|_| {
            EngineError::Checkpoint(format!("the saved state of '{name}': a timer's name"))
        })?;
        let domain = match d.u64()? {
            0 => TimeDomain::Watermark,
            _ => TimeDomain::ProcessingTime,
        };
        let (fire, output) = (d.i64()?, d.i64()?);
        st_indexes(&mut st.event_timers, &mut st.processing_timers, domain).insert((
            fire,
            kb.clone(),
            window,
            timer.clone(),
        ));
        timers.insert(timer, (domain, fire, output));
    }
    d.end()?;
    let key = st
        .key_coder
        .decode(&mut kb.as_slice(), false)
        .map_err(coder_err(name))?;
    *st.windows.entry(window).or_insert(0) += 1;
    st.states
        .insert((kb, window), KeyWindow { key, cells, timers });
    Ok(())
}

/// Puts back side inputs, waiting elements, and every key and window's state.
pub(super) fn restore(op: &mut ParDoOp, state: &NodeState, name: &str) -> Result<()> {
    for (key, bytes) in &state.entries {
        match key.first() {
            Some(0) if key.as_slice() == SIDES => restore_sides(op, bytes, name)?,
            Some(1) => restore_entry(op, key, bytes, name)?,
            _ => {
                return Err(EngineError::Checkpoint(format!(
                    "the saved state of '{name}' has an entry of unknown kind"
                )))
            }
        }
    }
    if let Some(st) = &mut op.stateful {
        st.dirty = Some(Default::default());
    }
    op.sides_changed = false;
    Ok(())
}

/// Commits the DoFn's records (creating the DoFn when the job was just restored).
pub(super) fn commit(op: &mut ParDoOp, records: &[Vec<u8>], name: &str) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    ensure_instance(op, name)?;
    let inv = op.inst.as_mut().expect("created");
    for r in records {
        guarded(name, || inv.commit(r))?;
    }
    Ok(())
}

/// Creates and sets up the DoFn if it does not exist yet.
fn ensure_instance(op: &mut ParDoOp, name: &str) -> Result<()> {
    if op.inst.is_none() {
        let f = op.factory.clone();
        let mut inv = guarded(name, || Ok(f()))?;
        guarded(name, || inv.setup())?;
        op.inst = Some(inv);
    }
    Ok(())
}
