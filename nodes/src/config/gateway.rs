//! `[[gateways]]`: one HTTP JSON API gateway instance (design.md §9). Its own keys and checks
//! live here; the topology validator claims its name and listen address. Every default is in
//! [`defaults`]; `tandem_gateway` turns a validated config into its runtime settings.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tandem_auth::AuthConfig;

/// The default of every optional gateway key, in one place.
pub mod defaults {
    /// Largest request body accepted (413 beyond): 4 MiB, enough for a package document.
    pub const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
    /// Longest a request may take before it is answered with 504.
    pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
    /// Longest to wait for a TCP connection to the Ledger API.
    pub const LEDGER_CONNECT_TIMEOUT_MS: u64 = 5_000;
    /// How long a user's rights (from the participant's user management) are reused.
    pub const RIGHTS_CACHE_TTL_MS: u64 = 2_000;
    /// Most users whose rights are remembered at once.
    pub const RIGHTS_CACHE_CAPACITY: u64 = 10_000;
    /// Memory bound of the local query cache (contracts of all parties): 256 MiB.
    pub const CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;
    /// Longest a query waits for the cache to reach the offset it needs.
    pub const CACHE_WAIT_TIMEOUT_MS: u64 = 10_000;
    /// Interval of websocket heartbeats (a ping frame and a `heartbeat` message).
    pub const WS_HEARTBEAT_MS: u64 = 10_000;
    /// A bounded list read from an open-ended stream (completions) ends after this much silence.
    pub const STREAM_IDLE_TIMEOUT_MS: u64 = 1_000;
    /// Most items one list answer (updates, completions, active contracts) holds.
    pub const MAX_LIST_ITEMS: u64 = 10_000;
    /// Page size of `POST /v2/query` when the request names none.
    pub const QUERY_DEFAULT_PAGE_SIZE: u32 = 100;
    /// Largest page size of `POST /v2/query`.
    pub const QUERY_MAX_PAGE_SIZE: u32 = 1_000;
}

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
    /// How bearer tokens are verified (`[gateways.auth]`); required.
    pub auth: AuthConfig,
    /// Origins browser apps may call from (`Access-Control-Allow-Origin`), e.g.
    /// `["https://app.example"]`; `["*"]` allows any origin. Empty: no CORS headers.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    #[serde(default = "max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default = "request_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "ledger_connect_timeout_ms")]
    pub ledger_connect_timeout_ms: u64,
    #[serde(default = "rights_cache_ttl_ms")]
    pub rights_cache_ttl_ms: u64,
    #[serde(default = "rights_cache_capacity")]
    pub rights_cache_capacity: u64,
    #[serde(default = "cache_max_bytes")]
    pub cache_max_bytes: u64,
    #[serde(default = "cache_wait_timeout_ms")]
    pub cache_wait_timeout_ms: u64,
    #[serde(default = "ws_heartbeat_ms")]
    pub ws_heartbeat_ms: u64,
    #[serde(default = "stream_idle_timeout_ms")]
    pub stream_idle_timeout_ms: u64,
    #[serde(default = "max_list_items")]
    pub max_list_items: u64,
    #[serde(default = "query_default_page_size")]
    pub query_default_page_size: u32,
    #[serde(default = "query_max_page_size")]
    pub query_max_page_size: u32,
    /// Threads serving client connections, each with its own single-threaded runtime
    /// (`tandem_nodes::workers`); 0, the default: one per CPU.
    #[serde(default)]
    pub workers: usize,
}

// serde wants functions for defaults; each returns the constant of `defaults`.
fn max_body_bytes() -> u64 {
    defaults::MAX_BODY_BYTES
}
fn request_timeout_ms() -> u64 {
    defaults::REQUEST_TIMEOUT_MS
}
fn ledger_connect_timeout_ms() -> u64 {
    defaults::LEDGER_CONNECT_TIMEOUT_MS
}
fn rights_cache_ttl_ms() -> u64 {
    defaults::RIGHTS_CACHE_TTL_MS
}
fn rights_cache_capacity() -> u64 {
    defaults::RIGHTS_CACHE_CAPACITY
}
fn cache_max_bytes() -> u64 {
    defaults::CACHE_MAX_BYTES
}
fn cache_wait_timeout_ms() -> u64 {
    defaults::CACHE_WAIT_TIMEOUT_MS
}
fn ws_heartbeat_ms() -> u64 {
    defaults::WS_HEARTBEAT_MS
}
fn stream_idle_timeout_ms() -> u64 {
    defaults::STREAM_IDLE_TIMEOUT_MS
}
fn max_list_items() -> u64 {
    defaults::MAX_LIST_ITEMS
}
fn query_default_page_size() -> u32 {
    defaults::QUERY_DEFAULT_PAGE_SIZE
}
fn query_max_page_size() -> u32 {
    defaults::QUERY_MAX_PAGE_SIZE
}

impl GatewayConfig {
    /// A config with every optional key at its default (for tests and tools).
    pub fn new(name: &str, listen: SocketAddr, ledger_api: &str, auth: AuthConfig) -> Self {
        Self {
            name: name.to_owned(),
            listen,
            advertised_url: None,
            ledger_api: ledger_api.to_owned(),
            auth,
            cors_allowed_origins: Vec::new(),
            max_body_bytes: defaults::MAX_BODY_BYTES,
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            ledger_connect_timeout_ms: defaults::LEDGER_CONNECT_TIMEOUT_MS,
            rights_cache_ttl_ms: defaults::RIGHTS_CACHE_TTL_MS,
            rights_cache_capacity: defaults::RIGHTS_CACHE_CAPACITY,
            cache_max_bytes: defaults::CACHE_MAX_BYTES,
            cache_wait_timeout_ms: defaults::CACHE_WAIT_TIMEOUT_MS,
            ws_heartbeat_ms: defaults::WS_HEARTBEAT_MS,
            stream_idle_timeout_ms: defaults::STREAM_IDLE_TIMEOUT_MS,
            max_list_items: defaults::MAX_LIST_ITEMS,
            query_default_page_size: defaults::QUERY_DEFAULT_PAGE_SIZE,
            query_max_page_size: defaults::QUERY_MAX_PAGE_SIZE,
            workers: 0,
        }
    }

    /// The URL clients reach this gateway at: `advertised_url`, or `http://<listen>`.
    pub fn public_url(&self) -> String {
        match &self.advertised_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Checks the gateway's own keys; errors name the key under `key` (`gateways[0]`).
    pub fn validate(&self, key: &str) -> Result<(), (String, String)> {
        let err = |k: &str, why: &str| Err((format!("{key}.{k}"), why.to_owned()));
        if self.ledger_api.trim().is_empty() {
            return err("ledger_api", "must not be empty");
        }
        if !(self.ledger_api.starts_with("http://") || self.ledger_api.starts_with("https://")) {
            return err("ledger_api", "must be an http:// or https:// URL");
        }
        if let Some(url) = &self.advertised_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return err("advertised_url", "must be an http:// or https:// URL");
            }
        }
        self.auth
            .validate()
            .map_err(|e| (format!("{key}.{}", e.key), e.message))?;
        for (i, origin) in self.cors_allowed_origins.iter().enumerate() {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && http_header_safe(origin));
            if !ok {
                return err(
                    &format!("cors_allowed_origins[{i}]"),
                    "must be \"*\" or an origin like https://app.example (scheme, host, optional port, no path)",
                );
            }
        }
        if self.cors_allowed_origins.len() > 1 && self.cors_allowed_origins.iter().any(|o| o == "*")
        {
            return err("cors_allowed_origins", "\"*\" must be the only entry");
        }
        if self.workers > crate::workers::MAX_WORKERS {
            return err(
                "workers",
                &format!("at most {} (0: one per CPU)", crate::workers::MAX_WORKERS),
            );
        }
        for (k, value) in [
            ("max_body_bytes", self.max_body_bytes),
            ("request_timeout_ms", self.request_timeout_ms),
            ("ledger_connect_timeout_ms", self.ledger_connect_timeout_ms),
            ("rights_cache_capacity", self.rights_cache_capacity),
            ("cache_max_bytes", self.cache_max_bytes),
            ("cache_wait_timeout_ms", self.cache_wait_timeout_ms),
            ("ws_heartbeat_ms", self.ws_heartbeat_ms),
            ("stream_idle_timeout_ms", self.stream_idle_timeout_ms),
            ("max_list_items", self.max_list_items),
        ] {
            if value == 0 {
                return err(k, "must be positive");
            }
        }
        if self.max_body_bytes > usize::MAX as u64 {
            return err("max_body_bytes", "too large");
        }
        if self.query_default_page_size == 0 || self.query_max_page_size == 0 {
            return err("query_default_page_size", "page sizes must be positive");
        }
        if self.query_default_page_size > self.query_max_page_size {
            return err(
                "query_default_page_size",
                "must not exceed query_max_page_size",
            );
        }
        Ok(())
    }
}

fn http_header_safe(value: &str) -> bool {
    value.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthConfig {
        AuthConfig {
            hs256_secret: Some("0123456789abcdef0123456789abcdef".into()),
            allow_unsafe: true,
            ..AuthConfig::default()
        }
    }

    fn config() -> GatewayConfig {
        GatewayConfig::new(
            "gw",
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:1",
            auth(),
        )
    }

    #[test]
    fn toml_defaults_and_unknown_keys() {
        let parsed: GatewayConfig = toml::from_str(
            r#"
            name = "gw"
            listen = "127.0.0.1:7575"
            ledger_api = "http://127.0.0.1:5001"
            cors_allowed_origins = ["https://app.example"]
            [auth]
            hs256_secret = "0123456789abcdef0123456789abcdef"
            unsafe = true
            "#,
        )
        .unwrap();
        assert_eq!(parsed.max_body_bytes, defaults::MAX_BODY_BYTES);
        assert_eq!(parsed.public_url(), "http://127.0.0.1:7575");
        parsed.validate("gateways[0]").unwrap();
        let err = toml::from_str::<GatewayConfig>(
            "name='g'\nlisten='127.0.0.1:1'\nledger_api='http://x'\nbody_limit=1\n[auth]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = config();
        c.auth = AuthConfig::default();
        assert_eq!(c.validate("gateways[0]").unwrap_err().0, "gateways[0].auth");
        let mut c = config();
        c.cors_allowed_origins = vec!["https://a.example/".into()];
        assert_eq!(
            c.validate("gateways[1]").unwrap_err().0,
            "gateways[1].cors_allowed_origins[0]"
        );
        let mut c = config();
        c.max_body_bytes = 0;
        assert_eq!(
            c.validate("gateways[0]").unwrap_err().0,
            "gateways[0].max_body_bytes"
        );
        let mut c = config();
        c.ledger_api = "127.0.0.1:5001".into();
        assert_eq!(
            c.validate("gateways[0]").unwrap_err().0,
            "gateways[0].ledger_api"
        );
        let mut c = config();
        c.workers = 100_000;
        assert_eq!(
            c.validate("gateways[0]").unwrap_err(),
            (
                "gateways[0].workers".to_owned(),
                "at most 256 (0: one per CPU)".to_owned()
            )
        );
    }
}
