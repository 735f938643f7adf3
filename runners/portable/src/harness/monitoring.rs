//! User metrics as Beam's MonitoringInfos: what a bundle reports to the engine, so the
//! engine's Job API (and its UI) shows Beamline's counters, distributions and gauges.

use std::collections::HashMap;

use beamline_engine::coder::write_varint;
use beamline_engine::metrics::{MetricKey, MetricResults};
use beamline_proto::pipeline::MonitoringInfo;

/// `beam:metric:user:sum_int64:v1`.
pub const USER_COUNTER: &str = "beam:metric:user:sum_int64:v1";
/// `beam:metric:user:distribution_int64:v1`.
pub const USER_DISTRIBUTION: &str = "beam:metric:user:distribution_int64:v1";
/// `beam:metric:user:latest_int64:v1`.
pub const USER_GAUGE: &str = "beam:metric:user:latest_int64:v1";

fn info(
    urn: &str,
    kind: &str,
    key: &MetricKey,
    ids: &HashMap<String, String>,
    payload: Vec<u8>,
) -> MonitoringInfo {
    let transform = ids
        .get(&key.step)
        .cloned()
        .unwrap_or_else(|| key.step.clone());
    MonitoringInfo {
        urn: urn.into(),
        r#type: kind.into(),
        payload,
        labels: [
            ("PTRANSFORM".to_string(), transform),
            ("NAMESPACE".to_string(), key.namespace.clone()),
            ("NAME".to_string(), key.name.clone()),
        ]
        .into_iter()
        .collect(),
        start_time: None,
    }
}

/// Beam's VarIntCoder: an int64 as the varint of its two's-complement bits.
fn varint(v: i64, out: &mut Vec<u8>) {
    write_varint(v as u64, out);
}

/// The user metrics of `metrics` (keyed by transform name) as MonitoringInfos labelled
/// with the transforms' ids (`ids`: name to id).
pub fn monitoring_infos(
    metrics: &MetricResults,
    ids: &HashMap<String, String>,
) -> Vec<MonitoringInfo> {
    let mut out = Vec::new();
    for (key, value) in &metrics.counters {
        let mut payload = Vec::new();
        varint(*value, &mut payload);
        out.push(info(
            USER_COUNTER,
            "beam:metrics:sum_int64:v1",
            key,
            ids,
            payload,
        ));
    }
    for (key, d) in &metrics.distributions {
        let mut payload = Vec::new();
        for v in [d.count, d.sum, d.min, d.max] {
            varint(v, &mut payload);
        }
        out.push(info(
            USER_DISTRIBUTION,
            "beam:metrics:distribution_int64:v1",
            key,
            ids,
            payload,
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for (key, g) in &metrics.gauges {
        let mut payload = Vec::new();
        varint(now, &mut payload);
        varint(g.value, &mut payload);
        out.push(info(
            USER_GAUGE,
            "beam:metrics:latest_int64:v1",
            key,
            ids,
            payload,
        ));
    }
    out
}
