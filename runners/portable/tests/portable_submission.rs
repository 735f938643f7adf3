//! The pipeline protos the portable runner submits, read by Apache Beam's own Python SDK:
//! no field Beam does not declare, one root, windowing strategies and standard coders Beam
//! decodes, and its runner's fusion puts every ParDo and combine phase in Beamline's
//! external environment. (Beam Python cannot rebuild the pipeline's objects from it: its
//! `Pipeline.from_runner_api` accepts Python DoFns only.)

mod common;

use beamline::proto::prost::Message;
use beamline::testing::assert_that;
use beamline::{Count, Create, Flatten, GroupByKey, PInput, Pipeline, Sum, WindowInto};
use beamline_runner_portable::submit::for_submission;

/// What Beam Python makes of a submitted pipeline: the transform counts before and after
/// a round trip through its SDK, and the fused stages' transform URNs with environments.
const READ_BACK: &str = r#"
import sys
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners import pipeline_context
from apache_beam.runners.portability.fn_api_runner import translations

data = open(sys.argv[1], 'rb').read()
proto = beam_runner_api_pb2.Pipeline()
proto.ParseFromString(data)
# Every field is one Beam declares: nothing is left when unknown fields are dropped.
known = beam_runner_api_pb2.Pipeline()
known.CopyFrom(proto)
known.DiscardUnknownFields()
print("unknown-field bytes", len(proto.SerializeToString()) - len(known.SerializeToString()))
assert len(proto.root_transform_ids) == 1, proto.root_transform_ids
context = pipeline_context.PipelineContext(proto.components)
# Windowing strategies (window functions, triggers, timestamp combiners) as Beam reads them.
for wid in proto.components.windowing_strategies:
    print("windowing", context.windowing_strategies.get_by_id(wid))
# Coders made only of Beam's standard coders, as Beam decodes them.
def standard(cid):
    c = proto.components.coders[cid]
    return c.spec.urn.startswith('beam:') and all(standard(x) for x in c.component_coder_ids)
for cid in proto.components.coders:
    if standard(cid):
        print("coder", context.coders.get_by_id(cid))
for e in proto.components.environments.values():
    print("environment", e.urn)
# Fusion as Beam's Python runner does it.
stages = translations.create_and_optimize_stages(
    proto, translations.standard_optimize_phases(),
    known_runner_urns=frozenset([
        'beam:transform:impulse:v1', 'beam:transform:group_by_key:v1',
        'beam:transform:flatten:v1']))[1]
for s in stages:
    for t in s.transforms:
        print("stage", s.name.replace(' ', '_'), t.spec.urn, t.environment_id or "-")
"#;

fn pipeline() -> Pipeline {
    let p = Pipeline::new(common::portable());
    let words = p
        .apply(
            "Words",
            Create::of(vec!["a".to_string(), "b".into(), "a".into()]),
        )
        .apply("Fixed", WindowInto::fixed(60_000));
    let counts = words.apply("Count", Count::per_element());
    let other = p.apply("More", Create::of(vec![("c".to_string(), 1i64)]));
    let all = vec![counts, other].apply("Both", Flatten);
    let grouped = all.apply("Group", GroupByKey::new());
    let sums = all.apply("Sum", Sum::per_key());
    assert_that(&sums.map("Key", |(k, _): (String, i64)| k)).contains_in_any_order(vec![
        "a".to_string(),
        "b".into(),
        "c".into(),
    ]);
    let _ = grouped.map("Sizes", |(k, vs): (String, Vec<i64>)| {
        format!("{k}:{}", vs.len())
    });
    p
}

/// Runs [`READ_BACK`] on `submitted`; its standard output.
fn read_back(submitted: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.pb");
    std::fs::write(&path, submitted).unwrap();
    let out = std::process::Command::new(common::beam_python())
        .arg("-c")
        .arg(READ_BACK)
        .arg(&path)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn fields_beamline_does_not_declare_reach_the_service() {
    let mut bytes = pipeline().to_proto().encode_to_vec();
    // Field 99 of Pipeline (a varint, 7): unknown to Beamline and to Beam.
    let unknown = [0x98, 0x06, 0x07];
    bytes.extend_from_slice(&unknown);
    let submitted = for_submission(&bytes, "localhost:1").expect("rewrites");
    assert!(
        submitted.windows(3).any(|w| w == unknown),
        "the unknown field was dropped"
    );
    let stdout = read_back(&submitted);
    assert!(stdout.contains("unknown-field bytes 3\n"), "{stdout}");
}

#[test]
fn beam_python_reads_back_what_the_portable_runner_submits() {
    let p = pipeline();
    let bytes = p.to_proto().encode_to_vec();
    let submitted = for_submission(&bytes, "localhost:1").expect("rewrites");
    let stdout = read_back(&submitted);

    assert!(stdout.contains("unknown-field bytes 0\n"), "{stdout}");
    assert!(
        stdout.contains("windowing Windowing(<apache_beam.transforms.window.FixedWindows"),
        "{stdout}"
    );
    assert!(stdout.contains("coder "), "{stdout}");
    assert!(
        stdout.contains("environment beam:env:external:v1"),
        "{stdout}"
    );
    assert!(!stdout.contains("beamline:env:rust"), "{stdout}");
    // Every ParDo and combine phase of the fused stages runs in our environment.
    for line in stdout.lines().filter(|l| l.starts_with("stage ")) {
        let fields: Vec<&str> = line.split(' ').collect();
        let (urn, env) = (fields[fields.len() - 2], fields[fields.len() - 1]);
        if urn == "beam:transform:pardo:v1" || urn.starts_with("beam:transform:combine_per_key_") {
            assert_ne!(env, "-", "{line}");
        }
    }
    // The combine was lifted into its phases.
    assert!(
        stdout.contains("beam:transform:combine_per_key_precombine:v1"),
        "{stdout}"
    );
}
