//! What a source saves in a checkpoint: whether its part ended, its watermark and step,
//! and its reader's position.

use beamline_engine::checkpoint::codec::{Dec, Enc};
use beamline_engine::EngineError;

/// Key of a source's own entry in its checkpoint state.
pub(crate) const SOURCE_KEY: &[u8] = b"\0source";

/// A source's own state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceState {
    /// Its part was read to the end.
    pub finished: bool,
    /// Its watermark.
    pub wm: i64,
    /// Bundles it emitted (the step of its times).
    pub step: u64,
    /// Where its reader is (`None`: this worker has no part).
    pub position: Option<Vec<u8>>,
}

impl SourceState {
    /// Its bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.bool(self.finished)
            .i64(self.wm)
            .u64(self.step)
            .bool(self.position.is_some());
        if let Some(pos) = &self.position {
            e.bytes(pos);
        }
        e.finish()
    }

    /// Reads what [`SourceState::encode`] wrote for source `name`.
    ///
    /// # Errors
    /// Corrupt bytes, naming the source.
    pub(crate) fn decode(bytes: &[u8], name: &str) -> Result<SourceState, EngineError> {
        let mut d = Dec::new(bytes, name);
        let finished = d.bool()?;
        let wm = d.i64()?;
        let step = d.u64()?;
        let position = if d.bool()? {
            Some(d.bytes()?.to_vec())
        } else {
            None
        };
        d.end()?;
        Ok(SourceState {
            finished,
            wm,
            step,
            position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        for position in [None, Some(vec![1, 2, 3])] {
            let s = SourceState {
                finished: position.is_none(),
                wm: -5,
                step: 42,
                position,
            };
            let bytes = s.encode();
            assert_eq!(SourceState::decode(&bytes, "Read").unwrap(), s);
            let cut = SourceState::decode(&bytes[..bytes.len() - 1], "Read");
            assert!(cut.unwrap_err().to_string().contains("Read"));
        }
    }
}
