//! A pipeline proto written by Apache Beam Python 2.77 (see data/make_beam_fixture.py)
//! decodes with our types, and its transforms, coders and windowing are what we expect.

use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;

fn fixture() -> pb::Pipeline {
    let bytes = include_bytes!("data/beam_python_2_77_pipeline.pb");
    pb::Pipeline::decode(&bytes[..]).expect("Beam's pipeline decodes")
}

fn transform<'a>(p: &'a pb::Pipeline, name: &str) -> &'a pb::PTransform {
    p.components
        .as_ref()
        .unwrap()
        .transforms
        .values()
        .find(|t| t.unique_name == name)
        .unwrap_or_else(|| panic!("no transform {name}"))
}

fn urn(t: &pb::PTransform) -> &str {
    t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("")
}

#[test]
fn transforms_have_beams_urns() {
    let p = fixture();
    assert_eq!(p.root_transform_ids.len(), 1);
    assert_eq!(urn(transform(&p, "Create/Impulse")), urns::IMPULSE);
    assert_eq!(urn(transform(&p, "Split")), urns::PAR_DO);
    assert_eq!(urn(transform(&p, "Group")), urns::GROUP_BY_KEY);
    assert_eq!(urn(transform(&p, "Fixed")), urns::ASSIGN_WINDOWS);
    assert_eq!(
        urn(transform(&p, "Create/MaybeReshuffle/Reshuffle")),
        urns::RESHUFFLE
    );
    let sum = transform(&p, "Sum");
    assert_eq!(urn(sum), urns::COMBINE_PER_KEY);
    assert_eq!(sum.subtransforms.len(), 2);
    let payload =
        pb::CombinePayload::decode(sum.spec.as_ref().unwrap().payload.as_slice()).unwrap();
    assert!(!payload.accumulator_coder_id.is_empty());
    let pardo = pb::ParDoPayload::decode(
        transform(&p, "Split")
            .spec
            .as_ref()
            .unwrap()
            .payload
            .as_slice(),
    )
    .unwrap();
    assert!(pardo.do_fn.unwrap().urn.starts_with("beam:dofn:"));
}

#[test]
fn coders_and_windowing_are_decoded() {
    let p = fixture();
    let c = p.components.as_ref().unwrap();
    let group = transform(&p, "Group");
    let out = &c.pcollections[group.outputs.values().next().unwrap()];
    // GroupByKey output: KV<pickled key, iterable<...>> (Python keys are pickled).
    let kv = &c.coders[&out.coder_id];
    assert_eq!(kv.spec.as_ref().unwrap().urn, urns::CODER_KV);
    let key = &c.coders[&kv.component_coder_ids[0]];
    assert_eq!(
        key.spec.as_ref().unwrap().urn,
        "beam:coder:pickled_python:v1"
    );
    let values = &c.coders[&kv.component_coder_ids[1]];
    assert_eq!(values.spec.as_ref().unwrap().urn, urns::CODER_ITERABLE);

    let fixed = transform(&p, "Fixed");
    let wpay =
        pb::WindowIntoPayload::decode(fixed.spec.as_ref().unwrap().payload.as_slice()).unwrap();
    let wf = wpay.window_fn.unwrap();
    assert_eq!(wf.urn, urns::FIXED_WINDOWS);
    let fw = pb::FixedWindowsPayload::decode(wf.payload.as_slice()).unwrap();
    assert_eq!(fw.size.unwrap().seconds, 60);

    let windowed = &c.pcollections[fixed.outputs.values().next().unwrap()];
    let ws = &c.windowing_strategies[&windowed.windowing_strategy_id];
    assert_eq!(ws.window_fn.as_ref().unwrap().urn, urns::FIXED_WINDOWS);
    assert_eq!(ws.allowed_lateness, 30_000);
    assert_eq!(
        ws.accumulation_mode,
        pb::accumulation_mode::Enum::Accumulating as i32
    );
    assert_eq!(ws.merge_status, pb::merge_status::Enum::NonMerging as i32);
    assert_eq!(
        c.coders[&ws.window_coder_id].spec.as_ref().unwrap().urn,
        urns::CODER_INTERVAL_WINDOW
    );
    let Some(pb::trigger::Trigger::AfterEndOfWindow(aeow)) =
        ws.trigger.as_ref().unwrap().trigger.as_ref()
    else {
        panic!("expected AfterEndOfWindow, got {:?}", ws.trigger);
    };
    let early = aeow
        .early_firings
        .as_ref()
        .unwrap()
        .trigger
        .as_ref()
        .unwrap();
    assert_eq!(
        early,
        &pb::trigger::Trigger::ElementCount(pb::trigger::ElementCount { element_count: 2 })
    );
    let late = aeow
        .late_firings
        .as_ref()
        .unwrap()
        .trigger
        .as_ref()
        .unwrap();
    assert_eq!(
        late,
        &pb::trigger::Trigger::ElementCount(pb::trigger::ElementCount { element_count: 1 })
    );
}

#[test]
fn reencoding_preserves_the_pipeline() {
    let p = fixture();
    let again = pb::Pipeline::decode(p.encode_to_vec().as_slice()).unwrap();
    assert_eq!(again, p);
}

#[test]
fn malformed_bytes_are_an_error() {
    let bytes = include_bytes!("data/beam_python_2_77_pipeline.pb");
    assert!(pb::Pipeline::decode(&bytes[..bytes.len() / 2]).is_err());
    assert!(pb::Pipeline::decode(&[0xff, 0xff, 0xff][..]).is_err());
}
