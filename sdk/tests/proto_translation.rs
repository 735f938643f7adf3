//! The whole pipeline translates to the portable proto (Beam's URNs, standard coders,
//! windowing strategies) and back: bytes round-trip, and the local runner's translation
//! rebuilds the graph from the proto alone.

use beamline::engine::graph::NodeKind;
use beamline::engine::spec::{FnRef, UserFnSpec};
use beamline::proto::pipeline as pb;
use beamline::proto::prost::Message;
use beamline::proto::urns;
use beamline::{Create, Pipeline, PipelineOptions, ReadFromText, Sum, WindowInto};

fn sample() -> Pipeline {
    let p = Pipeline::new(PipelineOptions::default());
    let kvs = p.apply(
        "Kvs",
        Create::of(vec![("a".to_string(), 1i64), ("b".to_string(), 2)]),
    );
    let sums = kvs.apply("SumPerKey", Sum::per_key());
    let lookup = sums.as_map();
    let lines = p.apply("Read", ReadFromText::new("/tmp/*.txt"));
    lines
        .map("Len", |l: String| l.len() as i64)
        .apply("Window", WindowInto::fixed(60_000))
        .apply(
            "Lookup",
            beamline::ParDo::of(beamline::transforms::Map::new(|x: i64| x))
                .with_side_input(&lookup),
        )
        .group_by_key_like();
    p
}

trait GroupLike {
    fn group_by_key_like(&self);
}

impl GroupLike for beamline::PCollection<i64> {
    fn group_by_key_like(&self) {
        self.map("Pair", |x: i64| (x % 3, x)).group_by_key("Group");
    }
}

fn transform<'a>(p: &'a pb::Pipeline, name: &str) -> &'a pb::PTransform {
    p.components
        .as_ref()
        .unwrap()
        .transforms
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn urn(t: &pb::PTransform) -> &str {
    t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("")
}

fn coder_urn(p: &pb::Pipeline, id: &str) -> String {
    p.components.as_ref().unwrap().coders[id]
        .spec
        .as_ref()
        .unwrap()
        .urn
        .clone()
}

#[test]
fn proto_bytes_round_trip() {
    let proto = sample().to_proto();
    let bytes = proto.encode_to_vec();
    assert_eq!(pb::Pipeline::decode(bytes.as_slice()).unwrap(), proto);
    // Building the same pipeline again gives the same proto (stable names and ids).
    assert_eq!(sample().to_proto(), proto);
}

#[test]
fn transforms_use_beam_urns_and_beamline_functions() {
    let p = sample().to_proto();
    assert_eq!(
        p.root_transform_ids,
        vec![
            "Kvs",
            "SumPerKey",
            "Read",
            "Len",
            "Window",
            "Lookup",
            "Pair",
            "Group"
        ]
    );
    assert_eq!(urn(transform(&p, "Kvs/Impulse")), urns::IMPULSE);
    assert_eq!(urn(transform(&p, "Kvs/Reshuffle")), urns::RESHUFFLE);
    assert_eq!(urn(transform(&p, "Group")), urns::GROUP_BY_KEY);
    assert_eq!(urn(transform(&p, "Window")), urns::ASSIGN_WINDOWS);

    // A closure ParDo names itself; a named DoFn carries its config.
    let len = pb::ParDoPayload::decode(
        transform(&p, "Len")
            .spec
            .as_ref()
            .unwrap()
            .payload
            .as_slice(),
    )
    .unwrap();
    let spec = UserFnSpec::from_payload(&len.do_fn.unwrap().payload).unwrap();
    assert_eq!(spec.function, FnRef::Closure { id: "Len".into() });
    assert_eq!(transform(&p, "Len").environment_id, "rust");
    let glob = pb::ParDoPayload::decode(
        transform(&p, "Read/ExpandGlob")
            .spec
            .as_ref()
            .unwrap()
            .payload
            .as_slice(),
    )
    .unwrap();
    let spec = UserFnSpec::from_payload(&glob.do_fn.unwrap().payload).unwrap();
    let FnRef::Named { name, config } = spec.function else {
        panic!("expected a named DoFn")
    };
    assert_eq!(name, "beamline.io.ExpandGlob");
    assert_eq!(config["pattern"], "/tmp/*.txt");

    // Combine per key is a composite with a CombinePayload and an expansion.
    let sum = transform(&p, "SumPerKey");
    assert_eq!(urn(sum), urns::COMBINE_PER_KEY);
    assert_eq!(sum.subtransforms.len(), 2);
    let cp = pb::CombinePayload::decode(sum.spec.as_ref().unwrap().payload.as_slice()).unwrap();
    let f = UserFnSpec::from_payload(&cp.combine_fn.unwrap().payload).unwrap();
    assert!(matches!(f.function, FnRef::Named { ref name, .. } if name == "beamline.Sum"));

    // Side input: a multimap access pattern with the map view.
    let lookup = transform(&p, "Lookup");
    let pd = pb::ParDoPayload::decode(lookup.spec.as_ref().unwrap().payload.as_slice()).unwrap();
    let (local, side) = pd.side_inputs.iter().next().unwrap();
    assert!(lookup.inputs.contains_key(local));
    assert_eq!(
        side.access_pattern.as_ref().unwrap().urn,
        urns::SIDE_INPUT_MULTIMAP
    );
    assert_eq!(side.view_fn.as_ref().unwrap().payload, b"map");
}

#[test]
fn coders_and_windowing_strategies() {
    let p = sample().to_proto();
    let c = p.components.as_ref().unwrap();
    let group_out = &c.pcollections[transform(&p, "Group").outputs.values().next().unwrap()];
    let kv = &c.coders[&group_out.coder_id];
    assert_eq!(kv.spec.as_ref().unwrap().urn, urns::CODER_KV);
    assert_eq!(
        coder_urn(&p, &kv.component_coder_ids[0]),
        urns::CODER_VARINT
    );
    let it = &c.coders[&kv.component_coder_ids[1]];
    assert_eq!(it.spec.as_ref().unwrap().urn, urns::CODER_ITERABLE);
    assert_eq!(
        coder_urn(&p, &it.component_coder_ids[0]),
        urns::CODER_VARINT
    );

    let ws = &c.windowing_strategies[&group_out.windowing_strategy_id];
    let wf = ws.window_fn.as_ref().unwrap();
    assert_eq!(wf.urn, urns::FIXED_WINDOWS);
    let fixed = pb::FixedWindowsPayload::decode(wf.payload.as_slice()).unwrap();
    assert_eq!(fixed.size.unwrap().seconds, 60);
    assert_eq!(
        coder_urn(&p, &ws.window_coder_id),
        urns::CODER_INTERVAL_WINDOW
    );
    assert_eq!(ws.output_time, pb::output_time::Enum::EndOfWindow as i32);

    let read_out = &c.pcollections[transform(&p, "Read/ReadRanges")
        .outputs
        .values()
        .next()
        .unwrap()];
    assert_eq!(coder_urn(&p, &read_out.coder_id), urns::CODER_STRING_UTF8);
    let global = &c.windowing_strategies[&read_out.windowing_strategy_id];
    assert_eq!(global.window_fn.as_ref().unwrap().urn, urns::GLOBAL_WINDOWS);
}

#[test]
fn local_runner_rebuilds_the_graph_from_the_proto() {
    let p = sample();
    let proto = p.to_proto();
    let decoded = pb::Pipeline::decode(proto.encode_to_vec().as_slice()).unwrap();
    // Closures resolve from the pipeline's registry; named functions from inventory.
    let registry = beamline::engine::registry::FnRegistry::default();
    let err = beamline_translate::to_graph(&decoded, &registry)
        .err()
        .expect("closures are not in an empty registry")
        .to_string();
    assert!(err.contains("cannot resolve function"), "{err}");
    let count = |g: &beamline::engine::graph::Graph, f: fn(&NodeKind) -> bool| {
        g.nodes.iter().filter(|n| f(&n.kind)).count()
    };
    let graph = {
        // Rebuild with the pipeline's own closures via a worker-style run of the proto.
        let fns = closures_of(&p);
        beamline_translate::to_graph(&decoded, &fns).unwrap()
    };
    assert_eq!(count(&graph, |k| matches!(k, NodeKind::Impulse)), 2);
    assert_eq!(
        count(&graph, |k| matches!(k, NodeKind::CombinePerKey { .. })),
        1
    );
    assert_eq!(count(&graph, |k| matches!(k, NodeKind::GroupByKey)), 1);
    assert_eq!(count(&graph, |k| matches!(k, NodeKind::Reshuffle)), 2);
    assert_eq!(
        count(&graph, |k| matches!(k, NodeKind::WindowInto { .. })),
        1
    );
    let lookup = graph.nodes.iter().find(|n| n.name == "Lookup").unwrap();
    assert!(matches!(&lookup.kind, NodeKind::ParDo { side_inputs, .. } if side_inputs.len() == 1));
}

fn closures_of(p: &Pipeline) -> beamline::engine::registry::FnRegistry {
    p.closures()
}

#[test]
fn unboundedness_propagates_downstream() {
    let p = Pipeline::new(PipelineOptions::default());
    let events = p.apply(
        "Gen",
        beamline::io::generator::Generator::new(2).with_count(10),
    );
    let counted = events
        .map("Key", |(k, _): (i64, i64)| (k, ()))
        .apply("Count", beamline::Count::per_key());
    let bounded = p.apply("Nums", beamline::Create::of(vec![1i64]));
    let proto = p.to_proto();
    let pcs = &proto.components.as_ref().unwrap().pcollections;
    let unbounded = pb::is_bounded::Enum::Unbounded as i32;
    assert_eq!(pcs[events.id()].is_bounded, unbounded);
    assert_eq!(pcs[counted.id()].is_bounded, unbounded);
    assert_eq!(
        pcs[bounded.id()].is_bounded,
        pb::is_bounded::Enum::Bounded as i32
    );
}
