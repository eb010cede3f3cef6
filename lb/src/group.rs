//! A backend group at run time: its servers (state kept across reloads), the selector of its
//! strategy, one prepared upstream peer per server, and its health-check loops.

use crate::error::LbError;
use crate::health::{spawn_checks, HttpCheck};
use crate::metrics::Metrics;
use crate::select::{for_strategy, Selector};
use crate::server::{FailureKind, Server, ServerKey, ServerStatus};
use crate::tls;
use pingora::upstreams::peer::HttpPeer;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_nodes::config::{BackendConfig, Strategy, UpstreamProtocol};
use tokio_util::sync::CancellationToken;

pub struct Group {
    pub name: String,
    pub config: BackendConfig,
    pub servers: Vec<Arc<Server>>,
    selector: Box<dyn Selector>,
    peers: Vec<HttpPeer>,
    /// The server last seen holding the active role (`active` groups).
    active: Mutex<Option<usize>>,
    stop: CancellationToken,
}

/// Servers of the running config by group name and key, so a reload keeps their state.
pub type ServerIndex = HashMap<(String, ServerKey), Arc<Server>>;

pub(crate) fn nonzero_ms(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Group {
    /// Builds a group from its config, reusing servers from `previous`; `key` names the group
    /// in errors (`lb.backends[2]`).
    pub fn build(
        config: BackendConfig,
        key: &str,
        previous: &ServerIndex,
        metrics: &Metrics,
    ) -> Result<Arc<Self>, LbError> {
        let upstream_tls = match &config.tls {
            Some(t) => Some(tls::UpstreamMaterial::load(t, &format!("{key}.tls"))?),
            None => None,
        };
        let mut servers = Vec::with_capacity(config.servers.len());
        let mut peers = Vec::with_capacity(config.servers.len());
        for s in &config.servers {
            let server_key = ServerKey {
                address: s.address,
                health: s.health_address(),
            };
            let server = previous
                .get(&(config.name.clone(), server_key))
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(Server::new(
                        server_key,
                        metrics.server(&config.name, s.address),
                    ))
                });
            servers.push(server);
            peers.push(peer(&config, s.address, upstream_tls.as_ref()));
        }
        Ok(Arc::new(Self {
            name: config.name.clone(),
            selector: for_strategy(config.strategy),
            servers,
            peers,
            active: Mutex::new(None),
            stop: CancellationToken::new(),
            config,
        }))
    }

    pub fn start_checks(self: &Arc<Self>) {
        let check = Arc::new(HttpCheck::new(&self.config.health_check));
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) =
            self.selector.active(&self.servers);
        spawn_checks(self, check, self.stop.clone());
    }

    /// Stops the health checks (the group was replaced by a reload or the lb stops). Requests
    /// in flight keep their `Arc` and finish.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn select(&self, tried: &[usize]) -> Option<usize> {
        self.selector.select(&self.servers, tried)
    }

    pub fn peer(&self, index: usize) -> HttpPeer {
        self.peers[index].clone()
    }

    pub fn is_active_strategy(&self) -> bool {
        self.config.strategy == Strategy::Active
    }

    pub fn fail_timeout(&self) -> Duration {
        Duration::from_millis(self.config.passive.fail_timeout_ms)
    }

    /// Counts a failure of live traffic against server `index` (passive health), with one log
    /// line when it ejects the server.
    pub fn record_failure(&self, index: usize, kind: FailureKind) {
        let server = &self.servers[index];
        let passive = &self.config.passive;
        if server.record_failure(kind, passive.max_fails, self.fail_timeout()) {
            tracing::warn!(
                group = %self.name,
                server = %server.key.address,
                kind = kind.as_str(),
                fail_timeout_ms = passive.fail_timeout_ms,
                "server ejected by passive health"
            );
        }
    }

    /// Whether the HTTP/2 relay (`relay`) can carry this group's requests: cleartext HTTP/2.
    /// TLS and HTTP/1 servers go through pingora.
    pub fn relayable(&self) -> bool {
        self.config.protocol == UpstreamProtocol::H2c && self.config.tls.is_none()
    }

    /// After a server came up or went down: if the active role moved, end the streams of the
    /// server that lost it, so their clients come back and reach the new active server.
    pub fn after_transition(&self) {
        if !self.is_active_strategy() {
            return;
        }
        let now = self.selector.active(&self.servers);
        let mut last = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if *last != now {
            if let Some(old) = *last {
                tracing::info!(
                    group = %self.name,
                    from = %self.servers[old].key.address,
                    to = ?now.map(|i| self.servers[i].key.address),
                    "active server changed; ending its streams"
                );
                self.servers[old].end_streams();
            }
            *last = now;
        }
    }

    pub fn status(&self) -> GroupStatus {
        GroupStatus {
            name: self.name.clone(),
            strategy: match self.config.strategy {
                Strategy::Active => "active",
                Strategy::RoundRobin => "round_robin",
            },
            active: self
                .selector
                .active(&self.servers)
                .map(|i| self.servers[i].key.address),
            servers: self.servers.iter().map(|s| s.status()).collect(),
        }
    }
}

/// The upstream peer of one server, prepared once: protocol, multiplexing, pings, timeouts,
/// TLS. Requests clone it; pingora pools connections per identical peer.
fn peer(
    config: &BackendConfig,
    address: SocketAddr,
    tls: Option<&tls::UpstreamMaterial>,
) -> HttpPeer {
    let sni = tls
        .and_then(|t| t.sni.clone())
        .unwrap_or_else(|| address.ip().to_string());
    let mut peer = HttpPeer::new(address, tls.is_some(), sni);
    let o = &mut peer.options;
    match config.protocol {
        UpstreamProtocol::H2c => o.set_http_version(2, 2),
        UpstreamProtocol::Http1 => o.set_http_version(1, 1),
    }
    o.max_h2_streams = config.h2.max_streams;
    o.h2_ping_interval = nonzero_ms(config.h2.ping_interval_ms);
    o.connection_timeout = nonzero_ms(config.timeouts.connect_ms);
    o.total_connection_timeout = nonzero_ms(config.timeouts.connect_ms);
    o.read_timeout = nonzero_ms(config.timeouts.read_ms);
    o.write_timeout = nonzero_ms(config.timeouts.write_ms);
    if let Some(t) = tls {
        o.ca = Some(t.ca.clone());
        peer.client_cert_key = t.client.clone();
    }
    peer
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    pub name: String,
    pub strategy: &'static str,
    /// The server holding the active role (`active` groups).
    pub active: Option<SocketAddr>,
    pub servers: Vec<ServerStatus>,
}
