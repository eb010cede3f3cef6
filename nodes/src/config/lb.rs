//! The `[lb]` section: frontends (listeners) routed to backend groups, as written in the file,
//! with every default in this module. A group is either written out (`[[lb.backends]]`, servers
//! with traffic and health addresses) or named by its role in the topology (`ledger_api`,
//! `admin_api`, `sequencers`, `gateways`), which `LoadedLb::groups` expands into the same shape.
//! Nothing here opens a socket or reads a certificate; `tandem-lb` does that at start.

use super::validate::ConfigError;
use super::TopologyConfig;
use crate::workers::MAX_WORKERS;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LbConfig {
    /// Admin endpoint: JSON status (`/status`), Prometheus (`/metrics`), `POST /reload`.
    pub admin: SocketAddr,
    #[serde(default)]
    pub frontends: Vec<Frontend>,
    /// Backend groups written out server by server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendConfig>,
    /// Threads that carry client connections, each with its own runtime and upstream
    /// connection pool (a connection stays on one thread, as in HAProxy); 0: one per CPU.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workers: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendProtocol {
    /// HTTP/2 only (prior knowledge in cleartext, ALPN `h2` with TLS): gRPC.
    H2c,
    /// HTTP/1.1 only.
    Http1,
    /// Both on one port: the HTTP/2 preface (or ALPN) decides per connection.
    Auto,
}

/// What a frontend routes to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendGroup {
    /// The Ledger API of a participant's active replica.
    LedgerApi { participant: String },
    /// The admin API of a participant's active replica.
    AdminApi { participant: String },
    /// Every healthy sequencer, round-robin.
    Sequencers,
    /// Every healthy gateway, round-robin.
    Gateways,
    /// A group of `[[lb.backends]]`, by name: `backend = { group = "participant1" }`.
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: FrontendProtocol,
    pub backend: BackendGroup,
    /// Terminate TLS here (rustls); ALPN offers `h2` and/or `http/1.1` per `protocol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<FrontendTls>,
    #[serde(default)]
    pub limits: FrontendLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Limits on what a client may send before it is answered with an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendLimits {
    /// Time for a client to send a whole HTTP/1 request head (or the HTTP/2 preface, or finish
    /// a TLS handshake); slower clients (slowloris) get 408 and are disconnected.
    pub header_timeout_ms: u64,
    /// Largest HTTP/1 request head; larger gets 431. Also the HTTP/2 header-list limit.
    pub max_header_bytes: usize,
    /// Idle time after which a kept-alive HTTP/1 connection is closed.
    pub keepalive_timeout_ms: u64,
    /// HTTP/2 PING interval towards clients (0: off); a client that misses one is disconnected.
    pub h2_ping_interval_ms: u64,
    /// Concurrent HTTP/2 streams one client connection may open.
    pub max_h2_streams: u32,
}

impl Default for FrontendLimits {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            max_header_bytes: 64 * 1024,
            keepalive_timeout_ms: 60_000,
            h2_ping_interval_ms: 30_000,
            max_h2_streams: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every request goes to the one server whose health check answers 200 (the most recent to
    /// come up if several do): participant replicas.
    Active,
    /// Every healthy server in turn, per request: sequencers, gateways.
    RoundRobin,
}

/// How the lb talks to a group's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/2 (prior knowledge in cleartext, ALPN `h2` with `tls`), multiplexed.
    H2c,
    /// HTTP/1.1 with a keep-alive pool.
    Http1,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub strategy: Strategy,
    pub protocol: UpstreamProtocol,
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    #[serde(default)]
    pub passive: PassiveConfig,
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    #[serde(default)]
    pub h2: UpstreamH2Config,
    /// TLS to the servers, with a client certificate for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where traffic goes.
    pub address: SocketAddr,
    /// Where the HTTP/1 health check goes; `address` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<SocketAddr>,
}

impl ServerConfig {
    pub fn health_address(&self) -> SocketAddr {
        self.health.unwrap_or(self.address)
    }
}

/// Active HTTP/1 `GET` health checks. A server starts down; its first passing check brings it
/// up, then it needs `fall` failures in a row to go down and `rise` passes in a row to come back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub path: String,
    pub expect_status: u16,
    pub interval_ms: u64,
    /// The interval while a server is between states (an up server that failed, a down one
    /// that passed, fewer than `fall`/`rise` times), as HAProxy's `fastinter`: the confirming
    /// checks come sooner, so a change is acted on sooner. Capped at `interval_ms`.
    pub fast_interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl HealthCheckConfig {
    /// How long after a check starts the next one does.
    pub fn next_check_in(&self, in_transition: bool) -> std::time::Duration {
        let ms = if in_transition {
            self.fast_interval_ms.min(self.interval_ms)
        } else {
            self.interval_ms
        };
        std::time::Duration::from_millis(ms)
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        // 100 ms checks, and 25 ms ones to confirm a change, find a new active replica within
        // ~150 ms (design.md §8; HAProxy's defaults of inter 2s, rise 2, fall 3 take ~6 s).
        Self {
            path: "/health".into(),
            expect_status: 200,
            interval_ms: 100,
            fast_interval_ms: 25,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
        }
    }
}

/// nginx-style passive health on live traffic: `max_fails` failures (connect errors, 5xx,
/// gRPC `UNAVAILABLE`) within `fail_timeout_ms` take a server out for `fail_timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveConfig {
    /// 0 turns passive health off.
    pub max_fails: u32,
    pub fail_timeout_ms: u64,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            max_fails: 3,
            fail_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// TCP (and TLS) connect; a failed connect is retried on another server.
    pub connect_ms: u64,
    /// Longest silence while waiting for the server (response head, body or trailers); the
    /// client gets 504. 0 (the default) waits as long as the client does, so long-lived gRPC
    /// streams are never cut; HTTP/2 pings still find dead servers.
    pub read_ms: u64,
    /// Longest blocked write to the server. 0: no limit.
    pub write_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect_ms: 1_000,
            read_ms: 0,
            write_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamH2Config {
    /// Streams multiplexed on one upstream connection before another is opened.
    pub max_streams: usize,
    /// HTTP/2 PING interval towards servers (0: off).
    pub ping_interval_ms: u64,
}

impl Default for UpstreamH2Config {
    fn default() -> Self {
        Self {
            max_streams: 100,
            ping_interval_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificates the servers' certificates must chain to.
    pub ca: PathBuf,
    /// Client certificate chain and key, for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Name the servers' certificates must carry; each server's IP address when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

/// A file that configures the lb: either a whole topology (with `[lb]`) or a file with only an
/// `[lb]` section, whose groups are then all written out.
#[derive(Debug, Clone)]
pub struct LoadedLb {
    pub lb: LbConfig,
    pub topology: Option<TopologyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LbOnlyFile {
    lb: LbConfig,
}

impl LoadedLb {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// A file with a `[synchronizer]` table is a topology; anything else must hold only `[lb]`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        if value.contains_key("synchronizer") {
            let topology = TopologyConfig::parse(text)?;
            let lb = topology
                .lb
                .clone()
                .ok_or_else(|| invalid("lb", "the topology has no [lb] section"))?;
            return Ok(Self {
                lb,
                topology: Some(topology),
            });
        }
        let file: LbOnlyFile =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        validate(&file.lb, None, &mut |_, _| Ok(()))?;
        Ok(Self {
            lb: file.lb,
            topology: None,
        })
    }

    /// The name of the group a frontend routes to (as `groups()` names it).
    pub fn group_name(backend: &BackendGroup) -> String {
        match backend {
            BackendGroup::LedgerApi { participant } => format!("{participant}-ledger-api"),
            BackendGroup::AdminApi { participant } => format!("{participant}-admin-api"),
            BackendGroup::Sequencers => "sequencers".into(),
            BackendGroup::Gateways => "gateways".into(),
            BackendGroup::Group(name) => name.clone(),
        }
    }

    /// Every group some frontend routes to plus every written-out group, with the topology's
    /// roles expanded: a participant's replicas (`active`, h2c, checked on their `health`
    /// address), the sequencers (`round_robin`, h2c), the gateways (`round_robin`, HTTP/1,
    /// checked on their listen address).
    pub fn groups(&self) -> Vec<BackendConfig> {
        let mut groups = self.lb.backends.clone();
        let mut seen: HashSet<String> = groups.iter().map(|g| g.name.clone()).collect();
        for frontend in &self.lb.frontends {
            let name = Self::group_name(&frontend.backend);
            if seen.contains(&name) {
                continue;
            }
            if let Some(group) = self.expand(&frontend.backend, name.clone()) {
                seen.insert(name);
                groups.push(group);
            }
        }
        groups
    }

    fn expand(&self, backend: &BackendGroup, name: String) -> Option<BackendConfig> {
        let topology = self.topology.as_ref()?;
        let group = |strategy, protocol, servers| BackendConfig {
            name: name.clone(),
            strategy,
            protocol,
            servers,
            health_check: HealthCheckConfig::default(),
            passive: PassiveConfig::default(),
            timeouts: TimeoutConfig::default(),
            h2: UpstreamH2Config::default(),
            tls: None,
        };
        let replicas = |node: &super::NodeConfig, admin: bool| {
            node.replicas
                .iter()
                .filter_map(|r| {
                    let address = if admin { Some(r.admin) } else { r.api };
                    address.map(|address| ServerConfig {
                        address,
                        health: Some(r.health),
                    })
                })
                .collect()
        };
        match backend {
            BackendGroup::LedgerApi { participant } | BackendGroup::AdminApi { participant } => {
                let node = topology
                    .participants
                    .iter()
                    .find(|p| &p.name == participant)?;
                let admin = matches!(backend, BackendGroup::AdminApi { .. });
                Some(group(
                    Strategy::Active,
                    UpstreamProtocol::H2c,
                    replicas(node, admin),
                ))
            }
            BackendGroup::Sequencers => Some(group(
                Strategy::RoundRobin,
                UpstreamProtocol::H2c,
                replicas(&topology.synchronizer.sequencer, false),
            )),
            BackendGroup::Gateways => {
                let mut gateways = group(
                    Strategy::RoundRobin,
                    UpstreamProtocol::Http1,
                    topology
                        .gateways
                        .iter()
                        .map(|g| ServerConfig {
                            address: g.listen,
                            health: None,
                        })
                        .collect(),
                );
                // A gateway is ready once its keys are loaded and its participant answers.
                gateways.health_check.path = "/readyz".into();
                Some(gateways)
            }
            BackendGroup::Group(_) => None,
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Checks the `[lb]` section. `topology` is the rest of the file when the lb is part of one;
/// `claim` reserves a listen address, failing when another key of the file already uses it.
pub(super) fn validate(
    lb: &LbConfig,
    topology: Option<&TopologyConfig>,
    claim: &mut dyn FnMut(SocketAddr, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    claim(lb.admin, "lb.admin")?;
    if lb.workers > MAX_WORKERS {
        return Err(invalid(
            "lb.workers",
            format!("at most {MAX_WORKERS} (0: one per CPU)"),
        ));
    }
    let mut listens = HashSet::new();
    let mut group_names = HashSet::new();
    for (i, g) in lb.backends.iter().enumerate() {
        let key = format!("lb.backends[{i}]");
        check_name(&g.name, &format!("{key}.name"))?;
        if !group_names.insert(g.name.as_str()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("group {:?} is defined twice", g.name),
            ));
        }
        validate_group(g, &key)?;
    }
    let mut frontend_names = HashSet::new();
    for (i, f) in lb.frontends.iter().enumerate() {
        let key = format!("lb.frontends[{i}]");
        check_name(&f.name, &format!("{key}.name"))?;
        if !frontend_names.insert(f.name.as_str()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("frontend {:?} is defined twice", f.name),
            ));
        }
        if !listens.insert(f.listen) && f.listen.port() != 0 {
            return Err(invalid(
                format!("{key}.listen"),
                format!("address {} is already used by another frontend", f.listen),
            ));
        }
        claim(f.listen, &format!("{key}.listen"))?;
        validate_route(&f.backend, lb, topology, &format!("{key}.backend"))?;
        validate_limits(&f.limits, &format!("{key}.limits"))?;
        if let Some(tls) = &f.tls {
            for (field, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if path.as_os_str().is_empty() {
                    return Err(invalid(format!("{key}.tls.{field}"), "must not be empty"));
                }
            }
        }
    }
    Ok(())
}

fn check_name(name: &str, key: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{name:?} is not a valid name: use letters, digits, '-' and '_'"),
        ))
    }
}

fn validate_route(
    backend: &BackendGroup,
    lb: &LbConfig,
    topology: Option<&TopologyConfig>,
    key: &str,
) -> Result<(), ConfigError> {
    if let BackendGroup::Group(name) = backend {
        if lb.backends.iter().any(|g| &g.name == name) {
            return Ok(());
        }
        return Err(invalid(
            key,
            format!("no [[lb.backends]] group is named {name:?}"),
        ));
    }
    let Some(topology) = topology else {
        return Err(invalid(
            key,
            "routes to a role of the topology, but this file has no topology; \
             name a group with backend = { group = \"NAME\" }",
        ));
    };
    match backend {
        BackendGroup::LedgerApi { participant } | BackendGroup::AdminApi { participant }
            if !topology.participants.iter().any(|p| &p.name == participant) =>
        {
            return Err(invalid(
                key,
                format!("no participant is named {participant:?}"),
            ));
        }
        BackendGroup::Gateways if topology.gateways.is_empty() => {
            return Err(invalid(key, "the topology has no gateways"));
        }
        _ => {}
    }
    Ok(())
}

fn validate_group(g: &BackendConfig, key: &str) -> Result<(), ConfigError> {
    if g.servers.is_empty() {
        return Err(invalid(
            format!("{key}.servers"),
            "needs at least one server",
        ));
    }
    let mut seen = HashSet::new();
    for (i, s) in g.servers.iter().enumerate() {
        if s.address.port() == 0 {
            return Err(invalid(
                format!("{key}.servers[{i}].address"),
                "port 0 is not an address a server can be reached at",
            ));
        }
        if s.health.is_some_and(|h| h.port() == 0) {
            return Err(invalid(
                format!("{key}.servers[{i}].health"),
                "port 0 is not an address a server can be reached at",
            ));
        }
        if !seen.insert(s.address) {
            return Err(invalid(
                format!("{key}.servers[{i}].address"),
                format!("server {} is listed twice", s.address),
            ));
        }
    }
    let hc = &g.health_check;
    if !hc.path.starts_with('/') {
        return Err(invalid(
            format!("{key}.health_check.path"),
            format!("{:?} must start with '/'", hc.path),
        ));
    }
    if !(100..=599).contains(&hc.expect_status) {
        return Err(invalid(
            format!("{key}.health_check.expect_status"),
            format!("{} is not an HTTP status", hc.expect_status),
        ));
    }
    for (field, value) in [
        ("health_check.interval_ms", hc.interval_ms),
        ("health_check.fast_interval_ms", hc.fast_interval_ms),
        ("health_check.timeout_ms", hc.timeout_ms),
        ("health_check.rise", u64::from(hc.rise)),
        ("health_check.fall", u64::from(hc.fall)),
        ("timeouts.connect_ms", g.timeouts.connect_ms),
        ("h2.max_streams", g.h2.max_streams as u64),
    ] {
        if value == 0 {
            return Err(invalid(format!("{key}.{field}"), "must be greater than 0"));
        }
    }
    if g.passive.max_fails > 0 && g.passive.fail_timeout_ms == 0 {
        return Err(invalid(
            format!("{key}.passive.fail_timeout_ms"),
            "must be greater than 0 when max_fails is set",
        ));
    }
    if let Some(tls) = &g.tls {
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(invalid(
                format!("{key}.tls"),
                "a client certificate needs both `cert` and `key`",
            ));
        }
    }
    Ok(())
}

fn validate_limits(l: &FrontendLimits, key: &str) -> Result<(), ConfigError> {
    for (field, value) in [
        ("header_timeout_ms", l.header_timeout_ms),
        ("max_header_bytes", l.max_header_bytes as u64),
        ("keepalive_timeout_ms", l.keepalive_timeout_ms),
        ("max_h2_streams", u64::from(l.max_h2_streams)),
    ] {
        if value == 0 {
            return Err(invalid(format!("{key}.{field}"), "must be greater than 0"));
        }
    }
    if l.max_header_bytes < 1024 {
        return Err(invalid(
            format!("{key}.max_header_bytes"),
            "must be at least 1024",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "[lb]\nadmin = \"127.0.0.1:8081\"\n\
        [[lb.frontends]]\nname = \"f\"\nlisten = \"127.0.0.1:4001\"\nprotocol = \"h2c\"\nbackend = { group = \"g\" }\n\
        [[lb.backends]]\nname = \"g\"\nstrategy = \"round_robin\"\nprotocol = \"h2c\"\n\
        servers = [{ address = \"127.0.0.1:5001\", health = \"127.0.0.1:5201\" }]\n";

    fn error_of(text: &str) -> String {
        match LoadedLb::parse(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_shipped_lb_examples_are_valid() {
        for file in ["lb-participants.toml", "lb-sequencers.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(file);
            let loaded = LoadedLb::load(&path).unwrap();
            assert!(loaded.topology.is_none(), "{file}");
            assert!(!loaded.groups().is_empty(), "{file}");
        }
    }

    #[test]
    fn an_lb_only_file_gets_the_defaults() {
        let loaded = LoadedLb::parse(GROUP).unwrap();
        let g = &loaded.groups()[0];
        assert_eq!(g.health_check, HealthCheckConfig::default());
        let fast = |in_transition| g.health_check.next_check_in(in_transition).as_millis();
        assert_eq!((fast(false), fast(true)), (100, 25));
        let slow_only = HealthCheckConfig {
            interval_ms: 10,
            ..HealthCheckConfig::default()
        };
        assert_eq!(
            slow_only.next_check_in(true).as_millis(),
            10,
            "capped at interval_ms"
        );
        assert_eq!(g.passive.max_fails, 3);
        assert_eq!(
            g.timeouts.read_ms, 0,
            "long-lived streams are not cut by default"
        );
        assert_eq!(g.servers[0].health_address().port(), 5201);
        assert_eq!(loaded.lb.frontends[0].limits, FrontendLimits::default());
    }

    #[test]
    fn bad_lb_configs_name_the_offending_key() {
        let cases: &[(&str, String, &str)] = &[
            ("unknown key", GROUP.replace("strategy", "bogus = 1\nstrategy"), "unknown field `bogus`"),
            ("bad strategy", GROUP.replace("round_robin", "random"), "unknown variant `random`"),
            (
                "no servers",
                GROUP.replace("servers = [{ address = \"127.0.0.1:5001\", health = \"127.0.0.1:5201\" }]", "servers = []"),
                "lb.backends[0].servers: needs at least one server",
            ),
            (
                "zero fast interval",
                format!("{GROUP}health_check = {{ fast_interval_ms = 0 }}\n"),
                "lb.backends[0].health_check.fast_interval_ms: must be greater than 0",
            ),
            (
                "zero interval",
                format!("{GROUP}health_check = {{ interval_ms = 0 }}\n"),
                "lb.backends[0].health_check.interval_ms: must be greater than 0",
            ),
            (
                "zero rise",
                format!("{GROUP}health_check = {{ rise = 0 }}\n"),
                "lb.backends[0].health_check.rise: must be greater than 0",
            ),
            (
                "path",
                format!("{GROUP}health_check = {{ path = \"health\" }}\n"),
                "lb.backends[0].health_check.path",
            ),
            (
                "unknown group",
                GROUP.replace("group = \"g\"", "group = \"nope\""),
                "lb.frontends[0].backend: no [[lb.backends]] group is named \"nope\"",
            ),
            (
                "topology role without topology",
                GROUP.replace("{ group = \"g\" }", "\"sequencers\""),
                "lb.frontends[0].backend: routes to a role of the topology",
            ),
            (
                "port 0 server",
                GROUP.replace("127.0.0.1:5001", "127.0.0.1:0"),
                "lb.backends[0].servers[0].address: port 0",
            ),
            (
                "half a client certificate",
                format!("{GROUP}tls = {{ ca = \"ca.pem\", cert = \"c.pem\" }}\n"),
                "lb.backends[0].tls: a client certificate needs both",
            ),
            (
                "duplicate listen",
                GROUP.replace(
                    "[[lb.backends]]",
                    "[[lb.frontends]]\nname = \"f2\"\nlisten = \"127.0.0.1:4001\"\nprotocol = \"h2c\"\nbackend = { group = \"g\" }\n[[lb.backends]]",
                ),
                "lb.frontends[1].listen: address 127.0.0.1:4001",
            ),
            (
                "slow header timeout zero",
                GROUP.replace("backend = { group = \"g\" }", "backend = { group = \"g\" }\nlimits = { header_timeout_ms = 0 }"),
                "lb.frontends[0].limits.header_timeout_ms: must be greater than 0",
            ),
            (
                "too many workers",
                GROUP.replace("[lb]\n", "[lb]\nworkers = 100000\n"),
                "lb.workers: at most 256",
            ),
        ];
        for (what, text, expected) in cases {
            let got = error_of(text);
            assert!(got.contains(expected), "{what}: {got}");
        }
    }

    #[test]
    fn topology_roles_expand_into_groups() {
        let text = r#"
[synchronizer.sequencer]
storage = "sqlite://seq.db"
replicas = [
  { api = "127.0.0.1:5001", admin = "127.0.0.1:5101", health = "127.0.0.1:5201" },
  { api = "127.0.0.1:5002", admin = "127.0.0.1:5102", health = "127.0.0.1:5202" },
]
[synchronizer.mediator]
storage = "sqlite://med.db"
replicas = [{ admin = "127.0.0.1:5111", health = "127.0.0.1:5211" }]
[synchronizer.topology_manager]
storage = "sqlite://tm.db"
replicas = [{ admin = "127.0.0.1:5121", health = "127.0.0.1:5221" }]
[[participants]]
name = "participant1"
storage = "sqlite://p1.db"
auth = { unsafe = true, hs256_secret = "0123456789abcdef0123456789abcdef" }
replicas = [
  { api = "127.0.0.1:4011", admin = "127.0.0.1:4111", health = "127.0.0.1:4211" },
  { api = "127.0.0.1:4012", admin = "127.0.0.1:4112", health = "127.0.0.1:4212" },
]
[lb]
admin = "127.0.0.1:8081"
[[lb.frontends]]
name = "ledger-api"
listen = "127.0.0.1:14001"
protocol = "h2c"
backend = { ledger_api = { participant = "participant1" } }
[[lb.frontends]]
name = "admin-api"
listen = "127.0.0.1:14002"
protocol = "h2c"
backend = { admin_api = { participant = "participant1" } }
[[lb.frontends]]
name = "sequencer"
listen = "127.0.0.1:14003"
protocol = "h2c"
backend = "sequencers"
"#;
        let loaded = LoadedLb::parse(text).unwrap();
        let groups = loaded.groups();
        let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "participant1-ledger-api",
                "participant1-admin-api",
                "sequencers"
            ]
        );
        assert_eq!(groups[0].strategy, Strategy::Active);
        assert_eq!(groups[0].servers[1].address.port(), 4012);
        assert_eq!(groups[0].servers[1].health_address().port(), 4212);
        assert_eq!(groups[1].servers[0].address.port(), 4111);
        assert_eq!(groups[2].strategy, Strategy::RoundRobin);
        assert_eq!(groups[2].servers.len(), 2);
        // The lb's addresses are claimed like every other address of the topology.
        let clash = text.replace("127.0.0.1:14003", "127.0.0.1:5101");
        let got = error_of(&clash);
        assert!(
            got.contains("lb.frontends[2].listen: address 127.0.0.1:5101 is already used"),
            "{got}"
        );
        let no_gateways = text.replace("backend = \"sequencers\"", "backend = \"gateways\"");
        assert!(error_of(&no_gateways).contains("the topology has no gateways"));
    }
}
