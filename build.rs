//! Compiles `proto/` with protox (pure Rust, no system `protoc`), generates the
//! tonic client and server code, and writes the descriptor set that server
//! reflection serves.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/plumbline/v1/source.proto",
        "proto/plumbline/v1/backlog.proto",
        "proto/plumbline/v1/value_model.proto",
        "proto/plumbline/v1/scoring.proto",
        "proto/plumbline/v1/sync.proto",
        "proto/plumbline/v1/rollup.proto",
        "proto/plumbline/v1/validation.proto",
        "proto/plumbline/v1/split.proto",
        "proto/plumbline/v1/token.proto",
        "proto/plumbline/v1/model_file.proto",
        "proto/plumbline/v1/insight.proto",
        "proto/plumbline/v1/history.proto",
        "proto/plumbline/v1/customer.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("plumbline_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
