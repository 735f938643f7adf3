//! Combiner lifting in streaming: a CombinePerKey right after a source's fused transforms
//! folds each bundle's elements into one accumulator per key and window on the source's
//! worker threads; the grouping operator then merges those partial results, so per-element work
//! leaves the executor's thread.
//!
//! The grouping sees the same bundle, counts and holds as without lifting: a bundle's
//! elements are added together either way. Lifting is used only where that is exact
//! ([`crate::plan::lifts`] with triggered panes).

use super::guard::panics_guarded;
use super::key_table::KeyBytes;
use super::slot_table::{Folding, SlotTable, Taken};
use crate::coder::Coder;
use crate::combine::{Accumulator, CombineFnInvoker};
use crate::error::{EngineError, Result};
use crate::value::Value;
use crate::window::{Window, WindowedValue};
use hashbrown::HashTable;
use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;
use std::sync::Arc;

/// One bundle's elements of a key and window, folded: what crosses the exchange instead
/// of the elements (its accumulator encodes with [`crate::combine::encode_accumulator`]).
pub struct Partial {
    pub(crate) kb: KeyBytes,
    /// The key.
    pub key: Value,
    /// The window.
    pub window: Window,
    /// The accumulator of the elements.
    pub acc: Accumulator,
    /// Elements folded in.
    pub count: usize,
    /// Their latest timestamp.
    pub latest: i64,
}

impl std::fmt::Debug for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial")
            .field("key", &self.key)
            .field("window", &self.window)
            .field("count", &self.count)
            .field("latest", &self.latest)
            .finish_non_exhaustive()
    }
}

impl Partial {
    /// A partial result read back from another process: `key_bytes` is the key encoded
    /// with the key coder (outer context), `key` the same key decoded.
    pub fn new(
        key_bytes: &[u8],
        key: Value,
        window: Window,
        acc: Accumulator,
        count: usize,
        latest: i64,
    ) -> Self {
        Partial {
            kb: KeyBytes::new(key_bytes),
            key,
            window,
            acc,
            count,
            latest,
        }
    }

    /// The key encoded with the key coder (outer context): what a keyed exchange hashes.
    pub fn key_bytes(&self) -> &[u8] {
        self.kb.bytes()
    }

    /// Encodes this partial result for another process: the key's bytes (length
    /// first), the window, the count, the latest timestamp, then the accumulator in
    /// `acc_coder` (the combine's declared accumulator coder).
    ///
    /// # Errors
    /// An accumulator the combine cannot turn into a value, or the coder cannot encode.
    pub fn encode(
        &self,
        combine: &dyn CombineFnInvoker,
        acc_coder: &Coder,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), crate::UserError> {
        let key = self.kb.bytes();
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        crate::element_codec::encode_window(&self.window, out);
        out.extend_from_slice(&(self.count as u64).to_le_bytes());
        out.extend_from_slice(&self.latest.to_le_bytes());
        let value = combine.accumulator_to_value(&self.acc)?;
        acc_coder.encode(&value, out, false)?;
        Ok(())
    }

    /// Decodes what [`Partial::encode`] wrote; the key decodes with `key_coder`.
    ///
    /// # Errors
    /// Truncated or malformed bytes, or an accumulator the combine does not accept.
    pub fn decode(
        mut bytes: &[u8],
        key_coder: &Coder,
        combine: &dyn CombineFnInvoker,
        acc_coder: &Coder,
    ) -> std::result::Result<Partial, crate::UserError> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> std::result::Result<&'a [u8], String> {
            if bytes.len() < n {
                return Err("a truncated partial result".to_string());
            }
            let (a, rest) = bytes.split_at(n);
            *bytes = rest;
            Ok(a)
        }
        let word = |b: &[u8]| {
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(a)
        };
        let len = word(take(&mut bytes, 4)?) as usize;
        let key_bytes = take(&mut bytes, len)?;
        let key = key_coder.decode(&mut &key_bytes[..], false)?;
        let window = crate::element_codec::decode_window(&mut bytes)?;
        let count = word(take(&mut bytes, 8)?) as usize;
        let latest = word(take(&mut bytes, 8)?) as i64;
        let value = acc_coder.decode(&mut bytes, false)?;
        if !bytes.is_empty() {
            return Err(format!("{} bytes left after a partial result", bytes.len()).into());
        }
        let acc = combine.accumulator_from_value(value)?;
        Ok(Partial::new(key_bytes, key, window, acc, count, latest))
    }
}

/// Partial results handed from a source's worker threads to the grouping operator.
pub type Mailbox = Arc<Mutex<Exchange>>;

/// What a [`Mailbox`] holds.
#[derive(Default)]
pub struct Exchange {
    /// Partial results the grouping has not taken yet, in bundle order.
    pub parts: Vec<Partial>,
    /// Buffers the grouping emptied, for the workers' next bundles: each is allocated
    /// once, not once per bundle (and freed by another thread).
    pub spare: Vec<Vec<Partial>>,
}

/// Most emptied buffers a [`Mailbox`] keeps.
const MAX_SPARE: usize = 8;

impl Exchange {
    /// Adds a bundle's partial results after those waiting.
    pub fn deliver(&mut self, mut parts: Vec<Partial>) {
        if self.parts.is_empty() {
            std::mem::swap(&mut self.parts, &mut parts);
        } else {
            self.parts.append(&mut parts);
        }
        self.give_back(parts);
    }

    /// Keeps an emptied buffer for reuse.
    pub fn give_back(&mut self, mut parts: Vec<Partial>) {
        if self.spare.len() < MAX_SPARE && parts.capacity() > 0 {
            parts.clear();
            self.spare.push(parts);
        }
    }
}

/// A lifted CombinePerKey's pre-combining: folds a bundle's elements into one
/// accumulator per key and window, on the thread that produced them.
pub struct PreCombine {
    /// The CombinePerKey's name, for errors.
    name: String,
    key_coder: Coder,
    combine: Arc<dyn CombineFnInvoker>,
    /// Where the grouping returns emptied buffers.
    mailbox: Mailbox,
    key_buf: Vec<u8>,
    /// Positions in `parts` by hash of key bytes and window: small enough to stay in
    /// cache, so only the matching partial result is read.
    index: HashTable<(u64, usize)>,
    parts: Vec<Partial>,
    /// The bundle's table once it outgrew the caches (see [`SlotTable`]).
    large: Option<SlotTable>,
}

/// Partial results past which a bundle's table moves to a [`SlotTable`]: this one's
/// index and list stay in the caches below it, and cost three misses per element above.
const LARGE_AFTER: usize = 8192;

impl PreCombine {
    /// A pre-combiner for CombinePerKey `name` (errors name it) over keys encoded with
    /// `key_coder`; emptied buffers come back through `mailbox`.
    pub fn new(
        name: String,
        key_coder: Coder,
        combine: Arc<dyn CombineFnInvoker>,
        mailbox: Mailbox,
    ) -> Self {
        PreCombine {
            name,
            key_coder,
            combine,
            mailbox,
            key_buf: Vec::new(),
            index: HashTable::new(),
            parts: Vec::new(),
            large: None,
        }
    }

    /// Folds the elements of `batch` in, leaving it empty.
    ///
    /// # Errors
    /// An element that is not key/value, a key that does not encode, or a failing
    /// combine, naming the CombinePerKey.
    pub fn add(&mut self, batch: &mut Vec<WindowedValue>) -> Result<()> {
        let name = self.name.clone();
        if let Some(large) = self.large.as_mut() {
            let f = Folding {
                name: &self.name,
                key_coder: &self.key_coder,
                combine: &*self.combine,
            };
            return panics_guarded(&name, || large.add(batch, &f));
        }
        let r = panics_guarded(&name, || {
            for wv in batch.drain(..) {
                let (key, value) = match wv.value.try_into_kv() {
                    Ok(kv) => kv,
                    Err(other) => {
                        return Err(EngineError::user(
                            &self.name,
                            format!("expected a key/value element, got a {} value", other.kind()),
                        ))
                    }
                };
                let i = match (&key, &self.key_coder) {
                    // With the varint coder equal numbers are equal encodings: the key is
                    // encoded once per partial result, not once per element.
                    (&Value::I64(k), Coder::VarInt) => {
                        key.release();
                        self.find_int(k, wv.window)?
                    }
                    _ => self.find_encoded(key, wv.window)?,
                };
                let p = &mut self.parts[i];
                self.combine
                    .add_input(&mut p.acc, value)
                    .map_err(|e| EngineError::user(&self.name, e))?;
                p.count += 1;
                p.latest = p.latest.max(wv.timestamp);
            }
            Ok(())
        });
        if self.parts.len() > LARGE_AFTER {
            let mut large = SlotTable::default();
            self.index.clear();
            for p in self.parts.drain(..) {
                large.insert(Taken {
                    key_bytes: p.kb.bytes(),
                    key: p.key,
                    window: p.window,
                    acc: p.acc,
                    count: p.count,
                    latest: p.latest,
                });
            }
            self.large = Some(large);
        }
        r
    }

    /// The partial result of number key `k` in `window`, created if new.
    fn find_int(&mut self, k: i64, window: Window) -> Result<usize> {
        let hash = FxBuildHasher.hash_one((k, window));
        let parts = &self.parts;
        let found = self.index.find(hash, |&(h, i)| {
            h == hash
                && parts[i].window == window
                && matches!(parts[i].key, Value::I64(x) if x == k)
        });
        match found {
            Some(&(_, i)) => Ok(i),
            None => {
                // Rebuilt rather than passed in: moving the element's key here cost more
                // than the number.
                let key = Value::I64(k);
                self.encode_key(&key)?;
                Ok(self.insert(hash, key, window))
            }
        }
    }

    /// The partial result of `key` in `window` by its encoding, created if new.
    fn find_encoded(&mut self, key: Value, window: Window) -> Result<usize> {
        self.encode_key(&key)?;
        let bytes = &self.key_buf[..];
        let hash = FxBuildHasher.hash_one((bytes, window));
        let parts = &self.parts;
        let found = self.index.find(hash, |&(h, i)| {
            h == hash && parts[i].window == window && parts[i].kb.bytes() == bytes
        });
        Ok(match found {
            Some(&(_, i)) => i,
            None => self.insert(hash, key, window),
        })
    }

    /// Encodes `key` into the key buffer.
    fn encode_key(&mut self, key: &Value) -> Result<()> {
        self.key_buf.clear();
        self.key_coder
            .encode(key, &mut self.key_buf, false)
            .map_err(|source| EngineError::Coder {
                transform: self.name.clone(),
                source,
            })
    }

    /// Adds an empty partial result for `key` (encoded in the key buffer) in `window`.
    fn insert(&mut self, hash: u64, key: Value, window: Window) -> usize {
        self.parts.push(Partial {
            kb: KeyBytes::new(&self.key_buf),
            key,
            window,
            acc: self.combine.create_accumulator(),
            count: 0,
            latest: i64::MIN,
        });
        let i = self.parts.len() - 1;
        self.index.insert_unique(hash, (hash, i), |&(h, _)| h);
        i
    }

    /// How many partial results it holds (keys and windows since the last take).
    pub fn len(&self) -> usize {
        self.large.as_ref().map_or(self.parts.len(), SlotTable::len)
    }

    /// Whether it holds no partial result.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps a buffer [`PreCombine::take`] returned, emptied, for a later bundle (where the
    /// partial results do not go through the mailbox: sent to another process).
    pub fn give_back(&self, parts: Vec<Partial>) {
        self.mailbox.lock().give_back(parts);
    }

    /// The bundle's partial results, in order of first arrival; starts the next bundle.
    ///
    /// # Errors
    /// A key that does not decode (its coder encoded it: only a coder bug).
    pub fn take(&mut self) -> Result<Vec<Partial>> {
        self.index.clear();
        // The next bundle likely has as many keys and windows: size for them at once.
        let spare = self.mailbox.lock().spare.pop();
        let mut next = spare.unwrap_or_default();
        if let Some(mut large) = self.large.take() {
            let f = Folding {
                name: &self.name,
                key_coder: &self.key_coder,
                combine: &*self.combine,
            };
            large.take_into(&f, |t| {
                next.push(Partial {
                    kb: KeyBytes::new(t.key_bytes),
                    key: t.key,
                    window: t.window,
                    acc: t.acc,
                    count: t.count,
                    latest: t.latest,
                })
            })?;
            return Ok(next);
        }
        next.reserve(self.parts.len());
        Ok(std::mem::replace(&mut self.parts, next))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::UserError;
    use crate::window::PaneInfo;

    /// Sums numbers (other tests of lifted combines use it too).
    pub(crate) struct Sum;

    impl CombineFnInvoker for Sum {
        fn create_accumulator(&self) -> Accumulator {
            Accumulator::new(0i64)
        }
        fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
            let Value::I64(x) = input else {
                return Err("not a number".into());
            };
            *acc.downcast_mut::<i64>().ok_or("not a sum")? += x;
            Ok(())
        }
        fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
            let mut total = 0;
            for a in accs {
                total += a.downcast::<i64>().map_err(|_| "not a sum")?;
            }
            Ok(Accumulator::new(total))
        }
        fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
            Ok(Value::I64(acc.downcast::<i64>().map_err(|_| "not a sum")?))
        }
        fn accumulator_coder(&self, _input: &Coder) -> Coder {
            Coder::VarInt
        }
        fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
            Ok(Value::I64(*acc.downcast_ref::<i64>().ok_or("not a sum")?))
        }
        fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
            match value {
                Value::I64(n) => Ok(Accumulator::new(n)),
                _ => Err("not a sum".into()),
            }
        }
    }

    fn element(key: Value, value: i64, timestamp: i64, window: Window) -> WindowedValue {
        WindowedValue {
            value: Value::kv(key, Value::I64(value)),
            timestamp,
            window,
            pane: PaneInfo::NO_FIRING,
        }
    }

    /// Encoded key, window, sum, count and latest timestamp of a partial result.
    type Folded = (Vec<u8>, Window, i64, usize, i64);

    /// What each partial result holds.
    fn fold(coder: Coder, batch: Vec<WindowedValue>) -> Result<Vec<Folded>> {
        let mut pre = PreCombine::new("Sum".into(), coder, Arc::new(Sum), Mailbox::default());
        let mut batch = batch;
        pre.add(&mut batch)?;
        Ok(pre
            .take()?
            .into_iter()
            .map(|p| {
                let sum = p.acc.downcast::<i64>().expect("a sum");
                (p.kb.bytes().to_vec(), p.window, sum, p.count, p.latest)
            })
            .collect())
    }

    const A: Window = Window::Interval { start: 0, end: 10 };
    const B: Window = Window::Interval { start: 10, end: 20 };

    #[test]
    fn number_keys_fold_per_key_and_window_under_their_encoding() {
        let parts = fold(
            Coder::VarInt,
            vec![
                element(Value::I64(1), 5, 1, A),
                element(Value::I64(300), 1, 2, A),
                element(Value::I64(1), 7, 9, A),
                element(Value::I64(1), 2, 12, B),
                element(Value::I64(-1), 4, 3, A),
            ],
        )
        .unwrap();
        let minus_one = {
            let mut b = Vec::new();
            Coder::VarInt
                .encode(&Value::I64(-1), &mut b, false)
                .unwrap();
            b
        };
        assert_eq!(
            parts,
            vec![
                (vec![1], A, 12, 2, 9),
                (vec![0xac, 0x02], A, 1, 1, 2),
                (vec![1], B, 2, 1, 12),
                (minus_one, A, 4, 1, 3),
            ]
        );
    }

    #[test]
    fn other_keys_fold_by_their_encoding() {
        let s = |x: &str| Value::Str(x.into());
        let parts = fold(
            Coder::StringUtf8,
            vec![
                element(s("ab"), 1, 1, A),
                element(s("a"), 2, 2, A),
                element(s("ab"), 3, 3, A),
            ],
        )
        .unwrap();
        assert_eq!(
            parts,
            vec![(b"ab".to_vec(), A, 4, 2, 3), (b"a".to_vec(), A, 2, 1, 2)]
        );
    }

    #[test]
    fn a_key_the_coder_cannot_encode_fails_naming_the_combine() {
        let err = fold(
            Coder::VarInt,
            vec![element(Value::Str("x".into()), 1, 1, A)],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Sum") && err.contains("varint"), "{err}");
        let err = fold(
            Coder::VarInt,
            vec![WindowedValue {
                value: Value::I64(3),
                timestamp: 0,
                window: A,
                pane: PaneInfo::NO_FIRING,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Sum") && err.contains("key/value"), "{err}");
    }

    #[test]
    fn emptied_buffers_go_back_to_the_workers() {
        let mailbox = Mailbox::default();
        let mut pre = PreCombine::new("Sum".into(), Coder::VarInt, Arc::new(Sum), mailbox.clone());
        pre.add(&mut vec![element(Value::I64(1), 1, 1, A)]).unwrap();
        let parts = pre.take().unwrap();
        mailbox.lock().deliver(parts);
        let taken = std::mem::take(&mut mailbox.lock().parts);
        assert_eq!(taken.len(), 1);
        let buffer = taken.as_ptr();
        mailbox.lock().give_back(taken);
        pre.add(&mut vec![element(Value::I64(2), 1, 1, A)]).unwrap();
        pre.take().unwrap();
        // The next bundle is folded into the buffer the grouping gave back.
        pre.add(&mut vec![element(Value::I64(3), 1, 1, A)]).unwrap();
        let third = pre.take().unwrap();
        assert_eq!(third.as_ptr(), buffer);
    }

    #[test]
    fn tables_past_the_caches_fold_every_key_once() {
        // Past LARGE_AFTER partial results the bundle moves to a slot table.
        let keys = 70_000i64;
        let batch: Vec<WindowedValue> = (0..keys * 3)
            .map(|i| element(Value::I64(i % keys), i, i, A))
            .collect();
        let mut pre = PreCombine::new(
            "Sum".into(),
            Coder::VarInt,
            Arc::new(Sum),
            Mailbox::default(),
        );
        for chunk in batch.chunks(1024) {
            pre.add(&mut chunk.to_vec()).unwrap();
        }
        let parts = pre.take().unwrap();
        assert_eq!(parts.len(), keys as usize);
        for (n, p) in parts.into_iter().enumerate() {
            let k = n as i64;
            assert_eq!(p.key, Value::I64(k), "first-arrival order");
            assert_eq!((p.window, p.count, p.latest), (A, 3, k + 2 * keys));
            assert_eq!(p.acc.downcast::<i64>().ok(), Some(k * 3 + 3 * keys));
        }
        assert!(pre.take().unwrap().is_empty());
    }

    #[test]
    fn partial_results_survive_the_wire_and_bad_bytes_are_errors() {
        let mut pre = PreCombine::new(
            "Sum".into(),
            Coder::StringUtf8,
            Arc::new(Sum),
            Mailbox::default(),
        );
        let mut batch = vec![
            element(Value::Str("k".into()), 3, 5, A),
            element(Value::Str("k".into()), 4, 7, A),
        ];
        pre.add(&mut batch).unwrap();
        let part = pre.take().unwrap().pop().unwrap();
        let mut bytes = Vec::new();
        part.encode(&Sum, &Coder::VarInt, &mut bytes).unwrap();
        let back = Partial::decode(&bytes, &Coder::StringUtf8, &Sum, &Coder::VarInt).unwrap();
        assert_eq!(back.key_bytes(), part.key_bytes());
        assert_eq!(back.key, Value::Str("k".into()));
        assert_eq!((back.window, back.count, back.latest), (A, 2, 7));
        assert_eq!(back.acc.downcast::<i64>().ok(), Some(7));
        for cut in [0, 3, 6, bytes.len() - 1] {
            assert!(
                Partial::decode(&bytes[..cut], &Coder::StringUtf8, &Sum, &Coder::VarInt).is_err()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let e = Partial::decode(&longer, &Coder::StringUtf8, &Sum, &Coder::VarInt).unwrap_err();
        assert!(e.to_string().contains("left after a partial result"), "{e}");
    }
}
