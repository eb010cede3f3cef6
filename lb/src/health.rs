//! Active health checks: one loop per server, all servers in parallel, each check an HTTP/1
//! `GET` on the server's health address. The check itself is behind `HealthCheck` so a group
//! could probe differently; the loop feeds results to the server's rise/fall state and tells
//! the group about transitions. A server between states is checked at the fast interval.

use crate::group::Group;
use crate::server::{unix_ms, CheckRecord, Server};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_nodes::config::HealthCheckConfig;
use tokio_util::sync::CancellationToken;

#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Probes one server once; `Ok` carries what was seen, `Err` why the check failed.
    async fn check(&self, server: &Server) -> Result<String, String>;
}

/// HTTP/1 `GET path` on a fresh connection to the health address, passing on one status.
pub struct HttpCheck {
    path: String,
    expect_status: u16,
    timeout: Duration,
}

impl HttpCheck {
    pub fn new(config: &HealthCheckConfig) -> Self {
        Self {
            path: config.path.clone(),
            expect_status: config.expect_status,
            timeout: Duration::from_millis(config.timeout_ms),
        }
    }
}

#[async_trait]
impl HealthCheck for HttpCheck {
    async fn check(&self, server: &Server) -> Result<String, String> {
        match tandem_nodes::health::probe(server.key.health, &self.path, self.timeout).await {
            Ok((status, _)) if status == self.expect_status => Ok(format!("status {status}")),
            Ok((status, _)) => Err(format!("status {status}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Starts one check loop per server of `group`, until `stop`.
pub fn spawn_checks(group: &Arc<Group>, check: Arc<dyn HealthCheck>, stop: CancellationToken) {
    for index in 0..group.servers.len() {
        let group = group.clone();
        let check = check.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = check_loop(&group, index, check.as_ref()) => {}
            }
        });
    }
}

async fn check_loop(group: &Group, index: usize, check: &dyn HealthCheck) {
    let config = &group.config.health_check;
    let server = &group.servers[index];
    loop {
        let started = Instant::now();
        let at_unix_ms = unix_ms();
        let result = check.check(server).await;
        let ok = result.is_ok();
        if ok {
            server.metrics.checks_ok.inc();
        } else {
            server.metrics.checks_failed.inc();
        }
        let record = CheckRecord {
            at_unix_ms,
            ok,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: result.unwrap_or_else(|e| e),
        };
        let detail = record.detail.clone();
        if let Some(transition) = server.observe_check(record, config.rise, config.fall) {
            tracing::info!(
                group = %group.name,
                server = %server.key.address,
                state = ?transition,
                detail = %detail,
                "server health changed"
            );
            group.after_transition();
        }
        let next = started + config.next_check_in(server.in_transition());
        tokio::time::sleep_until(next.into()).await;
    }
}
