//! Where runners find user functions: a per-job registry of closures, and `inventory`
//! registrations of named functions and runners that any binary linking them can use.

use crate::combine::CombineFnInvoker;
use crate::dofn::DoFnInvoker;
use crate::error::{EngineError, UserError};
use crate::spec::{FnRef, UserFnSpec};
use std::collections::HashMap;
use std::sync::Arc;

/// Builds fresh DoFn instances (one per worker thread).
pub type DoFnFactory = Arc<dyn Fn() -> Box<dyn DoFnInvoker> + Send + Sync>;

/// The closures of one pipeline, by id (the transform's unique name).
///
/// The SDK fills it while the pipeline is built; a worker process that rebuilds the same
/// pipeline gets the same ids, which is how closures resolve in another process.
#[derive(Default, Clone)]
pub struct FnRegistry {
    dofns: HashMap<String, DoFnFactory>,
    combine_fns: HashMap<String, Arc<dyn CombineFnInvoker>>,
}

impl std::fmt::Debug for FnRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnRegistry")
            .field("dofns", &self.dofns.keys().collect::<Vec<_>>())
            .field("combine_fns", &self.combine_fns.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FnRegistry {
    /// Registers a DoFn factory under `id`.
    pub fn add_dofn(&mut self, id: impl Into<String>, factory: DoFnFactory) {
        self.dofns.insert(id.into(), factory);
    }

    /// Registers a CombineFn under `id`.
    pub fn add_combine_fn(&mut self, id: impl Into<String>, f: Arc<dyn CombineFnInvoker>) {
        self.combine_fns.insert(id.into(), f);
    }

    /// Resolves a DoFn spec to a factory.
    ///
    /// # Errors
    /// [`EngineError::UnresolvedFunction`] naming `transform` when the closure id is
    /// unknown, the name is not registered, or its config does not parse.
    pub fn resolve_dofn(&self, transform: &str, spec: &UserFnSpec) -> Result<DoFnFactory> {
        match &spec.function {
            FnRef::Closure { id } => self.dofns.get(id).cloned().ok_or_else(|| {
                unresolved(transform, id, "no closure with this id was registered by the pipeline binary (was the pipeline built by another program?)")
            }),
            FnRef::Named { name, config } => {
                let reg = inventory::iter::<NamedDoFn>
                    .into_iter()
                    .find(|r| r.name == name)
                    .ok_or_else(|| unresolved(transform, name, "no DoFn is registered under this name in this binary"))?;
                let config = config.to_string();
                let outputs = spec.outputs.clone();
                let sides = spec.side_inputs.clone();
                // Check the config once now so a bad config fails before any data flows.
                (reg.build)(&config, &outputs, &sides).map_err(|e| unresolved(transform, name, e))?;
                let build = reg.build;
                Ok(Arc::new(move || {
                    build(&config, &outputs, &sides).expect("config checked at resolution")
                }))
            }
        }
    }

    /// Resolves a CombineFn spec.
    ///
    /// # Errors
    /// As [`FnRegistry::resolve_dofn`].
    pub fn resolve_combine_fn(
        &self,
        transform: &str,
        spec: &UserFnSpec,
    ) -> Result<Arc<dyn CombineFnInvoker>> {
        match &spec.function {
            FnRef::Closure { id } => self.combine_fns.get(id).cloned().ok_or_else(|| {
                unresolved(
                    transform,
                    id,
                    "no CombineFn with this id was registered by the pipeline binary",
                )
            }),
            FnRef::Named { name, config } => {
                let reg = inventory::iter::<NamedCombineFn>
                    .into_iter()
                    .find(|r| r.name == name)
                    .ok_or_else(|| {
                        unresolved(
                            transform,
                            name,
                            "no CombineFn is registered under this name in this binary",
                        )
                    })?;
                (reg.build)(&config.to_string()).map_err(|e| unresolved(transform, name, e))
            }
        }
    }
}

type Result<T> = std::result::Result<T, EngineError>;

fn unresolved(transform: &str, function: &str, reason: impl std::fmt::Display) -> EngineError {
    EngineError::UnresolvedFunction {
        transform: transform.to_string(),
        function: function.to_string(),
        reason: reason.to_string(),
    }
}

/// Builds a named DoFn from its JSON config, output tags and side-input names.
pub type BuildDoFn = fn(
    config: &str,
    outputs: &[String],
    side_inputs: &[String],
) -> std::result::Result<Box<dyn DoFnInvoker>, UserError>;

/// A DoFn any binary linking it can build from its name and JSON config.
pub struct NamedDoFn {
    /// Globally unique name, e.g. `beamline.io.ReadTextRange`.
    pub name: &'static str,
    /// Builds an instance from the JSON config, output tags and side-input names.
    pub build: BuildDoFn,
}
inventory::collect!(NamedDoFn);

/// A CombineFn any binary linking it can build from its name and JSON config.
pub struct NamedCombineFn {
    /// Globally unique name, e.g. `beamline.Sum`.
    pub name: &'static str,
    /// Builds an instance from the JSON config.
    pub build: fn(config: &str) -> std::result::Result<Arc<dyn CombineFnInvoker>, UserError>,
}
inventory::collect!(NamedCombineFn);
