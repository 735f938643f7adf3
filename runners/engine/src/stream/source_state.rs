//! A streaming source's checkpoint entry: its watermark and end, the lane it reads next,
//! and the position of each reader after the last bundle the pipeline took (bundles read
//! ahead are read again after a restore).

use crate::checkpoint::codec::{Dec, Enc};
use crate::error::{EngineError, Result};
use crate::operators::guard::guarded;
use crate::source::UnboundedSource;

/// What a source saves.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SourceState {
    pub finished: bool,
    pub wm: i64,
    pub next_lane: usize,
    /// Per reader (the parts of a split source, or the one reader): where to resume;
    /// `None` for a part that delivered nothing yet.
    pub positions: Vec<Option<Vec<u8>>>,
    /// Per part of a split source: its watermark and whether it ended.
    pub lanes: Vec<(i64, bool)>,
}

impl SourceState {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.bool(self.finished)
            .i64(self.wm)
            .u64(self.next_lane as u64);
        e.u64(self.positions.len() as u64);
        for p in &self.positions {
            e.bool(p.is_some()).bytes(p.as_deref().unwrap_or_default());
        }
        e.u64(self.lanes.len() as u64);
        for &(wm, done) in &self.lanes {
            e.i64(wm).bool(done);
        }
        e.finish()
    }

    pub(super) fn decode(bytes: &[u8], name: &str) -> Result<Self> {
        let mut d = Dec::new(bytes, name);
        let mut s = SourceState {
            finished: d.bool()?,
            wm: d.i64()?,
            next_lane: d.u64()? as usize,
            ..SourceState::default()
        };
        for _ in 0..d.count()? {
            let some = d.bool()?;
            let p = d.bytes()?;
            s.positions.push(some.then(|| p.to_vec()));
        }
        for _ in 0..d.count()? {
            s.lanes.push((d.i64()?, d.bool()?));
        }
        d.end()?;
        Ok(s)
    }
}

/// Moves each reader (the parts of a split source, or the one reader) to its saved
/// position; a part without one starts at its beginning.
///
/// # Errors
/// Another number of readers than saved; a reader refusing its position.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_state_reads_back() {
        let s = SourceState {
            finished: false,
            wm: -7,
            next_lane: 1,
            positions: vec![Some(vec![1, 2]), None],
            lanes: vec![(5, false), (i64::MAX, true)],
        };
        assert_eq!(SourceState::decode(&s.encode(), "Events").unwrap(), s);
        assert!(SourceState::decode(&s.encode()[..5], "Events").is_err());
    }
}
