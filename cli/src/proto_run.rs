//! `beamline run PIPELINE.pb`: runs a pipeline proto with this binary's named functions.

use anyhow::{bail, Context};
use beamline::engine::spec::{FnRef, UserFnSpec};
use beamline::{JobState, Pipeline, PipelineOptions};
use beamline_proto::org::apache::beam::model::pipeline::v1 as pb;
use beamline_proto::urns;
use prost::Message;
use std::path::Path;

/// The transforms of `p` whose function is a closure of the program that built it.
pub(crate) fn closures(p: &pb::Pipeline) -> Vec<String> {
    let Some(c) = &p.components else {
        return Vec::new();
    };
    let mut out: Vec<String> = c
        .transforms
        .values()
        .filter_map(|t| {
            let spec = t.spec.as_ref()?;
            let f = match spec.urn.as_str() {
                urns::PAR_DO => pb::ParDoPayload::decode(&spec.payload[..]).ok()?.do_fn?,
                urns::COMBINE_PER_KEY | urns::COMBINE_GLOBALLY => {
                    pb::CombinePayload::decode(&spec.payload[..])
                        .ok()?
                        .combine_fn?
                }
                _ => return None,
            };
            if f.urn != urns::BEAMLINE_DOFN && f.urn != urns::BEAMLINE_COMBINE_FN {
                return None;
            }
            let spec = UserFnSpec::from_payload(&f.payload).ok()?;
            matches!(spec.function, FnRef::Closure { .. }).then(|| t.unique_name.clone())
        })
        .collect();
    out.sort();
    out
}

/// Runs the proto at `path` with `options`; the exit code says how the job ended.
pub(crate) fn run(path: &Path, options: Vec<String>) -> anyhow::Result<u8> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let proto = pb::Pipeline::decode(&bytes[..]).map_err(|e| {
        anyhow::anyhow!(
            "{} is not an encoded Beam Pipeline proto: {e}",
            path.display()
        )
    })?;
    let closures = closures(&proto);
    if !closures.is_empty() {
        let shown: Vec<String> = closures.iter().take(5).map(|t| format!("'{t}'")).collect();
        let more = match closures.len() {
            n if n > 5 => format!(" and {} more", n - 5),
            _ => String::new(),
        };
        bail!(
            "{} needs closures of the program that built it ({}{more}): run that program \
             instead, with the same options, or make those functions named \
             (`beamline::register_dofn!`) and link them into a binary that runs the proto",
            path.display(),
            shown.join(", ")
        );
    }
    let name = path
        .file_stem()
        .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned());
    let args = std::iter::once("beamline run".to_string()).chain(options);
    let mut opts = PipelineOptions::from_args(args)?;
    if !opts.values().contains_key("job_name") {
        opts = opts.set("job_name", name);
    }
    let p = Pipeline::new(opts);
    let job = p.run_proto(&proto)?;
    Ok(match job.state() {
        JobState::Done => 0,
        _ => 1,
    })
}
