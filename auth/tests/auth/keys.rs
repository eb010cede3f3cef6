//! RS256, ES256 and EdDSA from PEM public keys, certificates and a JWKS; HS256 only if unsafe.

use crate::support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tandem_auth::{AuthConfig, Reason, Verifier};

async fn accepts_from_pem(key: TestKey, pem: &str) {
    let files = pem_files(&[pem]);
    let verifier = Verifier::new(&pem_config(&files)).unwrap();
    let claims = verifier
        .verify(&key.sign(&scope_claims("alice"), None))
        .await
        .unwrap();
    assert_eq!(claims.user_id(), Some("alice"));
    // A kid in the header does not matter for PEM keys, which have none.
    verifier
        .verify(&key.sign(&scope_claims("alice"), Some("any")))
        .await
        .unwrap();
}

#[tokio::test]
async fn rs256_from_pem_public_key_and_certificate() {
    let key = TestKey::rsa();
    accepts_from_pem(key.clone(), &key.public_pem).await;
    accepts_from_pem(key.clone(), &key.certificate_pem).await;
}

#[tokio::test]
async fn es256_from_pem_public_key_and_certificate() {
    let key = TestKey::ec();
    accepts_from_pem(key.clone(), &key.public_pem).await;
    accepts_from_pem(key.clone(), &key.certificate_pem).await;
}

#[tokio::test]
async fn eddsa_from_pem_public_key_and_certificate() {
    let key = TestKey::ed();
    accepts_from_pem(key.clone(), &key.public_pem).await;
    accepts_from_pem(key.clone(), &key.certificate_pem).await;
}

#[tokio::test]
async fn several_pem_keys_each_verify_their_tokens() {
    let (rsa, ec, ed) = (TestKey::rsa(), TestKey::ec(), TestKey::ed());
    let other_ec = TestKey::ec();
    let files = pem_files(&[
        &rsa.public_pem,
        &other_ec.public_pem,
        &ec.public_pem,
        &ed.public_pem,
    ]);
    let verifier = Verifier::new(&pem_config(&files)).unwrap();
    for key in [&rsa, &ec, &ed, &other_ec] {
        verifier
            .verify(&key.sign(&scope_claims("alice"), None))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn each_algorithm_from_jwks() {
    let keys = [
        ("rsa", TestKey::rsa()),
        ("ec", TestKey::ec()),
        ("ed", TestKey::ed()),
    ];
    let server = JwksServer::start(keys.iter().map(|(kid, k)| k.jwk(kid)).collect()).await;
    let verifier = Verifier::new(&server.config(10)).unwrap();
    for (kid, key) in &keys {
        let claims = verifier
            .verify(&key.sign(&scope_claims(kid), Some(kid)))
            .await
            .unwrap();
        assert_eq!(claims.user_id(), Some(*kid));
    }
    // A key used under another key's kid does not verify.
    let swapped = keys[1].1.sign(&scope_claims("x"), Some("ed"));
    assert_eq!(
        verifier.verify(&swapped).await.unwrap_err().reason(),
        Reason::UnknownKid
    );
    assert_eq!(server.fetches(), 1);
    server.stop().await;
}

#[tokio::test]
async fn hs256_is_refused_unless_unsafe() {
    let secret = "a-development-secret-of-32-bytes+".to_owned();
    let config = AuthConfig {
        hs256_secret: Some(secret.clone()),
        ..AuthConfig::default()
    };
    let err = Verifier::new(&config).err().unwrap();
    assert_eq!(err.key, "auth.hs256_secret");
    assert!(err.to_string().contains("unsafe = true"), "{err}");

    let verifier = Verifier::new(&AuthConfig {
        allow_unsafe: true,
        ..config
    })
    .unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &scope_claims("dev"),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        verifier.verify(&token).await.unwrap().user_id(),
        Some("dev")
    );

    let (rsa_only, _files) = rsa_verifier();
    let err = rsa_only.verify(&token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::UnsupportedAlgorithm);
}

#[test]
fn config_errors_name_the_key() {
    let rsa = TestKey::rsa();
    let files = pem_files(&[&rsa.public_pem, &rsa.private_pem]);
    let err = Verifier::new(&pem_config(&files)).err().unwrap();
    assert_eq!(err.key, "auth.pem_files[1]");
    assert!(err.message.contains("private key"), "{err}");

    let missing = AuthConfig {
        pem_files: vec!["/nonexistent/key.pem".into()],
        ..AuthConfig::default()
    };
    assert_eq!(
        Verifier::new(&missing).err().unwrap().key,
        "auth.pem_files[0]"
    );

    let plain_http = AuthConfig {
        jwks_url: Some("http://idp.example/jwks".to_owned()),
        ..AuthConfig::default()
    };
    assert_eq!(
        Verifier::new(&plain_http).err().unwrap().key,
        "auth.jwks_url"
    );

    // https builds a client with the platform's trusted roots (nothing is fetched yet).
    let https = AuthConfig {
        jwks_url: Some("https://idp.example/jwks".to_owned()),
        ..AuthConfig::default()
    };
    let verifier = Verifier::new(&https).unwrap();
    assert!(!verifier.is_ready());
}
