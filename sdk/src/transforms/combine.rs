//! Combine: the CombineFn trait, Combine per key and globally (lifted before the shuffle).

use super::create::Impulse;
use super::group::GroupByKey;
use super::ParDo;
use crate::dofn::{DoFn, ProcessContext};
use crate::element::Element;
use crate::pcollection::PCollection;
use crate::pipeline::PTransform;
use beamline_engine::coder::Coder;
use beamline_engine::combine::{Accumulator, CombineFnInvoker};
use beamline_engine::registry::NamedCombineFn;
use beamline_engine::spec::{FnRef, UserFnSpec};
use beamline_engine::window::WindowFn;
use beamline_engine::{UserError, Value};
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;
use std::marker::PhantomData;
use std::sync::Arc;

/// An associative, commutative aggregation, in Beam's four steps.
///
/// # Examples
///
/// ```
/// use beamline::CombineFn;
/// struct Longest;
/// impl CombineFn for Longest {
///     type In = String;
///     type Acc = String;
///     type Out = String;
///     fn create_accumulator(&self) -> String { String::new() }
///     fn add_input(&self, acc: &mut String, s: String) { if s.len() > acc.len() { *acc = s } }
///     fn merge_accumulators(&self, accs: Vec<String>) -> String {
///         accs.into_iter().max_by_key(|s| s.len()).unwrap_or_default()
///     }
///     fn extract_output(&self, acc: String) -> String { acc }
/// }
/// ```
pub trait CombineFn: Send + Sync + 'static {
    /// Input type.
    type In: Element;
    /// Accumulator type: an [`Element`], so accumulators can cross process boundaries and
    /// reach disk (its coder is the accumulator coder in the pipeline proto).
    type Acc: Element;
    /// Output type.
    type Out: Element;
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one input.
    fn add_input(&self, acc: &mut Self::Acc, input: Self::In);
    /// Merges accumulators.
    fn merge_accumulators(&self, accs: Vec<Self::Acc>) -> Self::Acc;
    /// The result.
    fn extract_output(&self, acc: Self::Acc) -> Self::Out;
}

struct Adapter<C>(C);

fn downcast<C: CombineFn>(acc: Accumulator) -> Result<C::Acc, UserError> {
    acc.downcast::<C::Acc>()
        .map_err(|_| "accumulator of another CombineFn".into())
}

impl<C: CombineFn> CombineFnInvoker for Adapter<C> {
    fn create_accumulator(&self) -> Accumulator {
        Accumulator::new(self.0.create_accumulator())
    }
    fn add_input(&self, acc: &mut Accumulator, input: Value) -> Result<(), UserError> {
        let acc = acc
            .downcast_mut::<C::Acc>()
            .ok_or("accumulator of another CombineFn")?;
        self.0.add_input(acc, C::In::from_value(input)?);
        Ok(())
    }
    fn merge_accumulators(&self, accs: Vec<Accumulator>) -> Result<Accumulator, UserError> {
        let accs = accs
            .into_iter()
            .map(downcast::<C>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Accumulator::new(self.0.merge_accumulators(accs)))
    }
    fn extract_output(&self, acc: Accumulator) -> Result<Value, UserError> {
        Ok(self.0.extract_output(downcast::<C>(acc)?).into_value())
    }
    fn accumulator_coder(&self, _input: &Coder) -> Coder {
        C::Acc::coder()
    }
    fn accumulator_to_value(&self, acc: &Accumulator) -> Result<Value, UserError> {
        let acc = acc
            .downcast_ref::<C::Acc>()
            .ok_or("accumulator of another CombineFn")?;
        Ok(acc.clone().into_value())
    }
    fn accumulator_from_value(&self, value: Value) -> Result<Accumulator, UserError> {
        Ok(Accumulator::new(C::Acc::from_value(value)?))
    }
}

/// The engine-level invoker of a typed CombineFn: what runners call, and what encodes its
/// accumulators with the accumulator's [`Element`] coder.
pub fn invoker<C: CombineFn>(c: C) -> Arc<dyn CombineFnInvoker> {
    Arc::new(Adapter(c))
}

/// How a combine's function is referenced: a closure of this binary or a named function.
#[derive(Clone)]
pub(crate) struct CombineRef {
    function: Option<FnRef>,
    invoker: Arc<dyn CombineFnInvoker>,
}

impl CombineRef {
    fn closure<C: CombineFn>(c: C) -> Self {
        CombineRef {
            function: None,
            invoker: Arc::new(Adapter(c)),
        }
    }

    /// A CombineFn registered with `inventory` under `name`.
    ///
    /// # Panics
    /// If nothing is registered under `name` (a bug in the SDK: names are its own).
    pub(crate) fn named(name: &'static str, config: serde_json::Value) -> Self {
        let reg = inventory::iter::<NamedCombineFn>
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("combine fn '{name}' is not registered"));
        let invoker = (reg.build)(&config.to_string())
            .unwrap_or_else(|e| panic!("combine fn '{name}' rejects its config: {e}"));
        CombineRef {
            function: Some(FnRef::Named {
                name: name.to_string(),
                config,
            }),
            invoker,
        }
    }
}

/// Combines the values of each key (and window) with a CombineFn.
pub struct CombinePerKey<K, V, O> {
    f: CombineRef,
    _t: PhantomData<fn(K, V) -> O>,
}

impl<K: Element, V: Element, O: Element> CombinePerKey<K, V, O> {
    /// Combine per key with `c`.
    pub fn new<C: CombineFn<In = V, Out = O>>(c: C) -> Self {
        CombinePerKey {
            f: CombineRef::closure(c),
            _t: PhantomData,
        }
    }

    pub(crate) fn from_ref(f: CombineRef) -> Self {
        CombinePerKey { f, _t: PhantomData }
    }
}

/// Combines grouped values: the expansion of CombinePerKey for runners that do not lift.
struct CombineGroupedValues<K, V, O> {
    invoker: Arc<dyn CombineFnInvoker>,
    _t: PhantomData<fn(K, V) -> O>,
}

impl<K, V, O> Clone for CombineGroupedValues<K, V, O> {
    fn clone(&self) -> Self {
        CombineGroupedValues {
            invoker: self.invoker.clone(),
            _t: PhantomData,
        }
    }
}

impl<K: Element, V: Element, O: Element> DoFn for CombineGroupedValues<K, V, O> {
    type In = (K, Vec<V>);
    type Out = (K, O);
    fn process(
        &mut self,
        (k, vs): (K, Vec<V>),
        ctx: &mut ProcessContext<'_, '_, (K, O)>,
    ) -> Result<(), UserError> {
        let mut acc = self.invoker.create_accumulator();
        for v in vs {
            self.invoker.add_input(&mut acc, v.into_value())?;
        }
        let out = O::from_value(self.invoker.extract_output(acc)?)?;
        ctx.output((k, out));
        Ok(())
    }
}

impl<K: Element, V: Element, O: Element> PTransform<PCollection<(K, V)>>
    for CombinePerKey<K, V, O>
{
    type Output = PCollection<(K, O)>;
    fn expand(self, input: &PCollection<(K, V)>) -> PCollection<(K, O)> {
        let p = input.pipeline().clone();
        let name = p.current_name();
        let function = match self.f.function.clone() {
            Some(f) => f,
            None => {
                p.register_combine_fn(&name, self.f.invoker.clone());
                FnRef::Closure { id: name }
            }
        };
        let spec = UserFnSpec {
            function,
            outputs: vec![],
            side_inputs: vec![],
        };
        let accumulator_coder_id = p.coder_id(&self.f.invoker.accumulator_coder(&V::coder()));
        p.set_composite_spec(pb::FunctionSpec {
            urn: urns::COMBINE_PER_KEY.into(),
            payload: pb::CombinePayload {
                combine_fn: Some(pb::FunctionSpec {
                    urn: urns::BEAMLINE_COMBINE_FN.into(),
                    payload: spec.to_payload(),
                }),
                accumulator_coder_id,
            }
            .encode_to_vec(),
        });
        input.apply("GroupByKey", GroupByKey::new()).apply(
            "Combine",
            ParDo::of(CombineGroupedValues::<K, V, O> {
                invoker: self.f.invoker,
                _t: PhantomData,
            }),
        )
    }
}

/// Combines all values of each window into one.
///
/// As in Beam, by default the result comes from a step that also yields the CombineFn's
/// empty result when the input is empty. That step runs once, in the global window: its
/// output has the minimum timestamp and the pane of a value that no trigger fired (as Beam
/// Python's), whichever the combiner. Combiners without an empty result ([`Min`](super::Min),
/// [`Max`](super::Max)) then yield nothing for an empty input. An input in other windows
/// needs [`without_defaults`](CombineGlobally::without_defaults) (a construction error
/// otherwise, as in Beam); then each window's result has its grouping's pane and timestamp.
pub struct CombineGlobally<V, O> {
    f: CombineRef,
    defaults: bool,
    empty_result: bool,
    _t: PhantomData<fn(V) -> O>,
}

impl<V: Element, O: Element> CombineGlobally<V, O> {
    /// Combine everything with `c`.
    pub fn new<C: CombineFn<In = V, Out = O>>(c: C) -> Self {
        CombineGlobally {
            f: CombineRef::closure(c),
            defaults: true,
            empty_result: true,
            _t: PhantomData,
        }
    }

    /// `empty_result`: the CombineFn's result for no input is a value of type `O`.
    pub(crate) fn from_ref(f: CombineRef, empty_result: bool) -> Self {
        CombineGlobally {
            f,
            defaults: true,
            empty_result,
            _t: PhantomData,
        }
    }

    /// No default step: an empty input gives an empty output, and the input may be in
    /// any windows.
    pub fn without_defaults(mut self) -> Self {
        self.defaults = false;
        self
    }
}

/// Emits the combined value, or the CombineFn's empty result when the combine saw no input.
#[derive(Clone)]
struct InjectDefault<O: Element> {
    /// Computes the empty result; `None` when the CombineFn has none.
    invoker: Option<Arc<dyn CombineFnInvoker>>,
    combined: crate::SideInput<Vec<O>>,
}

impl<O: Element> DoFn for InjectDefault<O> {
    type In = ();
    type Out = O;
    fn process(&mut self, _: (), ctx: &mut ProcessContext<'_, '_, O>) -> Result<(), UserError> {
        let values = ctx.side_input(&self.combined)?.clone();
        if values.is_empty() {
            if let Some(invoker) = &self.invoker {
                // Computed here, not when the pipeline is built: a CombineFn whose empty
                // result fails only fails a job whose input is empty (as in Beam).
                let empty = invoker
                    .extract_output(invoker.create_accumulator())
                    .and_then(|v| O::from_value(v).map_err(UserError::from))
                    .map_err(|e| {
                        UserError::from(format!(
                            "the input is empty and the CombineFn's empty result failed: {e}; \
                             use without_defaults() for an empty output instead"
                        ))
                    })?;
                ctx.output(empty);
            }
        }
        for v in values {
            ctx.output(v);
        }
        Ok(())
    }
}

impl<V: Element, O: Element> PTransform<PCollection<V>> for CombineGlobally<V, O> {
    type Output = PCollection<O>;
    fn expand(self, input: &PCollection<V>) -> PCollection<O> {
        let invoker = self.f.invoker.clone();
        let values = input
            .map("KeyWithVoid", |v: V| ((), v))
            .apply("CombinePerKey", CombinePerKey::<(), V, O>::from_ref(self.f))
            .map("UnKey", |(_, o): ((), O)| o);
        if !self.defaults {
            return values;
        }
        if input.windowing().window_fn != WindowFn::Global {
            input.pipeline().construction_error(format!(
                "'{}': default values are not supported in CombineGlobally when the input is \
                 not in the global window; use CombineGlobally(...).without_defaults() for an \
                 empty output when a window is empty",
                input.pipeline().current_name()
            ));
            return values;
        }
        let view = values.as_iter();
        input.pipeline().apply("DefaultImpulse", Impulse).apply(
            "InjectDefault",
            ParDo::of(InjectDefault {
                invoker: self.empty_result.then_some(invoker),
                combined: view.clone(),
            })
            .with_side_input(&view),
        )
    }
}
