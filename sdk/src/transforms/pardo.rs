//! ParDo: the primitive that runs a DoFn on every element, with side inputs and tagged outputs.

use crate::dofn::{DoFn, DoFnAdapter, ErasedTag, NamedDoFn, TupleTag, ValueMap};
use crate::element::Element;
use crate::pcollection::{PCollection, POutput};
use crate::pipeline::{PTransform, Pipeline};
use crate::side_input::{SideInput, ViewKind};
use crate::state::{StateSpec, StateSpecKind, TimerSpec};
use beamline_engine::spec::{FnRef, UserFnSpec};
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;
use std::sync::Arc;

/// Name of the main output tag.
pub const MAIN_TAG: &str = "main";

pub(crate) struct SideRef {
    pcoll: String,
    local: String,
    kind: ViewKind,
}

/// Applies a [`DoFn`] to every element.
///
/// # Examples
///
/// ```
/// use beamline::{Create, ParDo, Pipeline, PipelineOptions};
/// use beamline::transforms::Map;
/// let p = Pipeline::new(PipelineOptions::default());
/// let nums = p.apply("Nums", Create::of(vec![1i64, 2, 3]));
/// let total = nums.apply("Total", beamline::Sum::globally());
/// let _doubled = nums.apply("Double", ParDo::of(Map::new(|x: i64| x * 2)))
///     .apply("WithTotal", ParDo::of(Map::new(|x: i64| x)).with_side_input(&total.as_singleton()));
/// p.run().unwrap();
/// ```
pub struct ParDo<F> {
    f: F,
    named: Option<(&'static str, serde_json::Value)>,
    sides: Vec<SideRef>,
    stateful: StatefulDecl,
    value_map: Option<ValueMap<F>>,
}

/// State cells and timers declared on a ParDo.
#[derive(Clone, Default)]
pub(crate) struct StatefulDecl {
    states: Vec<StateSpec>,
    timers: Vec<TimerSpec>,
    expiration: bool,
}

impl<F: DoFn> ParDo<F> {
    /// A ParDo running `f` as a closure of this binary.
    pub fn of(f: F) -> Self {
        ParDo {
            f,
            named: None,
            sides: Vec::new(),
            stateful: StatefulDecl::default(),
            value_map: None,
        }
    }

    /// Runs batches through `map`, which rewrites values in place (see [`ValueMap`]).
    pub(crate) fn with_value_map(mut self, map: ValueMap<F>) -> Self {
        self.value_map = Some(map);
        self
    }

    /// Declares a state cell; the input must be `(K, V)` and state is per key and window.
    pub fn with_state(mut self, spec: StateSpec) -> Self {
        self.stateful.states.push(spec);
        self
    }

    /// Declares a timer; its callback is [`DoFn::on_timer`].
    pub fn with_timer(mut self, spec: TimerSpec) -> Self {
        self.stateful.timers.push(spec);
        self
    }

    /// Calls [`DoFn::on_window_expiration`] when each window of each key expires.
    pub fn with_window_expiration(mut self) -> Self {
        self.stateful.expiration = true;
        self
    }

    /// Makes `view` readable with `ctx.side_input(&view)` inside the DoFn.
    pub fn with_side_input<V>(mut self, view: &SideInput<V>) -> Self {
        self.sides.push(SideRef {
            pcoll: view.pcollection().to_string(),
            local: view.local_name(),
            kind: view.kind(),
        });
        self
    }

    /// Declares additional outputs; apply returns [`TaggedOutputs`].
    pub fn with_outputs(self, tags: Vec<ErasedTag>) -> ParDoWithOutputs<F> {
        ParDoWithOutputs { pardo: self, tags }
    }

    fn expand_all(
        self,
        input: &PCollection<F::In>,
        extra: Vec<ErasedTag>,
    ) -> TaggedOutputs<F::Out> {
        let p = input.pipeline().clone();
        let name = p.current_name();
        let sides = self.sides;
        let function = match self.named {
            Some((fname, config)) => FnRef::Named {
                name: fname.to_string(),
                config,
            },
            None => {
                let (f, value_map) = (self.f, self.value_map);
                let mut tags = vec![MAIN_TAG.to_string()];
                tags.extend(extra.iter().map(|t| t.name.clone()));
                let locals: Vec<String> = sides.iter().map(|s| s.local.clone()).collect();
                p.register_dofn(
                    &name,
                    Arc::new(move || {
                        Box::new(
                            DoFnAdapter::new(f.clone(), tags.clone(), locals.clone())
                                .with_value_map(value_map),
                        )
                    }),
                );
                FnRef::Closure { id: name.clone() }
            }
        };
        let (main, others) = apply_pardo(
            &p,
            input.id(),
            input.windowing(),
            function,
            &F::Out::coder(),
            Parts {
                extra,
                sides: &sides,
                stateful: &self.stateful,
            },
        );
        TaggedOutputs {
            main: PCollection::from_id(p.clone(), main),
            pipeline: p,
            others,
        }
    }
}

/// Additional outputs, side inputs and state of a ParDo being recorded.
pub(crate) struct Parts<'a> {
    pub(crate) extra: Vec<ErasedTag>,
    pub(crate) sides: &'a [SideRef],
    pub(crate) stateful: &'a StatefulDecl,
}

/// Records the ParDo being expanded in the proto; returns its main and tagged output ids.
pub(crate) fn apply_pardo(
    p: &Pipeline,
    input: &str,
    windowing: beamline_engine::graph::Windowing,
    function: FnRef,
    main_coder: &beamline_engine::coder::Coder,
    parts: Parts<'_>,
) -> (String, Vec<(String, String)>) {
    let Parts {
        extra,
        sides,
        stateful,
    } = parts;
    let name = p.current_name();
    let main = p.new_output_with_coder(MAIN_TAG, main_coder, windowing.clone());
    let mut tags = vec![MAIN_TAG.to_string()];
    let mut outputs = vec![(MAIN_TAG.to_string(), main.clone())];
    let mut others = Vec::new();
    for t in extra {
        if tags.contains(&t.name) {
            p.construction_error(format!(
                "ParDo '{name}' declares output tag '{}' twice",
                t.name
            ));
            continue;
        }
        let id = p.new_output_with_coder(&t.name, &t.coder, windowing.clone());
        tags.push(t.name.clone());
        outputs.push((t.name.clone(), id.clone()));
        others.push((t.name, id));
    }
    let spec = UserFnSpec {
        function,
        outputs: tags,
        side_inputs: sides.iter().map(|s| s.local.clone()).collect(),
    };
    let mut inputs = vec![("input".to_string(), input.to_string())];
    let mut side_inputs = std::collections::HashMap::new();
    for s in sides {
        inputs.push((s.local.clone(), s.pcoll.clone()));
        let access = match s.kind {
            ViewKind::Singleton | ViewKind::Iterable => urns::SIDE_INPUT_ITERABLE,
            ViewKind::Map | ViewKind::MultiMap => urns::SIDE_INPUT_MULTIMAP,
        };
        side_inputs.insert(
            s.local.clone(),
            pb::SideInput {
                access_pattern: Some(pb::FunctionSpec {
                    urn: access.into(),
                    payload: vec![],
                }),
                view_fn: Some(pb::FunctionSpec {
                    urn: urns::BEAMLINE_VIEW_FN.into(),
                    payload: s.kind.name().as_bytes().to_vec(),
                }),
                window_mapping_fn: Some(pb::FunctionSpec {
                    urn: urns::BEAMLINE_WINDOW_MAPPING.into(),
                    payload: vec![],
                }),
            },
        );
    }
    let mut payload = pb::ParDoPayload {
        do_fn: Some(pb::FunctionSpec {
            urn: urns::BEAMLINE_DOFN.into(),
            payload: spec.to_payload(),
        }),
        side_inputs,
        ..Default::default()
    };
    state_protos(p, &name, stateful, &mut payload);
    p.set_primitive(
        pb::FunctionSpec {
            urn: urns::PAR_DO.into(),
            payload: payload.encode_to_vec(),
        },
        inputs,
        outputs,
        true,
    );
    (main, others)
}

/// Records state and timer declarations in the ParDo payload (registering combining
/// state CombineFns as closures of the transform).
fn state_protos(p: &Pipeline, name: &str, st: &StatefulDecl, payload: &mut pb::ParDoPayload) {
    use pb::state_spec::Spec;
    for s in &st.states {
        let (spec, protocol) = match &s.kind {
            StateSpecKind::Value(c) => (
                Spec::ReadModifyWriteSpec(pb::ReadModifyWriteStateSpec {
                    coder_id: p.coder_id(c),
                }),
                urns::USER_STATE_BAG,
            ),
            StateSpecKind::Bag(c) => (
                Spec::BagSpec(pb::BagStateSpec {
                    element_coder_id: p.coder_id(c),
                }),
                urns::USER_STATE_BAG,
            ),
            StateSpecKind::OrderedList(c) => (
                Spec::OrderedListSpec(pb::OrderedListStateSpec {
                    element_coder_id: p.coder_id(c),
                }),
                urns::USER_STATE_BAG,
            ),
            StateSpecKind::Map(k, v) => (
                Spec::MapSpec(pb::MapStateSpec {
                    key_coder_id: p.coder_id(k),
                    value_coder_id: p.coder_id(v),
                }),
                urns::USER_STATE_MULTIMAP,
            ),
            StateSpecKind::Set(c) => (
                Spec::SetSpec(pb::SetStateSpec {
                    element_coder_id: p.coder_id(c),
                }),
                urns::USER_STATE_MULTIMAP,
            ),
            StateSpecKind::Combining(f, input) => {
                let id = format!("{name}/state/{}", s.name);
                p.register_combine_fn(&id, f.clone());
                let fspec = UserFnSpec {
                    function: FnRef::Closure { id },
                    outputs: vec![],
                    side_inputs: vec![],
                };
                (
                    Spec::CombiningSpec(pb::CombiningStateSpec {
                        accumulator_coder_id: p.coder_id(&f.accumulator_coder(input)),
                        combine_fn: Some(pb::FunctionSpec {
                            urn: urns::BEAMLINE_COMBINE_FN.into(),
                            payload: fspec.to_payload(),
                        }),
                    }),
                    urns::USER_STATE_BAG,
                )
            }
        };
        payload.state_specs.insert(
            s.name.clone(),
            pb::StateSpec {
                spec: Some(spec),
                protocol: Some(pb::FunctionSpec {
                    urn: protocol.into(),
                    payload: vec![],
                }),
            },
        );
    }
    for t in &st.timers {
        let domain = match t.domain {
            beamline_engine::state::TimeDomain::Watermark => pb::time_domain::Enum::EventTime,
            beamline_engine::state::TimeDomain::ProcessingTime => {
                pb::time_domain::Enum::ProcessingTime
            }
        };
        payload.timer_family_specs.insert(
            t.name.clone(),
            pb::TimerFamilySpec {
                time_domain: domain as i32,
                timer_family_coder_id: p.coder_id(&beamline_engine::coder::Coder::Bytes),
            },
        );
    }
    if st.expiration {
        payload.on_window_expiration_timer_family_spec = "onWindowExpiration".into();
    }
}

/// A ParDo running a function registered by name (with `inventory`), configured with JSON;
/// its output elements are `T`s. Lets dynamically typed SDKs apply Rust DoFns by name.
pub struct NamedValueParDo<T> {
    pub(crate) name: String,
    pub(crate) config: serde_json::Value,
    pub(crate) _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> NamedValueParDo<T> {
    /// The DoFn registered under `name`, with `config`.
    pub fn new(name: impl Into<String>, config: serde_json::Value) -> Self {
        NamedValueParDo {
            name: name.into(),
            config,
            _t: std::marker::PhantomData,
        }
    }
}

impl<I, T: Element> PTransform<PCollection<I>> for NamedValueParDo<T> {
    type Output = PCollection<T>;
    fn expand(self, input: &PCollection<I>) -> PCollection<T> {
        let p = input.pipeline().clone();
        let function = FnRef::Named {
            name: self.name,
            config: self.config,
        };
        let (main, _) = apply_pardo(
            &p,
            input.id(),
            input.windowing(),
            function,
            &T::coder(),
            Parts {
                extra: vec![],
                sides: &[],
                stateful: &StatefulDecl::default(),
            },
        );
        PCollection::from_id(p, main)
    }
}

impl<F: NamedDoFn> ParDo<F> {
    /// A ParDo running a registered [`NamedDoFn`]: resolvable by name in any binary that
    /// links it, from the pipeline proto alone.
    pub fn named(f: F) -> Self {
        let config = serde_json::to_value(&f).expect("NamedDoFn config serializes to JSON");
        ParDo {
            f,
            named: Some((F::NAME, config)),
            sides: Vec::new(),
            stateful: StatefulDecl::default(),
            value_map: None,
        }
    }
}

impl<F: DoFn> PTransform<PCollection<F::In>> for ParDo<F> {
    type Output = PCollection<F::Out>;
    fn expand(self, input: &PCollection<F::In>) -> PCollection<F::Out> {
        self.expand_all(input, Vec::new()).main
    }
}

/// A ParDo with additional tagged outputs.
pub struct ParDoWithOutputs<F> {
    pardo: ParDo<F>,
    tags: Vec<ErasedTag>,
}

impl<F: DoFn> PTransform<PCollection<F::In>> for ParDoWithOutputs<F> {
    type Output = TaggedOutputs<F::Out>;
    fn expand(self, input: &PCollection<F::In>) -> TaggedOutputs<F::Out> {
        self.pardo.expand_all(input, self.tags)
    }
}

/// The outputs of a ParDo with tagged outputs.
pub struct TaggedOutputs<O> {
    pipeline: Pipeline,
    main: PCollection<O>,
    others: Vec<(String, String)>,
}

impl<O> TaggedOutputs<O> {
    /// The main output.
    pub fn main(&self) -> PCollection<O> {
        self.main.clone()
    }

    /// The output for `tag`, if declared.
    pub fn get<U: Element>(&self, tag: &TupleTag<U>) -> Option<PCollection<U>> {
        self.others
            .iter()
            .find(|(t, _)| t == tag.name())
            .map(|(_, id)| PCollection::from_id(self.pipeline.clone(), id.clone()))
    }
}

impl<O> POutput for TaggedOutputs<O> {
    fn pcollection_ids(&self) -> Vec<String> {
        let mut v = vec![self.main.id().to_string()];
        v.extend(self.others.iter().map(|(_, id)| id.clone()));
        v
    }
}
