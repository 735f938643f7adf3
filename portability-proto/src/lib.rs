//! Apache Beam's portability model (Runner, Fn and Job APIs) as Rust types and gRPC stubs.
//!
//! The `.proto` files under `proto/` are Beamline's own subset of Beam's model, with
//! Beam's package names, message names and field numbers, so bytes produced by Apache
//! Beam decode here and the other way round. [`urns`] holds the standard URN strings.
//!
//! # Examples
//!
//! ```
//! use beamline_proto::pipeline::{FunctionSpec, PTransform};
//! use prost::Message;
//!
//! let t = PTransform {
//!     unique_name: "Impulse".into(),
//!     spec: Some(FunctionSpec { urn: beamline_proto::urns::IMPULSE.into(), payload: vec![] }),
//!     ..Default::default()
//! };
//! let back = PTransform::decode(t.encode_to_vec().as_slice()).unwrap();
//! assert_eq!(back, t);
//! ```

#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub mod urns;

/// Generated code, nested as the proto packages are so cross-package paths resolve.
pub mod org {
    pub mod apache {
        pub mod beam {
            pub mod model {
                pub mod pipeline {
                    pub mod v1 {
                        tonic::include_proto!("org.apache.beam.model.pipeline.v1");
                    }
                }
                pub mod fn_execution {
                    pub mod v1 {
                        tonic::include_proto!("org.apache.beam.model.fn_execution.v1");
                    }
                }
                pub mod job_management {
                    pub mod v1 {
                        tonic::include_proto!("org.apache.beam.model.job_management.v1");
                    }
                }
            }
        }
    }
}

/// Fn API: `org.apache.beam.model.fn_execution.v1`.
pub use org::apache::beam::model::fn_execution::v1 as fn_execution;
/// Job API: `org.apache.beam.model.job_management.v1`.
pub use org::apache::beam::model::job_management::v1 as job_management;
/// Runner API: `org.apache.beam.model.pipeline.v1`.
pub use org::apache::beam::model::pipeline::v1 as pipeline;

pub use prost;
pub use prost_types;
