//! `tandem lb --config F`: run the load balancer of a file (a topology with `[lb]`, or a file
//! with only `[lb]`) until SIGINT or SIGTERM; SIGHUP re-reads the file (a bad file is refused
//! and the running config stays). Prints one `TANDEM_READY {json}` line with the bound
//! addresses once it listens. `tandem bench lb` lives in `bench`.

use crate::cli::ConfigArgs;
use std::io::Write;
use std::process::ExitCode;
use tandem_nodes::config::LoadedLb;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

mod bench;
pub use bench::{bench, BenchLbArgs};

pub async fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let mut termination = super::Termination::install()?;
    let mut hangup = signal(SignalKind::hangup())?;
    let loaded = LoadedLb::load(&args.config)?;
    let shutdown = CancellationToken::new();
    let running = tandem_lb::serve(loaded, Some(args.config.clone()), shutdown.clone()).await?;
    let frontends: serde_json::Map<String, serde_json::Value> = running
        .frontends()
        .iter()
        .map(|f| (f.name.clone(), f.listen.to_string().into()))
        .collect();
    let ready = serde_json::json!({ "admin": running.admin().to_string(), "frontends": frontends });
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}{ready}", super::node::READY_PREFIX)?;
        stdout.flush()?;
    }
    loop {
        tokio::select! {
            () = termination.received() => break,
            _ = hangup.recv() => {
                // The outcome is logged by the lb; a refused reload keeps the old config.
                let _ = running.lb().reload_from_file().await;
            }
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    running.stopped().await;
    Ok(ExitCode::SUCCESS)
}
