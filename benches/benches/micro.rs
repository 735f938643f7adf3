//! Criterion micro-benchmarks: standard coders, the dynamic coder, DoFn invocation in a
//! fused stage, and the shuffle (GroupByKey and lifted Count).
//!
//! `cargo bench -p beamline-bench --bench micro`

#![allow(missing_docs)]

use beamline::engine::coder::Coder;
use beamline::engine::Value;
use beamline::{Count, Impulse, Pipeline, PipelineOptions};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn coders(c: &mut Criterion) {
    let kv = Coder::Kv(Box::new(Coder::StringUtf8), Box::new(Coder::VarInt));
    let values: Vec<Value> = (0..1000)
        .map(|i| Value::kv(Value::Str(format!("word{i}")), Value::I64(i)))
        .collect();
    let mut g = c.benchmark_group("coders");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("kv<string,varint> encode", |b| {
        let mut out = Vec::with_capacity(1 << 16);
        b.iter(|| {
            out.clear();
            for v in &values {
                kv.encode(black_box(v), &mut out, true).unwrap();
            }
        })
    });
    let mut encoded = Vec::new();
    for v in &values {
        kv.encode(v, &mut encoded, true).unwrap();
    }
    g.bench_function("kv<string,varint> decode", |b| {
        b.iter(|| {
            let mut input = encoded.as_slice();
            while !input.is_empty() {
                black_box(kv.decode(&mut input, true).unwrap());
            }
        })
    });
    g.bench_function("dynamic encode", |b| {
        let mut out = Vec::with_capacity(1 << 16);
        b.iter(|| {
            out.clear();
            for v in &values {
                Coder::Dynamic.encode(black_box(v), &mut out, true).unwrap();
            }
        })
    });
    g.finish();
}

fn generated(p: &Pipeline, n: i64) -> beamline::PCollection<i64> {
    p.apply("Impulse", Impulse)
        .flat_map("Range", move |_: ()| 0..n)
}

fn pipelines(c: &mut Criterion) {
    const N: i64 = 200_000;
    let mut g = c.benchmark_group("pipelines");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("dofn chain (5 maps)", |b| {
        b.iter(|| {
            let p = Pipeline::new(PipelineOptions::default().set("threads", 1));
            let mut x = generated(&p, N);
            for i in 0..5 {
                x = x.map(&format!("Inc{i}"), |v: i64| v + 1);
            }
            p.run().unwrap()
        })
    });
    g.bench_function("group by key (1000 keys)", |b| {
        b.iter(|| {
            let p = Pipeline::new(PipelineOptions::default().set("threads", 1));
            generated(&p, N)
                .map("Key", |v: i64| (v % 1000, v))
                .group_by_key("Group");
            p.run().unwrap()
        })
    });
    g.bench_function("lifted count per key (1000 keys)", |b| {
        b.iter(|| {
            let p = Pipeline::new(PipelineOptions::default().set("threads", 1));
            generated(&p, N)
                .map("Key", |v: i64| (v % 1000, ()))
                .apply("Count", Count::per_key());
            p.run().unwrap()
        })
    });
    g.finish();
}

criterion_group!(micro, coders, pipelines);
criterion_main!(micro);
