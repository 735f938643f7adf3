//! `WriteToKafka`: a sink of `(key, value)` records; with checkpoints, each checkpoint
//! interval's records are written in one Kafka transaction committed with the checkpoint,
//! so a consumer reading committed records sees each exactly once.

use super::{client_config, kafka_err};
use crate::dofn::{BundleContext, CommitContext, DoFn, NamedDoFn, ProcessContext};
use crate::element::Bytes;
use crate::io::{IO_NAMESPACE, SINK_ANNOTATION};
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use crate::transforms::ParDo;
use beamline_engine::checkpoint::codec::{Dec, Enc};
use beamline_engine::UserError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Writes `(key, value)` records (an empty key is written as none) to a Kafka topic.
///
/// Without checkpoints, records are sent as bundles end (at least once: a failed job
/// that is run again sends them again). With checkpoints, the records of each checkpoint
/// interval are kept in the checkpoint and written in one transaction once it is durable,
/// together with a marker (the checkpoint, as an offset committed for the consumer group
/// `TRANSACTIONAL_ID-commits` in the same transaction): a restarted job commits a
/// checkpoint's records again only if the marker says they were not, so consumers with
/// `isolation.level=read_committed` see every record exactly once. A producer of an
/// earlier run with the same transactional id is fenced off.
///
/// # Examples
/// ```no_run
/// use beamline::io::kafka::WriteToKafka;
/// use beamline::{Bytes, Create, Pipeline, PipelineOptions};
/// let p = Pipeline::new(PipelineOptions::default());
/// p.apply("Records", Create::of(vec![(Bytes(b"k".to_vec()), Bytes(b"v".to_vec()))]))
///     .apply("Write", WriteToKafka::new("127.0.0.1:9092", "counts"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WriteToKafka {
    /// `host:port,...` of the brokers.
    pub bootstrap_servers: String,
    /// The topic written.
    pub topic: String,
    /// The producer's transactional id (default `beamline-TOPIC`): one per sink of a job.
    pub transactional_id: Option<String>,
    /// More librdkafka producer properties.
    pub properties: BTreeMap<String, String>,
}

impl WriteToKafka {
    /// Writes to `topic` on the brokers at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        WriteToKafka {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            transactional_id: None,
            properties: BTreeMap::new(),
        }
    }
    /// The producer's transactional id (unique per sink; the same across restarts).
    pub fn with_transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }
    /// Sets a librdkafka producer property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
    fn txn_id(&self) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| format!("beamline-{}", self.topic))
    }
}

/// How long producer and transaction calls may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The producer's delivery reports: records the broker did not take are counted, so the
/// sink fails instead of dropping them silently.
#[derive(Debug, Default)]
struct Deliveries {
    /// Records not delivered, and the first one's error.
    failed: Mutex<(u64, Option<String>)>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.0 += 1;
            failed.1.get_or_insert_with(|| e.to_string());
        }
    }
}

type KafkaProducer = ThreadedProducer<Deliveries>;

/// The sink's DoFn.
#[derive(Serialize, Deserialize)]
struct KafkaWriter {
    config: WriteToKafka,
    #[serde(skip)]
    producer: Option<KafkaProducer>,
    /// The producer runs transactions (checkpoints are on).
    #[serde(skip)]
    transactional: bool,
    /// Records since the last checkpoint (with checkpoints) or bundle end.
    #[serde(skip)]
    pending: Records,
    /// The job's line of checkpoints: markers of another line do not count.
    #[serde(skip)]
    lineage: Option<u32>,
    /// Records taken in this bundle (reported as `beamline.io/elementsWritten`).
    #[serde(skip)]
    taken: i64,
    /// Which parallel instance of the sink this is (each has a transactional id).
    #[serde(skip)]
    instance: usize,
    /// The consumer of the commit-marker group, and the marker this instance committed
    /// last (read from Kafka once, then known).
    #[serde(skip)]
    marker: Option<BaseConsumer>,
    #[serde(skip)]
    known_marker: Option<i64>,
}

impl Clone for KafkaWriter {
    fn clone(&self) -> Self {
        KafkaWriter {
            config: self.config.clone(),
            producer: None,
            transactional: false,
            pending: Vec::new(),
            lineage: None,
            taken: 0,
            instance: 0,
            marker: None,
            known_marker: None,
        }
    }
}

/// The marker offset of checkpoint `id` of `lineage`.
fn marker(lineage: u32, id: u64) -> i64 {
    (i64::from(lineage & 0x3fff_ffff) << 32) | (id & 0xffff_ffff) as i64
}

impl KafkaWriter {
    /// This instance's transactional id: the sink's, with the instance's number after the
    /// first (the workers of a distributed job must not fence each other off).
    fn txn_id(&self) -> String {
        match self.instance {
            0 => self.config.txn_id(),
            i => format!("{}-{i}", self.config.txn_id()),
        }
    }

    fn producer(&mut self) -> Result<&KafkaProducer, UserError> {
        if self.producer.is_none() {
            let mut c = client_config(&self.config.bootstrap_servers, &self.config.properties);
            c.set("enable.idempotence", "true");
            if self.transactional {
                c.set("transactional.id", self.txn_id());
            }
            let p: KafkaProducer = c
                .create_with_context(Deliveries::default())
                .map_err(|e| kafka_err("creating a producer", e))?;
            if self.transactional {
                // Fences off a producer of an earlier run and aborts its open transaction.
                p.init_transactions(CALL_TIMEOUT)
                    .map_err(|e| kafka_err("starting transactions", e))?;
            }
            self.producer = Some(p);
        }
        Ok(self.producer.as_ref().expect("created above"))
    }

    /// Sends `records`; those of a checkpoint's transaction carry a `beamline-commit`
    /// header (`LINEAGE:CHECKPOINT:INDEX`) saying which commit wrote them.
    fn send(&mut self, records: &Records, commit: Option<(u32, u64)>) -> Result<(), UserError> {
        let topic = self.config.topic.clone();
        let p = self.producer()?;
        for (i, (k, v)) in records.iter().enumerate() {
            let mut r = BaseRecord::<[u8], [u8]>::to(&topic).payload(v.as_slice());
            if !k.is_empty() {
                r = r.key(k.as_slice());
            }
            if let Some((lineage, id)) = commit {
                let tag = format!("{lineage}:{id}:{i}");
                r = r.headers(OwnedHeaders::new().insert(Header {
                    key: "beamline-commit",
                    value: Some(tag.as_bytes()),
                }));
            }
            let mut r = r;
            // A full queue empties as the producer's thread delivers.
            loop {
                match p.send(r) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        if !matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ) {
                            return Err(kafka_err(&format!("writing to '{topic}'"), e));
                        }
                        r = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until every record sent is delivered; records the broker did not take are an
    /// error naming how many and why.
    fn flush(&self) -> Result<(), UserError> {
        let Some(p) = &self.producer else {
            return Ok(());
        };
        let topic = &self.config.topic;
        p.flush(CALL_TIMEOUT)
            .map_err(|e| kafka_err(&format!("writing to '{topic}'"), e))?;
        let failed = p.context().failed.lock().unwrap_or_else(|p| p.into_inner());
        match &*failed {
            (0, _) => Ok(()),
            (n, first) => Err(kafka_err(
                &format!("writing to '{topic}'"),
                format!(
                    "{n} record(s) not delivered; the first: {}",
                    first.as_deref().unwrap_or("unknown error")
                ),
            )),
        }
    }

    fn commits_group(&self) -> String {
        format!("{}-commits", self.txn_id())
    }

    /// The marker committed last, if any.
    fn committed_marker(&mut self) -> Result<Option<i64>, UserError> {
        if let Some(m) = self.known_marker {
            return Ok(Some(m));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.config.topic, 0);
        let consumer = self.marker_consumer()?;
        let got = consumer
            .committed_offsets(tpl, CALL_TIMEOUT)
            .map_err(|e| kafka_err("reading the sink's commit marker", e))?;
        Ok(got.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
    }

    /// The consumer of the sink's commit-marker group (created once).
    fn marker_consumer(&mut self) -> Result<&BaseConsumer, UserError> {
        if self.marker.is_none() {
            let mut c = client_config(&self.config.bootstrap_servers, &self.config.properties);
            c.set("group.id", self.commits_group())
                .set("enable.auto.commit", "false");
            self.marker = Some(
                c.create()
                    .map_err(|e| kafka_err("creating the sink's marker consumer", e))?,
            );
        }
        Ok(self.marker.as_ref().expect("created above"))
    }

    /// Writes checkpoint `id`'s records in one transaction with its marker, unless the
    /// marker says a run before did.
    fn commit_records(
        &mut self,
        lineage: u32,
        id: u64,
        records: &Records,
    ) -> Result<(), UserError> {
        let m = marker(lineage, id);
        if let Some(done) = self.committed_marker()? {
            if done >> 32 == m >> 32 && done >= m {
                return Ok(());
            }
        }
        let group = self
            .marker_consumer()?
            .group_metadata()
            .ok_or("the sink's marker consumer has no group metadata")?;
        let topic = self.config.topic.clone();
        self.producer()?
            .begin_transaction()
            .map_err(|e| kafka_err("beginning a transaction", e))?;
        let r = (|| {
            self.send(records, Some((lineage, id)))?;
            self.flush()?;
            let p = self.producer()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(m))
                .map_err(|e| kafka_err("marking the commit", e))?;
            p.send_offsets_to_transaction(&tpl, &group, CALL_TIMEOUT)
                .map_err(|e| kafka_err("marking the commit", e))?;
            p.commit_transaction(CALL_TIMEOUT)
                .map_err(|e| kafka_err("committing a transaction", e))
        })();
        match &r {
            Ok(()) => self.known_marker = Some(m),
            Err(_) => {
                if let Some(p) = &self.producer {
                    let _ = p.abort_transaction(CALL_TIMEOUT);
                }
            }
        }
        r
    }
}

impl DoFn for KafkaWriter {
    type In = (Bytes, Bytes);
    type Out = ();
    fn process(
        &mut self,
        (k, v): (Bytes, Bytes),
        _ctx: &mut ProcessContext<'_, '_, ()>,
    ) -> Result<(), UserError> {
        self.pending.push((k.0, v.0));
        self.taken += 1;
        Ok(())
    }

    fn finish_bundle(&mut self, ctx: &mut BundleContext<'_, '_, ()>) -> Result<(), UserError> {
        ctx.inc_counter(
            IO_NAMESPACE,
            "elementsWritten",
            std::mem::take(&mut self.taken),
        );
        if self.transactional || self.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.pending);
        self.send(&records, None)
    }

    fn teardown(&mut self) -> Result<(), UserError> {
        self.flush()
    }

    fn commits(&self) -> bool {
        true
    }

    fn commits_enabled(&mut self, instance: usize) {
        self.transactional = true;
        self.instance = instance;
    }

    fn prepare_commit(
        &mut self,
        checkpoint: u64,
        _last: bool,
    ) -> Result<Option<Vec<u8>>, UserError> {
        let lineage = *self
            .lineage
            .get_or_insert_with(|| rand::random::<u32>() & 0x3fff_ffff);
        // The producer starts with the first checkpoint, even when this instance has
        // nothing to write: starting fences off a killed run's producer and aborts its
        // open transaction, which otherwise hides every record after it from
        // read-committed consumers (until the broker times it out, if it does).
        if self.transactional {
            self.producer()?;
        }
        let mut e = Enc::new();
        e.u64(u64::from(lineage)).u64(checkpoint);
        e.u64(self.pending.len() as u64);
        for (k, v) in self.pending.drain(..) {
            e.bytes(&k).bytes(&v);
        }
        Ok(Some(e.finish()))
    }

    fn commit(&mut self, record: &[u8], _ctx: &mut CommitContext<'_>) -> Result<(), UserError> {
        let bad = |e: beamline_engine::EngineError| UserError::from(e.to_string());
        let mut d = Dec::new(record, "a Kafka sink's commit");
        let lineage = d.u64().map_err(bad)? as u32;
        let id = d.u64().map_err(bad)?;
        let n = d.count().map_err(bad)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            records.push((
                d.bytes().map_err(bad)?.to_vec(),
                d.bytes().map_err(bad)?.to_vec(),
            ));
        }
        d.end().map_err(bad)?;
        // A restarted job continues the line of the checkpoint it restored.
        self.lineage = Some(lineage);
        self.transactional = true;
        self.producer()?;
        if records.is_empty() {
            return Ok(());
        }
        self.commit_records(lineage, id, &records)
    }
}

impl NamedDoFn for KafkaWriter {
    const NAME: &'static str = "beamline.io.WriteToKafka";
}
crate::register_dofn!(KafkaWriter);

impl PTransform<PCollection<(Bytes, Bytes)>> for WriteToKafka {
    type Output = PCollection<()>;
    fn expand(self, input: &PCollection<(Bytes, Bytes)>) -> PCollection<()> {
        input.pipeline().annotate(
            SINK_ANNOTATION,
            &format!("kafka topic '{}' at {}", self.topic, self.bootstrap_servers),
        );
        input.apply(
            "Write",
            ParDo::named(KafkaWriter {
                config: self,
                producer: None,
                transactional: false,
                pending: Vec::new(),
                lineage: None,
                taken: 0,
                instance: 0,
                marker: None,
                known_marker: None,
            }),
        )
    }
}
