//! `[[gateways]]`: one HTTP JSON API gateway instance (design.md §9). Its own keys and checks
//! live here; the topology validator claims its name and listen address.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// The address clients reach this gateway at (links, OpenAPI `servers`); defaults to
    /// `http://<listen>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_url: Option<String>,
    /// The participant Ledger API the gateway talks to, e.g. the lb's ledger-api frontend.
    pub ledger_api: String,
}

impl GatewayConfig {
    /// Checks the gateway's own keys; errors name the key under `key` (`gateways[0]`).
    pub fn validate(&self, key: &str) -> Result<(), (String, String)> {
        if self.ledger_api.trim().is_empty() {
            return Err((format!("{key}.ledger_api"), "must not be empty".into()));
        }
        Ok(())
    }
}
