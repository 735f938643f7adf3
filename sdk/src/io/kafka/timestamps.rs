//! The event time of a Kafka record: its own timestamp, the time it was read, or what a
//! function registered by name (linked, or at run time) says.

use beamline_engine::UserError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The event timestamp of a record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum KafkaTimestamp {
    /// The record's own timestamp (create or log-append time), the default.
    #[default]
    Record,
    /// When the record was read.
    ProcessingTime,
    /// What the [`KafkaTimestampFn`] registered under this name says (the record's own
    /// timestamp where it says nothing).
    Function(String),
}

/// A function giving a Kafka record's event time (ms) from its key, value and own
/// timestamp; `None` keeps the record's timestamp. Register it with
/// [`register_kafka_timestamp!`](crate::register_kafka_timestamp) and name it in
/// [`ReadFromKafka::with_timestamp_fn`](super::ReadFromKafka::with_timestamp_fn); every process running the pipeline must link it.
#[derive(Debug)]
pub struct KafkaTimestampFn {
    /// The name pipelines use.
    pub name: &'static str,
    /// The function.
    pub extract: ExtractTimestamp,
}

/// A [`KafkaTimestampFn`]'s function: key, value and the record's own timestamp in, event
/// time out (ms).
pub type ExtractTimestamp = fn(key: &[u8], value: &[u8], record_ms: Option<i64>) -> Option<i64>;

inventory::collect!(KafkaTimestampFn);

/// Registers a [`KafkaTimestampFn`]: `register_kafka_timestamp!("name", path::to::fn)`.
///
/// # Examples
/// ```
/// fn from_value(_key: &[u8], value: &[u8], _record: Option<i64>) -> Option<i64> {
///     std::str::from_utf8(value).ok()?.split(',').nth(1)?.parse().ok()
/// }
/// beamline::register_kafka_timestamp!("doc.second_field", from_value);
/// ```
#[macro_export]
macro_rules! register_kafka_timestamp {
    ($name:expr, $f:path) => {
        $crate::engine::inventory::submit! {
            $crate::io::kafka::KafkaTimestampFn { name: $name, extract: $f }
        }
    };
}

/// A timestamp function registered while the program runs (see
/// [`register_kafka_timestamp_fn`]); unlike an [`ExtractTimestamp`], it may fail.
pub type DynExtractTimestamp =
    Arc<dyn Fn(&[u8], &[u8], Option<i64>) -> Result<Option<i64>, UserError> + Send + Sync>;

/// Timestamp functions registered while the program runs, by name.
static REGISTERED: Mutex<BTreeMap<String, DynExtractTimestamp>> = Mutex::new(BTreeMap::new());

/// Registers a timestamp function under `name` while the program runs, for
/// [`ReadFromKafka::with_timestamp_fn`](super::ReadFromKafka::with_timestamp_fn): what the Python package does with a callable.
/// Every process running the pipeline must register it before the pipeline runs (a
/// distributed job's workers run the program, so they do); an error the function returns
/// fails the job. A later registration under the same name replaces an earlier one.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// beamline::io::kafka::register_kafka_timestamp_fn(
///     "doc.length",
///     Arc::new(|_key: &[u8], value: &[u8], _record: Option<i64>| Ok(Some(value.len() as i64))),
/// );
/// ```
pub fn register_kafka_timestamp_fn(name: impl Into<String>, f: DynExtractTimestamp) {
    REGISTERED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.into(), f);
}

/// The timestamp function registered under `name` (linked, or registered at run time).
pub(super) fn timestamp_fn(name: &str) -> Result<DynExtractTimestamp, UserError> {
    if let Some(f) = inventory::iter::<KafkaTimestampFn>
        .into_iter()
        .find(|f| f.name == name)
    {
        let extract = f.extract;
        return Ok(Arc::new(move |k: &[u8], v: &[u8], r: Option<i64>| {
            Ok(extract(k, v, r))
        }));
    }
    let registered = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    registered.get(name).cloned().ok_or_else(|| {
        format!(
            "no Kafka timestamp function '{name}' is linked into this program or registered \
             in it (register it with beamline::register_kafka_timestamp!)"
        )
        .into()
    })
}
