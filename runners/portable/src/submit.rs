//! The pipeline proto as a Beam job service receives it: Beamline's environment becomes
//! `beam:env:external:v1` pointing at this process's worker pool, with the capabilities
//! the harness has, and the pipeline's `requirements` say what its DoFns need.

use beamline_proto::pipeline as pb;
use beamline_proto::prost::Message;
use beamline_proto::urns;

use crate::{Error, Result};

/// Coder URNs the harness encodes and decodes (its environment's capabilities).
pub const CODER_CAPABILITIES: &[&str] = &[
    urns::CODER_BYTES,
    urns::CODER_STRING_UTF8,
    urns::CODER_KV,
    urns::CODER_BOOL,
    urns::CODER_VARINT,
    urns::CODER_DOUBLE,
    urns::CODER_ITERABLE,
    urns::CODER_INTERVAL_WINDOW,
    urns::CODER_LENGTH_PREFIX,
    urns::CODER_GLOBAL_WINDOW,
    urns::CODER_WINDOWED_VALUE,
    urns::CODER_NULLABLE,
    urns::BEAMLINE_CODER_SERDE,
    urns::BEAMLINE_CODER_DYNAMIC,
];

/// A ParDo with user state or timers (Beam's `beam:requirement:pardo:stateful:v1`).
pub const REQUIRES_STATEFUL: &str = "beam:requirement:pardo:stateful:v1";
/// A DoFn that needs its input sorted by time.
pub const REQUIRES_TIME_SORTED_INPUT: &str = "beam:requirement:pardo:time_sorted_input:v1";
/// A DoFn that needs stable input.
pub const REQUIRES_STABLE_INPUT: &str = "beam:requirement:pardo:stable_input:v1";
/// A DoFn with an on-window-expiration callback.
pub const REQUIRES_ON_WINDOW_EXPIRATION: &str = "beam:requirement:pardo:on_window_expiration:v1";
/// A splittable DoFn.
pub const REQUIRES_SPLITTABLE: &str = "beam:requirement:pardo:splittable_dofn:v1";

/// An encoded pipeline as submitted: the original bytes (fields Beamline does not declare
/// included), with what [`rewrite`] changes laid over them: changed and new environments,
/// transforms, coders and requirements appended (a later map entry replaces an earlier
/// one), the root list replaced when it changed.
///
/// # Errors
/// A malformed pipeline proto.
pub fn for_submission(pipeline: &[u8], worker_pool: &str) -> Result<Vec<u8>> {
    let original = pb::Pipeline::decode(pipeline)
        .map_err(|e| Error::Protocol(format!("malformed pipeline proto: {e}")))?;
    let rewritten = rewrite(original.clone(), worker_pool);
    let (oc, rc) = (
        original.components.unwrap_or_default(),
        rewritten.components.unwrap_or_default(),
    );
    fn changed<V: PartialEq + Clone>(
        old: &std::collections::HashMap<String, V>,
        new: &std::collections::HashMap<String, V>,
    ) -> std::collections::HashMap<String, V> {
        new.iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    let overlay = pb::Pipeline {
        components: Some(pb::Components {
            transforms: changed(&oc.transforms, &rc.transforms),
            pcollections: changed(&oc.pcollections, &rc.pcollections),
            windowing_strategies: changed(&oc.windowing_strategies, &rc.windowing_strategies),
            coders: changed(&oc.coders, &rc.coders),
            environments: changed(&oc.environments, &rc.environments),
        }),
        root_transform_ids: if rewritten.root_transform_ids != original.root_transform_ids {
            rewritten.root_transform_ids
        } else {
            Vec::new()
        },
        display_data: Vec::new(),
        requirements: rewritten
            .requirements
            .into_iter()
            .filter(|r| !original.requirements.contains(r))
            .collect(),
    };
    let mut out = if overlay.root_transform_ids.is_empty() {
        pipeline.to_vec()
    } else {
        without_field(pipeline, ROOT_TRANSFORM_IDS)?
    };
    overlay.encode(&mut out).expect("a Vec grows");
    Ok(out)
}

/// `Pipeline.root_transform_ids`.
const ROOT_TRANSFORM_IDS: u64 = 2;

/// `message` without its top-level occurrences of field `field`.
fn without_field(message: &[u8], field: u64) -> Result<Vec<u8>> {
    use beamline_engine::coder::read_varint;
    let bad = |what: &str| Error::Protocol(format!("malformed pipeline proto: {what}"));
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        let start = rest;
        let key = read_varint(&mut rest).map_err(|_| bad("a field key"))?;
        let len = match key & 7 {
            0 => {
                read_varint(&mut rest).map_err(|_| bad("a varint"))?;
                0
            }
            1 => 8,
            2 => read_varint(&mut rest).map_err(|_| bad("a length"))? as usize,
            5 => 4,
            _ => return Err(bad("a group or unknown wire type")),
        };
        if rest.len() < len {
            return Err(bad("a truncated field"));
        }
        rest = &rest[len..];
        if key >> 3 != field {
            out.extend_from_slice(&start[..start.len() - rest.len()]);
        }
    }
    Ok(out)
}

/// The pipeline as the service gets it: every environment Beamline's code runs in becomes
/// an external one served at `worker_pool` (HOST:PORT), transforms of Beamline composites
/// the service may split (CombinePerKey) name that environment, timers get Beam's timer
/// coder, the requirements are filled in, and several roots become parts of one.
pub fn rewrite(mut p: pb::Pipeline, worker_pool: &str) -> pb::Pipeline {
    let comps = p.components.get_or_insert_with(Default::default);
    let external = pb::Environment {
        urn: urns::ENV_EXTERNAL.into(),
        payload: pb::ExternalPayload {
            endpoint: Some(pb::ApiServiceDescriptor {
                url: worker_pool.into(),
                authentication: None,
            }),
            params: Default::default(),
        }
        .encode_to_vec(),
        capabilities: CODER_CAPABILITIES.iter().map(|s| (*s).into()).collect(),
        ..Default::default()
    };
    let mut ours = Vec::new();
    for (id, env) in comps.environments.iter_mut() {
        if env.urn == urns::ENV_RUST {
            let display = std::mem::take(&mut env.display_data);
            *env = pb::Environment {
                display_data: display,
                ..external.clone()
            };
            ours.push(id.clone());
        }
    }
    let Some(env) = ours.first().cloned() else {
        return p;
    };
    let mut requirements: Vec<String> = std::mem::take(&mut p.requirements);
    let timer_coders = timer_coders(comps);
    for (id, t) in comps.transforms.iter_mut() {
        if let Some(coder_id) = timer_coders.get(id) {
            if let Some(spec) = t.spec.as_mut() {
                if let Ok(mut pd) = pb::ParDoPayload::decode(spec.payload.as_slice()) {
                    for f in pd.timer_family_specs.values_mut() {
                        f.timer_family_coder_id = coder_id.clone();
                    }
                    spec.payload = pd.encode_to_vec();
                }
            }
        }
    }
    for t in comps.transforms.values_mut() {
        let urn = t.spec.as_ref().map(|s| s.urn.as_str()).unwrap_or("");
        // A service that lifts a combine runs its phases in the combine's environment.
        if urn == urns::COMBINE_PER_KEY && t.environment_id.is_empty() {
            t.environment_id = env.clone();
        }
        if urn != urns::PAR_DO {
            continue;
        }
        let Some(pd) = t
            .spec
            .as_ref()
            .and_then(|s| pb::ParDoPayload::decode(s.payload.as_slice()).ok())
        else {
            continue;
        };
        let mut need = |r: &str| {
            if !requirements.iter().any(|x| x == r) {
                requirements.push(r.into());
            }
        };
        if !pd.state_specs.is_empty() || !pd.timer_family_specs.is_empty() {
            need(REQUIRES_STATEFUL);
        }
        if pd.requires_time_sorted_input {
            need(REQUIRES_TIME_SORTED_INPUT);
        }
        if pd.requires_stable_input {
            need(REQUIRES_STABLE_INPUT);
        }
        if !pd.on_window_expiration_timer_family_spec.is_empty() {
            need(REQUIRES_ON_WINDOW_EXPIRATION);
        }
        if !pd.restriction_coder_id.is_empty() {
            need(REQUIRES_SPLITTABLE);
        }
    }
    requirements.sort();
    p.requirements = requirements;
    // Beam's SDKs build (and Beam Python insists on) one root: a composite of the rest.
    if p.root_transform_ids.len() > 1 {
        let comps = p.components.get_or_insert_with(Default::default);
        let mut id = "beamline-root".to_string();
        while comps.transforms.contains_key(&id) {
            id.push('_');
        }
        comps.transforms.insert(
            id.clone(),
            pb::PTransform {
                unique_name: String::new(),
                subtransforms: std::mem::take(&mut p.root_transform_ids),
                ..Default::default()
            },
        );
        p.root_transform_ids = vec![id];
    }
    p
}

/// For every ParDo with timers, the id of a `beam:coder:timer:v1` coder of its keys and
/// windows (added to `comps`): the engine decodes the timers the harness sets with it.
fn timer_coders(comps: &mut pb::Components) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut new_coders = Vec::new();
    for (id, t) in &comps.transforms {
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == urns::PAR_DO) else {
            continue;
        };
        let Ok(pd) = pb::ParDoPayload::decode(spec.payload.as_slice()) else {
            continue;
        };
        if pd.timer_family_specs.is_empty() {
            continue;
        }
        // The main input: the one input that is not a side input.
        let Some(main) = t
            .inputs
            .iter()
            .find(|(local, _)| !pd.side_inputs.contains_key(*local))
            .and_then(|(_, pc)| comps.pcollections.get(pc))
        else {
            continue;
        };
        let keyed = comps
            .coders
            .get(&main.coder_id)
            .and_then(|c| c.spec.as_ref())
            .is_some_and(|s| s.urn == urns::CODER_KV);
        if !keyed {
            continue;
        }
        let Some(window_coder) = comps
            .windowing_strategies
            .get(&main.windowing_strategy_id)
            .map(|w| w.window_coder_id.clone())
        else {
            continue;
        };
        // The key as length-prefixed bytes: what every engine can decode (Beamline's own
        // key coders are opaque to it), and the same bytes as the key coder length-prefixed.
        let coder_id = format!("beamline-timer-{window_coder}");
        new_coders.push((
            coder_id.clone(),
            pb::Coder {
                spec: Some(pb::FunctionSpec {
                    urn: urns::CODER_TIMER.into(),
                    payload: vec![],
                }),
                component_coder_ids: vec![TIMER_KEY_CODER.into(), window_coder],
            },
        ));
        out.insert(id.clone(), coder_id);
    }
    if !out.is_empty() {
        let coder = |urn: &str, components: Vec<String>| pb::Coder {
            spec: Some(pb::FunctionSpec {
                urn: urn.into(),
                payload: vec![],
            }),
            component_coder_ids: components,
        };
        new_coders.push((TIMER_KEY_BYTES.into(), coder(urns::CODER_BYTES, vec![])));
        new_coders.push((
            TIMER_KEY_CODER.into(),
            coder(urns::CODER_LENGTH_PREFIX, vec![TIMER_KEY_BYTES.into()]),
        ));
    }
    for (id, c) in new_coders {
        comps.coders.insert(id, c);
    }
    out
}

/// The coder ids of timer keys (length-prefixed bytes) in a submitted pipeline.
const TIMER_KEY_CODER: &str = "beamline-timer-key";
const TIMER_KEY_BYTES: &str = "beamline-timer-key-bytes";
