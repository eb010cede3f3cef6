//! Why a token was refused ([`AuthError`], with a stable [`Reason`]) and why a configuration was
//! refused ([`ConfigError`]). Nothing here decides anything; the verifier builds these values.

use serde::Serialize;
use std::fmt;

/// The machine-readable cause of a refused token. The string forms ([`Reason::as_str`]) are
/// stable: clients and dashboards may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// No token was given (no `Authorization` header, no `jwt.token.` subprotocol, empty string).
    Missing,
    /// Not a compact JWS, bad base64 or JSON, a claim of the wrong type, or a required claim
    /// (`exp`, `sub`) absent.
    Malformed,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `aud` does not name this service or participant, or names another participant.
    WrongAudience,
    /// `iss` is missing or not the configured issuer.
    WrongIssuer,
    /// No configured key of the token's algorithm verifies the signature.
    BadSignature,
    /// The header's `alg` is `none`, not one we accept, or not the algorithm of any key we have.
    UnsupportedAlgorithm,
    /// The header's `kid` names no key in the JWKS, even after a refresh.
    UnknownKid,
    /// The JWKS could not be fetched, so the token's key is not known.
    JwksUnavailable,
    /// A valid JWT that is none of the Daml token formats (audience-based, scope-based with the
    /// configured scope, custom claims).
    UnrecognizedClaims,
}

impl Reason {
    /// The stable snake_case name, e.g. `"wrong_audience"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::WrongAudience => "wrong_audience",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::BadSignature => "bad_signature",
            Reason::UnsupportedAlgorithm => "unsupported_algorithm",
            Reason::UnknownKid => "unknown_kid",
            Reason::JwksUnavailable => "jwks_unavailable",
            Reason::UnrecognizedClaims => "unrecognized_claims",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: a stable [`Reason`] and a message for the caller. The message never holds
/// internals (URLs, library errors); those are logged where they happen. The gateway answers it
/// with 401 and a problem document, the participant with gRPC `UNAUTHENTICATED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    reason: Reason,
    message: String,
}

impl AuthError {
    /// An error with this reason and message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Why the token was refused.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// What to tell the caller, in a sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `WWW-Authenticate` value for a 401 answer (RFC 6750 §3): a bare `Bearer` challenge
    /// when no token was sent, otherwise `error="invalid_token"` with the message.
    pub fn www_authenticate(&self) -> String {
        if self.reason == Reason::Missing {
            return "Bearer".to_owned();
        }
        // RFC 6750 allows only printable ASCII except `"` and `\` in error_description.
        let description: String = self
            .message
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                ' '..='~' => c,
                _ => '?',
            })
            .collect();
        format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
    }

    pub(crate) fn missing() -> Self {
        Self::new(Reason::Missing, "no access token was given")
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::new(Reason::Malformed, message)
    }
}

/// A refused `[auth]` configuration. `key` names the offending key inside the `[auth]` table,
/// e.g. `auth.jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, e.g. `auth.hs256_secret`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Shows an attacker-controlled string (a `kid`, an `alg`) in a message: quoted, escaped, cut.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let cut: String = value.chars().take(MAX).collect();
    let mut out = format!("{cut:?}");
    if value.chars().count() > MAX {
        out.push('…');
    }
    out
}
