//! Bad input gets a clear error naming what was wrong: malformed protos, unknown URNs,
//! coder/type mismatches, failing and panicking DoFns, unknown runners, duplicate names.

use beamline::engine::runner::{JobContext, Runner};
use beamline::proto::pipeline as pb;
use beamline::{Create, DoFn, ParDo, Pipeline, PipelineOptions, ProcessContext, UserError};
use beamline_runner_local::LocalRunner;

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineOptions::default())
}

fn transform_mut<'a>(p: &'a mut pb::Pipeline, name: &str) -> &'a mut pb::PTransform {
    p.components
        .as_mut()
        .unwrap()
        .transforms
        .values_mut()
        .find(|t| t.unique_name == name)
        .unwrap_or_else(|| panic!("no transform {name}"))
}

#[test]
fn malformed_proto_bytes() {
    let err = LocalRunner
        .run(&[0xff, 0xff, 0xff, 0x01], JobContext::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed pipeline proto"), "{err}");
}

#[test]
fn unknown_transform_urn_names_the_transform() {
    let p = pipeline();
    p.apply("Nums", Create::of(vec![1i64]))
        .map("Double", |x: i64| x * 2);
    let mut proto = p.to_proto();
    transform_mut(&mut proto, "Double")
        .spec
        .as_mut()
        .unwrap()
        .urn = "beam:transform:nope:v1".into();
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(
        err.contains("'Double'") && err.contains("beam:transform:nope:v1"),
        "{err}"
    );
}

#[test]
fn unknown_coder_urn_names_the_coder() {
    let p = pipeline();
    p.apply("Nums", Create::of(vec![1i64]));
    let mut proto = p.to_proto();
    for c in proto.components.as_mut().unwrap().coders.values_mut() {
        let spec = c.spec.as_mut().unwrap();
        if spec.urn == beamline::proto::urns::CODER_VARINT {
            spec.urn = "beam:coder:mystery:v1".into();
        }
    }
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(err.contains("beam:coder:mystery:v1"), "{err}");
}

#[test]
fn element_of_the_wrong_type_fails_the_reading_transform() {
    // Rewire the proto so a ParDo that expects integers reads strings.
    let p = pipeline();
    let words = p.apply("Words", Create::of(vec!["a".to_string()]));
    p.apply("Nums", Create::of(vec![1i64]))
        .map("Inc", |x: i64| x + 1);
    let mut proto = p.to_proto();
    let words_id = words.id().to_string();
    let inc = transform_mut(&mut proto, "Inc");
    inc.inputs.insert("input".into(), words_id);
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(
        err.contains("'Inc'") && err.contains("type mismatch"),
        "{err}"
    );
}

#[test]
fn value_that_does_not_fit_the_coder_fails_the_grouping() {
    // Declare the key coder as varint while the keys are strings.
    let p = pipeline();
    p.apply("Kvs", Create::of(vec![("a".to_string(), 1i64)]))
        .group_by_key("Group");
    let mut proto = p.to_proto();
    let comps = proto.components.as_mut().unwrap();
    let gbk_in = comps
        .transforms
        .values()
        .find(|t| t.unique_name == "Group")
        .unwrap()
        .inputs["input"]
        .clone();
    let kv_coder = comps.pcollections[&gbk_in].coder_id.clone();
    let key_coder = comps.coders[&kv_coder].component_coder_ids[0].clone();
    comps
        .coders
        .get_mut(&key_coder)
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .urn = beamline::proto::urns::CODER_VARINT.into();
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(
        err.contains("'Group'") && err.contains("coder varint cannot encode a string value"),
        "{err}"
    );
}

#[derive(Clone)]
struct Fails {
    panic: bool,
}

impl DoFn for Fails {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        if x == 42 {
            if self.panic {
                panic!("boom at {x}");
            }
            return Err(format!("cannot handle {x}").into());
        }
        ctx.output(x);
        Ok(())
    }
}

#[test]
fn dofn_error_names_the_transform() {
    let p = pipeline();
    p.apply("Nums", Create::of(0i64..100))
        .apply("Picky", ParDo::of(Fails { panic: false }));
    let err = p.run().unwrap_err().to_string();
    assert_eq!(err, "transform 'Picky' failed: cannot handle 42");
}

#[test]
fn dofn_panic_names_the_transform_and_does_not_abort() {
    let p = pipeline();
    p.apply("Nums", Create::of(0i64..100))
        .apply("Panicky", ParDo::of(Fails { panic: true }))
        .map("After", |x: i64| x);
    let err = p.run().unwrap_err().to_string();
    assert_eq!(err, "transform 'Panicky' failed: panicked: boom at 42");
    // The process is still healthy: another pipeline runs fine.
    let q = pipeline();
    q.apply("Ok", Create::of(vec![1i64]));
    q.run().unwrap();
}

#[test]
fn unknown_runner_lists_the_available_ones() {
    let p = Pipeline::new(PipelineOptions::default().set("runner", "nope"));
    p.apply("Nums", Create::of(vec![1i64]));
    let err = p.run().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown runner 'nope'; available runners: distributed, local, portable"
    );
}

#[test]
fn duplicate_transform_names_are_rejected() {
    let p = pipeline();
    let xs = p.apply("Nums", Create::of(vec![1i64]));
    xs.map("Same", |x: i64| x);
    xs.map("Same", |x: i64| x + 1);
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("two transforms are named 'Same'"), "{err}");
}

#[test]
fn bad_threads_option_is_an_error() {
    let p = Pipeline::new(PipelineOptions::default().set("threads", "many"));
    p.apply("Nums", Create::of(vec![1i64]));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("--threads: 'many' is not a whole number"),
        "{err}"
    );
}

#[test]
fn bad_max_bundle_size_is_an_error() {
    for bad in ["0", "lots"] {
        let p = Pipeline::new(
            PipelineOptions::default()
                .set("streaming", true)
                .set("max_bundle_size", bad),
        );
        p.apply("Nums", Create::of(vec![1i64]));
        let err = p.run().unwrap_err().to_string();
        assert!(
            err.contains("--max-bundle-size") && err.contains(bad),
            "{err}"
        );
    }
}
