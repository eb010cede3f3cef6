//! The `tandem` binary: parses flags and hands over to the command's library function.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the lb's per-call allocations (pingora's request and response headers, h2 frames)
/// and the nodes' many small ones are cheaper than with glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = tandem::cli::Cli::parse();
    tandem::cli::init_tracing(&cli);
    if let Err(e) = tandem::process::exit_with_parent() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tandem::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
