//! The `tandem` binary: parses flags and hands over to the command's library function.

use clap::Parser;
use std::process::ExitCode;

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
