//! `tandem gateway --config F [--name N]`: run one HTTP JSON API gateway of a topology until
//! SIGTERM or SIGINT. Prints one `TANDEM_READY {json}` line once it listens.

use crate::cli::GatewayArgs;
use std::io::Write;
use std::process::ExitCode;
use tandem_nodes::config::GatewayConfig;
use tokio_util::sync::CancellationToken;

pub async fn run(args: &crate::cli::GatewayArgs) -> anyhow::Result<ExitCode> {
    let mut termination = super::Termination::install()?;
    let topology = super::load(&args.config)?;
    let mut config = pick(&topology.gateways, args)?;
    // Key files in `[gateways.auth]` are relative to the topology file.
    if let Some(dir) = args.config.parent() {
        config.auth.resolve_paths(dir);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "gateway {}: cannot listen on {}: {e}",
                config.name,
                config.listen
            )
        })?;
    let listen = listener.local_addr()?;
    let ready = serde_json::json!({
        "name": config.name,
        "pid": std::process::id(),
        "listen": listen.to_string(),
        "advertised_url": config.public_url(),
        "ledger_api": config.ledger_api,
    });
    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(tandem_gateway::serve(config, listener, shutdown.clone()));
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}{ready}", super::node::READY_PREFIX)?;
        stdout.flush()?;
    }
    tokio::select! {
        () = termination.received() => {
            tracing::info!("shutting down");
            shutdown.cancel();
            server.await??;
        }
        result = &mut server => {
            // The server stopped by itself: a startup error (bad auth keys, bad ledger_api).
            result??;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The gateway named by `--name`, or the only one.
fn pick(gateways: &[GatewayConfig], args: &GatewayArgs) -> anyhow::Result<GatewayConfig> {
    let names = || {
        gateways
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&args.name, gateways) {
        (_, []) => anyhow::bail!(
            "{}: the topology has no [[gateways]]",
            args.config.display()
        ),
        (Some(name), _) => gateways
            .iter()
            .find(|g| &g.name == name)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("no gateway named {name:?}; the topology has: {}", names())
            }),
        (None, [only]) => Ok(only.clone()),
        (None, _) => anyhow::bail!(
            "the topology has several gateways ({}); choose one with --name",
            names()
        ),
    }
}
