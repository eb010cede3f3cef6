//! Helpers for in-process gateway tests: a config with an HS256 test secret, tokens minted
//! with it, and one-shot requests against the router. The ledger endpoint points at a closed
//! port, so a request that passes the gateway's own checks answers 503 from the ledger call.
#![allow(dead_code)]

use axum::body::Body;
use axum::Router;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use tandem_auth::AuthConfig;
use tandem_gateway::GatewayConfig;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
/// Nothing listens here: ledger calls fail fast with UNAVAILABLE.
pub const NO_LEDGER: &str = "http://127.0.0.1:1";

pub fn config() -> GatewayConfig {
    let auth = AuthConfig {
        hs256_secret: Some(SECRET.into()),
        allow_unsafe: true,
        ..AuthConfig::default()
    };
    GatewayConfig::new("gw-test", "127.0.0.1:0".parse().unwrap(), NO_LEDGER, auth)
}

pub fn app_with(config: GatewayConfig) -> Router {
    let state = tandem_gateway::build_state(config, CancellationToken::new()).unwrap();
    tandem_gateway::app(state)
}

pub fn app() -> Router {
    app_with(config())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A custom-claims token with these rights.
pub fn token(act_as: &[&str], read_as: &[&str], admin: bool) -> String {
    sign(&json!({
        "https://daml.com/ledger-api": {
            "actAs": act_as, "readAs": read_as, "admin": admin, "applicationId": "app"
        },
        "exp": now() + 300,
    }))
}

pub async fn send(app: &Router, request: Request<Body>) -> (Response<()>, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (Response::from_parts(parts, ()), json)
}

pub fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

pub fn raw(
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: impl Into<Body>,
) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

pub fn create_body(act_as: &str) -> Value {
    json!({
        "commands": [{"CreateCommand": {"templateId": "#iou:Iou:Iou",
            "createArguments": {"issuer": act_as, "owner": act_as, "currency": "USD", "amount": "1.0", "viewers": []}}}],
        "actAs": [act_as],
    })
}

pub fn filter_body(party: &str) -> Value {
    json!({"filter": {"filtersByParty": {party: {}}}})
}
