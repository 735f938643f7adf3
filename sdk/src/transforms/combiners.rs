//! Standard combiners (Count, Sum, Min, Max, Mean, Top, Sample) and Distinct.
//!
//! They work on engine values and are registered by name, so any runner can run them
//! from the pipeline proto alone, without calling back into typed user code.

use super::combine::{CombineGlobally, CombinePerKey, CombineRef};
use super::kv::Keys;
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::coder::Coder;
use beamline_engine::combine::{Accumulator, CombineFnInvoker};
use beamline_engine::registry::NamedCombineFn;
use beamline_engine::{UserError, Value};
use serde_json::json;
use std::cmp::Ordering;
use std::marker::PhantomData;
use std::sync::Arc;

/// Orders two values of the same primitive kind.
fn cmp_values(a: &Value, b: &Value) -> Result<Ordering, UserError> {
    Ok(match (a, b) {
        (Value::I64(x), Value::I64(y)) => x.cmp(y),
        (Value::F64(x), Value::F64(y)) => x.total_cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => {
            return Err(format!("cannot compare a {} with a {}", a.kind(), b.kind()).into());
        }
    })
}

fn acc_mut<T: 'static>(acc: &mut Accumulator) -> Result<&mut T, UserError> {
    acc.downcast_mut::<T>()
        .ok_or_else(|| "foreign accumulator".into())
}

fn acc_ref<T: 'static>(acc: &Accumulator) -> Result<&T, UserError> {
    acc.downcast_ref::<T>()
        .ok_or_else(|| "foreign accumulator".into())
}

/// The list an accumulator value holds (an iterable's elements).
fn list_of(value: Value) -> Result<Vec<Value>, UserError> {
    match value {
        Value::List(l) => Ok(l),
        other => Err(format!("expected a list accumulator, got a {}", other.kind()).into()),
    }
}

fn acc_take<T: 'static>(acc: Accumulator) -> Result<T, UserError> {
    acc.downcast::<T>()
        .map_err(|_| "foreign accumulator".into())
}

/// Folds values with a binary operation on an optional accumulator.
struct Fold {
    op: fn(Value, Value) -> Result<Value, UserError>,
    empty: Value,
}

impl CombineFnInvoker for Fold {
    fn create_accumulator(&self) -> Accumulator {
        Accumulator::new(None::<Value>)
    }
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
        let a = acc_mut::<Option<Value>>(acc)?;
        *a = Some(match a.take() {
            None => input,
            Some(x) => (self.op)(x, input)?,
        });
        Ok(())
    }
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
        let mut out = self.create_accumulator();
        for a in accs {
            if let Some(v) = acc_take::<Option<Value>>(a)? {
                self.add_input(&mut out, v)?;
            }
        }
        Ok(out)
    }
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
        Ok(acc_take::<Option<Value>>(acc)?.unwrap_or_else(|| self.empty.clone()))
    }
    fn accumulator_coder(&self, input: &Coder) -> Coder {
        Coder::Nullable(Box::new(input.clone()))
    }
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
        Ok(acc_ref::<Option<Value>>(acc)?
            .clone()
            .unwrap_or(Value::Null))
    }
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
        Ok(Accumulator::new(match value {
            Value::Null => None,
            v => Some(v),
        }))
    }
}

fn sum(a: Value, b: Value) -> Result<Value, UserError> {
    match (a, b) {
        (Value::I64(x), Value::I64(y)) => Ok(Value::I64(x.wrapping_add(y))),
        (Value::F64(x), Value::F64(y)) => Ok(Value::F64(x + y)),
        (a, b) => Err(format!("cannot add a {} and a {}", a.kind(), b.kind()).into()),
    }
}

fn min(a: Value, b: Value) -> Result<Value, UserError> {
    Ok(if cmp_values(&b, &a)? == Ordering::Less {
        b
    } else {
        a
    })
}

fn max(a: Value, b: Value) -> Result<Value, UserError> {
    Ok(if cmp_values(&b, &a)? == Ordering::Greater {
        b
    } else {
        a
    })
}

/// Counts inputs.
struct CountFn;

impl CombineFnInvoker for CountFn {
    fn create_accumulator(&self) -> Accumulator {
        Accumulator::new(0i64)
    }
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
        input.release();
        *acc_mut::<i64>(acc)? += 1;
        Ok(())
    }
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
        let mut n = 0i64;
        for a in accs {
            n += acc_take::<i64>(a)?;
        }
        Ok(Accumulator::new(n))
    }
    fn merge_into(&self, acc: &mut Accumulator, other: Accumulator) -> Result<(), UserError> {
        *acc_mut::<i64>(acc)? += acc_take::<i64>(other)?;
        Ok(())
    }
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
        Ok(Value::I64(acc_take::<i64>(acc)?))
    }
    fn accumulator_coder(&self, _input: &Coder) -> Coder {
        Coder::VarInt
    }
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
        Ok(Value::I64(*acc_ref::<i64>(acc)?))
    }
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
        match value {
            Value::I64(n) => Ok(Accumulator::new(n)),
            other => Err(format!("a count is a number, got a {}", other.kind()).into()),
        }
    }
}

/// Arithmetic mean as a double (NaN for no input, as Beam Python).
struct MeanFn;

impl CombineFnInvoker for MeanFn {
    fn create_accumulator(&self) -> Accumulator {
        Accumulator::new((0f64, 0i64))
    }
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
        let a = acc_mut::<(f64, i64)>(acc)?;
        a.0 += match &input {
            Value::I64(x) => *x as f64,
            Value::F64(x) => *x,
            other => return Err(format!("cannot average a {} value", other.kind()).into()),
        };
        a.1 += 1;
        input.release();
        Ok(())
    }
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
        let mut m = (0f64, 0i64);
        for a in accs {
            let (s, n) = acc_take::<(f64, i64)>(a)?;
            m.0 += s;
            m.1 += n;
        }
        Ok(Accumulator::new(m))
    }
    fn merge_into(&self, acc: &mut Accumulator, other: Accumulator) -> Result<(), UserError> {
        let (s, n) = acc_take::<(f64, i64)>(other)?;
        let m = acc_mut::<(f64, i64)>(acc)?;
        m.0 += s;
        m.1 += n;
        Ok(())
    }
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
        let (s, n) = acc_take::<(f64, i64)>(acc)?;
        Ok(Value::F64(if n == 0 { f64::NAN } else { s / n as f64 }))
    }
    fn accumulator_coder(&self, _input: &Coder) -> Coder {
        Coder::Kv(Box::new(Coder::Double), Box::new(Coder::VarInt))
    }
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
        let (s, n) = *acc_ref::<(f64, i64)>(acc)?;
        Ok(Value::kv(Value::F64(s), Value::I64(n)))
    }
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
        match value.try_into_kv() {
            Ok((Value::F64(s), Value::I64(n))) => Ok(Accumulator::new((s, n))),
            _ => Err("a mean's accumulator is a (sum, count) pair".into()),
        }
    }
}

/// The `n` largest (or smallest) values, best first.
struct TopFn {
    n: usize,
    largest: bool,
}

impl TopFn {
    fn better(&self, a: &Value, b: &Value) -> Result<bool, UserError> {
        let o = cmp_values(a, b)?;
        Ok(if self.largest {
            o == Ordering::Greater
        } else {
            o == Ordering::Less
        })
    }

    fn insert(&self, list: &mut Vec<Value>, v: Value) -> Result<(), UserError> {
        let mut pos = list.len();
        for (i, x) in list.iter().enumerate() {
            if self.better(&v, x)? {
                pos = i;
                break;
            }
        }
        if pos < self.n {
            list.insert(pos, v);
            list.truncate(self.n);
        }
        Ok(())
    }
}

impl CombineFnInvoker for TopFn {
    fn create_accumulator(&self) -> Accumulator {
        Accumulator::new(Vec::<Value>::new())
    }
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
        let list = acc_mut::<Vec<Value>>(acc)?;
        self.insert(list, input)
    }
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
        let mut out = Vec::new();
        for a in accs {
            for v in acc_take::<Vec<Value>>(a)? {
                self.insert(&mut out, v)?;
            }
        }
        Ok(Accumulator::new(out))
    }
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
        Ok(Value::List(acc_take::<Vec<Value>>(acc)?))
    }
    fn accumulator_coder(&self, input: &Coder) -> Coder {
        Coder::Iterable(Box::new(input.clone()))
    }
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
        Ok(Value::List(acc_ref::<Vec<Value>>(acc)?.clone()))
    }
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
        Ok(Accumulator::new(list_of(value)?))
    }
}

/// A uniform random sample of `n` values (bottom-n of random priorities, so merges are exact).
struct SampleFn {
    n: usize,
}

impl SampleFn {
    fn insert(&self, acc: &mut Vec<(u64, Value)>, p: u64, v: Value) {
        let pos = acc.partition_point(|(q, _)| *q < p);
        if pos < self.n {
            acc.insert(pos, (p, v));
            acc.truncate(self.n);
        }
    }
}

impl CombineFnInvoker for SampleFn {
    fn create_accumulator(&self) -> Accumulator {
        Accumulator::new(Vec::<(u64, Value)>::new())
    }
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
        let a = acc_mut::<Vec<(u64, Value)>>(acc)?;
        self.insert(a, rand::random(), input);
        Ok(())
    }
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
        let mut out = Vec::new();
        for a in accs {
            for (p, v) in acc_take::<Vec<(u64, Value)>>(a)? {
                self.insert(&mut out, p, v);
            }
        }
        Ok(Accumulator::new(out))
    }
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
        Ok(Value::List(
            acc_take::<Vec<(u64, Value)>>(acc)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        ))
    }
    fn accumulator_coder(&self, input: &Coder) -> Coder {
        // Priorities as 64-bit two's complement varints.
        Coder::Iterable(Box::new(Coder::Kv(
            Box::new(Coder::VarInt),
            Box::new(input.clone()),
        )))
    }
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
        Ok(Value::List(
            acc_ref::<Vec<(u64, Value)>>(acc)?
                .iter()
                .map(|(p, v)| Value::kv(Value::I64(*p as i64), v.clone()))
                .collect(),
        ))
    }
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
        let mut out = Vec::new();
        for item in list_of(value)? {
            match item.try_into_kv() {
                Ok((Value::I64(p), v)) => out.push((p as u64, v)),
                _ => return Err("a sample's accumulator holds (priority, value) pairs".into()),
            }
        }
        Ok(Accumulator::new(out))
    }
}

#[derive(serde::Deserialize)]
struct NumberConfig {
    float: bool,
}

#[derive(serde::Deserialize)]
struct TopConfig {
    n: usize,
    largest: bool,
}

#[derive(serde::Deserialize)]
struct SampleConfig {
    n: usize,
}

inventory::submit! {
    NamedCombineFn { name: "beamline.Count", build: |_| Ok(Arc::new(CountFn)) }
}
inventory::submit! {
    NamedCombineFn { name: "beamline.Mean", build: |_| Ok(Arc::new(MeanFn)) }
}
inventory::submit! {
    NamedCombineFn {
        name: "beamline.Sum",
        build: |c| {
            let c: NumberConfig = serde_json::from_str(c)?;
            let empty = if c.float { Value::F64(0.0) } else { Value::I64(0) };
            Ok(Arc::new(Fold { op: sum, empty }))
        },
    }
}
inventory::submit! {
    NamedCombineFn { name: "beamline.Min", build: |_| Ok(Arc::new(Fold { op: min, empty: Value::Null })) }
}
inventory::submit! {
    NamedCombineFn { name: "beamline.Max", build: |_| Ok(Arc::new(Fold { op: max, empty: Value::Null })) }
}
inventory::submit! {
    NamedCombineFn {
        name: "beamline.Top",
        build: |c| {
            let c: TopConfig = serde_json::from_str(c)?;
            Ok(Arc::new(TopFn { n: c.n, largest: c.largest }))
        },
    }
}
inventory::submit! {
    NamedCombineFn {
        name: "beamline.Sample",
        build: |c| {
            let c: SampleConfig = serde_json::from_str(c)?;
            Ok(Arc::new(SampleFn { n: c.n }))
        },
    }
}

/// A combiner usable globally or per key.
pub struct Combiner<V, O> {
    name: &'static str,
    config: serde_json::Value,
    defaults: bool,
    _t: PhantomData<fn(V) -> O>,
}

impl<V: Element, O: Element> Combiner<V, O> {
    /// A standard combiner by its registered name and JSON config (for dynamically typed
    /// SDKs); `defaults`: the combiner has an empty result, which CombineGlobally yields
    /// for an empty input (Min and Max have none).
    pub fn by_name(name: &'static str, config: serde_json::Value, defaults: bool) -> Self {
        Self::new(name, config, defaults)
    }

    fn new(name: &'static str, config: serde_json::Value, defaults: bool) -> Self {
        Combiner {
            name,
            config,
            defaults,
            _t: PhantomData,
        }
    }

    /// Combines a whole `PCollection<V>` (per window) into one `O`.
    pub fn globally(self) -> CombineGlobally<V, O> {
        CombineGlobally::from_ref(CombineRef::named(self.name, self.config), self.defaults)
    }

    /// Combines the values of each key of a `PCollection<(K, V)>`.
    pub fn per_key<K: Element>(self) -> CombinePerKey<K, V, O> {
        CombinePerKey::from_ref(CombineRef::named(self.name, self.config))
    }
}

/// Numbers that [`Sum`] adds and [`Mean`] averages.
pub trait Numeric: Element {}
impl Numeric for i64 {}
impl Numeric for i32 {}
impl Numeric for u32 {}
impl Numeric for u64 {}
impl Numeric for usize {}
impl Numeric for f64 {}

/// Values [`Min`], [`Max`] and [`Top`] compare: integers, floats, strings, bytes, bools.
pub trait Comparable: Element {}
impl<T: Numeric> Comparable for T {}
impl Comparable for String {}
impl Comparable for bool {}
impl Comparable for crate::element::Bytes {}

/// Counts elements.
pub struct Count;

impl Count {
    /// Number of elements (per window): `PCollection<T>` to `PCollection<i64>`.
    pub fn globally<T: Element>() -> CombineGlobally<T, i64> {
        Combiner::new("beamline.Count", json!(null), true).globally()
    }
    /// Number of values per key: `(K, V)` to `(K, i64)`.
    pub fn per_key<K: Element, V: Element>() -> CombinePerKey<K, V, i64> {
        Combiner::<V, i64>::new("beamline.Count", json!(null), true).per_key()
    }
    /// Number of occurrences of each distinct element: `T` to `(T, i64)`.
    pub fn per_element<T: Element>() -> CountPerElement<T> {
        CountPerElement(PhantomData)
    }
}

/// See [`Count::per_element`].
pub struct CountPerElement<T>(PhantomData<fn(T)>);

impl<T: Element> PTransform<PCollection<T>> for CountPerElement<T> {
    type Output = PCollection<(T, i64)>;
    fn expand(self, input: &PCollection<T>) -> PCollection<(T, i64)> {
        input
            .map("PairWithOne", |x: T| (x, ()))
            .apply("Count", Count::per_key())
    }
}

/// Sums numbers (0 for an empty global input).
pub struct Sum;

impl Sum {
    /// Sum of all elements.
    pub fn globally<V: Numeric>() -> CombineGlobally<V, V> {
        Self::combiner::<V>().globally()
    }
    /// Sum per key.
    pub fn per_key<K: Element, V: Numeric>() -> CombinePerKey<K, V, V> {
        Self::combiner::<V>().per_key()
    }
    fn combiner<V: Numeric>() -> Combiner<V, V> {
        let float = V::coder() == Coder::Double;
        Combiner::new("beamline.Sum", json!({ "float": float }), true)
    }
}

/// Smallest element (no output for an empty input).
pub struct Min;

impl Min {
    /// Smallest of all elements.
    pub fn globally<V: Comparable>() -> CombineGlobally<V, V> {
        Combiner::new("beamline.Min", json!(null), false).globally()
    }
    /// Smallest value per key.
    pub fn per_key<K: Element, V: Comparable>() -> CombinePerKey<K, V, V> {
        Combiner::<V, V>::new("beamline.Min", json!(null), false).per_key()
    }
}

/// Largest element (no output for an empty input).
pub struct Max;

impl Max {
    /// Largest of all elements.
    pub fn globally<V: Comparable>() -> CombineGlobally<V, V> {
        Combiner::new("beamline.Max", json!(null), false).globally()
    }
    /// Largest value per key.
    pub fn per_key<K: Element, V: Comparable>() -> CombinePerKey<K, V, V> {
        Combiner::<V, V>::new("beamline.Max", json!(null), false).per_key()
    }
}

/// Arithmetic mean as `f64` (NaN for an empty global input).
pub struct Mean;

impl Mean {
    /// Mean of all elements.
    pub fn globally<V: Numeric>() -> CombineGlobally<V, f64> {
        Combiner::new("beamline.Mean", json!(null), true).globally()
    }
    /// Mean per key.
    pub fn per_key<K: Element, V: Numeric>() -> CombinePerKey<K, V, f64> {
        Combiner::<V, f64>::new("beamline.Mean", json!(null), true).per_key()
    }
}

/// The `n` largest or smallest elements, best first.
pub struct Top;

impl Top {
    /// The `n` largest values.
    pub fn largest<V: Comparable>(n: usize) -> Combiner<V, Vec<V>> {
        Combiner::new("beamline.Top", json!({ "n": n, "largest": true }), true)
    }
    /// The `n` smallest values.
    pub fn smallest<V: Comparable>(n: usize) -> Combiner<V, Vec<V>> {
        Combiner::new("beamline.Top", json!({ "n": n, "largest": false }), true)
    }
}

/// A uniform random sample of at most `n` elements.
pub struct Sample;

impl Sample {
    /// A sample of `n` elements.
    pub fn fixed_size<V: Element>(n: usize) -> Combiner<V, Vec<V>> {
        Combiner::new("beamline.Sample", json!({ "n": n }), true)
    }
}

/// The distinct elements of a collection (by encoded value).
pub struct Distinct<T>(PhantomData<fn(T)>);

impl<T> Distinct<T> {
    /// The transform.
    pub fn new() -> Self {
        Distinct(PhantomData)
    }
}

impl<T> Default for Distinct<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> PTransform<PCollection<T>> for Distinct<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<T>) -> PCollection<T> {
        input
            .apply("CountPerElement", Count::per_element())
            .apply("Keys", Keys)
    }
}
