//! The streaming executor's checkpoint data of its own: processing time and the
//! watermarks of every PCollection and transform, and the names of checkpoint metrics.

use crate::checkpoint::codec::{Dec, Enc};
use crate::error::{EngineError, Result};

/// Where the checkpoint metrics are reported (a step of their own).
pub const CHECKPOINT_STEP: &str = "(checkpoints)";

/// Metric namespace of checkpoint metrics.
pub(super) const NS: &str = "beamline.checkpoint";

/// Encodes the time and the watermark vectors.
pub(super) fn encode_job(now: i64, watermarks: [&[i64]; 3]) -> Vec<u8> {
    let mut e = Enc::new();
    e.i64(now);
    for v in watermarks {
        e.u64(v.len() as u64);
        for &w in v {
            e.i64(w);
        }
    }
    e.finish()
}

/// Decodes what [`encode_job`] wrote, checking each vector has the length in `lens`.
///
/// # Errors
/// Corrupt bytes; vectors of other lengths (another pipeline).
pub(super) fn decode_job(bytes: &[u8], lens: [usize; 3]) -> Result<(i64, [Vec<i64>; 3])> {
    let mut d = Dec::new(bytes, "the scheduler");
    let now = d.i64()?;
    let mut vecs: [Vec<i64>; 3] = Default::default();
    for (v, expected) in vecs.iter_mut().zip(lens) {
        let n = d.count()?;
        if n != expected {
            return Err(EngineError::Checkpoint(
                "the pipeline's shape differs from the checkpoint's".into(),
            ));
        }
        *v = (0..n).map(|_| d.i64()).collect::<Result<Vec<_>>>()?;
    }
    d.end()?;
    Ok((now, vecs))
}
