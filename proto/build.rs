//! Compiles the .proto contracts with a vendored `protoc`, so a fresh machine needs no system
//! protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let protos = [
        "proto/tandem/admin/v1/replication.proto",
        "proto/tandem/sequencer/v1/sequencer.proto",
        "proto/tandem/topology/v1/topology.proto",
        "proto/tandem/synchronizer/v1/messages.proto",
        "proto/tandem/mediator/v1/mediator.proto",
        "proto/tandem/ledger/v2/ledger.proto",
        "proto/tandem/participant/v1/admin.proto",
    ];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
