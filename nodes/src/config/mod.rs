//! The topology configuration: one TOML file describes a whole deployment (synchronizer,
//! participants, lb, gateways). `schema` holds the serde types exactly as written in the file;
//! `validate` checks cross-field rules and names the offending key. Nothing here opens a socket
//! or a database.

mod gateway;
mod lb;
mod schema;
mod sequencing;
mod validate;

pub use gateway::GatewayConfig;
pub use lb::{
    BackendConfig, BackendGroup, Frontend, FrontendLimits, FrontendProtocol, FrontendTls,
    HealthCheckConfig, LbConfig, LoadedLb, PassiveConfig, ServerConfig, Strategy, TimeoutConfig,
    UpstreamH2Config, UpstreamProtocol, UpstreamTls,
};
pub use schema::{
    AdmissionConfig, NodeConfig, ReplicaConfig, ReplicationConfig, SynchronizerConfig,
    TopologyConfig,
};
pub use sequencing::{SequencingConfig, MAX_TOTAL_NODE_COUNT};
pub use validate::ConfigError;

use std::path::Path;

/// The kinds of node `tandem node` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Participant,
    Sequencer,
    Mediator,
    TopologyManager,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Participant => "participant",
            NodeKind::Sequencer => "sequencer",
            NodeKind::Mediator => "mediator",
            NodeKind::TopologyManager => "topology-manager",
        }
    }

    /// Participants serve the Ledger API and sequencers the sequencer API; mediators and
    /// topology managers only have admin and health ports.
    pub fn has_public_api(self) -> bool {
        matches!(self, NodeKind::Participant | NodeKind::Sequencer)
    }

    /// Sequencers run active-active; every other kind elects one active replica.
    pub fn is_active_active(self) -> bool {
        self == NodeKind::Sequencer
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One logical node of the topology as the runtime sees it: its kind, its config and where in the
/// file it came from (for error messages).
#[derive(Debug, Clone)]
pub struct NodeRef<'a> {
    pub name: &'a str,
    pub kind: NodeKind,
    pub config: &'a NodeConfig,
    pub key: String,
}

impl TopologyConfig {
    /// The sequencer API endpoints members connect to (`http://addr`), one per sequencer.
    pub fn sequencer_endpoints(&self) -> Vec<String> {
        self.synchronizer
            .sequencer
            .replicas
            .iter()
            .filter_map(|r| r.api)
            .map(|a| format!("http://{a}"))
            .collect()
    }

    /// The admin endpoints of the topology manager's replicas (`http://addr`).
    pub fn topology_manager_endpoints(&self) -> Vec<String> {
        self.synchronizer
            .topology_manager
            .replicas
            .iter()
            .map(|r| format!("http://{}", r.admin))
            .collect()
    }

    /// Records the addresses replica `replica` of `node` bound (when its config said port 0), so
    /// nodes started after it find it. Returns false if there is no such replica.
    pub fn record_bound(
        &mut self,
        node: &str,
        replica: u32,
        api: Option<std::net::SocketAddr>,
        admin: std::net::SocketAddr,
        health: std::net::SocketAddr,
    ) -> bool {
        let sync = &mut self.synchronizer;
        let config = if sync.sequencer.name == node {
            &mut sync.sequencer
        } else if sync.mediator.name == node {
            &mut sync.mediator
        } else if sync.topology_manager.name == node {
            &mut sync.topology_manager
        } else if let Some(p) = self.participants.iter_mut().find(|p| p.name == node) {
            p
        } else {
            return false;
        };
        let Some(r) = usize::try_from(replica)
            .ok()
            .and_then(|i| config.replicas.get_mut(i))
        else {
            return false;
        };
        if api.is_some() {
            r.api = api;
        }
        r.admin = admin;
        r.health = health;
        true
    }

    /// Parses and validates a topology file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| e.in_file(path))?;
        // Key files named in `[participants.auth]` are relative to the topology file.
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in &mut config.participants {
            if let Some(auth) = &mut p.auth {
                auth.resolve_paths(dir);
            }
        }
        Ok(config)
    }

    /// Parses and validates topology TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config: TopologyConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        validate::validate(&mut config)?;
        Ok(config)
    }

    /// Every logical node's settings, for changing them (e.g. where each stores its data):
    /// sequencer, mediator, topology manager, then the participants.
    pub fn node_configs_mut(&mut self) -> impl Iterator<Item = &mut NodeConfig> {
        let sync = &mut self.synchronizer;
        [
            &mut sync.sequencer,
            &mut sync.mediator,
            &mut sync.topology_manager,
        ]
        .into_iter()
        .chain(self.participants.iter_mut())
    }

    /// Every logical node, synchronizer nodes first, in file order.
    pub fn nodes(&self) -> Vec<NodeRef<'_>> {
        let sync = &self.synchronizer;
        let mut nodes = vec![
            NodeRef {
                name: &sync.sequencer.name,
                kind: NodeKind::Sequencer,
                config: &sync.sequencer,
                key: "synchronizer.sequencer".into(),
            },
            NodeRef {
                name: &sync.mediator.name,
                kind: NodeKind::Mediator,
                config: &sync.mediator,
                key: "synchronizer.mediator".into(),
            },
            NodeRef {
                name: &sync.topology_manager.name,
                kind: NodeKind::TopologyManager,
                config: &sync.topology_manager,
                key: "synchronizer.topology_manager".into(),
            },
        ];
        for (i, p) in self.participants.iter().enumerate() {
            nodes.push(NodeRef {
                name: &p.name,
                kind: NodeKind::Participant,
                config: p,
                key: format!("participants[{i}]"),
            });
        }
        nodes
    }

    /// The logical node called `name`.
    pub fn node(&self, name: &str) -> Option<NodeRef<'_>> {
        self.nodes().into_iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests;
