//! Translation of SDK-side coders and windowing strategies into proto components.

use beamline_engine::coder::Coder;
use beamline_engine::graph::Windowing;
use beamline_engine::trigger::Trigger;
use beamline_engine::window::{TimestampCombiner, WindowFn};
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;
use std::collections::HashMap;

/// Id of the environment in which Beamline's Rust functions run.
pub(crate) const RUST_ENV: &str = "rust";

fn spec(urn: &str, payload: Vec<u8>) -> pb::FunctionSpec {
    pb::FunctionSpec {
        urn: urn.into(),
        payload,
    }
}

/// Adds `coder` (and its components) to `comps` once; returns its id.
pub(crate) fn coder_id(
    comps: &mut pb::Components,
    ids: &mut HashMap<Coder, String>,
    coder: &Coder,
) -> String {
    if let Some(id) = ids.get(coder) {
        return id.clone();
    }
    let (urn, payload, parts): (&str, Vec<u8>, Vec<&Coder>) = match coder {
        Coder::Bytes => (urns::CODER_BYTES, vec![], vec![]),
        Coder::StringUtf8 => (urns::CODER_STRING_UTF8, vec![], vec![]),
        Coder::VarInt => (urns::CODER_VARINT, vec![], vec![]),
        Coder::Bool => (urns::CODER_BOOL, vec![], vec![]),
        Coder::Double => (urns::CODER_DOUBLE, vec![], vec![]),
        Coder::Kv(k, v) => (urns::CODER_KV, vec![], vec![k, v]),
        Coder::Iterable(e) => (urns::CODER_ITERABLE, vec![], vec![e]),
        Coder::LengthPrefix(e) => (urns::CODER_LENGTH_PREFIX, vec![], vec![e]),
        Coder::Nullable(e) => (urns::CODER_NULLABLE, vec![], vec![e]),
        Coder::Opaque(name) => (urns::BEAMLINE_CODER_SERDE, name.as_bytes().to_vec(), vec![]),
        Coder::Dynamic => (urns::BEAMLINE_CODER_DYNAMIC, vec![], vec![]),
    };
    let component_coder_ids = parts.into_iter().map(|c| coder_id(comps, ids, c)).collect();
    let id = format!("c{}", ids.len());
    comps.coders.insert(
        id.clone(),
        pb::Coder {
            spec: Some(spec(urn, payload)),
            component_coder_ids,
        },
    );
    ids.insert(coder.clone(), id.clone());
    id
}

fn duration(ms: i64) -> Option<beamline_proto::prost_types::Duration> {
    Some(beamline_proto::prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

fn timestamp(ms: i64) -> Option<beamline_proto::prost_types::Timestamp> {
    Some(beamline_proto::prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// The FunctionSpec of a window function, with Beam's standard payloads.
pub(crate) fn window_fn_spec(wf: &WindowFn) -> pb::FunctionSpec {
    match *wf {
        WindowFn::Global => spec(urns::GLOBAL_WINDOWS, vec![]),
        WindowFn::Fixed { size, offset } => spec(
            urns::FIXED_WINDOWS,
            pb::FixedWindowsPayload {
                size: duration(size),
                offset: timestamp(offset),
            }
            .encode_to_vec(),
        ),
        WindowFn::Sliding {
            size,
            period,
            offset,
        } => spec(
            urns::SLIDING_WINDOWS,
            pb::SlidingWindowsPayload {
                size: duration(size),
                offset: timestamp(offset),
                period: duration(period),
            }
            .encode_to_vec(),
        ),
        WindowFn::Sessions { gap } => spec(
            urns::SESSION_WINDOWS,
            pb::SessionWindowsPayload {
                gap_size: duration(gap),
            }
            .encode_to_vec(),
        ),
    }
}

/// Adds a windowing strategy once; returns its id.
pub(crate) fn windowing_id(
    comps: &mut pb::Components,
    ids: &mut HashMap<Windowing, String>,
    w: &Windowing,
) -> String {
    if let Some(id) = ids.get(w) {
        return id.clone();
    }
    let window_coder_urn = match w.window_fn {
        WindowFn::Global => urns::CODER_GLOBAL_WINDOW,
        _ => urns::CODER_INTERVAL_WINDOW,
    };
    let window_coder_id = format!(
        "window_coder_{}",
        window_coder_urn.rsplit(':').nth(1).unwrap_or("w")
    );
    comps
        .coders
        .entry(window_coder_id.clone())
        .or_insert(pb::Coder {
            spec: Some(spec(window_coder_urn, vec![])),
            component_coder_ids: vec![],
        });
    let output_time = match w.timestamp_combiner {
        TimestampCombiner::EndOfWindow => pb::output_time::Enum::EndOfWindow,
        TimestampCombiner::Earliest => pb::output_time::Enum::EarliestInPane,
        TimestampCombiner::Latest => pb::output_time::Enum::LatestInPane,
    };
    let merge_status = if w.window_fn.is_merging() {
        pb::merge_status::Enum::NeedsMerge
    } else {
        pb::merge_status::Enum::NonMerging
    };
    let ws = pb::WindowingStrategy {
        window_fn: Some(window_fn_spec(&w.window_fn)),
        merge_status: merge_status as i32,
        window_coder_id,
        trigger: Some(trigger_proto(&w.trigger)),
        accumulation_mode: if w.accumulating {
            pb::accumulation_mode::Enum::Accumulating as i32
        } else {
            pb::accumulation_mode::Enum::Discarding as i32
        },
        output_time: output_time as i32,
        closing_behavior: pb::closing_behavior::Enum::EmitAlways as i32,
        allowed_lateness: w.allowed_lateness,
        on_time_behavior: pb::on_time_behavior::Enum::FireAlways as i32,
        assigns_to_one_window: !matches!(w.window_fn, WindowFn::Sliding { .. }),
        environment_id: String::new(),
    };
    let id = format!("w{}", ids.len());
    comps.windowing_strategies.insert(id.clone(), ws);
    ids.insert(w.clone(), id.clone());
    id
}

/// The proto of a trigger tree.
pub(crate) fn trigger_proto(t: &Trigger) -> pb::Trigger {
    use pb::trigger as pt;
    let boxed = |t: &Trigger| Some(Box::new(trigger_proto(t)));
    let list = |ts: &[Trigger]| ts.iter().map(trigger_proto).collect::<Vec<_>>();
    let inner = match t {
        Trigger::Default => pt::Trigger::Default(pt::Default {}),
        Trigger::Always => pt::Trigger::Always(pt::Always {}),
        Trigger::Never => pt::Trigger::Never(pt::Never {}),
        Trigger::AfterCount(n) => pt::Trigger::ElementCount(pt::ElementCount {
            element_count: i32::try_from(*n).unwrap_or(i32::MAX),
        }),
        Trigger::AfterProcessingTime(d) => {
            pt::Trigger::AfterProcessingTime(pt::AfterProcessingTime {
                timestamp_transforms: vec![pb::TimestampTransform {
                    timestamp_transform: Some(pb::timestamp_transform::TimestampTransform::Delay(
                        pb::timestamp_transform::Delay { delay_millis: *d },
                    )),
                }],
            })
        }
        Trigger::AfterWatermark { early, late } => {
            pt::Trigger::AfterEndOfWindow(Box::new(pt::AfterEndOfWindow {
                early_firings: early
                    .as_deref()
                    .map(|t| Box::new(trigger_proto(unrepeat(t)))),
                late_firings: late
                    .as_deref()
                    .map(|t| Box::new(trigger_proto(unrepeat(t)))),
            }))
        }
        Trigger::Repeatedly(u) => pt::Trigger::Repeat(Box::new(pt::Repeat {
            subtrigger: boxed(u),
        })),
        Trigger::AfterAny(ts) => pt::Trigger::AfterAny(pt::AfterAny {
            subtriggers: list(ts),
        }),
        Trigger::AfterAll(ts) => pt::Trigger::AfterAll(pt::AfterAll {
            subtriggers: list(ts),
        }),
        Trigger::AfterEach(ts) => pt::Trigger::AfterEach(pt::AfterEach {
            subtriggers: list(ts),
        }),
        Trigger::OrFinally(a, b) => pt::Trigger::OrFinally(Box::new(pt::OrFinally {
            main: boxed(a),
            finally: boxed(b),
        })),
    };
    pb::Trigger {
        trigger: Some(inner),
    }
}

/// Early and late firings are stored without the implicit Repeatedly (Beam adds it back).
fn unrepeat(t: &Trigger) -> &Trigger {
    match t {
        Trigger::Repeatedly(u) => u,
        other => other,
    }
}
