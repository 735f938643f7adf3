//! `ReadFromKafka`: an unbounded source of Kafka records, partitions split among the
//! readers, offsets kept in checkpoints and committed to the consumer group after them.

use super::timestamps::{timestamp_fn, DynExtractTimestamp, KafkaTimestamp};
use super::{client_config, kafka_err, TopicPartition};
use crate::element::Bytes;
use crate::io::generator::apply_named_source;
use crate::io::SOURCE_ANNOTATION;
use crate::pcollection::{PBegin, PCollection};
use crate::pipeline::PTransform;
use beamline_engine::checkpoint::codec::{Dec, Enc};
use beamline_engine::source::{NamedSource, Polled, SourceOutput, UnboundedSource};
use beamline_engine::{UserError, Value};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a reader starts in a partition without a checkpoint to resume from.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum StartOffset {
    /// The consumer group's committed offset, else the partition's beginning (default).
    #[default]
    Committed,
    /// The partition's beginning.
    Earliest,
    /// Only records written after the job starts.
    Latest,
}

/// Reads `(key, value)` records (empty key when none) from Kafka topics: an unbounded
/// source (or bounded with [`ReadFromKafka::until_end`]).
///
/// The partitions are split among the runner's readers. Each record's event time is its
/// timestamp (or the time it was read); a partition's watermark trails its newest record
/// by the bounded out-of-orderness, and the source's is the smallest of the partitions
/// that still have records to read. With checkpoints, each partition's next offset is in
/// every checkpoint (a restarted job reads on from there) and is committed to the
/// consumer group once the checkpoint is durable. Records of aborted transactions are
/// skipped (`isolation.level=read_committed`).
///
/// # Examples
/// ```no_run
/// use beamline::io::kafka::ReadFromKafka;
/// use beamline::{Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default().set("streaming", "true"));
/// let records = p.apply(
///     "Clicks",
///     ReadFromKafka::new("127.0.0.1:9092", ["clicks"]).with_group("counter"),
/// );
/// # let _ = records;
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReadFromKafka {
    /// `host:port,...` of the brokers.
    pub bootstrap_servers: String,
    /// Topics to read (every partition).
    pub topics: Vec<String>,
    /// Consumer group: offsets are committed to it (none: nothing is committed).
    pub group: Option<String>,
    /// Where to start without a checkpoint.
    pub start: StartOffset,
    /// Event timestamps.
    pub timestamps: KafkaTimestamp,
    /// How far behind a partition's newest record an older one may still arrive (ms).
    pub max_out_of_orderness_ms: i64,
    /// Stop once every partition was read to its end.
    pub until_end: bool,
    /// More librdkafka consumer properties.
    pub properties: BTreeMap<String, String>,
}

impl ReadFromKafka {
    /// Reads every partition of `topics` from the brokers at `bootstrap_servers`.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        ReadFromKafka {
            bootstrap_servers: bootstrap_servers.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            group: None,
            start: StartOffset::default(),
            timestamps: KafkaTimestamp::default(),
            max_out_of_orderness_ms: 0,
            until_end: false,
            properties: BTreeMap::new(),
        }
    }
    /// Commits offsets to consumer group `group` (after each checkpoint) and starts
    /// from its committed offsets.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    /// Where to start without a checkpoint.
    pub fn with_start(mut self, start: StartOffset) -> Self {
        self.start = start;
        self
    }
    /// Event timestamps from the records or from the time they are read.
    pub fn with_timestamps(mut self, t: KafkaTimestamp) -> Self {
        self.timestamps = t;
        self
    }
    /// Event timestamps from the [`KafkaTimestampFn`](super::KafkaTimestampFn) registered under `name`.
    pub fn with_timestamp_fn(mut self, name: impl Into<String>) -> Self {
        self.timestamps = KafkaTimestamp::Function(name.into());
        self
    }
    /// Records may arrive up to `ms` behind their partition's newest (the watermark
    /// trails by that much).
    pub fn with_max_out_of_orderness(mut self, ms: i64) -> Self {
        self.max_out_of_orderness_ms = ms.max(0);
        self
    }
    /// Reads each partition up to its end, then ends. The end is the partition's last
    /// stable offset when the reader starts (what the broker lists for read-committed
    /// consumers), reached once the reader found the partition at its end and nothing
    /// came for [`END_GRACE_MS`] (a broker may report an end before every committed record
    /// can be fetched, and a broker may list too low an end; records that follow within
    /// the grace are read).
    pub fn until_end(mut self) -> Self {
        self.until_end = true;
        self
    }
    /// Sets a librdkafka consumer property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

/// How long metadata, offset and commit calls may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long (ms) a partition must stay at its end before `until_end` takes it as the end.
pub const END_GRACE_MS: i64 = 1_000;

/// How long (ms) a partition may stay below the end the broker listed, with nothing to
/// read, before the reader takes the listed end as wrong (a warning) rather than wait.
const LISTED_END_PATIENCE_MS: i64 = 30_000;

/// The longest a broker may hold a fetch of an `until_end` reader (librdkafka's
/// `fetch.wait.max.ms`, 500 by default): a partition whose end moved is fetched again
/// well within the grace.
const UNTIL_END_FETCH_WAIT_MS: &str = "100";

/// One partition as a reader sees it.
#[derive(Debug, Clone)]
struct Partition {
    tp: TopicPartition,
    /// The offset of the next record to read (`None`: not known before the first).
    next: Option<i64>,
    /// The newest event timestamp read.
    newest: i64,
    /// The reader is at the partition's end (nothing read since it said so).
    caught_up: bool,
    /// When the reader last found the partition at its end with nothing read since.
    at_end_since: Option<i64>,
    /// The consumer's position when it last found the partition at its end (control
    /// records included).
    at_end_position: Option<i64>,
    /// The partition's end as the broker listed it when the reader started (`until_end`).
    listed_end: Option<i64>,
    /// The partition stayed at its end for the grace (`until_end` stops there).
    reached_end: bool,
}

struct KafkaReader {
    config: ReadFromKafka,
    /// The partitions this reader reads (all, until split).
    parts: Option<Vec<Partition>>,
    /// One consumer per topic (end-of-partition events name only the partition).
    consumers: Vec<(String, BaseConsumer)>,
    /// The consumer polled next.
    turn: usize,
    /// Offsets to resume from (a checkpoint's), by partition.
    resume: BTreeMap<TopicPartition, i64>,
    wm: i64,
    /// The timestamp function, when the records' event time comes from one.
    extract: Option<DynExtractTimestamp>,
}

impl KafkaReader {
    fn new(config: ReadFromKafka) -> Self {
        KafkaReader {
            config,
            parts: None,
            consumers: Vec::new(),
            turn: 0,
            resume: BTreeMap::new(),
            wm: i64::MIN,
            extract: None,
        }
    }

    fn consumer(&self) -> Result<BaseConsumer, UserError> {
        let mut c = client_config(&self.config.bootstrap_servers, &self.config.properties);
        // librdkafka wants a group even to assign partitions by hand; commits go to it
        // only when the user named one.
        let group = self
            .config
            .group
            .clone()
            .unwrap_or_else(|| "beamline-reader".into());
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        if self.config.until_end {
            c.set("fetch.wait.max.ms", UNTIL_END_FETCH_WAIT_MS);
        }
        c.create().map_err(|e| kafka_err("creating a consumer", e))
    }

    /// Every partition of the topics, in order.
    fn discover(&self, consumer: &BaseConsumer) -> Result<Vec<Partition>, UserError> {
        let mut parts = Vec::new();
        for topic in &self.config.topics {
            let md = consumer
                .fetch_metadata(Some(topic), CALL_TIMEOUT)
                .map_err(|e| kafka_err(&format!("reading the metadata of topic '{topic}'"), e))?;
            let ids: Vec<i32> = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
                .unwrap_or_default();
            if ids.is_empty() {
                return Err(format!("topic '{topic}' has no partitions (does it exist?)").into());
            }
            for id in ids {
                parts.push(Partition {
                    tp: (topic.clone(), id),
                    next: None,
                    newest: i64::MIN,
                    caught_up: false,
                    at_end_since: None,
                    at_end_position: None,
                    listed_end: None,
                    reached_end: false,
                });
            }
        }
        parts.sort_by(|a, b| a.tp.cmp(&b.tp));
        Ok(parts)
    }

    /// Creates the consumers and assigns the partitions at their starting offsets.
    fn open(&mut self) -> Result<(), UserError> {
        let mut parts = match self.parts.take() {
            Some(p) => p,
            None => self.discover(&self.consumer()?)?,
        };
        let mut topics: Vec<String> = parts.iter().map(|p| p.tp.0.clone()).collect();
        topics.dedup();
        for topic in topics {
            let consumer = self.consumer()?;
            let mine: Vec<&mut Partition> = parts.iter_mut().filter(|p| p.tp.0 == topic).collect();
            let mut committed = BTreeMap::new();
            if self.config.start == StartOffset::Committed && self.config.group.is_some() {
                let mut tpl = TopicPartitionList::new();
                for p in &mine {
                    tpl.add_partition(&p.tp.0, p.tp.1);
                }
                let got = consumer
                    .committed_offsets(tpl, CALL_TIMEOUT)
                    .map_err(|e| kafka_err("reading the group's committed offsets", e))?;
                for e in got.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        committed.insert(e.partition(), o);
                    }
                }
            }
            let mut tpl = TopicPartitionList::new();
            for p in mine {
                let offset = match (self.resume.get(&p.tp), committed.get(&p.tp.1)) {
                    (Some(&o), _) | (None, Some(&o)) => Offset::Offset(o),
                    _ => match self.config.start {
                        StartOffset::Latest => Offset::End,
                        _ => Offset::Beginning,
                    },
                };
                if let Offset::Offset(o) = offset {
                    p.next = Some(o);
                }
                if self.config.until_end {
                    // The last stable offset: the consumer is read-committed.
                    let (_, end) = consumer
                        .fetch_watermarks(&p.tp.0, p.tp.1, CALL_TIMEOUT)
                        .map_err(|e| {
                            kafka_err(&format!("listing the end of {}/{}", p.tp.0, p.tp.1), e)
                        })?;
                    p.listed_end = Some(end);
                }
                tpl.add_partition_offset(&p.tp.0, p.tp.1, offset)
                    .map_err(|e| kafka_err("assigning a partition", e))?;
            }
            consumer
                .assign(&tpl)
                .map_err(|e| kafka_err("assigning the partitions", e))?;
            self.consumers.push((topic, consumer));
        }
        self.parts = Some(parts);
        Ok(())
    }
}

impl UnboundedSource for KafkaReader {
    fn poll(
        &mut self,
        now_ms: i64,
        max: usize,
        out: &mut SourceOutput<'_>,
    ) -> Result<Polled, UserError> {
        if self.consumers.is_empty() {
            if let KafkaTimestamp::Function(name) = &self.config.timestamps {
                self.extract = Some(timestamp_fn(name)?);
            }
            self.open()?;
        }
        let parts = self.parts.as_mut().expect("opened above");
        let bound = self.config.max_out_of_orderness_ms;
        let mut n = 0;
        let mut empty = 0;
        // Round robin over the topics' consumers until `max` records or none has more.
        while n < max && empty < self.consumers.len() {
            let (topic, consumer) = &self.consumers[self.turn % self.consumers.len()];
            let polled = consumer.poll(Duration::ZERO);
            let Some(polled) = polled else {
                self.turn += 1;
                empty += 1;
                continue;
            };
            empty = 0;
            let msg = match polled {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(id)) => {
                    if let Some(p) = parts.iter_mut().find(|p| p.tp.1 == id && &p.tp.0 == topic) {
                        p.caught_up = true;
                        p.at_end_since.get_or_insert(now_ms);
                        if self.config.until_end {
                            p.at_end_position = position_of(consumer, &p.tp);
                        }
                    }
                    continue;
                }
                Err(e) => return Err(kafka_err("reading records", e)),
            };
            let Some(p) = parts
                .iter_mut()
                .find(|p| p.tp.1 == msg.partition() && p.tp.0 == msg.topic())
            else {
                continue;
            };
            if self.config.until_end && p.reached_end {
                // Written after the end it reads to.
                continue;
            }
            let record_ts = msg.timestamp().to_millis();
            let ts = match (&self.config.timestamps, &self.extract) {
                (KafkaTimestamp::ProcessingTime, _) => now_ms,
                (KafkaTimestamp::Function(name), Some(f)) => f(
                    msg.key().unwrap_or_default(),
                    msg.payload().unwrap_or_default(),
                    record_ts,
                )
                .map_err(|e| {
                    UserError::from(format!("the Kafka timestamp function '{name}': {e}"))
                })?
                .or(record_ts)
                .unwrap_or(now_ms),
                _ => record_ts.unwrap_or(now_ms),
            };
            p.next = Some(msg.offset() + 1);
            p.newest = p.newest.max(ts);
            p.caught_up = false;
            p.at_end_since = None;
            let key = msg.key().unwrap_or_default().to_vec();
            let value = msg.payload().unwrap_or_default().to_vec();
            out.push(Value::kv(Value::Bytes(key), Value::Bytes(value)), ts);
            n += 1;
        }
        if self.config.until_end {
            for p in parts.iter_mut().filter(|p| !p.reached_end) {
                p.reached_end = at_its_end(p, now_ms);
            }
        }
        // A partition with records still to read holds the watermark at its newest
        // record less the bound; caught-up partitions do not hold it.
        let mut wm = i64::MAX;
        let mut newest = i64::MIN;
        for p in parts.iter() {
            newest = newest.max(p.newest);
            if !p.caught_up {
                wm = wm.min(p.newest.saturating_sub(bound));
            }
        }
        if wm == i64::MAX {
            wm = match self.config.timestamps {
                KafkaTimestamp::ProcessingTime => now_ms,
                _ => newest.saturating_sub(bound),
            };
        }
        self.wm = self.wm.max(wm);
        let finished = self.config.until_end && parts.iter().all(|p| p.reached_end);
        Ok(Polled {
            watermark: if finished { i64::MAX } else { self.wm },
            finished,
        })
    }

    fn split(&self, n: usize) -> Vec<Box<dyn UnboundedSource>> {
        let Ok(consumer) = self.consumer() else {
            return Vec::new();
        };
        let Ok(parts) = self.discover(&consumer) else {
            return Vec::new();
        };
        let n = n.min(parts.len());
        if n < 2 {
            return Vec::new();
        }
        (0..n)
            .map(|i| {
                let mine: Vec<Partition> = parts.iter().skip(i).step_by(n).cloned().collect();
                let mut r = KafkaReader::new(self.config.clone());
                r.parts = Some(mine);
                Box::new(r) as Box<dyn UnboundedSource>
            })
            .collect()
    }

    fn position(&self) -> Option<Vec<u8>> {
        let mut e = Enc::new();
        let known: Vec<(&TopicPartition, i64)> = match &self.parts {
            Some(parts) => parts
                .iter()
                .filter_map(|p| Some((&p.tp, p.next?)))
                .collect(),
            None => self.resume.iter().map(|(tp, &o)| (tp, o)).collect(),
        };
        e.u64(known.len() as u64);
        for (tp, next) in known {
            e.bytes(tp.0.as_bytes()).i64(i64::from(tp.1)).i64(next);
        }
        Some(e.finish())
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), UserError> {
        self.resume = decode_position(position)?;
        Ok(())
    }

    fn checkpointed(&mut self, position: &[u8]) -> Result<(), UserError> {
        if self.config.group.is_none() {
            return Ok(());
        }
        let offsets = decode_position(position)?;
        for (topic, consumer) in &self.consumers {
            let mut tpl = TopicPartitionList::new();
            for ((t, partition), next) in &offsets {
                if t == topic {
                    tpl.add_partition_offset(t, *partition, Offset::Offset(*next))
                        .map_err(|e| kafka_err("committing offsets", e))?;
                }
            }
            if tpl.count() > 0 {
                consumer
                    .commit(&tpl, CommitMode::Async)
                    .map_err(|e| kafka_err("committing offsets", e))?;
            }
        }
        Ok(())
    }
}

/// The consumer's position in a partition (the offset after the last record or control
/// record it passed), when known.
fn position_of(consumer: &BaseConsumer, tp: &TopicPartition) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(&tp.0, tp.1)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Whether an `until_end` reader is done with a partition: it stayed at its end for the
/// grace, at or past the end the broker listed (or long enough to take that as wrong).
fn at_its_end(p: &Partition, now_ms: i64) -> bool {
    let Some(since) = p.at_end_since else {
        return false;
    };
    let waited = now_ms.saturating_sub(since);
    if waited < END_GRACE_MS {
        return false;
    }
    let (Some(end), Some(at)) = (p.listed_end, p.at_end_position.or(p.next)) else {
        return true;
    };
    if at >= end {
        return true;
    }
    if waited >= LISTED_END_PATIENCE_MS {
        tracing::warn!(
            "Kafka partition {}/{} stayed at offset {at} for {} s although the broker listed \
             its end as {end}: reading it ends there",
            p.tp.0,
            p.tp.1,
            waited / 1000
        );
        return true;
    }
    false
}

fn decode_position(position: &[u8]) -> Result<BTreeMap<TopicPartition, i64>, UserError> {
    let mut d = Dec::new(position, "a Kafka position");
    let mut out = BTreeMap::new();
    let n = d.count().map_err(|e| e.to_string())?;
    for _ in 0..n {
        let topic = String::from_utf8(d.bytes().map_err(|e| e.to_string())?.to_vec())
            .map_err(|_| "a Kafka position names a topic that is not UTF-8")?;
        let partition = d.i64().map_err(|e| e.to_string())? as i32;
        let next = d.i64().map_err(|e| e.to_string())?;
        out.insert((topic, partition), next);
    }
    d.end().map_err(|e| e.to_string())?;
    Ok(out)
}

const KAFKA_SOURCE: &str = "beamline.io.ReadFromKafka";

inventory::submit! {
    NamedSource {
        name: KAFKA_SOURCE,
        build: |config| {
            let c: ReadFromKafka = serde_json::from_str(config)?;
            Ok(Box::new(KafkaReader::new(c)))
        },
    }
}

impl PTransform<PBegin> for ReadFromKafka {
    type Output = PCollection<(Bytes, Bytes)>;
    fn expand(self, input: &PBegin) -> PCollection<(Bytes, Bytes)> {
        input.0.annotate(
            SOURCE_ANNOTATION,
            &format!(
                "kafka topic(s) {} at {}",
                self.topics.join(", "),
                self.bootstrap_servers
            ),
        );
        apply_named_source(
            &input.0,
            KAFKA_SOURCE,
            serde_json::to_value(&self).expect("serializes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(listed_end: Option<i64>, at: Option<i64>, since: Option<i64>) -> Partition {
        Partition {
            tp: ("t".into(), 0),
            next: None,
            newest: 0,
            caught_up: since.is_some(),
            at_end_since: since,
            at_end_position: at,
            listed_end,
            reached_end: false,
        }
    }

    #[test]
    fn a_partition_ends_after_the_grace_at_or_past_its_listed_end() {
        // Not at its end, or not for the grace: not done.
        assert!(!at_its_end(&part(Some(10), Some(10), None), 5_000));
        assert!(!at_its_end(
            &part(Some(10), Some(10), Some(0)),
            END_GRACE_MS - 1
        ));
        // At its listed end (or past it: the broker listed too low) for the grace: done.
        assert!(at_its_end(&part(Some(10), Some(10), Some(0)), END_GRACE_MS));
        assert!(at_its_end(&part(Some(3), Some(48), Some(0)), END_GRACE_MS));
        // No listed end or no position: the grace alone.
        assert!(at_its_end(&part(None, Some(4), Some(0)), END_GRACE_MS));
        assert!(at_its_end(&part(Some(10), None, Some(0)), END_GRACE_MS));
        // Below the listed end: it waits for the records still to come, but not forever.
        assert!(!at_its_end(&part(Some(10), Some(7), Some(0)), 20_000));
        assert!(at_its_end(
            &part(Some(10), Some(7), Some(0)),
            LISTED_END_PATIENCE_MS
        ));
    }
}
