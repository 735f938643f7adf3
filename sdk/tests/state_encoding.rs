//! Everything that must cross a process boundary or reach a disk encodes: the accumulator of
//! every combiner with the coder its pipeline proto declares, and every state cell kind
//! and timer with the coders kept in the translated graph.

use beamline::engine::coder::Coder;
use beamline::engine::combine::{decode_accumulator, encode_accumulator, CombineFnInvoker};
use beamline::engine::graph::{Graph, NodeKind};
use beamline::engine::state::{KeyedState, StateCell, TimeDomain, TimerRequest};
use beamline::engine::state_codec::{
    decode_cell, decode_timer, encode_cell, encode_timer, TimerData,
};
use beamline::engine::Value;
use beamline::{
    CombineFn, CombinePerKey, Count, Create, DoFn, Max, Mean, Min, PCollection, ParDo, Pipeline,
    PipelineOptions, ProcessContext, Sample, StateSpec, Sum, TimerSpec, Top, UserError,
};
use std::sync::Arc;

/// A user CombineFn whose accumulator is a pair (count, longest).
struct Longest;

impl CombineFn for Longest {
    type In = String;
    type Acc = (i64, String);
    type Out = String;
    fn create_accumulator(&self) -> (i64, String) {
        (0, String::new())
    }
    fn add_input(&self, acc: &mut (i64, String), s: String) {
        acc.0 += 1;
        if s.len() > acc.1.len() {
            acc.1 = s;
        }
    }
    fn merge_accumulators(&self, accs: Vec<(i64, String)>) -> (i64, String) {
        let mut out = self.create_accumulator();
        for (n, s) in accs {
            out.0 += n;
            if s.len() > out.1.len() {
                out.1 = s;
            }
        }
        out
    }
    fn extract_output(&self, acc: (i64, String)) -> String {
        format!("{} of {}", acc.1, acc.0)
    }
}

fn translate(p: &Pipeline) -> Graph {
    beamline_translate::to_graph(&p.to_proto(), &p.closures()).unwrap()
}

/// The combine function and accumulator coder of the CombinePerKey named `name`.
fn combine_node(g: &Graph, name: &str) -> (Arc<dyn CombineFnInvoker>, Coder, Coder) {
    let node = g.nodes.iter().find(|n| n.name == name).unwrap();
    let NodeKind::CombinePerKey {
        combine_fn,
        accumulator_coder,
    } = &node.kind
    else {
        panic!("{name} is not a CombinePerKey");
    };
    let Coder::Kv(_, input) = &g.pcollections[node.inputs[0]].coder else {
        panic!("{name} has no key/value input");
    };
    (
        combine_fn.clone(),
        accumulator_coder.clone(),
        (**input).clone(),
    )
}

/// Folds `inputs` in two accumulators, sends one through its encoding, merges, and checks
/// the result equals the one of the accumulator that never left memory.
fn round_trip(g: &Graph, name: &str, inputs: &[Value], expected_coder: &Coder) -> Value {
    let (f, declared, input) = combine_node(g, name);
    assert_eq!(
        &declared, expected_coder,
        "{name}: the proto declares its coder"
    );
    assert_eq!(f.accumulator_coder(&input), declared, "{name}");
    let fold = |values: &[Value]| {
        let mut acc = f.create_accumulator();
        for v in values {
            f.add_input(&mut acc, v.clone()).unwrap();
        }
        acc
    };
    let (a, b) = inputs.split_at(inputs.len() / 2);
    let (acc_a, acc_b) = (fold(a), fold(b));
    let bytes_a = encode_accumulator(&*f, &input, &acc_a).unwrap();
    let bytes_b = encode_accumulator(&*f, &input, &acc_b).unwrap();
    let decoded_a = decode_accumulator(&*f, &input, &bytes_a).unwrap();
    // The decoded accumulator encodes to the same bytes.
    assert_eq!(
        encode_accumulator(&*f, &input, &decoded_a).unwrap(),
        bytes_a
    );
    let decoded_b = decode_accumulator(&*f, &input, &bytes_b).unwrap();
    let through = f.merge_accumulators(vec![decoded_a, decoded_b]).unwrap();
    let direct = f.merge_accumulators(vec![acc_a, acc_b]).unwrap();
    let (got, want) = (
        f.extract_output(through).unwrap(),
        f.extract_output(direct).unwrap(),
    );
    assert_eq!(format!("{got:?}"), format!("{want:?}"), "{name}");
    // An empty accumulator round-trips too.
    let empty = encode_accumulator(&*f, &input, &f.create_accumulator()).unwrap();
    decode_accumulator(&*f, &input, &empty).unwrap();
    // Corrupt bytes are an error, not a panic.
    assert!(
        decode_accumulator(&*f, &input, &[0xff; 3]).is_err(),
        "{name}"
    );
    got
}

#[test]
fn every_combiner_declares_and_round_trips_its_accumulator() {
    let p = Pipeline::new(PipelineOptions::default());
    let nums: PCollection<(String, i64)> =
        p.apply("Nums", Create::of(vec![("k".to_string(), 1i64)]));
    let floats: PCollection<(String, f64)> =
        p.apply("Floats", Create::of(vec![("k".to_string(), 1.5f64)]));
    let words: PCollection<(String, String)> = p.apply(
        "Words",
        Create::of(vec![("k".to_string(), "a".to_string())]),
    );
    nums.apply("Count", Count::per_key());
    nums.apply("Sum", Sum::per_key());
    floats.apply("SumF", Sum::per_key());
    nums.apply("Min", Min::per_key());
    words.apply("Max", Max::per_key());
    nums.apply("Mean", Mean::per_key());
    nums.apply("Top", Top::largest::<i64>(3).per_key::<String>());
    words.apply(
        "Sample",
        Sample::fixed_size::<String>(2).per_key::<String>(),
    );
    words.apply("Longest", CombinePerKey::new(Longest));
    let g = translate(&p);
    let ints: Vec<Value> = [5, 3, 9, 1, 7, 2].map(Value::I64).to_vec();
    let strs: Vec<Value> = ["bb", "a", "dddd", "ccc"]
        .map(|s| Value::Str(s.into()))
        .to_vec();
    let nullable = |c: Coder| Coder::Nullable(Box::new(c));
    let list = |c: Coder| Coder::Iterable(Box::new(c));
    assert_eq!(
        round_trip(&g, "Count", &ints, &Coder::VarInt),
        Value::I64(6)
    );
    assert_eq!(
        round_trip(&g, "Sum", &ints, &nullable(Coder::VarInt)),
        Value::I64(27)
    );
    let halves: Vec<Value> = [0.5, 1.25, 2.0].map(Value::F64).to_vec();
    round_trip(&g, "SumF", &halves, &nullable(Coder::Double));
    assert_eq!(
        round_trip(&g, "Min", &ints, &nullable(Coder::VarInt)),
        Value::I64(1)
    );
    round_trip(&g, "Max", &strs, &nullable(Coder::StringUtf8));
    let mean_coder = Coder::Kv(Box::new(Coder::Double), Box::new(Coder::VarInt));
    assert_eq!(
        round_trip(&g, "Mean", &ints, &mean_coder),
        Value::F64(27.0 / 6.0)
    );
    assert_eq!(
        round_trip(&g, "Top", &ints, &list(Coder::VarInt)),
        Value::List([9, 7, 5].map(Value::I64).to_vec())
    );
    let sample_coder = list(Coder::Kv(
        Box::new(Coder::VarInt),
        Box::new(Coder::StringUtf8),
    ));
    let Value::List(sample) = round_trip(&g, "Sample", &strs, &sample_coder) else {
        panic!("a sample is a list");
    };
    assert_eq!(sample.len(), 2);
    let pair = Coder::Kv(Box::new(Coder::VarInt), Box::new(Coder::StringUtf8));
    assert_eq!(
        round_trip(&g, "Longest", &strs, &pair),
        Value::Str("dddd of 4".into())
    );
}

/// Declares one cell of every kind and two timers.
#[derive(Clone)]
struct AllKinds;

impl DoFn for AllKinds {
    type In = (String, i64);
    type Out = i64;
    fn process(
        &mut self,
        _: (String, i64),
        _: &mut ProcessContext<'_, '_, i64>,
    ) -> Result<(), UserError> {
        Ok(())
    }
}

#[test]
fn every_state_kind_and_timer_round_trips_with_its_declared_coders() {
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("In", Create::of(vec![("k".to_string(), 1i64)]))
        .apply(
            "Stateful",
            ParDo::of(AllKinds)
                .with_state(StateSpec::value::<String>("value"))
                .with_state(StateSpec::bag::<i64>("bag"))
                .with_state(StateSpec::combining("longest", Longest))
                .with_state(StateSpec::map::<String, f64>("map"))
                .with_state(StateSpec::set::<i64>("set"))
                .with_state(StateSpec::ordered_list::<String>("ordered"))
                .with_timer(TimerSpec::event_time("flush"))
                .with_timer(TimerSpec::processing_time("tick")),
        );
    let g = translate(&p);
    let node = g.nodes.iter().find(|n| n.name == "Stateful").unwrap();
    let NodeKind::ParDo {
        stateful: Some(spec),
        ..
    } = &node.kind
    else {
        panic!("Stateful is not a stateful ParDo");
    };
    let decls: Vec<_> = spec
        .states
        .iter()
        .map(|d| (d.name.clone(), d.kind.clone()))
        .collect();
    let timer_decls = spec.timers.clone();
    let key = Value::Str("k".into());
    let mut cells = Vec::new();
    let mut timers = Vec::new();
    let mut st = KeyedState {
        key: &key,
        decls: &decls,
        cells: &mut cells,
        timers: &mut timers,
        timer_decls: &timer_decls,
        now: 0,
        watermark: 0,
    };
    st.write_value("value", Value::Str("hello".into())).unwrap();
    for i in [3, 1, 2] {
        st.add("bag", Value::I64(i)).unwrap();
        st.set_add("set", Value::I64(i)).unwrap();
        st.ordered_add("ordered", 10 - i, Value::Str(format!("at {i}")))
            .unwrap();
    }
    for s in ["bb", "a", "dddd"] {
        st.add("longest", Value::Str(s.into())).unwrap();
    }
    st.map_put("map", Value::Str("x".into()), Value::F64(0.5))
        .unwrap();
    st.map_put("map", Value::Str("y".into()), Value::F64(-1.0))
        .unwrap();
    st.set_timer("flush", 5_000, Some(4_000)).unwrap();
    let combined = st.read_combined("longest").unwrap();
    assert_eq!(combined, Value::Str("dddd of 3".into()));
    // Reading a combining cell leaves it intact.
    assert_eq!(st.read_combined("longest").unwrap(), combined);

    for (i, (name, kind)) in decls.iter().enumerate() {
        let mut bytes = Vec::new();
        encode_cell(kind, &cells[i], &mut bytes).unwrap();
        let mut input = bytes.as_slice();
        let decoded = decode_cell(kind, &mut input).unwrap();
        assert!(input.is_empty(), "{name}: bytes left over");
        let mut again = Vec::new();
        encode_cell(kind, &decoded, &mut again).unwrap();
        assert_eq!(again, bytes, "{name}: decoded cell encodes alike");
        if !matches!(cells[i], StateCell::Combining(_)) {
            assert_eq!(format!("{decoded:?}"), format!("{:?}", cells[i]), "{name}");
        }
        // A cell decoded with another declaration is an error naming the mismatch.
        let other = &decls[(i + 1) % decls.len()].1;
        assert!(decode_cell(other, &mut bytes.as_slice()).is_err(), "{name}");
        // Truncated bytes are an error, not a panic.
        assert!(
            decode_cell(kind, &mut &bytes[..bytes.len() - 1]).is_err(),
            "{name}"
        );
    }
    // The decoded combining cell still combines.
    let i = decls.iter().position(|(n, _)| n == "longest").unwrap();
    let mut bytes = Vec::new();
    encode_cell(&decls[i].1, &cells[i], &mut bytes).unwrap();
    cells[i] = decode_cell(&decls[i].1, &mut bytes.as_slice()).unwrap();
    let mut timers2 = Vec::new();
    let mut st = KeyedState {
        key: &key,
        decls: &decls,
        cells: &mut cells,
        timers: &mut timers2,
        timer_decls: &timer_decls,
        now: 0,
        watermark: 0,
    };
    st.add("longest", Value::Str("eeeee".into())).unwrap();
    assert_eq!(
        st.read_combined("longest").unwrap(),
        Value::Str("eeeee of 4".into())
    );

    // Timers.
    assert_eq!(
        timers,
        vec![TimerRequest::Set {
            name: "flush".into(),
            timestamp: 5_000,
            output_timestamp: 4_000
        }]
    );
    for t in [
        TimerData {
            name: "flush".into(),
            domain: TimeDomain::Watermark,
            fire: 5_000,
            output: 4_000,
        },
        TimerData {
            name: "tick".into(),
            domain: TimeDomain::ProcessingTime,
            fire: i64::MIN,
            output: i64::MAX,
        },
    ] {
        let mut bytes = Vec::new();
        encode_timer(&t, &mut bytes);
        let mut input = bytes.as_slice();
        assert_eq!(decode_timer(&mut input).unwrap(), t);
        assert!(input.is_empty());
        assert!(decode_timer(&mut &bytes[..bytes.len() - 1]).is_err());
    }
}
