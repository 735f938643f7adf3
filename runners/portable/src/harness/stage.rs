//! A ProcessBundleDescriptor as Beamline operators: its transforms translated once, when
//! registered (a bundle runs through them in `run`).

use std::collections::HashMap;
use std::sync::Arc;

use beamline_engine::coder::Coder;
use beamline_engine::graph::{Graph, NodeKind, PcId};
use beamline_engine::registry::FnRegistry;
use beamline_engine::window::TimestampCombiner;
use beamline_engine::windowed_coder::{WindowCoder, WindowedValueCoder};
use beamline_engine::{EngineError, Result};
use beamline_proto::fn_execution as fe;
use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;

use super::phases::{Phase, SideDef, IDENTITY_DOFN};

pub(crate) mod run;

/// `beam:runner:source:v1`: elements the engine sends into the stage.
pub const DATA_INPUT: &str = "beam:runner:source:v1";
/// `beam:runner:sink:v1`: elements the stage sends back to the engine.
pub const DATA_OUTPUT: &str = "beam:runner:sink:v1";

/// Encoded output is sent once a sink's buffer holds this much.
const FLUSH_BYTES: usize = 1 << 20;

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidPipeline(msg)
}

/// A data port: a runner source or sink transform, its endpoint and wire coder.
#[derive(Debug)]
struct Port {
    transform_id: String,
    /// The engine's id of the PCollection it carries.
    engine_pc: String,
    url: String,
    coder: WindowedValueCoder,
    pc: PcId,
    window_fn: beamline_engine::window::WindowFn,
}

/// A transform the harness runs with its own operators (not the engine graph's).
enum Custom {
    Phase(
        Phase,
        Arc<dyn beamline_engine::combine::CombineFnInvoker>,
        Coder,
        TimestampCombiner,
    ),
    Identity,
}

struct CustomDef {
    name: String,
    kind: Custom,
    input: PcId,
    output: PcId,
}

/// A registered descriptor, translated.
pub struct StageDef {
    graph: Graph,
    /// Indexes of the graph's nodes that run (not the combines translated for their fns).
    nodes: Vec<usize>,
    sources: Vec<Port>,
    sinks: Vec<Port>,
    custom: Vec<CustomDef>,
    /// Side inputs to fetch, by graph node index.
    sides: HashMap<usize, Vec<SideDef>>,
    /// Stateful ParDos, by graph node index.
    stateful: HashMap<usize, StatefulDef>,
    state_url: Option<String>,
    timer_url: Option<String>,
    /// Transform ids by unique name (metrics are kept by name, reported by id).
    ids: HashMap<String, String>,
    /// How the job's live progress shows it.
    shape: super::progress::StageShape,
}

/// A stateful ParDo: its state goes through the state API, its timers through the data
/// stream.
#[derive(Clone, Debug)]
struct StatefulDef {
    transform_id: String,
    /// Timer families (Beamline's timer names).
    families: Vec<String>,
    has_state: bool,
    key_coder: Coder,
    window_coder: WindowCoder,
    window_fn: beamline_engine::window::WindowFn,
}

impl std::fmt::Debug for StageDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageDef")
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|&i| {
                        let n = &self.graph.nodes[i];
                        (n.name.clone(), n.inputs.clone(), n.outputs.clone())
                    })
                    .collect::<Vec<_>>(),
            )
            .field("sources", &self.sources)
            .field("sinks", &self.sinks)
            .finish()
    }
}

/// The single value of a map (a transform's only input or output).
fn only<'a>(m: &'a HashMap<String, String>, what: &str, name: &str) -> Result<&'a String> {
    let mut values = m.values();
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v),
        _ => Err(invalid(format!(
            "transform '{name}' needs one {what}, has {}",
            m.len()
        ))),
    }
}

/// `beam:coder:windowed_value:v1` with its element and window coders.
fn wire_coder(comps: &pb::Components, id: &str) -> Result<WindowedValueCoder> {
    let c = comps
        .coders
        .get(id)
        .ok_or_else(|| invalid(format!("unknown coder id '{id}'")))?;
    let urn = c.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("");
    if urn != urns::CODER_WINDOWED_VALUE || c.component_coder_ids.len() != 2 {
        return Err(invalid(format!(
            "data port coder '{id}' is '{urn}', not a windowed value coder"
        )));
    }
    let value = beamline_translate::coder(comps, &c.component_coder_ids[0])?;
    let wid = &c.component_coder_ids[1];
    let wurn = comps
        .coders
        .get(wid)
        .and_then(|w| w.spec.as_ref())
        .map(|s| s.urn.as_str())
        .unwrap_or("");
    let window = match wurn {
        urns::CODER_GLOBAL_WINDOW => WindowCoder::Global,
        urns::CODER_INTERVAL_WINDOW => WindowCoder::Interval,
        other => {
            return Err(invalid(format!(
                "window coder '{other}' of data port coder '{id}' is not supported"
            )))
        }
    };
    Ok(WindowedValueCoder { value, window })
}

fn port(comps: &pb::Components, t: &pb::PTransform, pcoll: &str) -> Result<(String, String)> {
    let payload = t.spec.as_ref().map(|s| s.payload.as_slice()).unwrap_or(&[]);
    let p = fe::RemoteGrpcPort::decode(payload)
        .map_err(|e| invalid(format!("'{}': bad RemoteGrpcPort: {e}", t.unique_name)))?;
    let url = p
        .api_service_descriptor
        .map(|d| d.url)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "'{}': data port without an endpoint",
                t.unique_name
            ))
        })?;
    let coder_id = if p.coder_id.is_empty() {
        comps
            .pcollections
            .get(pcoll)
            .map(|p| p.coder_id.clone())
            .unwrap_or_default()
    } else {
        p.coder_id
    };
    Ok((url, coder_id))
}

impl StageDef {
    /// Translates descriptor `d`, resolving functions in `fns`.
    ///
    /// # Errors
    /// Transforms, coders or functions Beamline cannot run (naming them).
    pub fn new(d: fe::ProcessBundleDescriptor, fns: &FnRegistry) -> Result<StageDef> {
        let mut comps = pb::Components {
            transforms: d.transforms,
            pcollections: d.pcollections,
            windowing_strategies: d.windowing_strategies,
            coders: d.coders,
            environments: d.environments,
        };
        let mut engine_ids = Vec::new();
        let mut extra = Vec::new();
        let mut ports = Vec::new();
        let mut customs = Vec::new();
        let mut synthetic = Vec::new();
        let mut ids: Vec<String> = comps.transforms.keys().cloned().collect();
        ids.sort();
        for id in &ids {
            let t = &comps.transforms[id];
            if !t.subtransforms.is_empty() {
                continue;
            }
            let urn = t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("");
            let name = t.unique_name.clone();
            match urn {
                DATA_INPUT | DATA_OUTPUT => {
                    let pcoll = if urn == DATA_INPUT {
                        only(&t.outputs, "output", &name)?
                    } else {
                        only(&t.inputs, "input", &name)?
                    };
                    let (url, coder_id) = port(&comps, t, pcoll)?;
                    let coder = wire_coder(&comps, &coder_id)?;
                    extra.push(pcoll.clone());
                    ports.push((urn == DATA_INPUT, id.clone(), url, coder, pcoll.clone()));
                }
                IDENTITY_DOFN => {
                    let (i, o) = (
                        only(&t.inputs, "input", &name)?,
                        only(&t.outputs, "output", &name)?,
                    );
                    extra.extend([i.clone(), o.clone()]);
                    customs.push((name, None, i.clone(), o.clone()));
                }
                _ => match Phase::of_urn(urn) {
                    Some(phase) => {
                        let (i, o) = (
                            only(&t.inputs, "input", &name)?,
                            only(&t.outputs, "output", &name)?,
                        );
                        extra.extend([i.clone(), o.clone()]);
                        // The CombineFn resolves as the CombinePerKey it came from would.
                        let mut as_combine = t.clone();
                        if let Some(spec) = as_combine.spec.as_mut() {
                            spec.urn = urns::COMBINE_PER_KEY.into();
                        }
                        let sid = format!("{id}#combine");
                        synthetic.push((sid.clone(), as_combine));
                        customs.push((name, Some((phase, sid)), i.clone(), o.clone()));
                    }
                    None => engine_ids.push(id.clone()),
                },
            }
        }
        let mut translated = engine_ids.clone();
        for (sid, t) in synthetic {
            translated.push(sid.clone());
            comps.transforms.insert(sid, t);
        }
        let (graph, pcs) = beamline_translate::to_fragment(&comps, &translated, &extra, fns)?;
        let pc = |id: &str| -> PcId { pcs[id] };
        let mut nodes = Vec::new();
        let mut stateful = HashMap::new();
        let mut combine_fns = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            match &node.kind {
                NodeKind::CombinePerKey { combine_fn, .. }
                    if customs.iter().any(|c| c.0 == node.name && c.1.is_some()) =>
                {
                    combine_fns.insert(node.name.clone(), combine_fn.clone());
                }
                NodeKind::ParDo {
                    stateful: Some(spec),
                    ..
                } => {
                    if spec.on_window_expiration {
                        return Err(invalid(format!(
                            "ParDo '{}' has an on-window-expiration callback, which the portable runner does not run yet",
                            node.name
                        )));
                    }
                    let transform_id = engine_ids
                        .iter()
                        .find(|id| comps.transforms[*id].unique_name == node.name)
                        .cloned()
                        .ok_or_else(|| invalid(format!("no transform for '{}'", node.name)))?;
                    let input = &graph.pcollections[node.inputs[0]];
                    let Coder::Kv(key_coder, _) = &input.coder else {
                        return Err(invalid(format!(
                            "stateful ParDo '{}' needs key/value input",
                            node.name
                        )));
                    };
                    let window_coder = match input.windowing.window_fn {
                        beamline_engine::window::WindowFn::Global => WindowCoder::Global,
                        _ => WindowCoder::Interval,
                    };
                    stateful.insert(
                        i,
                        StatefulDef {
                            transform_id,
                            families: spec.timers.iter().map(|(n, _)| n.clone()).collect(),
                            has_state: !spec.states.is_empty(),
                            key_coder: (**key_coder).clone(),
                            window_coder,
                            window_fn: input.windowing.window_fn,
                        },
                    );
                    nodes.push(i);
                }
                _ => nodes.push(i),
            }
        }
        let mut custom = Vec::new();
        for (name, phase, i, o) in customs {
            let kind = match phase {
                None => Custom::Identity,
                Some((phase, _)) => {
                    let combine = combine_fns.get(&name).cloned().ok_or_else(|| {
                        invalid(format!(
                            "combine phase '{name}' does not carry a Beamline CombineFn"
                        ))
                    })?;
                    let input = &graph.pcollections[pc(&i)];
                    let Coder::Kv(key_coder, _) = &input.coder else {
                        return Err(invalid(format!(
                            "combine phase '{name}' needs key/value input"
                        )));
                    };
                    Custom::Phase(
                        phase,
                        combine,
                        (**key_coder).clone(),
                        input.windowing.timestamp_combiner,
                    )
                }
            };
            custom.push(CustomDef {
                name,
                kind,
                input: pc(&i),
                output: pc(&o),
            });
        }
        let (mut sources, mut sinks) = (Vec::new(), Vec::new());
        for (is_source, transform_id, url, coder, pcoll) in ports {
            let p = Port {
                engine_pc: pcoll.clone(),
                transform_id,
                url,
                coder,
                pc: pc(&pcoll),
                window_fn: graph.pcollections[pc(&pcoll)].windowing.window_fn,
            };
            if is_source {
                sources.push(p);
            } else {
                sinks.push(p);
            }
        }
        let sides = side_defs(&comps, &engine_ids, &graph, &pcs)?;
        let shape = super::progress::StageShape {
            transforms: nodes
                .iter()
                .map(|&n| graph.nodes[n].name.clone())
                .chain(custom.iter().map(|c| c.name.clone()))
                .collect(),
            reads: sources.iter().map(|p| p.engine_pc.clone()).collect(),
            writes: sinks.iter().map(|p| p.engine_pc.clone()).collect(),
            // After the engine's grouping: a combine's merge or extraction.
            groups: custom
                .iter()
                .any(|c| c.name.ends_with("/Merge") || c.name.ends_with("/ExtractOutputs")),
        };
        Ok(StageDef {
            graph,
            nodes,
            sources,
            sinks,
            custom,
            sides,
            stateful,
            state_url: d
                .state_api_service_descriptor
                .map(|s| s.url)
                .filter(|u| !u.is_empty()),
            timer_url: d
                .timer_api_service_descriptor
                .map(|s| s.url)
                .filter(|u| !u.is_empty()),
            ids: comps
                .transforms
                .iter()
                .filter(|(id, _)| !id.ends_with("#combine"))
                .map(|(id, t)| (t.unique_name.clone(), id.clone()))
                .collect(),
            shape,
        })
    }
}

/// The side inputs of the stage's ParDos, as the state API addresses them.
fn side_defs(
    comps: &pb::Components,
    engine_ids: &[String],
    graph: &Graph,
    pcs: &HashMap<String, PcId>,
) -> Result<HashMap<usize, Vec<SideDef>>> {
    let mut out = HashMap::new();
    for id in engine_ids {
        let t = &comps.transforms[id];
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == urns::PAR_DO) else {
            continue;
        };
        let pd = pb::ParDoPayload::decode(spec.payload.as_slice())
            .map_err(|e| invalid(format!("'{}': bad ParDoPayload: {e}", t.unique_name)))?;
        if pd.side_inputs.is_empty() {
            continue;
        }
        let Some(ni) = graph.nodes.iter().position(|n| n.name == t.unique_name) else {
            continue;
        };
        let node = &graph.nodes[ni];
        let mut defs = Vec::new();
        let mut locals: Vec<&String> = pd.side_inputs.keys().collect();
        locals.sort();
        for local in locals {
            let si = &pd.side_inputs[local];
            let pcoll = t.inputs.get(local).ok_or_else(|| {
                invalid(format!(
                    "'{}': side input '{local}' has no input",
                    t.unique_name
                ))
            })?;
            let pc = pcs[pcoll];
            let slot = node
                .side_inputs()
                .iter()
                .position(|&s| s == pc)
                .map(|p| p + 1)
                .ok_or_else(|| {
                    invalid(format!("'{}': side input '{local}' unknown", t.unique_name))
                })?;
            let pattern = si
                .access_pattern
                .as_ref()
                .map(|a| a.urn.as_str())
                .unwrap_or("");
            let info = &graph.pcollections[pc];
            defs.push(SideDef {
                transform_id: id.clone(),
                side_input_id: local.clone(),
                slot,
                multimap: pattern == urns::SIDE_INPUT_MULTIMAP,
                window_fn: info.windowing.window_fn,
                coder: info.coder.clone(),
            });
        }
        out.insert(ni, defs);
    }
    Ok(out)
}
