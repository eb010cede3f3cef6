//! The JWKS cache against a real server: unknown kids, rotation without restart, the refresh
//! floor, coalesced fetches and fetch failures.

use crate::support::*;
use std::time::{Duration, Instant};
use tandem_auth::{AuthConfig, Reason, Verifier};
use tokio::task::JoinSet;

fn token(key: &TestKey, kid: &str) -> String {
    key.sign(&scope_claims("alice"), Some(kid))
}

#[tokio::test]
async fn unknown_kid_is_refused_after_one_refresh() {
    let k1 = TestKey::ec();
    let server = JwksServer::start(vec![k1.jwk("k1")]).await;
    let verifier = Verifier::new(&server.config(0)).unwrap();
    verifier.verify(&token(&k1, "k1")).await.unwrap();
    let stranger = TestKey::ec();
    let err = verifier
        .verify(&token(&stranger, "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::UnknownKid);
    assert!(err.message().contains("\"nope\""), "{err}");
    // The unknown kid made the verifier look again, once.
    assert_eq!(server.fetches(), 2);
    // A known kid with a key that did not sign the token.
    let err = verifier.verify(&token(&stranger, "k1")).await.unwrap_err();
    assert_eq!(err.reason(), Reason::BadSignature);
    server.stop().await;
}

#[tokio::test]
async fn rotation_without_restart() {
    let (old, new) = (TestKey::rsa(), TestKey::ed());
    let server = JwksServer::start(vec![old.jwk("old")]).await;
    let verifier = Verifier::new(&AuthConfig {
        jwks_max_age_seconds: 3600,
        ..server.config(0)
    })
    .unwrap();
    let old_token = token(&old, "old");
    verifier.verify(&old_token).await.unwrap();

    // The IdP adds a key: tokens with its kid verify after the refresh they trigger.
    server.set_keys(vec![old.jwk("old"), new.jwk("new")]);
    verifier.verify(&token(&new, "new")).await.unwrap();
    assert_eq!(server.fetches(), 2);

    // The IdP removes the old key: once the next refresh has happened (here triggered by a
    // token with an unknown kid), old-kid tokens are refused, even ones verified before.
    server.set_keys(vec![new.jwk("new")]);
    verifier.verify(&old_token).await.unwrap(); // still cached, no refresh yet
    let err = verifier
        .verify(&token(&TestKey::ed(), "other"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::UnknownKid);
    assert_eq!(server.fetches(), 3);
    let err = verifier.verify(&old_token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::UnknownKid);
    verifier.verify(&token(&new, "new")).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn keys_older_than_max_age_are_refetched() {
    let (k1, k2) = (TestKey::ec(), TestKey::ec());
    let server = JwksServer::start(vec![k1.jwk("k1"), k2.jwk("k2")]).await;
    let verifier = Verifier::new(&AuthConfig {
        jwks_max_age_seconds: 0,
        ..server.config(0)
    })
    .unwrap();
    let t1 = token(&k1, "k1");
    verifier.verify(&t1).await.unwrap();
    server.set_keys(vec![k2.jwk("k2")]);
    // No unknown kid needed: the set is stale, so this request refetches and finds k1 gone.
    assert_eq!(
        verifier.verify(&t1).await.unwrap_err().reason(),
        Reason::UnknownKid
    );
    verifier.verify(&token(&k2, "k2")).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn refresh_floor_limits_fetches() {
    let (k1, k2) = (TestKey::ec(), TestKey::ec());
    let server = JwksServer::start(vec![k1.jwk("k1")]).await;
    let verifier = Verifier::new(&server.config(1)).unwrap();
    let primed = Instant::now();
    verifier.verify(&token(&k1, "k1")).await.unwrap();
    assert_eq!(server.fetches(), 1);

    // Within the floor, unknown kids (a flood of forged tokens, or a key published a moment
    // ago) are refused without another fetch.
    server.set_keys(vec![k1.jwk("k1"), k2.jwk("k2")]);
    for i in 0..20 {
        let err = verifier
            .verify(&token(&k2, &format!("k{}", i % 3 + 2)))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), Reason::UnknownKid);
        if primed.elapsed() >= Duration::from_millis(900) {
            break;
        }
    }
    assert_eq!(server.fetches(), 1);

    // Once the floor has passed, the next unknown kid refetches (wait with a deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    while verifier.verify(&token(&k2, "k2")).await.is_err() {
        assert!(Instant::now() < deadline, "k2 never became known");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(primed.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.fetches(), 2);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_misses_coalesce_into_one_fetch() {
    let (k1, k2) = (TestKey::ed(), TestKey::ed());
    let server = JwksServer::start(vec![k1.jwk("k1")]).await;
    // No floor: only coalescing keeps this to one fetch.
    let verifier = Verifier::new(&server.config(0)).unwrap();
    verifier.verify(&token(&k1, "k1")).await.unwrap();
    server.set_keys(vec![k1.jwk("k1"), k2.jwk("k2")]);

    // On this current-thread runtime all tasks reach the cache before the first fetch can
    // complete; each distinct token avoids the verified-token cache.
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let verifier = verifier.clone();
        let token = k2.sign(&scope_claims(&format!("user{i}")), Some("k2"));
        tasks.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(server.fetches(), 2);
    assert_eq!(verifier.jwks_fetches(), 2);
    server.stop().await;
}

#[tokio::test]
async fn fetch_failure_keeps_the_old_keys() {
    let (k1, k2) = (TestKey::ec(), TestKey::ec());
    let server = JwksServer::start(vec![k1.jwk("k1")]).await;
    let verifier = Verifier::new(&server.config(0)).unwrap();
    verifier.verify(&token(&k1, "k1")).await.unwrap();

    server.set_keys(vec![k1.jwk("k1"), k2.jwk("k2")]);
    server.set_failing(true);
    let err = verifier.verify(&token(&k2, "k2")).await.unwrap_err();
    assert_eq!(err.reason(), Reason::JwksUnavailable);
    assert!(err.message().contains("\"k2\""), "{err}");
    // The keys fetched before still work (a fresh token, not a cached one).
    let fresh = k1.sign(&scope_claims("bob"), Some("k1"));
    verifier.verify(&fresh).await.unwrap();
    assert!(verifier.refresh_jwks().await.is_err());

    server.set_failing(false);
    verifier.verify(&token(&k2, "k2")).await.unwrap();
    assert_eq!(verifier.refresh_jwks().await.unwrap(), 2);
    server.stop().await;
}

#[tokio::test]
async fn unreachable_jwks_is_unavailable_not_unknown() {
    let server = JwksServer::start(vec![]).await;
    let config = server.config(0);
    server.stop().await; // Nothing listens on that port any more.
    let verifier = Verifier::new(&config).unwrap();
    assert!(!verifier.is_ready());
    let err = verifier
        .verify(&token(&TestKey::ec(), "k1"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::JwksUnavailable);
    assert!(!verifier.is_ready());
}

#[tokio::test]
async fn readiness_follows_the_first_fetch() {
    let k1 = TestKey::ec();
    let server = JwksServer::start(vec![k1.jwk("k1")]).await;
    let verifier = Verifier::new(&server.config(0)).unwrap();
    assert!(!verifier.is_ready());
    assert_eq!(verifier.refresh_jwks().await.unwrap(), 1);
    assert!(verifier.is_ready());
    verifier.verify(&token(&k1, "k1")).await.unwrap();
    assert_eq!(server.fetches(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_drops_cached_tokens() {
    let (before, after) = (TestKey::ec(), TestKey::ec());
    let server = JwksServer::start(vec![before.jwk("k1")]).await;
    let verifier = Verifier::new(&server.config(0)).unwrap();
    let old_token = token(&before, "k1");
    verifier.verify(&old_token).await.unwrap();
    server.set_keys(vec![after.jwk("k1")]);
    assert_eq!(verifier.refresh_jwks().await.unwrap(), 1);
    // The verified-token cache does not outlive the key that verified the token.
    let err = verifier.verify(&old_token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::BadSignature);
    verifier.verify(&token(&after, "k1")).await.unwrap();
    server.stop().await;
}
