//! Test keys (generated per run), token minting and a JWKS server on 127.0.0.1:0.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tandem_auth::{AuthConfig, Verifier};

pub const ISSUER: &str = "https://idp.test/";
pub const PARTICIPANT: &str = "participant1";

/// A key pair with everything a test needs: the signing key, the public key as PEM, as a
/// self-signed certificate and as a JWK.
#[derive(Clone)]
pub struct TestKey {
    pub alg: Algorithm,
    pub private_pem: String,
    pub public_pem: String,
    pub certificate_pem: String,
    /// The public JWK without `kid`.
    jwk: Value,
}

impl TestKey {
    pub fn rsa() -> Self {
        // RSA key generation is slow in debug builds: one key per test binary.
        static RSA: OnceLock<TestKey> = OnceLock::new();
        RSA.get_or_init(|| {
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            let public = private.to_public_key();
            let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
            let jwk = json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            });
            TestKey {
                alg: Algorithm::RS256,
                public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
                certificate_pem: certificate(&private_pem),
                private_pem,
                jwk,
            }
        })
        .clone()
    }

    pub fn ec() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65);
        Self::from_rcgen(
            Algorithm::ES256,
            &pair,
            json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        )
    }

    pub fn ed() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key_raw());
        Self::from_rcgen(
            Algorithm::EdDSA,
            &pair,
            json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
        )
    }

    fn from_rcgen(alg: Algorithm, pair: &rcgen::KeyPair, jwk: Value) -> Self {
        let private_pem = pair.serialize_pem();
        Self {
            alg,
            public_pem: pair.public_key_pem(),
            certificate_pem: certificate(&private_pem),
            private_pem,
            jwk,
        }
    }

    /// The public JWK with this `kid` and `alg`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(alg_name(self.alg));
        jwk
    }

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.private_pem.as_bytes()).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(self.private_pem.as_bytes()).unwrap(),
            other => panic!("no test keys for {other:?}"),
        }
    }

    /// A token over `claims`, with `kid` in the header if given.
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }
}

fn certificate(private_pem: &str) -> String {
    let pair = rcgen::KeyPair::from_pem(private_pem).unwrap();
    let params = rcgen::CertificateParams::new(vec!["idp.test".to_owned()]).unwrap();
    params.self_signed(&pair).unwrap().pem()
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        other => panic!("unexpected {other:?}"),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A valid scope-based token's claims for `user` (issuer set, expiring in 5 minutes).
pub fn scope_claims(user: &str) -> Value {
    json!({
        "sub": user,
        "scope": "daml_ledger_api",
        "iss": ISSUER,
        "iat": now(),
        "exp": now() + 300,
    })
}

/// PEM files in a temporary directory (kept alive by the returned guard).
pub struct PemFiles {
    _dir: tempfile::TempDir,
    pub paths: Vec<PathBuf>,
}

pub fn pem_files(pems: &[&str]) -> PemFiles {
    let dir = tempfile::tempdir().unwrap();
    let paths = pems
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            let path = dir.path().join(format!("key{i}.pem"));
            std::fs::write(&path, pem).unwrap();
            path
        })
        .collect();
    PemFiles { _dir: dir, paths }
}

/// The config most tests use: the given PEM files, our issuer and participant.
pub fn pem_config(files: &PemFiles) -> AuthConfig {
    AuthConfig {
        pem_files: files.paths.clone(),
        issuer: Some(ISSUER.to_owned()),
        participant_id: Some(PARTICIPANT.to_owned()),
        ..AuthConfig::default()
    }
}

/// A verifier trusting the RSA test key from a PEM file, plus its files' guard.
pub fn rsa_verifier() -> (Verifier, PemFiles) {
    let files = pem_files(&[&TestKey::rsa().public_pem]);
    (Verifier::new(&pem_config(&files)).unwrap(), files)
}

/// A JWKS server on 127.0.0.1:0 whose keys a test changes while it runs.
pub struct JwksServer {
    pub url: String,
    state: Arc<ServerState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct ServerState {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let state = Arc::new(ServerState {
            keys: Mutex::new(keys),
            ..ServerState::default()
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// A config that trusts only this server's keys, refetching as fast as asked.
    pub fn config(&self, refresh_floor_seconds: u64) -> AuthConfig {
        AuthConfig {
            jwks_url: Some(self.url.clone()),
            issuer: Some(ISSUER.to_owned()),
            participant_id: Some(PARTICIPANT.to_owned()),
            jwks_refresh_floor_seconds: refresh_floor_seconds,
            ..AuthConfig::default()
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
