//! [`Verifier`]: token in, [`Claims`] or [`AuthError`] out. The order of checks is fixed: shape
//! and header (`alg` must be one we accept), key (by `kid` and algorithm), signature, times
//! (`exp`, `nbf`, `iat` with the leeway), issuer, then format and audience. Nothing about the
//! payload is believed before the signature is checked.

use crate::claims::{classify, seconds, AudienceRules, Claims};
use crate::config::AuthConfig;
use crate::error::{shown, AuthError, ConfigError, Reason};
use crate::jwks::JwksCache;
use crate::keys::{load_pem_file, VerifyKey, ASYMMETRIC};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest token accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verifies access tokens. Cheap to clone (one `Arc`); share one per service.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("static_keys", &self.inner.static_keys)
            .field("jwks", &self.inner.jwks.is_some())
            .field("accepted", &self.inner.accepted)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// PEM keys and the unsafe HS256 secret; tried for any `kid`.
    static_keys: Vec<VerifyKey>,
    jwks: Option<JwksCache>,
    accepted: Vec<Algorithm>,
    leeway: u64,
    require_exp: bool,
    issuer: Option<String>,
    audience: AudienceRules,
    cache: Option<TokenCache>,
}

/// Verified tokens by the BLAKE3 hash of the token (so no bearer token is kept in memory; a
/// collision would need a broken cryptographic hash), with the JWKS epoch they were verified
/// under. BLAKE3 rather than SHA-256: this runs on every request, and on CPUs without SHA
/// extensions it is several times faster.
type TokenCache = moka::sync::Cache<[u8; 32], (u64, Arc<Claims>)>;

/// The parts of the header we look at before trusting anything.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

impl Verifier {
    /// Validates the config, reads the PEM files and prepares the JWKS client (the key set is
    /// fetched on first use, or by [`Verifier::refresh_jwks`]).
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        // With both jsonwebtoken backends compiled in (feature unification), it would panic
        // without an explicit choice; when one is already installed this is a no-op.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

        let mut static_keys = Vec::new();
        for (index, path) in config.pem_files.iter().enumerate() {
            let key = load_pem_file(path)
                .map_err(|e| ConfigError::new(format!("auth.pem_files[{index}]"), e))?;
            static_keys.push(key);
        }
        let mut accepted = ASYMMETRIC.to_vec();
        if let Some(secret) = &config.hs256_secret {
            // validate() has checked `unsafe = true`.
            tracing::warn!("HS256 tokens are accepted (auth.unsafe = true): anyone with the secret can mint tokens");
            static_keys.push(VerifyKey {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
                origin: "auth.hs256_secret".to_owned(),
            });
            accepted.push(Algorithm::HS256);
        }
        let jwks = match &config.jwks_url {
            Some(url) => Some(JwksCache::new(
                config.jwks_url_parsed(url)?,
                config.jwks_ca_file.as_deref(),
                Duration::from_secs(config.jwks_refresh_floor_seconds),
                Duration::from_secs(config.jwks_max_age_seconds),
                Duration::from_millis(config.jwks_timeout_ms),
            )?),
            None => None,
        };
        let cache =
            (config.token_cache_ttl_seconds > 0 && config.token_cache_capacity > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(config.token_cache_capacity)
                    .time_to_live(Duration::from_secs(config.token_cache_ttl_seconds))
                    .build()
            });
        Ok(Self {
            inner: Arc::new(Inner {
                static_keys,
                jwks,
                accepted,
                leeway: config.leeway_seconds,
                require_exp: config.require_exp,
                issuer: config.issuer.clone(),
                audience: AudienceRules {
                    participant_id: config.participant_id.clone(),
                    audience: config.audience.clone(),
                    scope: config.scope.clone(),
                },
                cache,
            }),
        })
    }

    /// Verifies a token (the part after `Bearer `). Async because an unknown `kid` may need a
    /// JWKS fetch; with PEM keys only it never waits.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let inner = &*self.inner;
        if token.is_empty() {
            return Err(AuthError::missing());
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::malformed(format!(
                "the token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let digest: [u8; 32] = blake3::hash(token.as_bytes()).into();
        let epoch = inner.jwks.as_ref().map_or(0, JwksCache::epoch);
        if let Some(claims) = inner.cached(&digest, epoch) {
            return Ok(claims);
        }
        let header = inner.header(token)?;
        let keys = inner.keys_for(&header).await?;
        let payload = inner.check_signature_and_times(token, &header, &keys)?;
        let claims = classify(&payload, &inner.audience)?;
        if let Some(cache) = &inner.cache {
            cache.insert(digest, (epoch, Arc::new(claims.clone())));
        }
        Ok(claims)
    }

    /// Fetches the JWKS now (unless fetched within the refresh floor) and returns how many
    /// usable keys it holds. A readiness probe can call it; `Ok(0)` without a JWKS URL.
    pub async fn refresh_jwks(&self) -> Result<usize, AuthError> {
        match &self.inner.jwks {
            Some(jwks) => jwks.refresh_now().await,
            None => Ok(0),
        }
    }

    /// Whether the verifier can check tokens without a fetch: true with PEM or HS256 keys, or
    /// once the JWKS has been fetched.
    pub fn is_ready(&self) -> bool {
        match &self.inner.jwks {
            Some(jwks) => jwks.loaded() || !self.inner.static_keys.is_empty(),
            None => true,
        }
    }

    /// The second after which a token with these claims is refused: its `exp` plus the leeway;
    /// `None` without an `exp`. A stream opened with the token should end then, not before.
    pub fn refused_after(&self, claims: &Claims) -> Option<u64> {
        claims
            .expires_at
            .map(|exp| exp.saturating_add(self.inner.leeway))
    }

    /// How many JWKS fetches were started (for metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks.as_ref().map_or(0, JwksCache::fetches)
    }
}

impl Inner {
    fn cached(&self, digest: &[u8; 32], epoch: u64) -> Option<Claims> {
        let cache = self.cache.as_ref()?;
        let (cached_epoch, claims) = cache.get(digest)?;
        let expired = claims
            .expires_at
            .is_some_and(|exp| exp.saturating_add(self.leeway) < now_seconds());
        if cached_epoch != epoch || expired {
            // The keys changed or the token expired: verify again (and refuse it, if so).
            cache.invalidate(digest);
            return None;
        }
        Some((*claims).clone())
    }

    /// Reads `alg` and `kid` from the header and refuses what we never accept, before any key
    /// is looked up.
    fn header(&self, token: &str) -> Result<Header, AuthError> {
        let mut parts = token.split('.');
        let (Some(encoded), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::malformed(
                "not a JWT: expected three dot-separated parts",
            ));
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| AuthError::malformed("the header is not base64url"))?;
        let header: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| AuthError::malformed("the header is not a JSON object"))?;
        if header.contains_key("crit") {
            // RFC 7515 §4.1.11: extensions we do not understand make the token invalid.
            return Err(AuthError::malformed(
                "critical header extensions are not supported",
            ));
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg,
            _ => return Err(AuthError::malformed("the header has no alg")),
        };
        let unsupported = || {
            AuthError::new(
                Reason::UnsupportedAlgorithm,
                format!("algorithm {} is not accepted", shown(alg)),
            )
        };
        let alg = match alg.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            "HS256" => Algorithm::HS256,
            _ => return Err(unsupported()),
        };
        if !self.accepted.contains(&alg) {
            return Err(unsupported());
        }
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(AuthError::malformed("kid must be a string")),
        };
        Ok(Header { alg, kid })
    }

    /// The keys to try: the JWKS key named by `kid` first (when there is a JWKS and a kid),
    /// then the static keys of the token's algorithm, which have no kid.
    async fn keys_for(&self, header: &Header) -> Result<Vec<VerifyKey>, AuthError> {
        let of_alg: Vec<VerifyKey> = self
            .static_keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .cloned()
            .collect();
        let Some(jwks) = &self.jwks else {
            return non_empty(of_alg, header.alg);
        };
        if header.kid.is_none() && !of_alg.is_empty() {
            return Ok(of_alg);
        }
        match jwks.keys_for(header.kid.as_deref(), header.alg).await {
            Ok(mut keys) => {
                keys.extend(of_alg);
                Ok(keys)
            }
            Err(_) if !of_alg.is_empty() => Ok(of_alg),
            Err(e) => Err(e),
        }
    }

    /// Tries the keys in turn; the first whose signature matches decides the outcome.
    fn check_signature_and_times(
        &self,
        token: &str,
        header: &Header,
        keys: &[VerifyKey],
    ) -> Result<Map<String, Value>, AuthError> {
        let validation = self.validation(header.alg);
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    self.check_issued_at(&data.claims)?;
                    return Ok(data.claims);
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(self.map_error(e.kind(), key)),
            }
        }
        Err(AuthError::new(
            Reason::BadSignature,
            format!("the {:?} signature does not verify", header.alg),
        ))
    }

    /// jsonwebtoken's defaults are lax (60 s leeway, `nbf` unchecked, `aud` checked only when
    /// present): every field is set here on purpose. The audience is checked by
    /// [`classify`], which knows the token format.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.leeway;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.aud = None;
        validation.sub = None;
        let mut required = Vec::new();
        if self.require_exp {
            required.push("exp");
        }
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn check_issued_at(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let Some(iat) = claims.get("iat") else {
            return Ok(());
        };
        let iat = seconds(iat).ok_or_else(|| AuthError::malformed("iat must be a number"))?;
        if iat > now_seconds().saturating_add(self.leeway) {
            return Err(AuthError::new(
                Reason::IssuedInFuture,
                "the token's issue time (iat) is in the future",
            ));
        }
        Ok(())
    }

    fn map_error(&self, kind: &ErrorKind, key: &VerifyKey) -> AuthError {
        match kind {
            ErrorKind::ExpiredSignature => AuthError::new(Reason::Expired, "the token has expired"),
            ErrorKind::ImmatureSignature => AuthError::new(
                Reason::NotYetValid,
                "the token is not valid yet (nbf is in the future)",
            ),
            ErrorKind::InvalidIssuer => AuthError::new(
                Reason::WrongIssuer,
                format!(
                    "the token's issuer is not {:?}",
                    self.issuer.as_deref().unwrap_or_default()
                ),
            ),
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::new(
                Reason::WrongIssuer,
                format!(
                    "the token has no issuer; expected {:?}",
                    self.issuer.as_deref().unwrap_or_default()
                ),
            ),
            ErrorKind::MissingRequiredClaim(claim) => {
                AuthError::malformed(format!("the token has no {claim} claim"))
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                AuthError::malformed(format!("the {claim} claim has the wrong type"))
            }
            ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => AuthError::new(
                Reason::UnsupportedAlgorithm,
                "the token's algorithm does not match its key",
            ),
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => AuthError::malformed("the token is not a well-formed JWT"),
            other => {
                // A key that cannot verify anything: the operator's problem, logged here.
                tracing::warn!(key = ?key, error = ?other, "a verification key failed");
                AuthError::new(Reason::BadSignature, "the signature could not be verified")
            }
        }
    }
}

fn non_empty(keys: Vec<VerifyKey>, alg: Algorithm) -> Result<Vec<VerifyKey>, AuthError> {
    if keys.is_empty() {
        return Err(AuthError::new(
            Reason::UnsupportedAlgorithm,
            format!("no configured key verifies {alg:?} tokens"),
        ));
    }
    Ok(keys)
}

/// How long from now until the start of `unix_second` (zero once it has passed): for a timer
/// that ends a stream at [`Verifier::refused_after`].
pub fn until_unix_second(unix_second: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(unix_second).saturating_sub(now)
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
