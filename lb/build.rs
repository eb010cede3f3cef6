//! Compiles the echo service the lb's tests and `tandem bench lb` run behind the lb, with the
//! vendored `protoc` (no system protobuf compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let proto = "proto/tandem/lb/echo/v1/echo.proto";
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&[proto], &["proto"])?;
    println!("cargo:rerun-if-changed={proto}");
    Ok(())
}
