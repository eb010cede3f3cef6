//! The serde shape of a topology file. Every struct refuses unknown keys; defaults live here and
//! only here.

use super::gateway::GatewayConfig;
use super::lb::LbConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    #[serde(default)]
    pub replication: ReplicationConfig,
    pub synchronizer: SynchronizerConfig,
    /// Participants must be named (`name = "participant1"`).
    #[serde(default)]
    pub participants: Vec<NodeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<LbConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<GatewayConfig>,
}

/// Timing of leader election, shared by every active-passive node.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// How long a leader's lease lasts without renewal. A SIGKILLed SQLite leader is replaced
    /// after at most this long; a hung Postgres leader (stopped, partitioned) too.
    pub lease_ms: u64,
    /// How often the leader renews its lease.
    pub renew_interval_ms: u64,
    /// How often a standby tries to take over.
    pub poll_interval_ms: u64,
    /// How long `set-passive` waits for a standby to take over before staying active.
    pub handover_timeout_ms: u64,
    /// How long connecting to the database may take at start before the node gives up.
    pub connect_timeout_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            lease_ms: 500,
            renew_interval_ms: 100,
            poll_interval_ms: 50,
            handover_timeout_ms: 2_000,
            connect_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynchronizerConfig {
    #[serde(default = "default_synchronizer_name")]
    pub name: String,
    #[serde(default)]
    pub sequencing: super::sequencing::SequencingConfig,
    /// Topology transactions take effect this long after they are sequenced, so every node
    /// applies the same topology to the same requests.
    #[serde(default = "default_topology_change_delay_ms")]
    pub topology_change_delay_ms: u64,
    /// A confirmation request without a verdict this long after it was sequenced is rejected.
    #[serde(default = "default_confirmation_response_timeout_ms")]
    pub confirmation_response_timeout_ms: u64,
    #[serde(default)]
    pub admission: AdmissionConfig,
    pub sequencer: NodeConfig,
    pub mediator: NodeConfig,
    pub topology_manager: NodeConfig,
}

fn default_synchronizer_name() -> String {
    "synchronizer1".into()
}

impl SynchronizerConfig {
    /// `topology_change_delay_ms` in microseconds, the unit of sequencing timestamps.
    pub fn topology_change_delay_us(&self) -> i64 {
        i64::try_from(self.topology_change_delay_ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000)
    }
}

fn default_topology_change_delay_ms() -> u64 {
    250
}

fn default_confirmation_response_timeout_ms() -> u64 {
    10_000
}

/// `[synchronizer.admission]`: which participants the topology manager admits by itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// An open synchronizer admits every participant that asks; a closed one only those in
    /// `allow` (others stay proposals until an operator authorizes them).
    pub open: bool,
    /// Participant names or full member ids (`PAR::name::1220…`) a closed synchronizer admits.
    pub allow: Vec<String>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            open: true,
            allow: Vec::new(),
        }
    }
}

/// A logical node: one identity, one database, several replicas.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Defaults per kind: `sequencer`, `mediator`, `topology-manager`; participants must name
    /// themselves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/database`.
    pub storage: String,
    pub replicas: Vec<ReplicaConfig>,
    /// Participants: a newly active replica does not reconnect to the synchronizer by itself;
    /// an operator connects it (`ConnectSynchronizer`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual_connect: bool,
    /// Participants: users that are participant admins on the Ledger API even without a row in
    /// the user table (the bootstrap admin, as Canton's `participant_admin`).
    #[serde(default = "default_admin_users")]
    pub admin_users: Vec<String>,
    /// Participants (required): how the Ledger API verifies callers' bearer JWTs
    /// (`[participants.auth]`, the same table as a gateway's `[gateways.auth]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<tandem_auth::AuthConfig>,
}

fn default_admin_users() -> Vec<String> {
    vec!["participant_admin".into()]
}

/// One replica's addresses. Port 0 asks the OS for a free port; the replica prints the bound
/// addresses on its ready line.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// The public API: the Ledger API of a participant, the sequencer API of a sequencer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<SocketAddr>,
    /// gRPC admin API (replication, and per-kind administration).
    pub admin: SocketAddr,
    /// HTTP/1 health and metrics server.
    pub health: SocketAddr,
}
