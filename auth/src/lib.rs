//! tandem-auth: the one JWT verifier of design.md §9, shared by the gateway (HTTP and websocket)
//! and the participant's gRPC Ledger API. Build a [`Verifier`] from an [`AuthConfig`] (the
//! `[auth]` table), cut the token out of a request with [`bearer_token`] or
//! [`websocket_token`], and call [`Verifier::verify`]: it returns [`Claims`] or an
//! [`AuthError`] whose [`Reason`] is stable and machine-readable.
//!
//! # Keys
//! RS256, ES256 (P-256) and EdDSA (Ed25519) public keys from PEM files (keys or certificates)
//! and from a JWKS URL (cached, refetched on an unknown `kid` at most once per refresh floor,
//! and when older than the max age). HS256 from a shared secret only with `unsafe = true`. Each
//! key is pinned to the algorithm of its type, so a token cannot choose how it is checked:
//! `alg: none` and HS256 signed with a public key are refused.
//!
//! # Token formats (as Daml and Canton define them)
//! - **Audience-based** user token: `aud` contains
//!   `https://daml.com/jwt/aud/participant/<participantId>`, `sub` is the user id.
//! - **Scope-based** user token: the space-separated `scope` contains `daml_ledger_api`, `sub`
//!   is the user id; `aud` must contain the configured `audience` if one is set.
//! - **Custom claims** (legacy): `{"https://daml.com/ledger-api": {"actAs": [..], "readAs":
//!   [..], "admin": bool, "applicationId": .., "participantId": .., "ledgerId": ..}}`, or the
//!   same fields at the top level (the flattened form). The rights are in the token.
//!
//! User tokens carry no rights: the caller looks them up in the participant's user management.
//! Every token is checked for `exp` (required unless configured otherwise), `nbf`, `iat` (not
//! in the future), `iss` (when configured) and `aud`, with a small leeway (5 s by default).
//!
//! This crate does not authorize (who may act as whom) and does not know HTTP or gRPC types;
//! it must stay usable from both servers.

mod bearer;
mod claims;
mod config;
mod error;
mod jwks;
mod keys;
mod verifier;

pub use bearer::{bearer_token, websocket_token, WEBSOCKET_TOKEN_PREFIX};
pub use claims::{
    Claims, Grant, LegacyRights, TokenFormat, DAML_CLAIMS, PARTICIPANT_AUDIENCE_PREFIX,
};
pub use config::{AuthConfig, MAX_LEEWAY_SECONDS, MIN_HS256_SECRET_BYTES};
pub use error::{AuthError, ConfigError, Reason};
pub use verifier::{until_unix_second, Verifier, MAX_TOKEN_BYTES};

/// Mints a scope-based token (`sub` = `user`, scope `daml_ledger_api`) signed with an HS256
/// `secret`, valid for `ttl_seconds`: what `tandem token` prints for trying a local topology
/// whose gateways accept the (unsafe) shared secret. Never for production keys.
pub fn mint_hs256_dev_token(
    secret: &str,
    user: &str,
    ttl_seconds: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "sub": user,
        "scope": "daml_ledger_api",
        "iat": now,
        "exp": now + ttl_seconds,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}
