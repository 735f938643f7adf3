//! How a user function is named inside a pipeline: the payload of Beamline's function URNs.

use serde::{Deserialize, Serialize};

/// Identifies a user function and how its outputs and side inputs are ordered.
///
/// Stored as JSON in the payload of `beamline:dofn:rust:v1` /
/// `beamline:combinefn:rust:v1` FunctionSpecs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserFnSpec {
    /// Which function.
    pub function: FnRef,
    /// Output tags in the order the function emits them (index = tag number).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Side-input local names in the order the function reads them.
    #[serde(default)]
    pub side_inputs: Vec<String>,
}

/// A function reference: a closure of the pipeline binary, or a registered named function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FnRef {
    /// A closure, found by id (the transform's unique name) in the job's function registry.
    Closure {
        /// The id the SDK registered it under.
        id: String,
    },
    /// A function registered with `inventory` under `name`, built from `config`.
    Named {
        /// Registered name.
        name: String,
        /// Serialized configuration (JSON).
        config: serde_json::Value,
    },
}

impl UserFnSpec {
    /// Serializes to the payload bytes.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("UserFnSpec serializes")
    }

    /// Parses payload bytes.
    ///
    /// # Errors
    /// When the bytes are not a valid spec.
    pub fn from_payload(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A readable id of the function for error messages.
    pub fn describe(&self) -> String {
        match &self.function {
            FnRef::Closure { id } => format!("closure '{id}'"),
            FnRef::Named { name, .. } => format!("named function '{name}'"),
        }
    }
}
