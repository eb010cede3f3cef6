//! One module per `tandem` command.

pub mod admin;
pub mod bench;
pub mod bench_gateway;
pub mod bench_ledger;
pub mod bench_sequencer;
pub mod gateway;
pub mod lb;
pub mod ledger;
pub mod node;
pub mod topology;
pub mod up;

use std::path::Path;
use std::process::ExitCode;
use tandem_nodes::config::TopologyConfig;

pub fn load(config: &Path) -> anyhow::Result<TopologyConfig> {
    Ok(TopologyConfig::load(config)?)
}

/// `tandem check`: validate a topology file and list its nodes and replicas.
pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let topology = load(config)?;
    println!("{}: valid", config.display());
    for node in topology.nodes() {
        println!(
            "  {:<18} {:<17} {} replica(s), storage {}",
            node.name,
            node.kind.as_str(),
            node.config.replicas.len(),
            tandem_nodes::store::redact(&node.config.storage)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM handlers, installed before any work starts so that a signal arriving
/// during startup is seen (and children are stopped) rather than killing the process outright.
pub struct Termination {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Termination {
    pub fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn received(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// `tandem token`: a development JWT signed with the topology's HS256 secret.
pub fn token(args: &crate::cli::TokenArgs) -> anyhow::Result<ExitCode> {
    println!(
        "{}",
        dev_token(args.config.as_deref(), &args.user, args.ttl)?
    );
    Ok(ExitCode::SUCCESS)
}

/// A scope-based token for `user` signed with the (unsafe, development) HS256 secret of the
/// topology's first participant or gateway that has one; the built-in topology when `config`
/// is `None`.
pub fn dev_token(config: Option<&Path>, user: &str, ttl: u64) -> anyhow::Result<String> {
    let topology = match config {
        Some(path) => load(path)?,
        None => TopologyConfig::parse(up::DEFAULT_TOPOLOGY)?,
    };
    let secret = topology
        .participants
        .iter()
        .filter_map(|p| p.auth.as_ref())
        .chain(topology.gateways.iter().map(|g| &g.auth))
        .find_map(|a| a.hs256_secret.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no participant or gateway of the topology has an hs256_secret; \
                 get a token from your identity provider and pass --token"
            )
        })?;
    Ok(tandem_auth::mint_hs256_dev_token(&secret, user, ttl)?)
}
