//! Assembling the service: state from config, the routes, and the tower layers every request
//! passes (outermost first, each commented), then serving on a listener until shutdown.

use crate::auth::RightsCache;
use crate::cache::QueryCache;
use crate::error::{codes, Problem, PROBLEM_JSON};
use crate::ledger::{EndpointError, LedgerClient};
use crate::metrics::Metrics;
use crate::state::{AppState, SharedState};
use crate::{api, openapi};
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderName, HeaderValue, Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tandem_auth::Verifier;
use tandem_nodes::config::GatewayConfig;
use tandem_nodes::workers::{self, Workers};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A config key is invalid (the message names it).
    #[error("{0}: {1}")]
    Config(String, String),
    #[error(transparent)]
    Auth(#[from] tandem_auth::ConfigError),
    #[error(transparent)]
    Ledger(#[from] EndpointError),
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The shared state for a validated config.
pub fn state(
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> Result<SharedState, ServeError> {
    config
        .validate("gateway")
        .map_err(|(key, why)| ServeError::Config(key, why))?;
    let verifier = Verifier::new(&config.auth)?;
    let ledger = LedgerClient::new(
        &config.ledger_api,
        Duration::from_millis(config.ledger_connect_timeout_ms),
        Duration::from_millis(config.request_timeout_ms),
    )?;
    let metrics = Metrics::new();
    let rights = RightsCache::new(
        Duration::from_millis(config.rights_cache_ttl_ms),
        config.rights_cache_capacity,
    );
    let cache = QueryCache::new(
        ledger.clone(),
        config.cache_max_bytes,
        Duration::from_millis(config.cache_wait_timeout_ms),
        metrics.clone(),
    );
    let (openapi_yaml, openapi_json) = openapi::served(&config.public_url());
    Ok(Arc::new(AppState {
        config,
        verifier,
        ledger,
        rights,
        cache,
        metrics,
        openapi_yaml,
        openapi_json,
        package_names: Default::default(),
        shutdown,
        streams: TaskTracker::new(),
    }))
}

/// The complete service: routes and layers. Tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: SharedState) -> Router {
    let (documented, _) = api::router();
    let config = &state.config;
    let max_body = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let routes = documented
        .route("/metrics", get(api::system::metrics))
        .route("/docs", get(api::system::explorer))
        .route("/docs/openapi", get(api::system::openapi_yaml))
        .route("/docs/openapi.json", get(api::system::openapi_json))
        // Bodies beyond the limit fail the body extractors with 413 (a problem document).
        .layer(DefaultBodyLimit::max(max_body))
        // Requests, durations and statuses by route pattern (after routing, so the pattern is known).
        // (Its state is cloned for every request: an `Arc`, not the metrics' many handles.)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(state.metrics.clone()),
            crate::metrics::track_http,
        ));
    let layers = ServiceBuilder::new()
        // A request id for every request: the client's `x-request-id`, or a new UUID.
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        // Never log tokens.
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
        // One span per request, carrying the request id. A 5xx is a warning, not an error: a
        // `/readyz` 503 while the participant fails over is expected, and the gateway's own
        // failures are logged as errors where they happen.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &http::Request<Body>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
                })
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        // Echo the request id on the response.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        // Browser apps: the configured origins only.
        .option_layer(cors(&config.cors_allowed_origins))
        // Every error is a problem document, including the framework's own (404, 405, 504).
        .layer(axum::middleware::map_response(problem_json))
        // Slow requests end with 504 (websocket streams are past their upgrade by then).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_millis(config.request_timeout_ms),
        ));
    routes.layer(layers).with_state(state)
}

/// How long shutdown waits for open websocket streams to send their close frame.
const STREAMS_GRACE: Duration = Duration::from_secs(5);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                REQUEST_ID.clone(),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                REQUEST_ID.clone(),
                header::WWW_AUTHENTICATE,
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Turns an error response that is not yet a problem document (a framework rejection, the
/// timeout) into one. JSON bodies of deliberate error answers (`/readyz`) stay as they are.
async fn problem_json(response: Response) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !(status.is_client_error() || status.is_server_error())
        || content_type.starts_with(PROBLEM_JSON)
        || content_type.starts_with("application/json")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => "TIMEOUT",
        StatusCode::BAD_REQUEST => "INVALID_REQUEST",
        _ if status.is_server_error() => "INTERNAL",
        _ => codes::grpc_name(tonic::Code::Unknown),
    };
    let detail = match (status, text.trim()) {
        (StatusCode::NOT_FOUND, _) => "no such endpoint; see /docs/openapi".to_owned(),
        (StatusCode::METHOD_NOT_ALLOWED, _) => "this endpoint does not take that method".to_owned(),
        (StatusCode::GATEWAY_TIMEOUT, _) => {
            "the request took longer than the gateway's request_timeout_ms".to_owned()
        }
        (_, "") => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, t) => t.to_owned(),
    };
    let problem = Problem::new(status, code, detail);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    (parts, problem.to_body()).into_response()
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then drains: websocket
/// streams are closed with 1001, in-flight requests finish. Connections are accepted here and
/// served on the worker threads (`tandem_nodes::workers`), each wholly on one of them.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let state = state(config, shutdown.clone())?;
    let local = listener.local_addr()?;
    let workers = Workers::start("gateway-worker", state.config.workers)?;
    tracing::info!(name = %state.config.name, listen = %local, ledger_api = %state.config.ledger_api, advertised = %state.config.public_url(), workers = workers.count(), "gateway serving");
    let cache = state.cache.clone();
    cache.observe_on(workers.handle(0).clone());
    let streams = state.streams.clone();
    let app = app(state);
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            (worker, tcp) = workers.accept(&listener, "gateway") => {
                let conn = connection(tcp, app.clone(), shutdown.clone());
                connections.spawn_on(conn, workers.handle(worker));
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    // Upgraded connections left `connections` at the upgrade; their streams end with 1001 on
    // `shutdown`. Bounded, so a stream stuck on a client that reads nothing cannot hold the stop.
    streams.close();
    if tokio::time::timeout(STREAMS_GRACE, streams.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = streams.len(),
            "websocket streams still open at shutdown; dropping them"
        );
    }
    workers.stop().await;
    cache.clear();
    Ok(())
}

/// One client connection, HTTP/1.1 or HTTP/2, on the worker it was given (`tcp` was accepted
/// on another runtime). Once `shutdown` is cancelled it finishes what is in flight and closes.
async fn connection(tcp: std::net::TcpStream, app: Router, shutdown: CancellationToken) {
    let tcp = match workers::adopt(tcp) {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register a connection");
            return;
        }
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Websockets over HTTP/2 (RFC 8441) need the CONNECT protocol.
    builder.http2().enable_connect_protocol();
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
