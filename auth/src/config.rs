//! The `[auth]` table of a gateway or participant, with every default in this module, and the
//! checks that need no I/O ([`AuthConfig::validate`]). Reading key files and building the HTTP
//! client happen in [`crate::Verifier::new`].

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use url::Url;

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the hash.
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Largest leeway accepted: clocks off by more than this need fixing, not tolerating.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// How tokens are verified. Embedded as `[auth]` in the topology file; unknown keys are errors.
///
/// ```toml
/// [auth]
/// participant_id = "participant1"
/// jwks_url = "https://idp.example/.well-known/jwks.json"
/// pem_files = ["keys/idp-rs256.pem"]
/// issuer = "https://idp.example/"
/// audience = "https://ledger.example/"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// PEM files, each holding one public key (`PUBLIC KEY`, `RSA PUBLIC KEY`) or certificate
    /// (`CERTIFICATE`; the first one in the file is used) for RS256, ES256 (P-256) or EdDSA
    /// (Ed25519). The algorithm follows from the key. Relative paths are taken from the working
    /// directory unless the embedding config calls [`AuthConfig::resolve_paths`].
    pub pem_files: Vec<PathBuf>,
    /// A JSON Web Key Set, fetched on first use, refreshed when a token names an unknown `kid`
    /// (at most once per `jwks_refresh_floor_seconds`) and when older than
    /// `jwks_max_age_seconds`. `https`, or `http` to a loopback address.
    pub jwks_url: Option<String>,
    /// Extra PEM root certificates trusted for `jwks_url`, besides the system's.
    pub jwks_ca_file: Option<PathBuf>,
    /// An HMAC secret for HS256 tokens. Anyone who knows it can mint tokens, so it is refused
    /// unless `unsafe = true`. At least 32 bytes.
    pub hs256_secret: Option<String>,
    /// Allows `hs256_secret` (development and tests only).
    #[serde(rename = "unsafe")]
    pub allow_unsafe: bool,
    /// This participant's id. Audience-based tokens must carry
    /// `https://daml.com/jwt/aud/participant/<participant_id>` in `aud`; custom-claims tokens
    /// restricted to a `participantId` must name this one.
    pub participant_id: Option<String>,
    /// The audience scope-based and custom-claims tokens must carry in `aud`. Unset: their `aud`
    /// may be absent, and if present must name `participant_id` or its audience URL.
    pub audience: Option<String>,
    /// The issuer every token must carry in `iss`. Unset: `iss` is not checked.
    pub issuer: Option<String>,
    /// The scope that marks a scope-based token (space-separated `scope` claim).
    pub scope: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
    /// Refuse tokens without `exp`. Daml allows them; a token that never expires cannot be
    /// revoked, so they are refused unless this is turned off.
    pub require_exp: bool,
    /// Minimum time between two JWKS fetches, however many unknown `kid`s arrive.
    pub jwks_refresh_floor_seconds: u64,
    /// Keys older than this are refetched on the next request (so removed keys stop working).
    pub jwks_max_age_seconds: u64,
    /// Timeout for one JWKS fetch (connect and body).
    pub jwks_timeout_ms: u64,
    /// How long a verified token is remembered (by its SHA-256), so repeated requests skip the
    /// signature check. 0 turns the cache off. A hit still checks `exp`.
    pub token_cache_ttl_seconds: u64,
    /// Most tokens remembered at once.
    pub token_cache_capacity: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            pem_files: Vec::new(),
            jwks_url: None,
            jwks_ca_file: None,
            hs256_secret: None,
            allow_unsafe: false,
            participant_id: None,
            audience: None,
            issuer: None,
            scope: "daml_ledger_api".to_owned(),
            leeway_seconds: 5,
            require_exp: true,
            jwks_refresh_floor_seconds: 10,
            jwks_max_age_seconds: 300,
            jwks_timeout_ms: 5_000,
            token_cache_ttl_seconds: 30,
            token_cache_capacity: 10_000,
        }
    }
}

impl AuthConfig {
    /// Checks everything that needs no I/O; every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pem_files.is_empty() && self.jwks_url.is_none() && self.hs256_secret.is_none() {
            return Err(ConfigError::new(
                "auth",
                "no key source: set pem_files, jwks_url or (unsafe) hs256_secret",
            ));
        }
        if let Some(secret) = &self.hs256_secret {
            if !self.allow_unsafe {
                return Err(ConfigError::new(
                    "auth.hs256_secret",
                    "HS256 lets anyone who knows the secret mint tokens; \
                     it is only accepted together with `unsafe = true`",
                ));
            }
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(ConfigError::new(
                    "auth.hs256_secret",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
                ));
            }
        }
        if let Some(url) = &self.jwks_url {
            self.jwks_url_parsed(url)?;
        }
        if self.jwks_ca_file.is_some() && self.jwks_url.is_none() {
            return Err(ConfigError::new(
                "auth.jwks_ca_file",
                "only meaningful with jwks_url",
            ));
        }
        for (key, value) in [
            ("auth.participant_id", &self.participant_id),
            ("auth.audience", &self.audience),
            ("auth.issuer", &self.issuer),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::new(key, "must not be empty (leave it out)"));
            }
        }
        if self.scope.is_empty() || self.scope.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "auth.scope",
                "must be one non-empty word without spaces",
            ));
        }
        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(ConfigError::new(
                "auth.leeway_seconds",
                format!("at most {MAX_LEEWAY_SECONDS}"),
            ));
        }
        if self.jwks_timeout_ms == 0 {
            return Err(ConfigError::new("auth.jwks_timeout_ms", "must be positive"));
        }
        Ok(())
    }

    /// Makes relative file paths (`pem_files`, `jwks_ca_file`) relative to `base`, usually the
    /// directory of the file this table was read from.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in self.pem_files.iter_mut().chain(self.jwks_ca_file.as_mut()) {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    pub(crate) fn jwks_url_parsed(&self, url: &str) -> Result<Url, ConfigError> {
        let parsed = Url::parse(url)
            .map_err(|e| ConfigError::new("auth.jwks_url", format!("not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => Ok(parsed),
            "http" if is_loopback(&parsed) => Ok(parsed),
            "http" => Err(ConfigError::new(
                "auth.jwks_url",
                "must be https (http is allowed only to a loopback address)",
            )),
            other => Err(ConfigError::new(
                "auth.jwks_url",
                format!("unsupported scheme {other:?}; use https"),
            )),
        }
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_jwks(url: &str) -> AuthConfig {
        AuthConfig {
            jwks_url: Some(url.to_owned()),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn defaults_are_strict_and_need_a_key_source() {
        let err = AuthConfig::default().validate().unwrap_err();
        assert_eq!(err.key, "auth");
        let config = AuthConfig::default();
        assert!(config.require_exp);
        assert!(!config.allow_unsafe);
        assert_eq!(config.leeway_seconds, 5);
    }

    #[test]
    fn hs256_needs_unsafe_and_a_long_secret() {
        let mut config = AuthConfig {
            hs256_secret: Some("x".repeat(32)),
            ..AuthConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "auth.hs256_secret");
        assert!(err.message.contains("unsafe = true"), "{err}");
        config.allow_unsafe = true;
        config.validate().unwrap();
        config.hs256_secret = Some("short".to_owned());
        assert_eq!(config.validate().unwrap_err().key, "auth.hs256_secret");
    }

    #[test]
    fn jwks_url_must_be_https_or_loopback_http() {
        with_jwks("https://idp.example/jwks").validate().unwrap();
        with_jwks("http://127.0.0.1:8080/jwks").validate().unwrap();
        with_jwks("http://[::1]:8080/jwks").validate().unwrap();
        with_jwks("http://localhost/jwks").validate().unwrap();
        for bad in ["http://idp.example/jwks", "ftp://idp.example/", "not a url"] {
            let err = with_jwks(bad).validate().unwrap_err();
            assert_eq!(err.key, "auth.jwks_url", "{bad}");
        }
    }

    #[test]
    fn toml_uses_unsafe_and_refuses_unknown_keys() {
        let config: AuthConfig = toml::from_str(
            r#"
            hs256_secret = "0123456789abcdef0123456789abcdef"
            unsafe = true
            participant_id = "p1"
            "#,
        )
        .unwrap();
        assert!(config.allow_unsafe);
        assert_eq!(config.participant_id.as_deref(), Some("p1"));
        assert_eq!(config.scope, "daml_ledger_api");
        config.validate().unwrap();
        let err = toml::from_str::<AuthConfig>("jwks_uri = \"https://x/\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_a_base() {
        let mut config = AuthConfig {
            pem_files: vec!["a.pem".into(), "/abs/b.pem".into()],
            ..AuthConfig::default()
        };
        config.resolve_paths(Path::new("/etc/tandem"));
        assert_eq!(
            config.pem_files,
            vec![
                PathBuf::from("/etc/tandem/a.pem"),
                PathBuf::from("/abs/b.pem")
            ]
        );
    }
}
