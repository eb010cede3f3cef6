//! Prometheus metrics of one lb (`tandem_lb_*`), in its own registry so that several lbs in one
//! process (tests) do not collide. Label handles are resolved once per server and frontend, not
//! per request.

use crate::server::FailureKind;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::net::SocketAddr;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    server_up: IntGaugeVec,
    upstream_requests: IntCounterVec,
    upstream_in_flight: IntGaugeVec,
    upstream_failures: IntCounterVec,
    health_checks: IntCounterVec,
    responses: IntCounterVec,
    duration: HistogramVec,
    rejected: IntCounterVec,
    pub reloads: IntCounterVec,
}

/// The handles of one server.
#[derive(Clone)]
pub struct ServerMetrics {
    pub up: IntGauge,
    pub requests: IntCounter,
    pub in_flight: IntGauge,
    failures: [IntCounter; 4],
    pub checks_ok: IntCounter,
    pub checks_failed: IntCounter,
}

impl ServerMetrics {
    pub fn failure(&self, kind: FailureKind) {
        let i = match kind {
            FailureKind::Connect => 0,
            FailureKind::Status5xx => 1,
            FailureKind::GrpcUnavailable => 2,
            FailureKind::Upstream => 3,
        };
        self.failures[i].inc();
    }
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let server = ["group", "server"];
        let m = Self {
            registry: registry.clone(),
            server_up: IntGaugeVec::new(
                Opts::new(
                    "tandem_lb_server_up",
                    "1 while the server passes its health check",
                ),
                &server,
            )?,
            upstream_requests: IntCounterVec::new(
                Opts::new(
                    "tandem_lb_upstream_requests_total",
                    "Requests sent to a server",
                ),
                &server,
            )?,
            upstream_in_flight: IntGaugeVec::new(
                Opts::new(
                    "tandem_lb_upstream_active_requests",
                    "Requests in flight to a server",
                ),
                &server,
            )?,
            upstream_failures: IntCounterVec::new(
                Opts::new(
                    "tandem_lb_upstream_failures_total",
                    "Live-traffic failures counted by passive health",
                ),
                &["group", "server", "kind"],
            )?,
            health_checks: IntCounterVec::new(
                Opts::new("tandem_lb_health_checks_total", "Active health checks"),
                &["group", "server", "result"],
            )?,
            responses: IntCounterVec::new(
                Opts::new(
                    "tandem_lb_responses_total",
                    "Responses to clients by status class",
                ),
                &["frontend", "class"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "tandem_lb_request_duration_seconds",
                    "Time from request to end of response",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
                &["frontend"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "tandem_lb_rejected_connections_total",
                    "Client connections answered with an error before proxying",
                ),
                &["frontend", "reason"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new("tandem_lb_reloads_total", "Configuration reloads"),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.server_up.clone()))?;
        registry.register(Box::new(m.upstream_requests.clone()))?;
        registry.register(Box::new(m.upstream_in_flight.clone()))?;
        registry.register(Box::new(m.upstream_failures.clone()))?;
        registry.register(Box::new(m.health_checks.clone()))?;
        registry.register(Box::new(m.responses.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.reloads.clone()))?;
        Ok(m)
    }

    pub fn server(&self, group: &str, server: SocketAddr) -> ServerMetrics {
        let addr = server.to_string();
        let labels = [group, addr.as_str()];
        let failure = |kind: FailureKind| {
            self.upstream_failures
                .with_label_values(&[group, addr.as_str(), kind.as_str()])
        };
        ServerMetrics {
            up: self.server_up.with_label_values(&labels),
            requests: self.upstream_requests.with_label_values(&labels),
            in_flight: self.upstream_in_flight.with_label_values(&labels),
            failures: [
                failure(FailureKind::Connect),
                failure(FailureKind::Status5xx),
                failure(FailureKind::GrpcUnavailable),
                failure(FailureKind::Upstream),
            ],
            checks_ok: self
                .health_checks
                .with_label_values(&[group, addr.as_str(), "ok"]),
            checks_failed: self
                .health_checks
                .with_label_values(&[group, addr.as_str(), "failed"]),
        }
    }

    pub fn frontend(&self, frontend: &str) -> FrontendMetrics {
        let class = |c: &str| self.responses.with_label_values(&[frontend, c]);
        FrontendMetrics {
            classes: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.duration.with_label_values(&[frontend]),
            rejected_timeout: self
                .rejected
                .with_label_values(&[frontend, "header_timeout"]),
            rejected_too_large: self
                .rejected
                .with_label_values(&[frontend, "header_too_large"]),
            rejected_tls: self
                .rejected
                .with_label_values(&[frontend, "tls_handshake"]),
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[derive(Clone)]
pub struct FrontendMetrics {
    classes: [IntCounter; 5],
    pub duration: prometheus::Histogram,
    pub rejected_timeout: IntCounter,
    pub rejected_too_large: IntCounter,
    pub rejected_tls: IntCounter,
}

impl FrontendMetrics {
    pub fn response(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[i].inc();
    }
}
