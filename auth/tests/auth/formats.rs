//! The three Daml token formats, accepted with the right claims.

use crate::support::*;
use serde_json::json;
use tandem_auth::{websocket_token, Grant, LegacyRights, Reason, TokenFormat};

#[tokio::test]
async fn audience_based_token() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(
        &json!({"sub": "alice", "iss": ISSUER, "exp": now() + 60,
            "aud": ["https://daml.com/jwt/aud/participant/participant1"]}),
        None,
    );
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.format, TokenFormat::Audience);
    assert_eq!(claims.user_id(), Some("alice"));
    assert_eq!(claims.issuer.as_deref(), Some(ISSUER));
}

#[tokio::test]
async fn scope_based_token() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(
        &json!({"sub": "bob", "iss": ISSUER, "exp": now() + 60, "scope": "openid daml_ledger_api"}),
        None,
    );
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.format, TokenFormat::Scope);
    assert_eq!(
        claims.grant,
        Grant::User {
            user_id: "bob".to_owned()
        }
    );
    assert_eq!(claims.subject.as_deref(), Some("bob"));
}

#[tokio::test]
async fn custom_claims_token() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(
        &json!({"iss": ISSUER, "exp": now() + 60, "https://daml.com/ledger-api": {
            "ledgerId": null, "participantId": "participant1", "applicationId": "iou-app",
            "admin": true, "actAs": ["Alice"], "readAs": ["Bob", "Carol"]}}),
        None,
    );
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.format, TokenFormat::CustomClaims);
    assert_eq!(claims.user_id(), None);
    assert_eq!(
        claims.rights(),
        Some(&LegacyRights {
            act_as: vec!["Alice".to_owned()],
            read_as: vec!["Bob".to_owned(), "Carol".to_owned()],
            admin: true,
            application_id: Some("iou-app".to_owned()),
            participant_id: Some("participant1".to_owned()),
            ledger_id: None,
        })
    );
}

#[tokio::test]
async fn flattened_custom_claims_token() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(
        &json!({"iss": ISSUER, "exp": now() + 60, "actAs": ["Alice"], "applicationId": "app"}),
        None,
    );
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.format, TokenFormat::CustomClaimsFlattened);
    let rights = claims.rights().unwrap();
    assert_eq!(rights.act_as, vec!["Alice".to_owned()]);
    assert!(rights.read_as.is_empty());
    assert!(!rights.admin);
}

#[tokio::test]
async fn custom_claims_for_another_participant_are_refused() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(
        &json!({"iss": ISSUER, "exp": now() + 60,
            "https://daml.com/ledger-api": {"participantId": "participant2", "actAs": ["Alice"]}}),
        None,
    );
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::WrongAudience);
}

#[tokio::test]
async fn a_jwt_in_no_daml_format_is_refused() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(
        &json!({"sub": "alice", "iss": ISSUER, "exp": now() + 60, "scope": "openid profile"}),
        None,
    );
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::UnrecognizedClaims);
    assert!(err
        .www_authenticate()
        .starts_with("Bearer error=\"invalid_token\""));
}

#[tokio::test]
async fn token_from_a_websocket_subprotocol() {
    let (verifier, _files) = rsa_verifier();
    let token = TestKey::rsa().sign(&scope_claims("alice"), None);
    let header = format!("daml.ws.auth, jwt.token.{token}");
    let claims = verifier
        .verify(websocket_token(Some(&header)).unwrap())
        .await
        .unwrap();
    assert_eq!(claims.user_id(), Some("alice"));
}
