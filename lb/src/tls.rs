//! TLS material, loaded and checked at start and at reload so a bad file is refused with the
//! key that names it: the downstream acceptor (rustls, ALPN per frontend protocol) and the
//! upstream CA and client certificate (mTLS).

use crate::error::LbError;
use pingora::listeners::tls::Acceptor;
use pingora::tls::{CertificateDer, PrivateKeyDer, RootCertStore, ServerConfig};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use tandem_nodes::config::{FrontendProtocol, FrontendTls, UpstreamTls};

fn tls_error(key: &str, message: impl Into<String>) -> LbError {
    LbError::Tls {
        key: key.to_string(),
        message: message.into(),
    }
}

fn certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, LbError> {
    let bytes = std::fs::read(path)
        .map_err(|e| tls_error(key, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, LbError> {
    let bytes = std::fs::read(path)
        .map_err(|e| tls_error(key, format!("cannot read {}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        tls_error(
            key,
            format!("{} holds no PEM private key: {e}", path.display()),
        )
    })
}

/// The TLS acceptor of a frontend; `key` is the frontend's config key.
pub fn acceptor(
    tls: &FrontendTls,
    protocol: FrontendProtocol,
    key: &str,
) -> Result<Acceptor, LbError> {
    pingora::tls::install_default_crypto_provider();
    let chain = certs(&tls.cert, &format!("{key}.tls.cert"))?;
    let private = private_key(&tls.key, &format!("{key}.tls.key"))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| tls_error(&format!("{key}.tls"), e.to_string()))?;
    config.alpn_protocols = match protocol {
        FrontendProtocol::H2c => vec![b"h2".to_vec()],
        FrontendProtocol::Http1 => vec![b"http/1.1".to_vec()],
        FrontendProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Acceptor::from_server_config(Arc::new(config)))
}

/// CA and client certificate for a group's servers.
pub struct UpstreamMaterial {
    pub ca: Arc<[WrappedX509]>,
    pub client: Option<Arc<CertKey>>,
    pub sni: Option<String>,
}

impl UpstreamMaterial {
    pub fn load(tls: &UpstreamTls, key: &str) -> Result<Self, LbError> {
        pingora::tls::install_default_crypto_provider();
        let ca_key = format!("{key}.ca");
        let ca = certs(&tls.ca, &ca_key)?;
        // Check every CA certificate parses before pingora's parser (which panics) sees it.
        let mut store = RootCertStore::empty();
        for cert in &ca {
            store
                .add(cert.clone())
                .map_err(|e| tls_error(&ca_key, format!("{}: {e}", tls.ca.display())))?;
        }
        let ca: Vec<WrappedX509> = ca
            .into_iter()
            .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
            .collect();
        let client = match (&tls.cert, &tls.key) {
            (Some(cert), Some(private)) => {
                let cert_key = format!("{key}.cert");
                let chain = certs(cert, &cert_key)?;
                let mut check = RootCertStore::empty();
                for c in &chain {
                    check
                        .add(c.clone())
                        .map_err(|e| tls_error(&cert_key, format!("{}: {e}", cert.display())))?;
                }
                let private = private_key(private, &format!("{key}.key"))?;
                Some(Arc::new(CertKey::new(
                    chain.iter().map(|c| c.to_vec()).collect(),
                    private.secret_der().to_vec(),
                )))
            }
            _ => None,
        };
        Ok(Self {
            ca: Arc::from(ca.into_boxed_slice()),
            client,
            sni: tls.sni.clone(),
        })
    }
}
