//! Elements on the wire: encoding a PCollection's elements into records (with their key's
//! hash) and decoding them back.

use crate::adapter::Batch;
use beamline_engine::coder::Coder;
use beamline_engine::element_codec::{decode_windowed, encode_windowed};
use beamline_engine::graph::Graph;
use beamline_engine::operators::partition::key_hash;
use beamline_engine::window::WindowedValue;
use beamline_engine::EngineError;

/// Encodes elements of a PCollection for the wire: the element, and its key's hash when
/// the PCollection is key/value.
#[derive(Clone)]
pub(crate) struct Encoder {
    coder: Coder,
    key: Option<Coder>,
    name: String,
}

impl Encoder {
    /// The encoder of PCollection `pc`, written by transform `transform`.
    pub(crate) fn new(graph: &Graph, pc: usize, transform: &str) -> Self {
        let coder = graph.pcollections[pc].coder.clone();
        let key = match &coder {
            Coder::Kv(k, _) => Some((**k).clone()),
            _ => None,
        };
        Encoder {
            coder,
            key,
            name: transform.to_string(),
        }
    }

    /// Appends the records of `elements` (emptied) to `out`.
    ///
    /// # Errors
    /// An element its coder cannot encode, naming the transform.
    pub(crate) fn encode(
        &self,
        elements: &mut Vec<WindowedValue>,
        out: &mut Batch,
    ) -> Result<(), EngineError> {
        let coder_err = |source| EngineError::Coder {
            transform: self.name.clone(),
            source,
        };
        out.reserve(elements.len());
        let mut key = Vec::new();
        for wv in elements.drain(..) {
            let mut bytes = Vec::new();
            encode_windowed(&self.coder, &wv, &mut bytes).map_err(coder_err)?;
            let hash = match (&self.key, wv.value.as_kv()) {
                (Some(kc), Some((k, _))) => {
                    key.clear();
                    kc.encode(&k, &mut key, false).map_err(coder_err)?;
                    key_hash(&key)
                }
                _ => 0,
            };
            out.push((hash, bytes));
        }
        Ok(())
    }
}

/// Decodes `batch` (emptied) of a PCollection with `coder`, read by transform `transform`.
///
/// # Errors
/// Bytes the coder cannot decode, naming the transform.
pub(crate) fn decode(
    coder: &Coder,
    batch: &mut Batch,
    transform: &str,
) -> Result<Vec<WindowedValue>, EngineError> {
    let mut elements = Vec::with_capacity(batch.len());
    for (_, bytes) in batch.drain(..) {
        let wv =
            decode_windowed(coder, &mut bytes.as_slice()).map_err(|source| EngineError::Coder {
                transform: transform.to_string(),
                source,
            })?;
        elements.push(wv);
    }
    Ok(elements)
}
