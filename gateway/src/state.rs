//! What every handler shares: the validated config, the verifier, the ledger client, the
//! rights and query caches, the metrics and the rendered OpenAPI document.

use crate::auth::RightsCache;
use crate::cache::QueryCache;
use crate::ledger::LedgerClient;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tandem_auth::Verifier;
use tandem_nodes::config::GatewayConfig;
use tokio_util::sync::CancellationToken;

pub type SharedState = Arc<AppState>;

pub struct AppState {
    pub config: GatewayConfig,
    pub verifier: Verifier,
    pub ledger: LedgerClient,
    pub rights: RightsCache,
    pub cache: QueryCache,
    pub metrics: Metrics,
    /// The OpenAPI document with `servers` set to the advertised URL, as YAML and JSON.
    pub openapi_yaml: String,
    pub openapi_json: String,
    /// Package id → package name, for matching `#name:M:T` filters against package ids.
    pub package_names: RwLock<HashMap<String, String>>,
    /// Cancelled at shutdown: ends websocket streams.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    pub fn heartbeat(&self) -> Duration {
        Self::ms(self.config.ws_heartbeat_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Self::ms(self.config.stream_idle_timeout_ms)
    }

    pub fn max_items(&self) -> usize {
        usize::try_from(self.config.max_list_items).unwrap_or(usize::MAX)
    }

    /// A snapshot of the package names.
    pub fn names(&self) -> HashMap<String, String> {
        self.package_names
            .read()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}
