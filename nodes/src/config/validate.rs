//! Cross-field rules of a topology file. Every error names the key it is about, in the dotted
//! form an operator would search the file for (`participants[1].replicas[0].admin`).

use super::schema::{NodeConfig, TopologyConfig};
use super::NodeKind;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("{path}: {inner}")]
    InFile {
        path: String,
        inner: Box<ConfigError>,
    },
}

impl ConfigError {
    pub(super) fn in_file(self, path: &std::path::Path) -> Self {
        ConfigError::InFile {
            path: path.display().to_string(),
            inner: Box::new(self),
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

pub(super) fn validate(config: &mut TopologyConfig) -> Result<(), ConfigError> {
    apply_default_names(config);
    validate_replication(config)?;
    let mut names = Names::default();
    let mut addresses = Addresses::default();
    let nodes = config.nodes();
    for node in &nodes {
        names.claim(node.name, &format!("{}.name", node.key))?;
        validate_node(
            node.config,
            &node.key,
            node.kind.has_public_api(),
            &mut addresses,
        )?;
        validate_auth(node.config, &node.key, node.kind)?;
    }
    let sequencers = config.synchronizer.sequencer.replicas.len();
    super::sequencing::validate(&config.synchronizer.sequencing, sequencers)
        .map_err(|(key, message)| invalid(key, message))?;
    if let Some(lb) = &config.lb {
        super::lb::validate(lb, Some(&*config), &mut |addr, key| {
            addresses.claim(addr, key)
        })?;
    }
    for (i, g) in config.gateways.iter().enumerate() {
        let key = format!("gateways[{i}]");
        names.claim(&g.name, &format!("{key}.name"))?;
        addresses.claim(g.listen, &format!("{key}.listen"))?;
        g.validate(&key).map_err(|(k, why)| invalid(k, why))?;
    }
    Ok(())
}

fn apply_default_names(config: &mut TopologyConfig) {
    let sync = &mut config.synchronizer;
    for (node, default) in [
        (&mut sync.sequencer, "sequencer"),
        (&mut sync.mediator, "mediator"),
        (&mut sync.topology_manager, "topology-manager"),
    ] {
        if node.name.is_empty() {
            node.name = default.into();
        }
    }
}

fn validate_replication(config: &TopologyConfig) -> Result<(), ConfigError> {
    let r = &config.replication;
    for (key, value) in [
        ("replication.lease_ms", r.lease_ms),
        ("replication.renew_interval_ms", r.renew_interval_ms),
        ("replication.poll_interval_ms", r.poll_interval_ms),
        ("replication.handover_timeout_ms", r.handover_timeout_ms),
        ("replication.connect_timeout_ms", r.connect_timeout_ms),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    if r.renew_interval_ms.saturating_mul(2) > r.lease_ms {
        return Err(invalid(
            "replication.renew_interval_ms",
            format!(
                "{} ms leaves no room to renew a {} ms lease; use at most half of lease_ms",
                r.renew_interval_ms, r.lease_ms
            ),
        ));
    }
    Ok(())
}

fn validate_node(
    node: &NodeConfig,
    key: &str,
    has_public_api: bool,
    addresses: &mut Addresses,
) -> Result<(), ConfigError> {
    validate_storage(&node.storage, &format!("{key}.storage"))?;
    if node.replicas.is_empty() {
        return Err(invalid(
            format!("{key}.replicas"),
            "needs at least one replica",
        ));
    }
    for (i, replica) in node.replicas.iter().enumerate() {
        let rkey = format!("{key}.replicas[{i}]");
        match (replica.api, has_public_api) {
            (Some(api), true) => addresses.claim(api, &format!("{rkey}.api"))?,
            (None, true) => return Err(invalid(format!("{rkey}.api"), "missing field `api`")),
            (Some(_), false) => {
                return Err(invalid(
                    format!("{rkey}.api"),
                    "this node kind has no public API; remove the key",
                ))
            }
            (None, false) => {}
        }
        addresses.claim(replica.admin, &format!("{rkey}.admin"))?;
        addresses.claim(replica.health, &format!("{rkey}.health"))?;
    }
    Ok(())
}

/// Participants verify the JWTs of Ledger API callers, so they need keys; other kinds have no
/// Ledger API and take no `auth` table.
fn validate_auth(node: &NodeConfig, key: &str, kind: NodeKind) -> Result<(), ConfigError> {
    match (&node.auth, kind == NodeKind::Participant) {
        (Some(auth), true) => auth
            .validate()
            .map_err(|e| invalid(format!("{key}.{}", e.key), e.message)),
        (None, true) => Err(invalid(
            format!("{key}.auth"),
            "missing table: a participant verifies its Ledger API callers' JWTs \
             (e.g. auth = { jwks_url = \"https://idp.example/jwks.json\" })",
        )),
        (Some(_), false) => Err(invalid(
            format!("{key}.auth"),
            "only participants verify tokens; remove the table",
        )),
        (None, false) => Ok(()),
    }
}

fn validate_storage(url: &str, key: &str) -> Result<(), ConfigError> {
    let ok = ["sqlite://", "sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{url:?} is not a storage URL; use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"),
        ))
    }
}

/// Names must be unique across the whole topology: they key databases, logs and CLI arguments.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn claim(&mut self, name: &str, key: &str) -> Result<(), ConfigError> {
        let well_formed = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !well_formed {
            return Err(invalid(
                key,
                format!("{name:?} is not a valid name: use letters, digits, '-' and '_'"),
            ));
        }
        if let Some(first) = self.0.insert(name.to_string(), key.to_string()) {
            return Err(invalid(
                key,
                format!("name {name:?} is already used by {first}"),
            ));
        }
        Ok(())
    }
}

/// Two listeners on one address cannot both start. Port 0 (pick a free port) never clashes.
#[derive(Default)]
struct Addresses(HashMap<SocketAddr, String>);

impl Addresses {
    fn claim(&mut self, addr: SocketAddr, key: &str) -> Result<(), ConfigError> {
        if addr.port() == 0 {
            return Ok(());
        }
        if let Some(first) = self.0.insert(addr, key.to_string()) {
            return Err(invalid(
                key,
                format!("address {addr} is already used by {first}"),
            ));
        }
        Ok(())
    }
}
