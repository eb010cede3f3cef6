//! One module per `tandem` command.

pub mod admin;
pub mod bench;
pub mod bench_ledger;
pub mod bench_sequencer;
pub mod lb;
pub mod ledger;
pub mod node;
pub mod topology;
pub mod up;

use std::path::Path;
use std::process::ExitCode;
use tandem_nodes::config::TopologyConfig;

/// Exit code for a command whose service is not part of this build yet.
const EXIT_UNAVAILABLE: u8 = 2;

/// The lb and the gateway are configured in the topology already; their services are built
/// next. Validate the file so a mistake is caught now, and say plainly that nothing will run.
pub fn not_yet(what: &str, config: &Path) -> anyhow::Result<ExitCode> {
    load(config)?;
    eprintln!(
        "error: `tandem {what}` is not available in this build yet: the topology is valid, \
         but the {what} service has not been implemented. Replicated nodes run with `tandem up` \
         or `tandem node`."
    );
    Ok(ExitCode::from(EXIT_UNAVAILABLE))
}

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
