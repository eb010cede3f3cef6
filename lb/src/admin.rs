//! The admin endpoint (HTTP/1): `GET /status` (JSON: every frontend, group and server with its
//! state, last check, failures, requests and requests in flight), `GET /metrics` (Prometheus)
//! and `POST /reload` (re-read the config file; a bad one is refused and the old one stays).

use crate::Lb;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

pub fn router(lb: Arc<Lb>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload))
        .with_state(lb)
}

async fn status(State(lb): State<Arc<Lb>>) -> Response {
    Json(lb.status()).into_response()
}

async fn metrics(State(lb): State<Arc<Lb>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        lb.render_metrics(),
    )
        .into_response()
}

async fn reload(State(lb): State<Arc<Lb>>) -> Response {
    match lb.reload_from_file().await {
        Ok(generation) => {
            Json(serde_json::json!({ "reloaded": true, "generation": generation })).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "reloaded": false, "error": e.to_string() })),
        )
            .into_response(),
    }
}
