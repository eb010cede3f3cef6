//! JWKS over https: a server whose certificate comes from a test CA is trusted only when that
//! CA is configured in `jwks_ca_file`. The server is a thread speaking just enough HTTP/1.1
//! over rustls (no TLS server dependency needed).

use crate::support::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tandem_auth::{AuthConfig, Reason, Verifier};

struct TlsJwksServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsJwksServer {
    /// Serves `body` to every request on 127.0.0.1:0 with a certificate for 127.0.0.1 issued
    /// by a fresh CA, whose PEM is returned.
    fn start(body: String) -> (Self, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();

        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(leaf.pem().as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                // A failed handshake (an untrusting client) just ends that connection.
                let _ = answer(stream, config.clone(), &body);
            }
        });
        let server = Self {
            addr,
            stop,
            thread: Some(thread),
        };
        (server, ca_cert.pem())
    }

    fn url(&self) -> String {
        format!("https://{}/jwks", self.addr)
    }
}

fn answer(tcp: TcpStream, config: Arc<rustls::ServerConfig>, body: &str) -> std::io::Result<()> {
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    write!(
        tls,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.conn.send_close_notify();
    tls.flush()
}

impl Drop for TlsJwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test]
async fn jwks_over_https_trusts_only_the_configured_ca() {
    let key = TestKey::ed();
    let body = serde_json::json!({"keys": [key.jwk("k1")]}).to_string();
    let (server, ca_pem) = TlsJwksServer::start(body);
    let files = pem_files(&[&ca_pem]);
    let base = AuthConfig {
        jwks_url: Some(server.url()),
        issuer: Some(ISSUER.to_owned()),
        jwks_refresh_floor_seconds: 0,
        ..AuthConfig::default()
    };
    let token = key.sign(&scope_claims("alice"), Some("k1"));

    // The system's roots do not include the test CA: the fetch fails, verification with it.
    let untrusting = Verifier::new(&base).unwrap();
    let err = untrusting.verify(&token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::JwksUnavailable);

    let trusting = Verifier::new(&AuthConfig {
        jwks_ca_file: Some(files.paths[0].clone()),
        ..base
    })
    .unwrap();
    let claims = trusting.verify(&token).await.unwrap();
    assert_eq!(claims.user_id(), Some("alice"));
    drop(server);
}
