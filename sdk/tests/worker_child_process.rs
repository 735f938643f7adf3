//! User code in the proto: a pipeline with closures is written to a proto file and executed
//! by a child process re-executed from this test binary; unresolvable functions are errors
//! naming the transform.

use beamline::engine::spec::{FnRef, UserFnSpec};
use beamline::proto::pipeline as pb;
use beamline::proto::prost::Message;
use beamline::worker::{is_worker, run_in_child_process, write_proto};
use beamline::{Create, Pipeline, PipelineOptions, Sum, WriteToText};

const CHILD_TEST: &str = "closures_run_from_the_proto_in_a_child_process";

fn build(p: &Pipeline, output: &str) {
    let offset = 1000;
    p.apply("Numbers", Create::of(1i64..=100))
        .map("Square", move |x: i64| x * x + offset)
        .apply("Sum", Sum::globally())
        .map("Format", |s: i64| format!("total={s}"))
        .apply("Write", WriteToText::new(output).with_num_shards(1));
}

#[test]
fn closures_run_from_the_proto_in_a_child_process() {
    if is_worker() {
        // The child rebuilds the pipeline (registering the closures under the same names)
        // with a different output; the proto it executes carries the parent's output.
        let p = Pipeline::new(PipelineOptions::default());
        build(&p, "/nonexistent/child-output");
        p.run().expect("child run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("squares");
    let p = Pipeline::new(PipelineOptions::default());
    build(&p, &out.to_string_lossy());
    let proto = dir.path().join("pipeline.pb");
    write_proto(&p, &proto).unwrap();
    let args: Vec<String> = [CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    run_in_child_process(&proto, &args).unwrap();
    let expected: i64 = (1..=100i64).map(|x| x * x + 1000).sum();
    let text = std::fs::read_to_string(dir.path().join("squares-00000-of-00001")).unwrap();
    assert_eq!(text, format!("total={expected}\n"));
}

fn edit_spec(proto: &mut pb::Pipeline, transform: &str, f: impl FnOnce(&mut UserFnSpec)) {
    let t = proto
        .components
        .as_mut()
        .unwrap()
        .transforms
        .values_mut()
        .find(|t| t.unique_name == transform)
        .unwrap();
    let spec = t.spec.as_mut().unwrap();
    let mut payload = pb::ParDoPayload::decode(spec.payload.as_slice()).unwrap();
    let do_fn = payload.do_fn.as_mut().unwrap();
    let mut user = UserFnSpec::from_payload(&do_fn.payload).unwrap();
    f(&mut user);
    do_fn.payload = user.to_payload();
    spec.payload = payload.encode_to_vec();
}

#[test]
fn unknown_closure_is_an_error_naming_the_transform() {
    let p = Pipeline::new(PipelineOptions::default());
    build(&p, "/nonexistent/out");
    let mut proto = p.to_proto();
    edit_spec(&mut proto, "Square", |s| {
        s.function = FnRef::Closure {
            id: "SomeOtherProgram/Square".into(),
        }
    });
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(
        err.starts_with("transform 'Square': cannot resolve function 'SomeOtherProgram/Square'"),
        "{err}"
    );
}

#[test]
fn unregistered_named_function_is_an_error_naming_the_transform() {
    let p = Pipeline::new(PipelineOptions::default());
    build(&p, "/nonexistent/out");
    let mut proto = p.to_proto();
    edit_spec(&mut proto, "Write/WriteShards", |s| {
        s.function = FnRef::Named {
            name: "myapp.NotLinked".into(),
            config: serde_json::Value::Null,
        }
    });
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(
        err.contains("'Write/WriteShards'")
            && err.contains("myapp.NotLinked")
            && err.contains("no DoFn is registered"),
        "{err}"
    );
}

#[test]
fn named_function_with_bad_config_is_an_error() {
    let p = Pipeline::new(PipelineOptions::default());
    build(&p, "/nonexistent/out");
    let mut proto = p.to_proto();
    edit_spec(&mut proto, "Write/WriteShards", |s| {
        if let FnRef::Named { config, .. } = &mut s.function {
            *config = serde_json::json!({"wrong": true});
        }
    });
    let err = p.run_proto(&proto).unwrap_err().to_string();
    assert!(
        err.contains("'Write/WriteShards'") && err.contains("temp_dir"),
        "{err}"
    );
}
