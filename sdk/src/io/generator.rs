//! An unbounded generator source: keyed, timestamped events at a chosen rate, with bounded
//! out-of-orderness and optionally some late events, reproducible from a seed.

use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use beamline_engine::source::{NamedSource, Polled, SourceOutput, UnboundedSource};
use beamline_engine::spec::{FnRef, UserFnSpec};
use beamline_engine::{UserError, Value};
use beamline_proto::pipeline as pb;
use beamline_proto::urns;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

/// Generates `(key, sequence number)` events.
///
/// Event `i` happens at `start_ms + i * 1000 / events_per_second` of event time, minus a
/// random delay of up to `max_out_of_orderness_ms`; the watermark trails the newest event
/// by that bound, so ordinary events are never late. A `late_fraction` of events is
/// delayed by up to `max_lateness_ms` more, arriving behind the watermark (late data).
/// Keys are uniform in `0..keys`. Emission is paced to `rate_per_second` of wall-clock
/// time (0: as fast as possible); it stops after `count` events, or runs until cancelled.
///
/// The random numbers are drawn per chunk of 4096 events, each chunk from its own stream
/// of the seed's generator, so the streaming runner reads the source in parallel (each
/// reader emits every n-th chunk) and the events are the same however it is read.
///
/// # Examples
///
/// ```
/// use beamline::io::generator::Generator;
/// use beamline::{Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// let events = p.apply("Events", Generator::new(100).with_count(1_000).with_seed(7));
/// # let _ = events;
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Generator {
    /// Number of distinct keys.
    pub keys: u64,
    /// Events per second of event time.
    pub events_per_second: u64,
    /// Wall-clock emission rate (0: unlimited).
    pub rate_per_second: u64,
    /// Bound on how far an ordinary event is behind the newest (ms).
    pub max_out_of_orderness_ms: i64,
    /// Share of events that arrive behind the watermark.
    pub late_fraction: f64,
    /// Bound on how far behind the watermark a late event is (ms).
    pub max_lateness_ms: i64,
    /// Event time of the first event (ms).
    pub start_ms: i64,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Random seed.
    pub seed: u64,
}

impl Generator {
    /// `keys` keys, 1000 events per event-time second, unlimited rate, 2s out-of-orderness.
    pub fn new(keys: u64) -> Self {
        Generator {
            keys: keys.max(1),
            events_per_second: 1000,
            rate_per_second: 0,
            max_out_of_orderness_ms: 2_000,
            late_fraction: 0.0,
            max_lateness_ms: 0,
            start_ms: 0,
            count: None,
            seed: 0,
        }
    }
    /// Stops after `n` events.
    pub fn with_count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
    /// Random seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Event-time density.
    pub fn with_events_per_second(mut self, n: u64) -> Self {
        self.events_per_second = n.max(1);
        self
    }
    /// Wall-clock pacing (0: unlimited).
    pub fn with_rate(mut self, per_second: u64) -> Self {
        self.rate_per_second = per_second;
        self
    }
    /// Out-of-orderness bound.
    pub fn with_out_of_orderness(mut self, ms: i64) -> Self {
        self.max_out_of_orderness_ms = ms.max(0);
        self
    }
    /// Late events: their share and how far behind the watermark they may be.
    pub fn with_late_events(mut self, fraction: f64, max_lateness_ms: i64) -> Self {
        self.late_fraction = fraction.clamp(0.0, 1.0);
        self.max_lateness_ms = max_lateness_ms.max(0);
        self
    }

    /// All events of a finite generator, in emission order: `((key, seq), timestamp)`.
    /// The same sequence the source emits (used by references and tests).
    pub fn events(&self) -> impl Iterator<Item = ((i64, i64), i64)> + '_ {
        let mut g = GeneratorReader::new(self.clone());
        (0..self.count.unwrap_or(0)).map(move |_| g.next_event())
    }
}

/// Events per chunk: each chunk draws from its own random stream, so that a reader of some
/// of the chunks starts at any of them without drawing the numbers before it.
const CHUNK: u64 = 4096;

struct GeneratorReader {
    config: Generator,
    /// The seed's generator, unused: each chunk's is a copy set to the chunk's stream.
    seeded: ChaCha12Rng,
    rng: ChaCha12Rng,
    /// Index of the next event this reader emits.
    next: u64,
    /// This reader emits chunks `part`, `part + parts`, `part + 2 * parts`...
    parts: u64,
    started_at: Option<i64>,
    /// Resumed from a checkpoint: the pace continues from `next`, not from 0.
    resumed: bool,
}

impl GeneratorReader {
    fn new(config: Generator) -> Self {
        Self::part(config, 0, 1)
    }

    /// The reader of every `parts`-th chunk, from chunk `part`.
    fn part(config: Generator, part: u64, parts: u64) -> Self {
        let seeded = ChaCha12Rng::seed_from_u64(config.seed);
        GeneratorReader {
            rng: seeded.clone(),
            seeded,
            config,
            next: part * CHUNK,
            parts,
            started_at: None,
            resumed: false,
        }
    }

    fn base_time(&self, i: u64) -> i64 {
        let eps = self.config.events_per_second;
        // 64-bit division unless `i * 1000` overflows it (a 128-bit one costs a call).
        let offset = match i.checked_mul(1000) {
            Some(ms) => (ms / eps) as i64,
            None => (i as i128 * 1000 / eps as i128) as i64,
        };
        self.config.start_ms + offset
    }

    /// The next event: key, sequence number and event timestamp.
    #[inline(always)]
    fn next_event(&mut self) -> ((i64, i64), i64) {
        let c = &self.config;
        let i = self.next;
        if i.is_multiple_of(CHUNK) {
            self.rng = self.seeded.clone();
            self.rng.set_stream(i / CHUNK);
        }
        self.next += 1;
        if self.next.is_multiple_of(CHUNK) {
            // Past this reader's chunk: on to its next one.
            self.next = self.next.saturating_add((self.parts - 1) * CHUNK);
        }
        let key = self.rng.random_range(0..c.keys) as i64;
        let mut delay = if c.max_out_of_orderness_ms > 0 {
            self.rng.random_range(0..=c.max_out_of_orderness_ms)
        } else {
            0
        };
        if c.late_fraction > 0.0 && self.rng.random::<f64>() < c.late_fraction {
            delay = c.max_out_of_orderness_ms + 1 + self.rng.random_range(0..=c.max_lateness_ms);
        }
        ((key, i as i64), self.base_time(i) - delay)
    }
}

impl UnboundedSource for GeneratorReader {
    fn poll(
        &mut self,
        now_ms: i64,
        max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError> {
        let (rate, next, resumed) = (self.config.rate_per_second, self.next, self.resumed);
        let started = *self.started_at.get_or_insert_with(|| match rate {
            r if resumed && r > 0 => now_ms - (next.saturating_mul(1000) / r) as i64,
            _ => now_ms,
        });
        let limit = self.config.count.unwrap_or(u64::MAX);
        // Events are emitted up to this index (the count, or what the rate allows by now).
        let mut bound = limit;
        if self.config.rate_per_second > 0 {
            let due = ((now_ms - started).max(0) as u64)
                .saturating_mul(self.config.rate_per_second)
                / 1000
                + 1;
            bound = bound.min(due);
        }
        let mut n = 0;
        while n < max && self.next < bound {
            // A run of events within the current chunk, added as one: its length known,
            // each event is written straight into the batch.
            let run = (max - n)
                .min((CHUNK - self.next % CHUNK) as usize)
                .min((bound - self.next).try_into().unwrap_or(usize::MAX));
            out.extend((0..run).map(|_| {
                let ((k, seq), ts) = self.next_event();
                (Value::kv(Value::I64(k), Value::I64(seq)), ts)
            }));
            n += run;
        }
        Ok(Polled {
            watermark: self.base_time(self.next) - self.config.max_out_of_orderness_ms - 1,
            finished: self.next >= limit,
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(self.next.to_le_bytes().to_vec())
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), UserError> {
        let next = u64::from_le_bytes(
            position
                .try_into()
                .map_err(|_| format!("a generator position is 8 bytes, not {}", position.len()))?,
        );
        let part = (self.next / CHUNK) % self.parts;
        let chunk = next / CHUNK;
        if chunk % self.parts != part {
            return Err(format!(
                "event {next} is not read by part {part} of {}: the source is split another way",
                self.parts
            )
            .into());
        }
        // The chunk's random stream, drawn up to the event to resume at.
        self.next = chunk * CHUNK;
        for _ in 0..next % CHUNK {
            self.next_event();
        }
        self.next = next;
        self.resumed = true;
        Ok(())
    }

    fn split(&self, n: usize) -> Vec<Box<dyn UnboundedSource>> {
        if n < 2 {
            return Vec::new();
        }
        let parts = n as u64;
        (0..parts)
            .map(|part| {
                Box::new(GeneratorReader::part(self.config.clone(), part, parts))
                    as Box<dyn UnboundedSource>
            })
            .collect()
    }
}

const GENERATOR: &str = "beamline.io.Generator";

inventory::submit! {
    NamedSource {
        name: GENERATOR,
        build: |config| {
            let g: Generator = serde_json::from_str(config)?;
            Ok(Box::new(GeneratorReader::new(g)))
        },
    }
}

impl PTransform<PBegin> for Generator {
    type Output = PCollection<(i64, i64)>;
    fn expand(self, input: &PBegin) -> PCollection<(i64, i64)> {
        let rate = match self.rate_per_second {
            0 => "as fast as possible".to_string(),
            r => format!("{r}/s"),
        };
        input.0.annotate(
            crate::io::SOURCE_ANNOTATION,
            &format!("generator: {} keys, {rate}", self.keys),
        );
        apply_named_source(
            &input.0,
            GENERATOR,
            serde_json::to_value(&self).expect("serializes"),
        )
    }
}

/// Records an unbounded source registered under `name` as the transform being expanded.
pub(crate) fn apply_named_source<T: crate::Element>(
    p: &crate::Pipeline,
    name: &str,
    config: serde_json::Value,
) -> PCollection<T> {
    let spec = UserFnSpec {
        function: FnRef::Named {
            name: name.into(),
            config,
        },
        outputs: vec![],
        side_inputs: vec![],
    };
    let out: PCollection<T> = p.new_output("out", Default::default());
    p.mark_unbounded(out.id());
    p.set_primitive(
        pb::FunctionSpec {
            urn: urns::BEAMLINE_UNBOUNDED_SOURCE.into(),
            payload: spec.to_payload(),
        },
        vec![],
        vec![("out".into(), out.id().to_string())],
        true,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamline_engine::window::WindowedValue;

    /// Every event the readers of `parts` parts emit, polling each in turn.
    fn read_parts(g: &Generator, parts: usize) -> Vec<((i64, i64), i64)> {
        let readers = GeneratorReader::new(g.clone()).split(parts);
        assert_eq!(readers.len(), parts);
        let mut events = Vec::new();
        for mut reader in readers {
            let mut batch: Vec<WindowedValue> = Vec::new();
            let mut last_wm = i64::MIN;
            loop {
                let polled = reader
                    .poll(0, 1_000, &mut SourceOutput::new(&mut batch))
                    .unwrap();
                for wv in batch.drain(..) {
                    let (k, seq) = wv.value.into_kv().unwrap();
                    match (k, seq) {
                        (Value::I64(k), Value::I64(seq)) => events.push(((k, seq), wv.timestamp)),
                        other => panic!("not a generator event: {other:?}"),
                    }
                }
                assert!(polled.watermark >= last_wm, "the watermark went back");
                last_wm = polled.watermark;
                if polled.finished {
                    break;
                }
            }
        }
        events.sort_by_key(|&((_, seq), _)| seq);
        events
    }

    /// Polls `reader` for up to `max` events.
    fn poll_some(reader: &mut dyn UnboundedSource, max: usize) -> Vec<(Value, i64)> {
        let mut batch: Vec<WindowedValue> = Vec::new();
        reader
            .poll(0, max, &mut SourceOutput::new(&mut batch))
            .unwrap();
        batch
            .into_iter()
            .map(|wv| (wv.value, wv.timestamp))
            .collect()
    }

    #[test]
    fn a_reader_resumed_at_its_position_emits_what_it_would_have() {
        let g = Generator::new(50).with_count(5 * CHUNK).with_seed(9);
        for parts in [1usize, 3] {
            let mut readers = match parts {
                1 => vec![Box::new(GeneratorReader::new(g.clone())) as Box<dyn UnboundedSource>],
                n => GeneratorReader::new(g.clone()).split(n),
            };
            let reader = &mut readers[parts - 1];
            poll_some(&mut **reader, 1000);
            let at = reader.position().unwrap();
            let expected = poll_some(&mut **reader, 5000);
            let mut again = match parts {
                1 => vec![Box::new(GeneratorReader::new(g.clone())) as Box<dyn UnboundedSource>],
                n => GeneratorReader::new(g.clone()).split(n),
            };
            let resumed = &mut again[parts - 1];
            resumed.restore(&at).unwrap();
            assert_eq!(poll_some(&mut **resumed, 5000), expected, "{parts} parts");
            if parts > 1 {
                let err = again[0].restore(&at).unwrap_err().to_string();
                assert!(err.contains("split another way"), "{err}");
            }
        }
        let mut r = GeneratorReader::new(g);
        assert!(r
            .restore(b"abc")
            .unwrap_err()
            .to_string()
            .contains("8 bytes"));
    }

    #[test]
    fn split_readers_emit_the_same_events_once() {
        let g = Generator::new(50)
            .with_count(3 * CHUNK + 123)
            .with_seed(4)
            .with_late_events(0.1, 5_000);
        let all: Vec<_> = g.events().collect();
        assert_eq!(all.len() as u64, 3 * CHUNK + 123);
        for parts in [2, 3, 5] {
            assert_eq!(read_parts(&g, parts), all, "{parts} parts");
        }
        assert!(
            GeneratorReader::new(g).split(1).is_empty(),
            "one part: no split"
        );
    }

    #[test]
    fn a_part_holds_no_event_before_its_watermark_but_late_ones() {
        let g = Generator::new(5).with_count(4 * CHUNK).with_seed(1);
        let mut reader = GeneratorReader::new(g.clone()).split(2).remove(1);
        let mut batch: Vec<WindowedValue> = Vec::new();
        let first = reader
            .poll(0, 100, &mut SourceOutput::new(&mut batch))
            .unwrap();
        assert_eq!(batch.len(), 100);
        // Part 1 starts at the second chunk: its watermark is that chunk's.
        let seq = |wv: &WindowedValue| match wv.value.clone().into_kv() {
            Some((_, Value::I64(seq))) => seq,
            other => panic!("{other:?}"),
        };
        assert_eq!(seq(&batch[0]), CHUNK as i64);
        let rest = reader
            .poll(0, usize::MAX, &mut SourceOutput::new(&mut batch))
            .unwrap();
        assert!(rest.finished);
        assert!(batch[100..].iter().all(|wv| wv.timestamp > first.watermark));
        assert_eq!(batch.len() as u64, 2 * CHUNK);
    }
}
