//! A streaming ParDo's checkpoint entries as bytes: its side inputs with the elements
//! waiting for them, and a stateful DoFn's cells and timers per key and window.

use crate::checkpoint::codec::{Dec, Enc};
use crate::coder::{Coder, CoderError};
use crate::dofn::SideInputData;
use crate::element_codec::{decode_windowed, encode_windowed};
use crate::error::{EngineError, Result};
use crate::state::{StateCell, StateKind, TimeDomain};
use crate::state_codec::{decode_cell, encode_cell};
use crate::window::{PaneInfo, Window, WindowedValue};
use rustc_hash::FxHashMap;

/// The entry of the side inputs and waiting elements.
pub(crate) const SIDES: &[u8] = &[0];

/// A stateful DoFn's timers of one key and window: name to (domain, fire, output time).
pub(crate) type Timers = FxHashMap<String, (TimeDomain, i64, i64)>;

/// The entry of a key (its encoding) and window.
pub(crate) fn state_key(kb: &[u8], w: &Window) -> Vec<u8> {
    let mut e = Enc(vec![1]);
    e.bytes(kb).window(w);
    e.finish()
}

/// The key and window of an entry [`state_key`] made.
///
/// # Errors
/// When the entry is not one.
pub(crate) fn decode_state_key(key: &[u8], name: &str) -> Result<(Vec<u8>, Window)> {
    let mut k = Dec::new(key.get(1..).unwrap_or_default(), name);
    let kb = k.bytes()?.to_vec();
    let window = k.window()?;
    k.end()?;
    Ok((kb, window))
}

fn coder_err(name: &str) -> impl Fn(CoderError) -> EngineError + '_ {
    move |source| EngineError::Coder {
        transform: name.to_string(),
        source,
    }
}

/// Encodes the side inputs' values per window and the main elements waiting for them.
///
/// # Errors
/// A value its coder cannot encode.
pub(crate) fn encode_sides(
    sides: &[SideInputData],
    side_coders: &[Coder],
    pushback: &[WindowedValue],
    main: &Coder,
    name: &str,
) -> Result<Vec<u8>> {
    let mut e = Enc::new();
    e.u64(sides.len() as u64);
    for (side, coder) in sides.iter().zip(side_coders) {
        let windows: Vec<_> = side.windows().collect();
        e.u64(windows.len() as u64);
        for (w, values) in windows {
            e.window(w).u64(values.len() as u64);
            for v in values {
                coder.encode(v, &mut e.0, true).map_err(coder_err(name))?;
            }
        }
    }
    e.u64(pushback.len() as u64);
    for wv in pushback {
        encode_windowed(main, wv, &mut e.0).map_err(coder_err(name))?;
    }
    Ok(e.finish())
}

/// Refills `sides` from what [`encode_sides`] wrote; returns the waiting elements.
///
/// # Errors
/// Corrupt bytes; another number of side inputs.
pub(crate) fn decode_sides(
    bytes: &[u8],
    sides: &mut [SideInputData],
    side_coders: &[Coder],
    main: &Coder,
    name: &str,
) -> Result<Vec<WindowedValue>> {
    let mut d = Dec::new(bytes, name);
    let n = d.count()?;
    if n != sides.len() {
        return Err(EngineError::Checkpoint(format!(
            "'{name}' had {n} side inputs when checkpointed, now {}",
            sides.len()
        )));
    }
    for (side, coder) in sides.iter_mut().zip(side_coders) {
        for _ in 0..d.count()? {
            let window = d.window()?;
            let count = d.count()?;
            let mut rest = d.rest();
            for _ in 0..count {
                let value = coder.decode(&mut rest, true).map_err(coder_err(name))?;
                side.push(WindowedValue {
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
    let mut pushback = Vec::with_capacity(count);
    for _ in 0..count {
        pushback.push(decode_windowed(main, &mut rest).map_err(coder_err(name))?);
    }
    d.advance_to(rest);
    d.end()?;
    Ok(pushback)
}

/// Encodes a key and window's cells (one per declaration) and timers.
///
/// # Errors
/// A cell that does not fit its declaration.
pub(crate) fn encode_cells(
    decls: &[(String, StateKind)],
    cells: &[StateCell],
    timers: &Timers,
    name: &str,
) -> Result<Vec<u8>> {
    let mut e = Enc::new();
    let empty = StateCell::default();
    for (i, (_, kind)) in decls.iter().enumerate() {
        // Cells never written are empty: a key's cells may be fewer than the declarations.
        let cell = cells.get(i).unwrap_or(&empty);
        encode_cell(kind, cell, &mut e.0).map_err(|u| EngineError::user(name, u))?;
    }
    let mut sorted: Vec<_> = timers.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    e.u64(sorted.len() as u64);
    for (timer, (domain, fire, output)) in sorted {
        e.bytes(timer.as_bytes());
        e.u64(matches!(domain, TimeDomain::ProcessingTime) as u64);
        e.i64(*fire).i64(*output);
    }
    Ok(e.finish())
}

/// Decodes what [`encode_cells`] wrote.
///
/// # Errors
/// Corrupt bytes; cells of other declarations.
pub(crate) fn decode_cells(
    decls: &[(String, StateKind)],
    bytes: &[u8],
    name: &str,
) -> Result<(Vec<StateCell>, Timers)> {
    let mut rest = bytes;
    let mut cells = Vec::with_capacity(decls.len());
    for (_, kind) in decls {
        cells.push(
            decode_cell(kind, &mut rest).map_err(|u| {
                EngineError::Checkpoint(format!("the saved state of '{name}': {u}"))
            })?,
        );
    }
    let mut d = Dec::new(rest, name);
    let mut timers = Timers::default();
    for _ in 0..d.count()? {
        let timer = String::from_utf8(d.bytes()?.to_vec()).map_err(|_| {
            EngineError::Checkpoint(format!("the saved state of '{name}': a timer's name"))
        })?;
        let domain = match d.u64()? {
            0 => TimeDomain::Watermark,
            _ => TimeDomain::ProcessingTime,
        };
        let (fire, output) = (d.i64()?, d.i64()?);
        timers.insert(timer, (domain, fire, output));
    }
    d.end()?;
    Ok((cells, timers))
}
