//! Compiles the Beam portability protos with protox (pure Rust; no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/org/apache/beam/model/pipeline/v1/beam_runner_api.proto",
        "proto/org/apache/beam/model/pipeline/v1/standard_window_fns.proto",
        "proto/org/apache/beam/model/pipeline/v1/metrics.proto",
        "proto/org/apache/beam/model/fn_execution/v1/beam_fn_api.proto",
        "proto/org/apache/beam/model/job_management/v1/beam_job_api.proto",
        "proto/org/apache/beam/model/job_management/v1/beam_artifact_api.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(true)
        .compile_fds(fds)?;
    Ok(())
}
