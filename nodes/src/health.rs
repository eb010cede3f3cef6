//! The per-replica health server: HTTP/1 only, on its own port, so load balancers can check it
//! the way HAProxy and nginx do. `GET /health` answers 200 while the replica is active and
//! functional, 503 otherwise, with a JSON body saying why; `GET /health/live` answers 200 while
//! the process runs; `GET /metrics` is Prometheus text. [`probe`] is the matching client.

use crate::metrics::NodeMetrics;
use crate::replica::{ReplicaHandle, Role};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HealthState {
    replica: ReplicaHandle,
    metrics: NodeMetrics,
    serving: Option<watch::Receiver<bool>>,
}

/// The health routes of one replica. `serving`, for active-passive node kinds, says whether the
/// active replica's services are up yet: between winning the lease and loading its state a
/// replica answers 503 "activating", so a load balancer never routes to it too early.
pub fn router(
    replica: ReplicaHandle,
    metrics: NodeMetrics,
    serving: Option<watch::Receiver<bool>>,
) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics_text))
        .with_state(HealthState {
            replica,
            metrics,
            serving,
        })
}

async fn health(State(s): State<HealthState>) -> Response {
    let state = s.replica.state();
    let id = s.replica.identity();
    let loading = s.serving.as_ref().is_some_and(|up| !*up.borrow());
    let (code, status, detail) = match state.health(Instant::now()) {
        Ok(_) if loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            "activating",
            "active; still loading its state".to_string(),
        ),
        Ok(detail) => (StatusCode::OK, "active", detail),
        Err(detail) if state.role == Role::Active => {
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", detail)
        }
        Err(detail) => (StatusCode::SERVICE_UNAVAILABLE, "passive", detail),
    };
    let body = serde_json::json!({
        "status": status,
        "node": id.node,
        "replica": id.replica,
        "kind": id.kind.as_str(),
        "epoch": state.epoch,
        "database_ok": state.database_ok,
        "detail": detail,
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn live() -> &'static str {
    "live\n"
}

async fn metrics_text(State(s): State<HealthState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Serves `app` over HTTP/1.1 only until `shutdown`, then drops every open connection.
pub async fn serve_http1(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "health server accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr}: {reason}")]
    Http { addr: SocketAddr, reason: String },
    #[error("no answer from {addr} within {ms} ms")]
    Timeout { addr: SocketAddr, ms: u128 },
}

/// One HTTP/1.1 `GET` on a fresh connection; returns the status code and the body.
pub async fn probe(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), ProbeError> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ProbeError::Connect { addr, source })?;
        let http = |e: &dyn std::fmt::Display| ProbeError::Http {
            addr,
            reason: e.to_string(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(&e))?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(header::HOST, addr.to_string())
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| http(&e))?;
        let response = sender.send_request(request).await.map_err(|e| http(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ProbeError::Timeout {
            addr,
            ms: timeout.as_millis(),
        })?
}
