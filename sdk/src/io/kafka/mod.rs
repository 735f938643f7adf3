//! Kafka IO: [`ReadFromKafka`] (an unbounded source whose offsets are checkpointed and
//! committed to a consumer group) and [`WriteToKafka`] (transactional with checkpoints:
//! exactly once for consumers reading committed records). Both run on librdkafka.

mod read;
mod timestamps;
mod write;

pub use read::{ReadFromKafka, StartOffset, END_GRACE_MS};
pub use timestamps::{
    register_kafka_timestamp_fn, DynExtractTimestamp, ExtractTimestamp, KafkaTimestamp,
    KafkaTimestampFn,
};
pub use write::WriteToKafka;

use beamline_engine::UserError;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;

/// A topic and one of its partitions.
type TopicPartition = (String, i32);

/// A client configuration for the brokers at `servers` with the user's `properties`.
fn client_config(servers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", servers);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// A Kafka failure while `doing` something, in one line.
fn kafka_err(doing: &str, e: impl std::fmt::Display) -> UserError {
    format!("Kafka: {doing}: {e}").into()
}
