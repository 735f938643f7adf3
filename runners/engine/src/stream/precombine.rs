//! Combiner lifting in streaming: a CombinePerKey right after a source's fused transforms
//! folds each bundle's elements into one accumulator per key and window on the source's
//! worker threads; the grouping operator then merges those partial results, so per-element work
//! leaves the executor's thread.
//!
//! The grouping sees the same bundle, counts and holds as without lifting: a bundle's
//! elements are added together either way. Lifting is used only where that is exact:
//! non-merging windows, a lifted combine, and output timestamps at the end of the window
//! or the latest input (a partial result keeps the latest timestamp; the earliest one
//! the output watermark does not pass cannot be recovered from one partial result).

use super::keys::KeyBytes;
use crate::coder::Coder;
use crate::combine::{Accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result};
use crate::exec::panics_guarded;
use crate::graph::{Graph, NodeKind, Windowing};
use crate::value::Value;
use crate::window::{TimestampCombiner, Window, WindowedValue};
use hashbrown::HashTable;
use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;
use std::sync::Arc;

/// One bundle's elements of a key and window, folded.
pub(super) struct Partial {
    pub kb: KeyBytes,
    pub key: Value,
    pub window: Window,
    pub acc: Accumulator,
    /// Elements folded in.
    pub count: usize,
    /// Their latest timestamp.
    pub latest: i64,
}

/// Partial results handed from a source's worker threads to the grouping operator.
pub(super) type Mailbox = Arc<Mutex<Vec<Partial>>>;

/// What the grouping of `node` needs to be lifted: its key coder, the input's windowing
/// and the combine; `None` when lifting would not be exact (see the module docs).
pub(super) fn liftable(
    graph: &Graph,
    node: usize,
) -> Option<(Coder, Windowing, Arc<dyn CombineFnInvoker>)> {
    let n = &graph.nodes[node];
    let NodeKind::CombinePerKey { combine_fn } = &n.kind else {
        return None;
    };
    let input = &graph.pcollections[*n.inputs.first()?];
    let Coder::Kv(key_coder, _) = &input.coder else {
        return None;
    };
    let w = &input.windowing;
    let exact_timestamps = matches!(
        w.timestamp_combiner,
        TimestampCombiner::EndOfWindow | TimestampCombiner::Latest
    );
    let lifted = !w.accumulating || combine_fn.create_accumulator().try_clone().is_some();
    (exact_timestamps && lifted && !w.window_fn.is_merging())
        .then(|| ((**key_coder).clone(), w.clone(), combine_fn.clone()))
}

/// Folds elements per key and window (on a source's worker thread).
pub(super) struct PreCombine {
    /// The CombinePerKey's name, for errors.
    name: String,
    key_coder: Coder,
    combine: Arc<dyn CombineFnInvoker>,
    key_buf: Vec<u8>,
    /// Positions in `parts` by hash of key bytes and window: small enough to stay in
    /// cache, so only the matching partial result is read.
    index: HashTable<(u64, usize)>,
    parts: Vec<Partial>,
}

impl PreCombine {
    pub(super) fn new(name: String, key_coder: Coder, combine: Arc<dyn CombineFnInvoker>) -> Self {
        PreCombine {
            name,
            key_coder,
            combine,
            key_buf: Vec::new(),
            index: HashTable::new(),
            parts: Vec::new(),
        }
    }

    /// Folds the elements of `batch` in, leaving it empty.
    ///
    /// # Errors
    /// An element that is not key/value, a key that does not encode, or a failing
    /// combine, naming the CombinePerKey.
    pub(super) fn add(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        let name = self.name.clone();
        panics_guarded(&name, || {
            for wv in batch.drain(..) {
                let (key, value) = match wv.value {
                    Value::Kv(kv) => *kv,
                    other => {
                        return Err(EngineError::user(
                            &self.name,
                            format!("expected a key/value element, got a {} value", other.kind()),
                        ))
                    }
                };
                self.key_buf.clear();
                self.key_coder
                    .encode(&key, &mut self.key_buf, false)
                    .map_err(|source| EngineError::Coder {
                        transform: self.name.clone(),
                        source,
                    })?;
                let (bytes, window) = (&self.key_buf[..], wv.window);
                let hash = FxBuildHasher.hash_one((bytes, window));
                let parts = &mut self.parts;
                let &mut (_, i) = self
                    .index
                    .entry(
                        hash,
                        |&(h, i)| {
                            h == hash && parts[i].window == window && parts[i].kb.bytes() == bytes
                        },
                        |&(h, _)| h,
                    )
                    .or_insert_with(|| {
                        parts.push(Partial {
                            kb: KeyBytes::new(bytes),
                            key,
                            window,
                            acc: self.combine.create_accumulator(),
                            count: 0,
                            latest: i64::MIN,
                        });
                        (hash, parts.len() - 1)
                    })
                    .into_mut();
                let p = &mut self.parts[i];
                self.combine
                    .add_input(&mut p.acc, value)
                    .map_err(|e| EngineError::user(&self.name, e))?;
                p.count += 1;
                p.latest = p.latest.max(wv.timestamp);
            }
            Ok(())
        })
    }

    /// The bundle's partial results, in order of first arrival; starts the next bundle.
    pub(super) fn take(&mut self) -> Vec<Partial> {
        self.index.clear();
        // The next bundle likely has as many keys and windows: size for them at once.
        let next = Vec::with_capacity(self.parts.len());
        std::mem::replace(&mut self.parts, next)
    }
}
