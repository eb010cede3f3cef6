//! `tandem node`: run one replica until SIGTERM or SIGINT, then step down and exit.

use crate::cli::NodeArgs;
use std::io::Write;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// The prefix of the single stdout line a replica prints once it listens.
pub const READY_PREFIX: &str = "TANDEM_READY ";

pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut termination = super::Termination::install()?;
    let topology = super::load(&args.config)?;
    let shutdown = CancellationToken::new();
    let node =
        tandem_nodes::node::start(&topology, &args.node, args.replica, shutdown.clone()).await?;
    let ready = serde_json::to_string(&node.ready)?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{READY_PREFIX}{ready}")?;
        stdout.flush()?;
    }
    termination.received().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    node.wait().await?;
    Ok(ExitCode::SUCCESS)
}
