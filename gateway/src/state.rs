//! What every handler shares: the validated config, the verifier, the ledger client, the
//! rights and query caches, the metrics and the rendered OpenAPI document.

use crate::auth::RightsCache;
use crate::cache::QueryCache;
use crate::ledger::{CallContext, LedgerClient};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tandem_auth::Verifier;
use tandem_nodes::config::GatewayConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    pub package_names: RwLock<Arc<HashMap<String, String>>>,
    /// Cancelled at shutdown: ends websocket streams.
    pub shutdown: CancellationToken,
    /// The open websocket streams (each holds a token), which shutdown waits for: they run on
    /// the worker threads, which must not end before the streams sent their close frame.
    pub streams: TaskTracker,
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

    /// A snapshot of the package names (shared, not copied: every query reads them).
    pub fn names(&self) -> Arc<HashMap<String, String>> {
        self.package_names
            .read()
            .map(|m| Arc::clone(&m))
            .unwrap_or_default()
    }

    /// Keeps package id → name for matching `#name` template ids.
    pub fn remember_names(&self, packages: &[tandem_proto::ledger::v2::PackageDetails]) {
        if let Ok(mut names) = self.package_names.write() {
            let names = Arc::make_mut(&mut names);
            for p in packages {
                names.insert(p.package_id.clone(), p.name.clone());
            }
        }
    }

    /// The package names, first asking the participant for its packages if `templates` name a
    /// package (`#name:…`) this instance has not seen: another instance may have uploaded it,
    /// and a filter on it must match all the same.
    pub async fn names_for<'a>(
        &self,
        templates: impl IntoIterator<Item = &'a str>,
        ctx: &CallContext,
    ) -> Arc<HashMap<String, String>> {
        let names = self.names();
        let unknown = templates.into_iter().any(|t| {
            t.strip_prefix('#')
                .and_then(|t| t.split(':').next())
                .is_some_and(|name| !names.values().any(|n| n == name))
        });
        if !unknown {
            return names;
        }
        let request = self
            .ledger
            .request(tandem_proto::ledger::v2::ListPackagesRequest {}, ctx);
        if let Ok(r) = self.ledger.packages().list_packages(request).await {
            self.remember_names(&r.into_inner().packages);
        }
        self.names()
    }
}
