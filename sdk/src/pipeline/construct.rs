//! The construction half of [`Pipeline`]: the scopes of the transforms being expanded and
//! what each adds to the proto (PCollections, coders, primitives, closures).

use super::{Pipeline, Scope};
use crate::pcollection::PCollection;
use crate::proto_build;
use beamline_engine::graph::Windowing;
use beamline_engine::registry::DoFnFactory;
use beamline_proto::pipeline as pb;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

impl Pipeline {
    pub(super) fn enter(&self, name: &str) -> String {
        let mut st = self.inner.lock();
        let clean = if name.is_empty() { "Unnamed" } else { name };
        let base = match st.scopes.last() {
            Some(s) => format!("{}/{clean}", s.id),
            None => clean.to_string(),
        };
        let mut id = base.clone();
        if st.names.contains(&id) {
            st.errors.push(format!(
                "two transforms are named '{base}'; give each application a unique name"
            ));
            let mut n = 2;
            while st.names.contains(&format!("{base}_{n}")) {
                n += 1;
            }
            id = format!("{base}_{n}");
        }
        st.names.insert(id.clone());
        match st.scopes.last_mut() {
            Some(s) => s.parts.push(id.clone()),
            None => st.roots.push(id.clone()),
        }
        st.scopes.push(Scope {
            id: id.clone(),
            parts: Vec::new(),
            primitive: false,
        });
        st.components.transforms.insert(
            id.clone(),
            pb::PTransform {
                unique_name: id.clone(),
                ..Default::default()
            },
        );
        id
    }

    pub(super) fn exit(&self, inputs: Vec<String>, outputs: Vec<String>) {
        let mut st = self.inner.lock();
        let scope = st.scopes.pop().expect("balanced enter/exit");
        let t = st
            .components
            .transforms
            .get_mut(&scope.id)
            .expect("entered transform exists");
        t.subtransforms = scope.parts;
        if !scope.primitive {
            t.inputs = numbered("in", inputs);
            t.outputs = numbered("out", outputs);
        }
        // Outputs computed from an unbounded input are unbounded too.
        let (ins, outs): (Vec<String>, Vec<String>) = (
            t.inputs.values().cloned().collect(),
            t.outputs.values().cloned().collect(),
        );
        let unbounded = pb::is_bounded::Enum::Unbounded as i32;
        let pcs = &mut st.components.pcollections;
        if ins
            .iter()
            .any(|i| pcs.get(i).is_some_and(|p| p.is_bounded == unbounded))
        {
            for o in outs {
                if let Some(p) = pcs.get_mut(&o) {
                    p.is_bounded = unbounded;
                }
            }
        }
    }

    /// Unique name of the transform being expanded.
    pub(crate) fn current_name(&self) -> String {
        self.inner
            .lock()
            .scopes
            .last()
            .map(|s| s.id.clone())
            .unwrap_or_default()
    }

    /// Creates an output PCollection of the transform being expanded.
    pub(crate) fn new_output<T: crate::Element>(
        &self,
        tag: &str,
        windowing: Windowing,
    ) -> PCollection<T> {
        let id = self.new_output_with_coder(tag, &T::coder(), windowing);
        PCollection::from_id(self.clone(), id)
    }

    /// Sets an annotation of the transform being expanded (what monitors show of a
    /// source or sink: [`crate::io::SOURCE_ANNOTATION`], [`crate::io::SINK_ANNOTATION`]).
    pub(crate) fn annotate(&self, key: &str, value: &str) {
        let mut st = self.inner.lock();
        let Some(id) = st.scopes.last().map(|s| s.id.clone()) else {
            return;
        };
        if let Some(t) = st.components.transforms.get_mut(&id) {
            t.annotations
                .insert(key.to_string(), value.as_bytes().to_vec());
        }
    }

    /// Creates an output PCollection with an explicit coder; returns its id.
    pub(crate) fn new_output_with_coder(
        &self,
        tag: &str,
        coder: &beamline_engine::coder::Coder,
        windowing: Windowing,
    ) -> String {
        let mut guard = self.inner.lock();
        let st = &mut *guard;
        let transform = st.scopes.last().map(|s| s.id.clone()).unwrap_or_default();
        let id = format!("{transform}.{tag}");
        let coder_id = proto_build::coder_id(&mut st.components, &mut st.coder_ids, coder);
        let st = &mut *st;
        let ws_id =
            proto_build::windowing_id(&mut st.components, &mut st.windowing_ids, &windowing);
        st.components.pcollections.insert(
            id.clone(),
            pb::PCollection {
                unique_name: id.clone(),
                coder_id,
                is_bounded: pb::is_bounded::Enum::Bounded as i32,
                windowing_strategy_id: ws_id,
                display_data: vec![],
            },
        );
        st.windowing.insert(id.clone(), windowing);
        id
    }

    /// Marks a PCollection as unbounded in the proto.
    pub(crate) fn mark_unbounded(&self, pcoll: &str) {
        if let Some(pc) = self.inner.lock().components.pcollections.get_mut(pcoll) {
            pc.is_bounded = pb::is_bounded::Enum::Unbounded as i32;
        }
    }

    /// The windowing of a PCollection.
    pub(crate) fn windowing_of(&self, pcoll: &str) -> Windowing {
        self.inner
            .lock()
            .windowing
            .get(pcoll)
            .cloned()
            .unwrap_or_default()
    }

    /// Marks the transform being expanded as a primitive with this spec and wiring.
    pub(crate) fn set_primitive(
        &self,
        spec: pb::FunctionSpec,
        inputs: Vec<(String, String)>,
        outputs: Vec<(String, String)>,
        with_environment: bool,
    ) {
        let mut st = self.inner.lock();
        let scope = st.scopes.last_mut().expect("inside a transform");
        scope.primitive = true;
        let id = scope.id.clone();
        let t = st.components.transforms.get_mut(&id).expect("exists");
        t.spec = Some(spec);
        t.inputs = inputs.into_iter().collect();
        t.outputs = outputs.into_iter().collect();
        if with_environment {
            t.environment_id = proto_build::RUST_ENV.into();
        }
    }

    /// Sets the URN and payload of the (composite) transform being expanded.
    pub(crate) fn set_composite_spec(&self, spec: pb::FunctionSpec) {
        let mut st = self.inner.lock();
        let id = st.scopes.last().expect("inside a transform").id.clone();
        st.components.transforms.get_mut(&id).expect("exists").spec = Some(spec);
    }

    /// Registers a closure DoFn under `id`.
    pub(crate) fn register_dofn(&self, id: &str, factory: DoFnFactory) {
        self.inner.lock().fns.add_dofn(id, factory);
    }

    /// Registers a closure CombineFn under `id`.
    pub(crate) fn register_combine_fn(
        &self,
        id: &str,
        f: Arc<dyn beamline_engine::combine::CombineFnInvoker>,
    ) {
        self.inner.lock().fns.add_combine_fn(id, f);
    }

    /// The proto coder id of `coder`, adding it to the components if new.
    pub(crate) fn coder_id(&self, coder: &beamline_engine::coder::Coder) -> String {
        let mut st = self.inner.lock();
        let st = &mut *st;
        proto_build::coder_id(&mut st.components, &mut st.coder_ids, coder)
    }

    /// Removes `dir` if the job fails.
    pub(crate) fn cleanup_on_failure(&self, dir: PathBuf) {
        self.inner.lock().cleanup.push(dir);
    }

    /// Records a construction error reported at `run`.
    pub(crate) fn construction_error(&self, msg: String) {
        self.inner.lock().errors.push(msg);
    }
}

fn numbered(prefix: &str, ids: Vec<String>) -> HashMap<String, String> {
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| (format!("{prefix}{i:04}"), id))
        .collect()
}
