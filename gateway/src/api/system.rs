//! Version, health (`/livez`, `/readyz`), metrics and the API documentation (`/docs/openapi`
//! and the offline explorer page at `/docs`).

use super::docs::{Errors, SystemErrors};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::SharedState;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tandem_proto::ledger::v2 as pb;
use utoipa::ToSchema;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionResponse {
    /// The Ledger API version of the participant.
    pub version: String,
    /// This gateway's version.
    pub gateway_version: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `pass` or `fail`.
    pub status: String,
    /// Per dependency: `pass` or why it fails.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub checks: std::collections::BTreeMap<String, String>,
}

/// How long `/readyz` waits for the participant's health check.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The Ledger API version and the gateway's.
#[utoipa::path(get, operation_id = "get_version", path = "/v2/version", tag = "system",
    responses((status = 200, description = "Versions", body = VersionResponse), Errors),
    security(("bearer" = [])))]
pub async fn version(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<VersionResponse>, ApiError> {
    let request = state
        .ledger
        .request(pb::GetLedgerApiVersionRequest {}, &caller.ctx);
    let r = state
        .ledger
        .version()
        .get_ledger_api_version(request)
        .await?
        .into_inner();
    Ok(Json(VersionResponse {
        version: r.version,
        gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
}

/// Liveness: the process answers. No dependencies are checked.
#[utoipa::path(get, operation_id = "livez", path = "/livez", tag = "system",
    responses((status = 200, description = "The gateway is running", body = HealthResponse), SystemErrors))]
pub async fn livez() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "pass".into(),
        checks: Default::default(),
    })
}

/// Readiness: the participant's Ledger API answers its health check and tokens can be
/// verified. The lb takes an instance that is not ready out of rotation.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "system",
    responses(
        (status = 200, description = "Ready to serve", body = HealthResponse),
        (status = 503, description = "Not ready; `checks` says why", body = HealthResponse)
    ))]
pub async fn readyz(State(state): State<SharedState>) -> Response {
    let ledger = state.ledger.is_serving(READY_CHECK_TIMEOUT).await;
    let auth = state.verifier.is_ready() || state.verifier.refresh_jwks().await.is_ok();
    let mut checks = std::collections::BTreeMap::new();
    checks.insert(
        "ledger".to_owned(),
        if ledger {
            "pass"
        } else {
            "the Ledger API does not answer as serving"
        }
        .to_owned(),
    );
    checks.insert(
        "auth".to_owned(),
        if auth {
            "pass"
        } else {
            "the JWKS could not be fetched"
        }
        .to_owned(),
    );
    let ready = ledger && auth;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthResponse {
        status: if ready { "pass" } else { "fail" }.into(),
        checks,
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (text exposition format).
pub async fn metrics(State(state): State<SharedState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document (YAML), with `servers` naming the advertised URL.
pub async fn openapi_yaml(State(state): State<SharedState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        state.openapi_yaml.clone(),
    )
        .into_response()
}

/// The OpenAPI document (JSON).
pub async fn openapi_json(State(state): State<SharedState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.clone(),
    )
        .into_response()
}

/// The API explorer: one self-contained page (no CDN) that reads `/docs/openapi.json`.
pub async fn explorer() -> Html<&'static str> {
    Html(include_str!("explorer.html"))
}
