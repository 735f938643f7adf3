//! Coders, window functions, windowing strategies and triggers of the proto -> the engine's.

use crate::{invalid, Result};
use beamline_engine::coder::Coder;
use beamline_engine::graph::Windowing;
use beamline_engine::trigger::Trigger;
use beamline_engine::window::{TimestampCombiner, WindowFn};
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;

/// Translates a proto coder into an engine coder.
///
/// # Errors
/// Unknown ids or coder URNs the engine cannot encode.
pub fn coder(comps: &pb::Components, id: &str) -> Result<Coder> {
    let c = comps
        .coders
        .get(id)
        .ok_or_else(|| invalid(format!("unknown coder id '{id}'")))?;
    let spec = c
        .spec
        .as_ref()
        .ok_or_else(|| invalid(format!("coder '{id}' has no spec")))?;
    let comp = |i: usize| -> Result<Box<Coder>> {
        let cid = c
            .component_coder_ids
            .get(i)
            .ok_or_else(|| invalid(format!("coder '{id}' ({}) lacks component #{i}", spec.urn)))?;
        Ok(Box::new(coder(comps, cid)?))
    };
    Ok(match spec.urn.as_str() {
        urns::CODER_BYTES => Coder::Bytes,
        urns::CODER_STRING_UTF8 => Coder::StringUtf8,
        urns::CODER_VARINT => Coder::VarInt,
        urns::CODER_BOOL => Coder::Bool,
        urns::CODER_DOUBLE => Coder::Double,
        urns::CODER_KV => Coder::Kv(comp(0)?, comp(1)?),
        urns::CODER_ITERABLE => Coder::Iterable(comp(0)?),
        urns::CODER_LENGTH_PREFIX => Coder::LengthPrefix(comp(0)?),
        urns::CODER_NULLABLE => Coder::Nullable(comp(0)?),
        urns::BEAMLINE_CODER_DYNAMIC => Coder::Dynamic,
        urns::BEAMLINE_CODER_SERDE => {
            Coder::Opaque(String::from_utf8_lossy(&spec.payload).into_owned())
        }
        other => {
            return Err(invalid(format!(
                "coder '{id}' has URN '{other}', which Beamline's engine cannot encode"
            )))
        }
    })
}

fn millis_of_duration(d: &Option<beamline_proto::prost_types::Duration>) -> i64 {
    d.as_ref()
        .map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
        .unwrap_or(0)
}

fn millis_of_timestamp(t: &Option<beamline_proto::prost_types::Timestamp>) -> i64 {
    t.as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0)
}

/// Translates a window function spec.
///
/// # Errors
/// Unknown window fn URNs and undecodable payloads.
pub fn window_fn(spec: &pb::FunctionSpec) -> Result<WindowFn> {
    let bad = |e: beamline_proto::prost::DecodeError| {
        invalid(format!("bad payload for window fn '{}': {e}", spec.urn))
    };
    Ok(match spec.urn.as_str() {
        urns::GLOBAL_WINDOWS => WindowFn::Global,
        urns::FIXED_WINDOWS => {
            let p = pb::FixedWindowsPayload::decode(spec.payload.as_slice()).map_err(bad)?;
            let size = millis_of_duration(&p.size);
            if size <= 0 {
                return Err(invalid("fixed windows need a positive size"));
            }
            WindowFn::Fixed {
                size,
                offset: millis_of_timestamp(&p.offset),
            }
        }
        urns::SLIDING_WINDOWS => {
            let p = pb::SlidingWindowsPayload::decode(spec.payload.as_slice()).map_err(bad)?;
            let (size, period) = (millis_of_duration(&p.size), millis_of_duration(&p.period));
            if size <= 0 || period <= 0 {
                return Err(invalid("sliding windows need a positive size and period"));
            }
            WindowFn::Sliding {
                size,
                period,
                offset: millis_of_timestamp(&p.offset),
            }
        }
        urns::SESSION_WINDOWS => {
            let p = pb::SessionWindowsPayload::decode(spec.payload.as_slice()).map_err(bad)?;
            let gap = millis_of_duration(&p.gap_size);
            if gap <= 0 {
                return Err(invalid("session windows need a positive gap"));
            }
            WindowFn::Sessions { gap }
        }
        other => return Err(invalid(format!("unsupported window fn URN '{other}'"))),
    })
}

/// Translates a windowing strategy.
///
/// # Errors
/// Unknown ids, window fns or unsupported settings.
pub fn windowing(comps: &pb::Components, id: &str) -> Result<Windowing> {
    let ws = comps
        .windowing_strategies
        .get(id)
        .ok_or_else(|| invalid(format!("unknown windowing strategy id '{id}'")))?;
    let wf = ws
        .window_fn
        .as_ref()
        .ok_or_else(|| invalid(format!("windowing strategy '{id}' has no window fn")))?;
    let timestamp_combiner = match pb::output_time::Enum::try_from(ws.output_time) {
        Ok(pb::output_time::Enum::EarliestInPane) => TimestampCombiner::Earliest,
        Ok(pb::output_time::Enum::LatestInPane) => TimestampCombiner::Latest,
        _ => TimestampCombiner::EndOfWindow,
    };
    let trigger = match &ws.trigger {
        Some(t) => trigger(t)?,
        None => Trigger::Default,
    };
    Ok(Windowing {
        window_fn: window_fn(wf)?,
        timestamp_combiner,
        trigger,
        accumulating: ws.accumulation_mode == pb::accumulation_mode::Enum::Accumulating as i32,
        allowed_lateness: ws.allowed_lateness.max(0),
    })
}

/// Translates a trigger tree.
///
/// # Errors
/// Unsupported triggers (synchronized processing time, aligned processing-time delays).
pub fn trigger(t: &pb::Trigger) -> Result<Trigger> {
    use pb::trigger::Trigger as T;
    let subs = |v: &[pb::Trigger]| v.iter().map(trigger).collect::<Result<Vec<_>>>();
    let boxed = |t: &Option<Box<pb::Trigger>>| -> Result<Option<Trigger>> {
        t.as_deref().map(trigger).transpose()
    };
    Ok(match &t.trigger {
        None | Some(T::Default(_)) => Trigger::Default,
        Some(T::Always(_)) => Trigger::Always,
        Some(T::Never(_)) => Trigger::Never,
        Some(T::ElementCount(c)) => Trigger::AfterCount(i64::from(c.element_count.max(1))),
        Some(T::AfterAll(a)) => Trigger::AfterAll(subs(&a.subtriggers)?),
        Some(T::AfterAny(a)) => Trigger::AfterAny(subs(&a.subtriggers)?),
        Some(T::AfterEach(a)) => Trigger::AfterEach(subs(&a.subtriggers)?),
        Some(T::AfterEndOfWindow(a)) => {
            Trigger::after_watermark(boxed(&a.early_firings)?, boxed(&a.late_firings)?)
        }
        Some(T::AfterProcessingTime(p)) => {
            let mut delay = 0;
            for tt in &p.timestamp_transforms {
                match &tt.timestamp_transform {
                    Some(pb::timestamp_transform::TimestampTransform::Delay(d)) => {
                        delay += d.delay_millis
                    }
                    _ => {
                        return Err(invalid(
                            "AfterProcessingTime with aligned timestamps is not supported",
                        ))
                    }
                }
            }
            Trigger::AfterProcessingTime(delay)
        }
        Some(T::Repeat(r)) => {
            Trigger::Repeatedly(Box::new(boxed(&r.subtrigger)?.unwrap_or(Trigger::Default)))
        }
        Some(T::OrFinally(o)) => Trigger::OrFinally(
            Box::new(boxed(&o.main)?.unwrap_or(Trigger::Default)),
            Box::new(boxed(&o.finally)?.unwrap_or(Trigger::Never)),
        ),
        Some(T::AfterSynchronizedProcessingTime(_)) => {
            return Err(invalid("AfterSynchronizedProcessingTime is not supported"))
        }
    })
}
