//! The OpenAPI document: generated from the handlers ([`crate::api::router`]), committed as
//! `openapi/openapi.yaml` (a test fails when they differ; `UPDATE_OPENAPI=1` rewrites it), and
//! served at `/docs/openapi` with `servers` naming the advertised URL.

use utoipa::openapi::{OpenApi, Server};

/// The document as generated, without `servers` (the committed form).
pub fn document() -> OpenApi {
    crate::api::router().1
}

/// The committed YAML text.
pub fn yaml() -> String {
    to_yaml(&document())
}

fn to_yaml(doc: &OpenApi) -> String {
    doc.to_yaml().unwrap_or_default()
}

/// The served document: `servers` is the advertised URL. Returns (YAML, JSON).
pub fn served(public_url: &str) -> (String, String) {
    let mut doc = document();
    doc.servers = Some(vec![Server::new(public_url)]);
    let json = doc.to_pretty_json().unwrap_or_default();
    (to_yaml(&doc), json)
}
