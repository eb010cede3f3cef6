//! The JWKS cache: the key set behind an `ArcSwap` (lock-free reads), refetched when a token
//! names an unknown `kid` or the set is older than its max age. Fetches are serialised by one
//! async mutex: a caller that waited while another fetched uses that result instead of fetching
//! again (concurrent misses coalesce), and no fetch starts within the refresh floor of the
//! previous one. A failed fetch keeps the old keys.

use crate::error::{shown, AuthError, ConfigError, Reason};
use crate::keys::{parse_jwks, KeySet, VerifyKey};
use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use reqwest::Client;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use url::Url;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// What the cache holds between fetches.
#[derive(Debug, Default)]
struct Snapshot {
    keys: Arc<KeySet>,
    /// When `keys` were fetched; `None` before the first successful fetch.
    fetched_at: Option<Instant>,
    /// Whether the most recent attempt failed (then an unknown kid is `jwks_unavailable`).
    last_failed: bool,
    /// SHA-256 of the document `keys` came from, to notice any change (even of a key whose
    /// `kid` stayed the same).
    digest: Option<[u8; 32]>,
}

#[derive(Debug, Default)]
struct FetchState {
    last_attempt: Option<Instant>,
}

/// Whether a refresh should wait for a fetch another caller is running.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    No,
}

/// One JWKS URL and its cached keys.
pub(crate) struct JwksCache {
    url: Url,
    client: Client,
    floor: Duration,
    max_age: Duration,
    snapshot: ArcSwap<Snapshot>,
    fetch: Mutex<FetchState>,
    /// Finished fetch attempts; a waiter that sees it move knows someone fetched for it.
    attempts: AtomicU64,
    /// Successful fetches that brought a different document; verified-token caches key on it.
    epoch: AtomicU64,
    fetches: AtomicU64,
}

impl JwksCache {
    pub fn new(
        url: Url,
        ca_file: Option<&Path>,
        floor: Duration,
        max_age: Duration,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            client: http_client(&url, ca_file, timeout)?,
            url,
            floor,
            max_age,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            fetch: Mutex::new(FetchState::default()),
            attempts: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        })
    }

    /// The keys for a token's `kid` and algorithm, fetching the set if the kid is unknown or
    /// the set is stale. An empty answer is an error saying why.
    pub async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<VerifyKey>, AuthError> {
        let attempts = self.attempts.load(Ordering::Acquire);
        let snapshot = self.snapshot.load_full();
        let found = snapshot.keys.find(kid, alg);
        let stale = snapshot
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.max_age);
        if !found.is_empty() && !stale {
            return Ok(found);
        }
        // A stale set is refreshed by whoever gets the lock; the others go on with what they
        // have. An unknown kid waits for the fetch, which may bring it.
        let wait = if found.is_empty() {
            Wait::Yes
        } else {
            Wait::No
        };
        self.refresh(attempts, wait).await;
        let snapshot = self.snapshot.load_full();
        let found = snapshot.keys.find(kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        let named = kid.map_or_else(|| "(none)".to_owned(), shown);
        if snapshot.last_failed {
            return Err(AuthError::new(
                Reason::JwksUnavailable,
                format!(
                    "the signing key {named} is not known and the key set could not be fetched"
                ),
            ));
        }
        Err(AuthError::new(
            Reason::UnknownKid,
            format!("no {alg:?} signing key with kid {named} in the key set"),
        ))
    }

    /// Fetches now unless another fetch finished since `seen_attempts` or the floor forbids it.
    async fn refresh(&self, seen_attempts: u64, wait: Wait) {
        let mut state = match wait {
            Wait::Yes => self.fetch.lock().await,
            Wait::No => match self.fetch.try_lock() {
                Ok(state) => state,
                Err(_) => return,
            },
        };
        if self.attempts.load(Ordering::Acquire) != seen_attempts {
            return;
        }
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.floor)
        {
            return;
        }
        state.last_attempt = Some(Instant::now());
        self.fetch_locked().await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    /// Fetches now, respecting the floor (waits for a running fetch). For readiness probes and
    /// operators; requests refresh on their own.
    pub async fn refresh_now(&self) -> Result<usize, AuthError> {
        let attempts = self.attempts.load(Ordering::Acquire);
        self.refresh(attempts, Wait::Yes).await;
        let snapshot = self.snapshot.load();
        if snapshot.last_failed || snapshot.fetched_at.is_none() {
            return Err(AuthError::new(
                Reason::JwksUnavailable,
                "the key set could not be fetched",
            ));
        }
        Ok(snapshot.keys.len())
    }

    async fn fetch_locked(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let old = self.snapshot.load_full();
        match self.download().await {
            Ok((keys, digest)) => {
                if keys.len() == 0 {
                    tracing::warn!(url = %self.url, "the JWKS holds no usable key");
                }
                if old.fetched_at.is_some() && old.keys.kids() != keys.kids() {
                    tracing::info!(url = %self.url, kids = ?keys.kids(), "JWKS keys changed");
                }
                if old.digest != Some(digest) {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                }
                self.snapshot.store(Arc::new(Snapshot {
                    keys: Arc::new(keys),
                    fetched_at: Some(Instant::now()),
                    last_failed: false,
                    digest: Some(digest),
                }));
            }
            Err(why) => {
                // Logged once here; callers only learn that the set is unavailable.
                tracing::warn!(url = %self.url, why, "JWKS fetch failed; keeping the previous keys");
                self.snapshot.store(Arc::new(Snapshot {
                    keys: old.keys.clone(),
                    fetched_at: old.fetched_at,
                    last_failed: true,
                    digest: old.digest,
                }));
            }
        }
    }

    async fn download(&self) -> Result<(KeySet, [u8; 32]), String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "the document is larger than {MAX_JWKS_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let digest = Sha256::digest(&body).into();
        Ok((parse_jwks(&body)?, digest))
    }

    /// Changes whenever a fetch brings a different document.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether a fetch has succeeded at least once.
    pub fn loaded(&self) -> bool {
        self.snapshot.load().fetched_at.is_some()
    }

    /// How many fetches were started.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

/// reqwest over rustls with the `ring` provider, passed in explicitly so nothing depends on a
/// process-wide default provider. No redirects (the URL is the operator's, not a server's), no
/// proxy for loopback URLs.
fn http_client(
    url: &Url,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Client, ConfigError> {
    let tls = tls_config(url, ca_file)?;
    let mut builder = Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("tandem-auth/", env!("CARGO_PKG_VERSION")));
    if crate::config::is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| {
        ConfigError::new(
            "auth.jwks_url",
            format!("cannot build the HTTP client: {e}"),
        )
    })
}

fn tls_config(url: &Url, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("auth.jwks_url", format!("TLS setup failed: {e}")))?;
    if url.scheme() != "https" {
        // Plain HTTP never uses the TLS config; an empty trust store keeps the system's out.
        return Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth());
    }
    let extra = match ca_file {
        Some(path) => read_certificates(path)?,
        None => Vec::new(),
    };
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
        .map_err(|e| {
            ConfigError::new("auth.jwks_url", format!("cannot load trusted roots: {e}"))
        })?;
    Ok(builder
        .dangerous() // Not dangerous: the platform verifier is the standard one, plus extra roots.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

fn read_certificates(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| {
        ConfigError::new("auth.jwks_ca_file", format!("{}: {e}", path.display()))
    };
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate found"));
    }
    Ok(certs)
}
