//! The gateway's Prometheus metrics (`tandem_gateway_<what>_<unit>`), one registry per
//! instance, rendered at `/metrics`. Histograms, not summaries, so instances aggregate.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

/// Every metric of one gateway. Cheap to clone (the collectors are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    auth_refusals: IntCounterVec,
    pub cache_bytes: IntGauge,
    pub cache_max_bytes: IntGauge,
    pub cache_contracts: IntGauge,
    pub cache_parties: IntGauge,
    pub cache_evictions: IntCounter,
    pub cache_catch_ups: IntCounter,
    pub cache_failures: IntCounter,
    ledger_end_observations: IntCounterVec,
    /// Ledger-end observations answered on the `ObserveLedgerEnd` stream.
    pub ledger_end_via_stream: IntCounter,
    /// Ledger-end observations made with a `GetLedgerEnd` call (the stream had failed).
    pub ledger_end_via_call: IntCounter,
    pub ws_streams: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "tandem_gateway_http_requests_total",
                "HTTP requests answered, by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .unwrap_or_else(unreachable_metric);
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "tandem_gateway_http_request_duration_seconds",
                "Time to answer HTTP requests, by route and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route", "method"],
        )
        .unwrap_or_else(unreachable_metric);
        let auth_refusals = IntCounterVec::new(
            Opts::new(
                "tandem_gateway_auth_refusals_total",
                "Requests refused with 401, by reason",
            ),
            &["reason"],
        )
        .unwrap_or_else(unreachable_metric);
        let ledger_end_observations = IntCounterVec::new(
            Opts::new(
                "tandem_gateway_ledger_end_observations_total",
                "Ledger-end observations queries shared, by how they were made (stream or call)",
            ),
            &["via"],
        )
        .unwrap_or_else(unreachable_metric);
        let gauge =
            |name: &str, help: &str| IntGauge::new(name, help).unwrap_or_else(unreachable_metric);
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).unwrap_or_else(unreachable_metric);
        let metrics = Self {
            http_requests,
            http_duration,
            auth_refusals,
            cache_bytes: gauge(
                "tandem_gateway_cache_bytes",
                "Approximate memory held by the query cache",
            ),
            cache_max_bytes: gauge(
                "tandem_gateway_cache_max_bytes",
                "The query cache's memory bound (cache_max_bytes)",
            ),
            cache_contracts: gauge(
                "tandem_gateway_cache_contracts",
                "Active contracts held by the query cache, over all parties",
            ),
            cache_parties: gauge(
                "tandem_gateway_cache_parties",
                "Parties whose active contracts the query cache holds",
            ),
            cache_evictions: counter(
                "tandem_gateway_cache_evictions_total",
                "Parties evicted from the query cache to respect its memory bound",
            ),
            cache_catch_ups: counter(
                "tandem_gateway_cache_catch_ups_total",
                "Times a party's cache read updates to reach an offset a query needed",
            ),
            cache_failures: counter(
                "tandem_gateway_cache_failures_total",
                "Failed attempts of the query cache to read from the ledger",
            ),
            ledger_end_via_stream: ledger_end_observations.with_label_values(&["stream"]),
            ledger_end_via_call: ledger_end_observations.with_label_values(&["call"]),
            ledger_end_observations,
            ws_streams: gauge(
                "tandem_gateway_websocket_streams",
                "Websocket streams open now",
            ),
            registry,
        };
        metrics.register();
        metrics
    }

    fn register(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.auth_refusals.clone()),
            Box::new(self.cache_bytes.clone()),
            Box::new(self.cache_max_bytes.clone()),
            Box::new(self.cache_contracts.clone()),
            Box::new(self.cache_parties.clone()),
            Box::new(self.cache_evictions.clone()),
            Box::new(self.cache_catch_ups.clone()),
            Box::new(self.cache_failures.clone()),
            Box::new(self.ledger_end_observations.clone()),
            Box::new(self.ws_streams.clone()),
        ];
        for c in collectors {
            // Names are fixed and distinct; a fresh registry cannot refuse them.
            let _ = self.registry.register(c);
        }
    }

    /// Counts a 401 by reason.
    pub fn auth_refused(&self, reason: tandem_auth::Reason) {
        self.auth_refusals
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn unreachable_metric<T>(e: prometheus::Error) -> T {
    // The metric definitions above are constants; an error here is a programming mistake.
    panic!("invalid metric definition: {e}")
}

/// Middleware: counts and times every request by its route pattern (not its path, so ids do
/// not explode the label set).
pub async fn track_http(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .http_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}
