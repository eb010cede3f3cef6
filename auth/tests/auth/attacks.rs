//! One test per attack of issue 7's table: each refused with its own reason.

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tandem_auth::{bearer_token, AuthConfig, Reason, Verifier};

async fn refused(verifier: &Verifier, token: &str) -> Reason {
    let err = verifier.verify(token).await.unwrap_err();
    assert!(!err.message().is_empty());
    err.reason()
}

fn rsa_token(claims: &Value) -> String {
    TestKey::rsa().sign(claims, None)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn the_valid_token_these_attacks_start_from_is_accepted() {
    let (verifier, _files) = rsa_verifier();
    let claims = verifier
        .verify(&rsa_token(&scope_claims("alice")))
        .await
        .unwrap();
    assert_eq!(claims.user_id(), Some("alice"));
}

#[tokio::test]
async fn missing_token() {
    let (verifier, _files) = rsa_verifier();
    assert_eq!(refused(&verifier, "").await, Reason::Missing);
    assert_eq!(bearer_token(None).unwrap_err().reason(), Reason::Missing);
    let err = bearer_token(Some("Bearer")).unwrap_err();
    assert_eq!(err.reason(), Reason::Missing);
    assert_eq!(err.www_authenticate(), "Bearer");
}

#[tokio::test]
async fn expired_token() {
    let (verifier, _files) = rsa_verifier();
    let expired = with(scope_claims("alice"), "exp", json!(now() - 30));
    assert_eq!(
        refused(&verifier, &rsa_token(&expired)).await,
        Reason::Expired
    );
    // Within the 5 s leeway it still passes (jsonwebtoken's default would allow 60 s).
    let exp = now() - 2;
    let just = with(scope_claims("alice"), "exp", json!(exp));
    let claims = verifier.verify(&rsa_token(&just)).await.unwrap();
    // Streams opened with it end when it is refused, not at its `exp`.
    assert_eq!(verifier.refused_after(&claims), Some(exp + 5));
}

#[tokio::test]
async fn not_yet_valid_token() {
    let (verifier, _files) = rsa_verifier();
    let early = with(scope_claims("alice"), "nbf", json!(now() + 60));
    assert_eq!(
        refused(&verifier, &rsa_token(&early)).await,
        Reason::NotYetValid
    );
}

#[tokio::test]
async fn token_issued_in_the_future() {
    let (verifier, _files) = rsa_verifier();
    let future = with(scope_claims("alice"), "iat", json!(now() + 60));
    assert_eq!(
        refused(&verifier, &rsa_token(&future)).await,
        Reason::IssuedInFuture
    );
}

#[tokio::test]
async fn wrong_audience() {
    let files = pem_files(&[&TestKey::rsa().public_pem]);
    let verifier = Verifier::new(&AuthConfig {
        audience: Some("https://ledger.test/".to_owned()),
        ..pem_config(&files)
    })
    .unwrap();
    let right = with(scope_claims("alice"), "aud", json!("https://ledger.test/"));
    verifier.verify(&rsa_token(&right)).await.unwrap();
    let wrong = with(scope_claims("alice"), "aud", json!("https://other.test/"));
    assert_eq!(
        refused(&verifier, &rsa_token(&wrong)).await,
        Reason::WrongAudience
    );
    let none = scope_claims("alice");
    assert_eq!(
        refused(&verifier, &rsa_token(&none)).await,
        Reason::WrongAudience
    );
    // An audience-based token for another participant.
    let other = json!({"sub": "alice", "iss": ISSUER, "exp": now() + 60,
        "aud": "https://daml.com/jwt/aud/participant/participant2"});
    assert_eq!(
        refused(&verifier, &rsa_token(&other)).await,
        Reason::WrongAudience
    );
}

#[tokio::test]
async fn wrong_issuer() {
    let (verifier, _files) = rsa_verifier();
    let wrong = with(scope_claims("alice"), "iss", json!("https://evil.test/"));
    assert_eq!(
        refused(&verifier, &rsa_token(&wrong)).await,
        Reason::WrongIssuer
    );
    let mut missing = scope_claims("alice");
    missing.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        refused(&verifier, &rsa_token(&missing)).await,
        Reason::WrongIssuer
    );
}

#[tokio::test]
async fn alg_none() {
    let (verifier, _files) = rsa_verifier();
    let payload = b64(&scope_claims("alice"));
    for alg in ["none", "None", "NONE"] {
        let token = format!("{}.{payload}.", b64(&json!({"alg": alg, "typ": "JWT"})));
        assert_eq!(
            refused(&verifier, &token).await,
            Reason::UnsupportedAlgorithm,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key() {
    let rsa = TestKey::rsa();
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &scope_claims("alice"),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    let (verifier, files) = rsa_verifier();
    assert_eq!(
        refused(&verifier, &forged).await,
        Reason::UnsupportedAlgorithm
    );
    // Even where HS256 is allowed, only the configured secret verifies HS256 tokens.
    let unsafe_verifier = Verifier::new(&AuthConfig {
        hs256_secret: Some("a-test-secret-of-at-least-32-bytes!".to_owned()),
        allow_unsafe: true,
        ..pem_config(&files)
    })
    .unwrap();
    assert_eq!(
        refused(&unsafe_verifier, &forged).await,
        Reason::BadSignature
    );
}

#[tokio::test]
async fn tampered_payload() {
    let (verifier, _files) = rsa_verifier();
    let token = rsa_token(&scope_claims("alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&scope_claims("admin")), parts[2]);
    assert_eq!(refused(&verifier, &forged).await, Reason::BadSignature);
}

#[tokio::test]
async fn tampered_signature() {
    let (verifier, _files) = rsa_verifier();
    let token = rsa_token(&scope_claims("alice"));
    let (message, signature) = token.rsplit_once('.').unwrap();
    // Flip a character in the middle: the last one may only carry padding bits.
    let mut chars: Vec<char> = signature.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    let forged = format!("{message}.{}", chars.into_iter().collect::<String>());
    assert_eq!(refused(&verifier, &forged).await, Reason::BadSignature);
}

#[tokio::test]
async fn signed_by_an_unknown_key() {
    let (verifier, _files) = rsa_verifier();
    // Same algorithm family would need a second RSA key; an ES256 token shows the other case:
    // no configured key of that algorithm at all.
    let ec = TestKey::ec().sign(&scope_claims("alice"), None);
    assert_eq!(refused(&verifier, &ec).await, Reason::UnsupportedAlgorithm);
    let files = pem_files(&[&TestKey::ec().public_pem]);
    let ec_verifier = Verifier::new(&pem_config(&files)).unwrap();
    assert_eq!(refused(&ec_verifier, &ec).await, Reason::BadSignature);
}

#[tokio::test]
async fn other_algorithms_are_refused() {
    let (verifier, _files) = rsa_verifier();
    let rs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::RS384),
        &scope_claims("alice"),
        &TestKey::rsa().encoding_key(),
    )
    .unwrap();
    assert_eq!(
        refused(&verifier, &rs384).await,
        Reason::UnsupportedAlgorithm
    );
}

#[tokio::test]
async fn malformed_tokens() {
    let (verifier, _files) = rsa_verifier();
    let valid = rsa_token(&scope_claims("alice"));
    let too_long = format!("{valid}{}", "A".repeat(tandem_auth::MAX_TOKEN_BYTES));
    for token in [
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.b.c",
        &format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("[1]")),
        &format!("{}.e30.sig", b64(&json!({"typ": "JWT"}))),
        &format!("{}.e30.sig", b64(&json!({"alg": "RS256", "crit": ["exp"]}))),
        &too_long,
    ] {
        assert_eq!(
            refused(&verifier, token).await,
            Reason::Malformed,
            "{token:.40}"
        );
    }
}

#[tokio::test]
async fn tokens_without_exp_need_require_exp_off() {
    let mut claims = scope_claims("alice");
    claims.as_object_mut().unwrap().remove("exp");
    let token = rsa_token(&claims);
    let (verifier, files) = rsa_verifier();
    assert_eq!(refused(&verifier, &token).await, Reason::Malformed);
    let lenient = Verifier::new(&AuthConfig {
        require_exp: false,
        ..pem_config(&files)
    })
    .unwrap();
    assert_eq!(lenient.verify(&token).await.unwrap().expires_at, None);
}

#[tokio::test]
async fn wrong_claim_types_are_malformed() {
    let (verifier, _files) = rsa_verifier();
    for (key, value) in [
        ("exp", json!("soon")),
        ("iat", json!("then")),
        ("nbf", json!([])),
    ] {
        let token = rsa_token(&with(scope_claims("alice"), key, value));
        assert_eq!(refused(&verifier, &token).await, Reason::Malformed, "{key}");
    }
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let (verifier, _files) = rsa_verifier();
    // Valid only within the leeway: verified (and cached) now, refused once exp + leeway passes.
    let token = rsa_token(&with(scope_claims("alice"), "exp", json!(now() - 4)));
    verifier.verify(&token).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match verifier.verify(&token).await {
            Ok(_) => assert!(std::time::Instant::now() < deadline, "never expired"),
            Err(e) => {
                assert_eq!(e.reason(), Reason::Expired);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
