//! A streaming source in checkpoints: its watermark, end, and the position of each
//! reader after the last bundle the pipeline took (bundles read ahead are read again).

use super::SourceOp;
use crate::checkpoint::codec::{Dec, Enc};
use crate::checkpoint::{NodeState, StateOut};
use crate::error::{EngineError, Result};
use crate::operators::guard::guarded;
use crate::source::UnboundedSource;

/// Saves the source's watermark, end and reader positions.
pub(super) fn snapshot(op: &mut SourceOp, out: &mut StateOut, name: &str) -> Result<()> {
    if op.unresumable {
        return Err(EngineError::Checkpoint(format!(
            "source '{name}' cannot resume from a position: it cannot be checkpointed"
        )));
    }
    let mut e = Enc::new();
    e.bool(op.finished).i64(op.wm).u64(op.next_lane as u64);
    // Before the readers start, these are the positions restored (if any).
    e.u64(op.positions.len() as u64);
    for p in &op.positions {
        e.bool(p.is_some()).bytes(p.as_deref().unwrap_or_default());
    }
    e.u64(op.lane_wm.len() as u64);
    for (wm, done) in op.lane_wm.iter().zip(&op.lane_done) {
        e.i64(*wm).bool(*done);
    }
    out.put(b"", e.finish());
    Ok(())
}

/// Takes back the watermark, end and the positions the readers resume from.
pub(super) fn restore(op: &mut SourceOp, state: &NodeState, name: &str) -> Result<()> {
    let Some(bytes) = state.entries.get(&b""[..]) else {
        return Ok(());
    };
    let mut d = Dec::new(bytes, name);
    op.finished = d.bool()?;
    op.wm = d.i64()?;
    // The lane read next: bundles go downstream in the order they did before.
    op.next_lane = d.u64()? as usize;
    let mut positions = Vec::new();
    for _ in 0..d.count()? {
        let some = d.bool()?;
        let p = d.bytes()?;
        positions.push(some.then(|| p.to_vec()));
    }
    let lanes = d.count()?;
    op.lane_wm = Vec::with_capacity(lanes);
    op.lane_done = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        op.lane_wm.push(d.i64()?);
        op.lane_done.push(d.bool()?);
    }
    d.end()?;
    op.positions = positions.clone();
    op.resume = (!positions.is_empty()).then_some(positions);
    Ok(())
}

/// Moves each reader (the parts of a split source, or the one reader) to its saved
/// position; a part without one starts at its beginning.
pub(super) fn resume_parts(
    name: &str,
    parts: &mut [Box<dyn UnboundedSource>],
    positions: &[Option<Vec<u8>>],
) -> Result<()> {
    if parts.len() != positions.len() {
        return Err(EngineError::Checkpoint(format!(
            "source '{name}' was read by {} readers when checkpointed and would be read by {} \
             now: run it with the same --threads as before",
            positions.len(),
            parts.len()
        )));
    }
    for (reader, p) in parts.iter_mut().zip(positions) {
        if let Some(p) = p {
            guarded(name, || reader.restore(p))?;
        }
    }
    Ok(())
}
