//! The pipeline's transforms and PCollections -> the engine's graph of nodes.

use crate::components::{coder, window_fn, windowing};
use crate::{invalid, Result};
use beamline_engine::graph::{
    Graph, Node, NodeKind, PCollectionInfo, PcId, StateDecl, StatefulSpec, TestEvent,
};
use beamline_engine::registry::FnRegistry;
use beamline_engine::spec::UserFnSpec;
use beamline_engine::state::{StateKind, TimeDomain};
use beamline_engine::EngineError;
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;
use std::collections::HashMap;

/// Builds the engine graph of `p`, resolving user functions in `fns` and `inventory`.
///
/// # Errors
/// Dangling ids, unsupported URNs (naming the transform or coder), undecodable payloads,
/// unresolvable functions.
pub fn to_graph(p: &pb::Pipeline, fns: &FnRegistry) -> Result<Graph> {
    let comps = p
        .components
        .as_ref()
        .ok_or_else(|| invalid("pipeline has no components"))?;
    let mut tx = Translator {
        comps,
        fns,
        graph: Graph::default(),
        pcs: HashMap::new(),
    };
    for id in &p.root_transform_ids {
        tx.visit(id)?;
    }
    Ok(tx.graph)
}

/// The engine graph of some of `comps`' transforms (a fused stage that an SDK harness
/// runs), with the index of every PCollection it touches by proto id. The PCollections in
/// `extra_pcollections` (those of transforms the caller runs itself) are indexed too.
///
/// # Errors
/// As [`to_graph`].
pub fn to_fragment(
    comps: &pb::Components,
    transform_ids: &[String],
    extra_pcollections: &[String],
    fns: &FnRegistry,
) -> Result<(Graph, HashMap<String, PcId>)> {
    let mut tx = Translator {
        comps,
        fns,
        graph: Graph::default(),
        pcs: HashMap::new(),
    };
    for id in transform_ids {
        tx.visit(id)?;
    }
    for id in extra_pcollections {
        tx.pcoll(id)?;
    }
    Ok((tx.graph, tx.pcs))
}

struct Translator<'a> {
    comps: &'a pb::Components,
    fns: &'a FnRegistry,
    graph: Graph,
    pcs: HashMap<String, PcId>,
}

impl Translator<'_> {
    fn pcoll(&mut self, id: &str) -> Result<PcId> {
        if let Some(&pc) = self.pcs.get(id) {
            return Ok(pc);
        }
        let p = self
            .comps
            .pcollections
            .get(id)
            .ok_or_else(|| invalid(format!("unknown PCollection id '{id}'")))?;
        let info = PCollectionInfo {
            name: p.unique_name.clone(),
            coder: coder(self.comps, &p.coder_id)
                .map_err(|e| invalid(format!("PCollection '{}': {e}", p.unique_name)))?,
            windowing: windowing(self.comps, &p.windowing_strategy_id)?,
        };
        self.graph.pcollections.push(info);
        let pc = self.graph.pcollections.len() - 1;
        self.pcs.insert(id.to_string(), pc);
        Ok(pc)
    }

    fn add(&mut self, name: &str, kind: NodeKind, inputs: Vec<PcId>, outputs: Vec<PcId>) {
        self.graph.nodes.push(Node {
            name: name.to_string(),
            kind,
            inputs,
            outputs,
        });
    }

    fn single(&mut self, t: &pb::PTransform, which: &str) -> Result<(Vec<PcId>, Vec<PcId>)> {
        let ins = sorted_values(&t.inputs);
        let outs = sorted_values(&t.outputs);
        if ins.len() != 1 || outs.len() != 1 {
            return Err(invalid(format!(
                "{which} '{}' needs one input and one output, has {} and {}",
                t.unique_name,
                ins.len(),
                outs.len()
            )));
        }
        Ok((vec![self.pcoll(ins[0])?], vec![self.pcoll(outs[0])?]))
    }

    fn visit(&mut self, id: &str) -> Result<()> {
        let t = self
            .comps
            .transforms
            .get(id)
            .ok_or_else(|| invalid(format!("unknown transform id '{id}'")))?;
        let urn = t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("");
        let payload = t.spec.as_ref().map(|s| s.payload.as_slice()).unwrap_or(&[]);
        let name = t.unique_name.as_str();
        match urn {
            urns::COMBINE_PER_KEY => {
                let cp = pb::CombinePayload::decode(payload)
                    .map_err(|e| invalid(format!("'{name}': bad CombinePayload: {e}")))?;
                match cp.combine_fn {
                    Some(f) if f.urn == urns::BEAMLINE_COMBINE_FN => {
                        let spec = parse_spec(name, &f.payload)?;
                        let combine_fn = self.fns.resolve_combine_fn(name, &spec)?;
                        let accumulator_coder = coder(self.comps, &cp.accumulator_coder_id)
                            .map_err(|e| invalid(format!("'{name}': accumulator coder: {e}")))?;
                        let (i, o) = self.single(t, "CombinePerKey")?;
                        let kind = NodeKind::CombinePerKey {
                            combine_fn,
                            accumulator_coder,
                        };
                        self.add(name, kind, i, o);
                        Ok(())
                    }
                    // Not ours: run its expansion instead.
                    _ => self.visit_parts(t),
                }
            }
            urns::RESHUFFLE => {
                let (i, o) = self.single(t, "Reshuffle")?;
                self.add(name, NodeKind::Reshuffle, i, o);
                Ok(())
            }
            _ if !t.subtransforms.is_empty() => self.visit_parts(t),
            urns::IMPULSE => {
                let outs = sorted_values(&t.outputs);
                let [out] = outs.as_slice() else {
                    return Err(invalid(format!("Impulse '{name}' needs one output")));
                };
                let o = self.pcoll(out)?;
                self.add(name, NodeKind::Impulse, vec![], vec![o]);
                Ok(())
            }
            urns::GROUP_BY_KEY => {
                let (i, o) = self.single(t, "GroupByKey")?;
                self.add(name, NodeKind::GroupByKey, i, o);
                Ok(())
            }
            urns::FLATTEN => {
                let outs = sorted_values(&t.outputs);
                let [out] = outs.as_slice() else {
                    return Err(invalid(format!("Flatten '{name}' needs one output")));
                };
                let inputs = sorted_values(&t.inputs)
                    .into_iter()
                    .map(|pc| self.pcoll(pc))
                    .collect::<Result<Vec<_>>>()?;
                let o = self.pcoll(out)?;
                self.add(name, NodeKind::Flatten, inputs, vec![o]);
                Ok(())
            }
            urns::ASSIGN_WINDOWS => {
                let wp = pb::WindowIntoPayload::decode(payload)
                    .map_err(|e| invalid(format!("'{name}': bad WindowIntoPayload: {e}")))?;
                let spec = wp
                    .window_fn
                    .ok_or_else(|| invalid(format!("'{name}': WindowInto without window fn")))?;
                let window_fn = window_fn(&spec)?;
                let (i, o) = self.single(t, "WindowInto")?;
                self.add(name, NodeKind::WindowInto { window_fn }, i, o);
                Ok(())
            }
            urns::PAR_DO => self.par_do(t, payload),
            urns::TEST_STREAM => self.test_stream(t, payload),
            urns::BEAMLINE_UNBOUNDED_SOURCE => {
                let spec = parse_spec(name, payload)?;
                let beamline_engine::spec::FnRef::Named {
                    name: sname,
                    config,
                } = &spec.function
                else {
                    return Err(invalid(format!("source '{name}' must be a named source")));
                };
                let reg = inventory::iter::<beamline_engine::source::NamedSource>
                    .into_iter()
                    .find(|r| r.name == sname)
                    .ok_or_else(|| EngineError::UnresolvedFunction {
                        transform: name.to_string(),
                        function: sname.clone(),
                        reason: "no source is registered under this name in this binary".into(),
                    })?;
                let build = reg.build;
                let config = config.to_string();
                // Check the config before any data flows.
                build(&config).map_err(|e| EngineError::UnresolvedFunction {
                    transform: name.to_string(),
                    function: sname.clone(),
                    reason: e.to_string(),
                })?;
                let outs = sorted_values(&t.outputs);
                let [out] = outs.as_slice() else {
                    return Err(invalid(format!("source '{name}' needs one output")));
                };
                let o = self.pcoll(out)?;
                let source: beamline_engine::graph::SourceFactory =
                    std::sync::Arc::new(move || build(&config));
                self.add(name, NodeKind::Source { source }, vec![], vec![o]);
                Ok(())
            }
            "" => Ok(()),
            other => Err(invalid(format!(
                "transform '{name}' has URN '{other}', which Beamline's runners do not know"
            ))),
        }
    }

    fn visit_parts(&mut self, t: &pb::PTransform) -> Result<()> {
        for sub in &t.subtransforms {
            self.visit(sub)?;
        }
        Ok(())
    }

    fn par_do(&mut self, t: &pb::PTransform, payload: &[u8]) -> Result<()> {
        let name = t.unique_name.as_str();
        let pd = pb::ParDoPayload::decode(payload)
            .map_err(|e| invalid(format!("'{name}': bad ParDoPayload: {e}")))?;
        let f = pd
            .do_fn
            .as_ref()
            .ok_or_else(|| invalid(format!("ParDo '{name}' has no DoFn")))?;
        if f.urn != urns::BEAMLINE_DOFN {
            return Err(invalid(format!(
                "ParDo '{name}' has DoFn URN '{}'; Beamline's runners execute Beamline functions ('{}')",
                f.urn,
                urns::BEAMLINE_DOFN
            )));
        }
        let spec = parse_spec(name, &f.payload)?;
        let dofn = self.fns.resolve_dofn(name, &spec)?;
        let mains: Vec<&String> = sorted_keys(&t.inputs)
            .into_iter()
            .filter(|k| !pd.side_inputs.contains_key(*k))
            .collect();
        let [main] = mains.as_slice() else {
            return Err(invalid(format!(
                "ParDo '{name}' needs exactly one main input, has {}",
                mains.len()
            )));
        };
        let main = self.pcoll(&t.inputs[*main])?;
        let mut side_inputs = Vec::new();
        for local in &spec.side_inputs {
            let pc = t.inputs.get(local).ok_or_else(|| {
                invalid(format!(
                    "ParDo '{name}' reads side input '{local}' that is not among its inputs"
                ))
            })?;
            side_inputs.push(self.pcoll(pc)?);
        }
        let tags: Vec<&String> = if spec.outputs.is_empty() {
            sorted_keys(&t.outputs)
        } else {
            spec.outputs.iter().collect()
        };
        let mut outputs = Vec::new();
        for tag in tags {
            let pc = t.outputs.get(tag).ok_or_else(|| {
                invalid(format!(
                    "ParDo '{name}' emits to tag '{tag}' that is not among its outputs"
                ))
            })?;
            outputs.push(self.pcoll(pc)?);
        }
        let stateful = self.stateful_spec(name, &pd)?;
        self.add(
            name,
            NodeKind::ParDo {
                dofn,
                side_inputs,
                stateful,
            },
            vec![main],
            outputs,
        );
        Ok(())
    }

    fn stateful_spec(
        &self,
        name: &str,
        pd: &pb::ParDoPayload,
    ) -> Result<Option<std::sync::Arc<StatefulSpec>>> {
        if pd.state_specs.is_empty()
            && pd.timer_family_specs.is_empty()
            && pd.on_window_expiration_timer_family_spec.is_empty()
        {
            return Ok(None);
        }
        let mut spec = StatefulSpec::default();
        let mut names: Vec<&String> = pd.state_specs.keys().collect();
        names.sort();
        for sname in names {
            use pb::state_spec::Spec;
            let kind = match &pd.state_specs[sname].spec {
                Some(Spec::ReadModifyWriteSpec(v)) => {
                    StateKind::Value(coder(self.comps, &v.coder_id)?)
                }
                Some(Spec::BagSpec(b)) => StateKind::Bag(coder(self.comps, &b.element_coder_id)?),
                Some(Spec::OrderedListSpec(l)) => {
                    StateKind::OrderedList(coder(self.comps, &l.element_coder_id)?)
                }
                Some(Spec::MapSpec(m)) => StateKind::Map(
                    coder(self.comps, &m.key_coder_id)?,
                    coder(self.comps, &m.value_coder_id)?,
                ),
                Some(Spec::SetSpec(m)) => StateKind::Set(coder(self.comps, &m.element_coder_id)?),
                Some(Spec::CombiningSpec(c)) => {
                    let f = c.combine_fn.as_ref().ok_or_else(|| {
                        invalid(format!(
                            "ParDo '{name}': combining state '{sname}' has no CombineFn"
                        ))
                    })?;
                    let cspec = parse_spec(name, &f.payload)?;
                    StateKind::Combining(
                        self.fns.resolve_combine_fn(name, &cspec)?,
                        coder(self.comps, &c.accumulator_coder_id)?,
                    )
                }
                Some(Spec::MultimapSpec(_)) => {
                    return Err(invalid(format!(
                        "ParDo '{name}': state '{sname}' is a multimap state, which Beamline does not support yet"
                    )))
                }
                None => {
                    return Err(invalid(format!(
                        "ParDo '{name}': state '{sname}' has no spec"
                    )))
                }
            };
            spec.states.push(StateDecl {
                name: sname.clone(),
                kind,
            });
        }
        let mut timers: Vec<(&String, &pb::TimerFamilySpec)> =
            pd.timer_family_specs.iter().collect();
        timers.sort_by_key(|(n, _)| *n);
        for (tname, t) in timers {
            let domain = if t.time_domain == pb::time_domain::Enum::ProcessingTime as i32 {
                TimeDomain::ProcessingTime
            } else {
                TimeDomain::Watermark
            };
            spec.timers.push((tname.clone(), domain));
        }
        spec.on_window_expiration = !pd.on_window_expiration_timer_family_spec.is_empty();
        Ok(Some(std::sync::Arc::new(spec)))
    }

    fn test_stream(&mut self, t: &pb::PTransform, payload: &[u8]) -> Result<()> {
        let name = t.unique_name.as_str();
        let ts = pb::TestStreamPayload::decode(payload)
            .map_err(|e| invalid(format!("'{name}': bad TestStreamPayload: {e}")))?;
        let c = coder(self.comps, &ts.coder_id)?;
        let mut events = Vec::with_capacity(ts.events.len());
        for e in &ts.events {
            use pb::test_stream_payload::event::Event;
            events.push(match &e.event {
                Some(Event::ElementEvent(add)) => {
                    let mut items = Vec::with_capacity(add.elements.len());
                    for el in &add.elements {
                        let v = c
                            .decode(&mut el.encoded_element.as_slice(), false)
                            .map_err(|source| EngineError::Coder {
                                transform: name.to_string(),
                                source,
                            })?;
                        items.push((v, el.timestamp));
                    }
                    TestEvent::Elements(items)
                }
                Some(Event::WatermarkEvent(w)) => TestEvent::Watermark(w.new_watermark),
                Some(Event::ProcessingTimeEvent(p)) => {
                    TestEvent::ProcessingTime(p.advance_duration)
                }
                None => return Err(invalid(format!("'{name}': empty TestStream event"))),
            });
        }
        let outs = sorted_values(&t.outputs);
        let [out] = outs.as_slice() else {
            return Err(invalid(format!("TestStream '{name}' needs one output")));
        };
        let o = self.pcoll(out)?;
        self.add(name, NodeKind::TestStream { events }, vec![], vec![o]);
        Ok(())
    }
}

fn parse_spec(transform: &str, payload: &[u8]) -> Result<UserFnSpec> {
    UserFnSpec::from_payload(payload)
        .map_err(|e| invalid(format!("'{transform}': bad Beamline function payload: {e}")))
}

fn sorted_keys(m: &std::collections::HashMap<String, String>) -> Vec<&String> {
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    k
}

fn sorted_values(m: &std::collections::HashMap<String, String>) -> Vec<&String> {
    sorted_keys(m).into_iter().map(|k| &m[k]).collect()
}
