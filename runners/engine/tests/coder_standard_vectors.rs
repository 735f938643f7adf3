//! Beam's standard coder test vectors (standard_coders.yaml, Apache-2.0) against our coders.
//!
//! Every section whose coder Beamline implements is checked: decoding the bytes gives the
//! value, and (unless the section is marked non-deterministic) encoding the value gives
//! the bytes, in the contexts the section names. Skipped coders are listed in `SKIPPED`
//! with the reason.

use beamline_engine::coder::{read_timestamp, write_timestamp, Coder};
use beamline_engine::window::{PaneInfo, Timing, Window};
use beamline_engine::windowed_coder::{WindowCoder, WindowedValueCoder, WindowedValues};
use beamline_engine::Value;
use serde::Deserialize;
use serde_yaml::Value as Y;

/// Coders whose vectors are not checked, and why.
const SKIPPED: &[(&str, &str)] = &[
    ("beam:coder:row:v1", "schema rows are not implemented yet"),
    (
        "beam:coder:timer:v1",
        "timers arrive with the event-time issue",
    ),
    (
        "beam:coder:sharded_key:v1",
        "sharded keys (GroupIntoBatches) are not implemented yet",
    ),
    (
        "beam:coder:custom_window:v1",
        "Beamline has no user-defined window types",
    ),
];

#[derive(Deserialize)]
struct Spec {
    urn: String,
    #[serde(default)]
    components: Vec<Spec>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    non_deterministic: bool,
    #[serde(default)]
    state: Option<Y>,
}

#[derive(Deserialize)]
struct Section {
    coder: Spec,
    nested: Option<bool>,
    examples: serde_yaml::Mapping,
}

fn bytes_of(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("vector bytes are latin-1"))
        .collect()
}

fn value_coder(s: &Spec) -> Option<Coder> {
    let comp = |i: usize| value_coder(&s.components[i]).map(Box::new);
    Some(match s.urn.as_str() {
        "beam:coder:bytes:v1" => Coder::Bytes,
        "beam:coder:string_utf8:v1" => Coder::StringUtf8,
        "beam:coder:varint:v1" => Coder::VarInt,
        "beam:coder:bool:v1" => Coder::Bool,
        "beam:coder:double:v1" => Coder::Double,
        "beam:coder:kv:v1" => Coder::Kv(comp(0)?, comp(1)?),
        "beam:coder:iterable:v1" | "beam:coder:state_backed_iterable:v1" => {
            Coder::Iterable(comp(0)?)
        }
        "beam:coder:length_prefix:v1" => Coder::LengthPrefix(comp(0)?),
        "beam:coder:nullable:v1" => Coder::Nullable(comp(0)?),
        _ => return None,
    })
}

fn window_coder(s: &Spec) -> WindowCoder {
    match s.urn.as_str() {
        "beam:coder:global_window:v1" => WindowCoder::Global,
        "beam:coder:interval_window:v1" => WindowCoder::Interval,
        other => panic!("not a window coder: {other}"),
    }
}

fn to_value(c: &Coder, y: &Y) -> Value {
    match (c, y) {
        (Coder::Bytes, Y::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        (Coder::StringUtf8, Y::String(s)) => Value::Str(s.clone()),
        (Coder::VarInt, Y::Number(n)) => Value::I64(n.as_i64().expect("int")),
        (Coder::Bool, Y::Bool(b)) => Value::Bool(*b),
        (Coder::Double, Y::String(s)) => Value::F64(s.parse().expect("float")),
        (Coder::Kv(k, v), Y::Mapping(m)) => {
            Value::kv(to_value(k, &m["key"]), to_value(v, &m["value"]))
        }
        (Coder::Iterable(e), Y::Sequence(items)) => {
            Value::List(items.iter().map(|i| to_value(e, i)).collect())
        }
        (Coder::Nullable(_), Y::Null) => Value::Null,
        (Coder::Nullable(e), y) => to_value(e, y),
        (c, y) => panic!("no conversion of {y:?} for {c}"),
    }
}

fn to_window(y: &Y) -> Window {
    match y {
        Y::String(s) if s == "global" || s.is_empty() => Window::Global,
        Y::Mapping(m) => {
            let end = m["end"].as_i64().expect("end");
            let span = m["span"].as_i64().expect("span");
            Window::Interval {
                start: end - span,
                end,
            }
        }
        other => panic!("not a window: {other:?}"),
    }
}

fn to_pane(y: &Y) -> PaneInfo {
    let timing = match y["timing"].as_str().expect("timing") {
        "EARLY" => Timing::Early,
        "ON_TIME" => Timing::OnTime,
        "LATE" => Timing::Late,
        _ => Timing::Unknown,
    };
    PaneInfo {
        is_first: y["is_first"].as_bool().expect("is_first"),
        is_last: y["is_last"].as_bool().expect("is_last"),
        timing,
        index: y["index"].as_i64().expect("index"),
        nonspeculative_index: y["on_time_index"].as_i64().expect("on_time_index"),
    }
}

fn to_windowed(c: &Coder, y: &Y) -> WindowedValues {
    WindowedValues {
        value: to_value(c, &y["value"]),
        timestamp: y["timestamp"].as_i64().expect("timestamp"),
        windows: y["windows"]
            .as_sequence()
            .expect("windows")
            .iter()
            .map(to_window)
            .collect(),
        pane: to_pane(&y["pane"]),
    }
}

/// Checks one example; returns false if the coder is not one we check.
fn check(spec: &Spec, nested: bool, bytes: &[u8], expected: &Y) -> bool {
    let deterministic = !spec.non_deterministic;
    match spec.urn.as_str() {
        "beam:coder:global_window:v1" | "beam:coder:interval_window:v1" => {
            let wc = window_coder(spec);
            let w = to_window(expected);
            assert_eq!(wc.decode(&mut &bytes[..]).unwrap(), w);
            let mut out = Vec::new();
            wc.encode(&w, &mut out).unwrap();
            assert_eq!(out, bytes);
        }
        "beam:coder:iterable:v1" | "beam:coder:state_backed_iterable:v1"
            if spec.components[0].urn == "beam:coder:global_window:v1" =>
        {
            let n = expected.as_sequence().expect("list").len() as i32;
            assert_eq!(bytes, n.to_be_bytes());
        }
        "beam:coder:windowed_value:v1" => {
            let wvc = WindowedValueCoder {
                value: value_coder(&spec.components[0]).expect("value coder"),
                window: window_coder(&spec.components[1]),
            };
            let wv = to_windowed(&wvc.value, expected);
            assert_eq!(wvc.decode(&mut &bytes[..], nested).unwrap(), wv);
            let mut out = Vec::new();
            wvc.encode(&wv, &mut out, nested).unwrap();
            assert_eq!(out, bytes);
        }
        "beam:coder:param_windowed_value:v1" => {
            let wvc = WindowedValueCoder {
                value: value_coder(&spec.components[0]).expect("value coder"),
                window: window_coder(&spec.components[1]),
            };
            let payload = bytes_of(spec.payload.as_deref().expect("payload"));
            let (timestamp, windows, pane) = wvc.decode_metadata(&mut payload.as_slice()).unwrap();
            let value = wvc.value.decode(&mut &bytes[..], nested).unwrap();
            let got = WindowedValues {
                value,
                timestamp,
                windows,
                pane,
            };
            assert_eq!(got, to_windowed(&wvc.value, expected));
        }
        _ => {
            let Some(coder) = value_coder(spec) else {
                return false;
            };
            let v = to_value(&coder, expected);
            let mut input = bytes;
            assert_eq!(
                coder.decode(&mut input, nested).unwrap(),
                v,
                "decoding {bytes:?}"
            );
            assert!(input.is_empty(), "decoding left bytes");
            if deterministic {
                let mut out = Vec::new();
                coder.encode(&v, &mut out, nested).unwrap();
                assert_eq!(out, bytes, "encoding {v:?}");
            }
        }
    }
    true
}

#[test]
fn standard_coder_vectors() {
    let text = include_str!("data/standard_coders.yaml");
    let mut checked = 0;
    let mut skipped = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let y = Y::deserialize(doc).expect("yaml");
        if y.is_null() {
            continue;
        }
        let section: Section = serde_yaml::from_value(y).expect("section");
        let urn = section.coder.urn.clone();
        if let Some((_, why)) = SKIPPED.iter().find(|(u, _)| *u == urn) {
            skipped.push(format!("{urn}: {why}"));
            continue;
        }
        if section.coder.state.is_some() {
            skipped.push(format!(
                "{urn} with state tokens: needs the Fn API state channel"
            ));
            continue;
        }
        let contexts: Vec<bool> = match section.nested {
            Some(n) => vec![n],
            None => vec![false, true],
        };
        for (k, v) in &section.examples {
            let bytes = bytes_of(k.as_str().expect("key"));
            for &nested in &contexts {
                assert!(
                    check(&section.coder, nested, &bytes, v),
                    "unhandled coder {urn}"
                );
                checked += 1;
            }
        }
    }
    eprintln!("checked {checked} vectors; skipped: {skipped:#?}");
    assert!(checked >= 90, "only {checked} vectors checked");
}

#[test]
fn timestamps_sort_as_bytes() {
    let mut prev: Option<Vec<u8>> = None;
    for ts in [i64::MIN, -255, -1, 0, 1, 256, i64::MAX] {
        let mut b = Vec::new();
        write_timestamp(ts, &mut b);
        assert_eq!(read_timestamp(&mut b.as_slice()).unwrap(), ts);
        if let Some(p) = prev {
            assert!(p < b);
        }
        prev = Some(b);
    }
}
