//! In-process tests of the HTTP layer (no ledger): 401 paths, the authorization matrix per
//! endpoint class, bad input, body limit, request ids, CORS and problem documents.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use serde_json::{json, Value};

fn is_problem(response: &http::Response<()>) -> bool {
    response.headers()["content-type"] == "application/problem+json"
}

#[tokio::test]
async fn bad_tokens_answer_401_with_a_reason() {
    let app = app();
    let expired =
        sign(&json!({"https://daml.com/ledger-api": {"actAs": ["A"]}, "exp": now() - 600}));
    let future = sign(
        &json!({"https://daml.com/ledger-api": {"actAs": ["A"]}, "exp": now() + 600, "nbf": now() + 300}),
    );
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"https://daml.com/ledger-api": {"actAs": ["A"]}, "exp": now() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    let good = token(&["A"], &[], false);
    let mut tampered = good.clone();
    tampered.insert(good.find('.').unwrap() + 3, 'x');
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing"),
        (Some("not-a-jwt".into()), "malformed"),
        (Some(expired), "expired"),
        (Some(future), "not_yet_valid"),
        (Some(wrong_key), "bad_signature"),
        (Some(tampered), ""),
        (Some("eyJhbGciOiJub25lIn0.eyJhY3RBcyI6WyJBIl19.".into()), ""),
    ];
    for (token, reason) in cases {
        let (response, body) = send(
            &app,
            request("GET", "/v2/state/ledger-end", token.as_deref(), None),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{token:?}: {body}"
        );
        assert!(is_problem(&response));
        assert_eq!(body["code"], "UNAUTHENTICATED");
        assert!(response.headers().contains_key("www-authenticate"));
        if !reason.is_empty() {
            assert_eq!(body["reason"], reason, "{body}");
        } else {
            assert!(body["reason"].is_string(), "{body}");
        }
    }
    // A non-Bearer scheme is malformed.
    let r = Request::builder()
        .uri("/v2/version")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .unwrap();
    let (response, body) = send(&app, r).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], "malformed");
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_the_body_is_read() {
    let app = app();
    let (response, _) = send(
        &app,
        raw(
            "POST",
            "/v2/commands/submit-and-wait",
            "x",
            "application/json",
            "{not json",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// Refused: 403 and nothing sent to the ledger. Allowed: the request reaches the (absent)
/// ledger, which answers 503.
async fn expect(app: &axum::Router, req: Request<Body>, allowed: bool, what: &str) {
    let (response, body) = send(app, req).await;
    if allowed {
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {body}"
        );
        assert_eq!(body["code"], "UNAVAILABLE", "{what}: {body}");
    } else {
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}: {body}");
        assert_eq!(body["code"], "PERMISSION_DENIED", "{what}");
    }
    assert!(is_problem(&response), "{what}");
}

#[tokio::test]
async fn authorization_matrix_per_endpoint_class() {
    let app = app();
    let act = token(&["Alice"], &[], false);
    let read = token(&[], &["Alice"], false);
    let admin = token(&[], &[], true);
    let none = token(&[], &[], false);
    let tokens = [
        ("act-as", &act),
        ("read-as", &read),
        ("admin", &admin),
        ("none", &none),
    ];

    // act-as: commands.
    for path in [
        "/v2/commands/submit-and-wait",
        "/v2/commands/submit-and-wait-for-transaction",
        "/v2/commands/async/submit",
    ] {
        for (who, t) in &tokens {
            let req = request("POST", path, Some(t), Some(&create_body("Alice")));
            expect(&app, req, *who == "act-as", &format!("{who} {path}")).await;
        }
    }
    // read-as: state, updates, completions, query.
    let reads: Vec<(&str, Value)> = vec![
        ("/v2/state/active-contracts", filter_body("Alice")),
        (
            "/v2/updates",
            json!({"beginExclusive": 0, "filter": {"filtersByParty": {"Alice": {}}}}),
        ),
        ("/v2/commands/completions", json!({"parties": ["Alice"]})),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "templateIds": ["#iou:Iou:Iou"]}),
        ),
    ];
    for (path, body) in &reads {
        for (who, t) in &tokens {
            let allowed = matches!(*who, "act-as" | "read-as");
            expect(
                &app,
                request("POST", path, Some(t), Some(body)),
                allowed,
                &format!("{who} {path}"),
            )
            .await;
        }
    }
    // admin: parties, users, package upload.
    let admin_requests = || {
        vec![
            request("GET", "/v2/parties", None, None),
            request(
                "POST",
                "/v2/parties",
                None,
                Some(&json!({"partyIdHint": "Carol"})),
            ),
            request("GET", "/v2/parties/Alice", None, None),
            request("GET", "/v2/users", None, None),
            request(
                "POST",
                "/v2/users",
                None,
                Some(&json!({"user": {"id": "carol"}})),
            ),
            request("DELETE", "/v2/users/carol", None, None),
            request(
                "POST",
                "/v2/users/carol/rights",
                None,
                Some(&json!({"rights": []})),
            ),
            request(
                "PATCH",
                "/v2/users/carol/rights",
                None,
                Some(&json!({"rights": []})),
            ),
            request("GET", "/v2/users/carol", None, None),
            request("GET", "/v2/users/carol/rights", None, None),
        ]
    };
    for (who, t) in &tokens {
        for mut req in admin_requests() {
            let what = format!("{who} {} {}", req.method(), req.uri());
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
            expect(&app, req, *who == "admin", &what).await;
        }
        let mut upload = raw(
            "POST",
            "/v2/packages",
            t,
            "application/yaml",
            "package: iou\n",
        );
        upload
            .headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
        expect(&app, upload, *who == "admin", &format!("{who} upload")).await;
    }
    // authenticated only: every valid token reaches the ledger.
    for path in [
        "/v2/state/ledger-end",
        "/v2/version",
        "/v2/packages",
        "/v2/parties/participant-id",
        "/v2/authenticated-user",
    ] {
        for (who, t) in &tokens {
            expect(
                &app,
                request("GET", path, Some(t), None),
                true,
                &format!("{who} {path}"),
            )
            .await;
        }
    }
    // self-or-admin: a user reads its own record (the token's application id is its user).
    expect(
        &app,
        request("GET", "/v2/users/app", Some(&none), None),
        true,
        "self",
    )
    .await;
}

#[tokio::test]
async fn acting_for_another_user_or_reading_other_parties_is_refused() {
    let app = app();
    let act = token(&["Alice"], &["Bob"], false);
    let mut body = create_body("Alice");
    body["userId"] = json!("someone-else");
    expect(
        &app,
        request(
            "POST",
            "/v2/commands/submit-and-wait",
            Some(&act),
            Some(&body),
        ),
        false,
        "other user",
    )
    .await;
    let mut body = create_body("Alice");
    body["readAs"] = json!(["Carol"]);
    expect(
        &app,
        request(
            "POST",
            "/v2/commands/submit-and-wait",
            Some(&act),
            Some(&body),
        ),
        false,
        "readAs",
    )
    .await;
    let q = json!({"parties": ["Alice", "Carol"]});
    expect(
        &app,
        request("POST", "/v2/query", Some(&act), Some(&q)),
        false,
        "query other",
    )
    .await;
    let (response, body) = send(
        &app,
        request(
            "POST",
            "/v2/query",
            Some(&token(&[], &[], false)),
            Some(&json!({})),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let app = app();
    let t = token(&["Alice"], &["Alice"], true);
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "/v2/commands/submit-and-wait",
            json!({"commands": [], "actAs": ["Alice"]}),
            Some("commands"),
        ),
        (
            "/v2/commands/submit-and-wait",
            json!({"commands": [{"CreateCommand": {"templateId": 5, "createArguments": {}}}], "actAs": ["Alice"]}),
            Some("commands[0].CreateCommand.templateId"),
        ),
        (
            "/v2/commands/submit-and-wait",
            json!({"commands": [{"CreateCommand": {"templateId": "#a:B:C", "createArguments": {}, "extra": 1}}], "actAs": ["Alice"]}),
            Some("commands[0].CreateCommand.extra"),
        ),
        (
            "/v2/commands/submit-and-wait",
            json!({"commands": [{"Nope": {}}], "actAs": ["Alice"]}),
            Some("commands[0]"),
        ),
        (
            "/v2/commands/submit-and-wait",
            json!({"commands": [{"CreateCommand": {"templateId": "#a:B:C", "createArguments": {"n": 18446744073709551615_u64}}}], "actAs": ["Alice"]}),
            Some("commands[0].CreateCommand.createArguments.n"),
        ),
        (
            "/v2/commands/submit-and-wait",
            json!({"commands": [], "actAs": []}),
            Some("actAs"),
        ),
        (
            "/v2/updates",
            json!({"beginExclusive": -1, "filter": {"filtersByParty": {"Alice": {}}}}),
            Some("beginExclusive"),
        ),
        (
            "/v2/updates",
            json!({"beginExclusive": "x", "filter": {"filtersByParty": {"Alice": {}}}}),
            Some("beginExclusive"),
        ),
        (
            "/v2/updates",
            json!({"filter": {"filtersByParty": {}}}),
            Some("filter.filtersByParty"),
        ),
        (
            "/v2/state/active-contracts",
            json!({"filter": {"filtersByParty": {"Alice": {}}}, "activeAtOffset": -5}),
            Some("activeAtOffset"),
        ),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "pageToken": "garbage!"}),
            Some("pageToken"),
        ),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "offset": -1}),
            Some("offset"),
        ),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "templateIds": ["nope"]}),
            Some("templateIds[0]"),
        ),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "filter": {"amount": {"%between": 1}}}),
            Some("filter.amount.%between"),
        ),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "pageSize": 0}),
            Some("pageSize"),
        ),
        (
            "/v2/query",
            json!({"parties": ["Alice"], "unknown": true}),
            Some("unknown"),
        ),
    ];
    for (path, body, field) in cases {
        let (response, problem) = send(&app, request("POST", path, Some(&t), Some(&body))).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{path} {body}: {problem}"
        );
        assert!(is_problem(&response));
        assert_eq!(problem["field"].as_str(), field, "{path} {body}: {problem}");
    }
    // Malformed JSON, wrong media type, query-string errors.
    let (response, problem) = send(
        &app,
        raw(
            "POST",
            "/v2/query",
            &t,
            "application/json",
            "{\"parties\": [",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{problem}"
    );
    let (response, _) = send(&app, raw("POST", "/v2/query", &t, "text/plain", "{}")).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (response, _) = send(
        &app,
        request(
            "POST",
            "/v2/updates?limit=abc",
            Some(&t),
            Some(&json!({"filter": {"filtersByParty": {"Alice": {}}}})),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (response, problem) = send(
        &app,
        request(
            "POST",
            "/v2/updates?limit=0",
            Some(&t),
            Some(&json!({"filter": {"filtersByParty": {"Alice": {}}}})),
        ),
    )
    .await;
    assert_eq!(
        (response.status(), problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    // Idempotency-Key that contradicts the body.
    let mut req = request(
        "POST",
        "/v2/commands/submit-and-wait",
        Some(&t),
        Some(&{
            let mut b = create_body("Alice");
            b["commandId"] = json!("c1");
            b
        }),
    );
    req.headers_mut()
        .insert("idempotency-key", "c2".parse().unwrap());
    let (response, problem) = send(&app, req).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "Idempotency-Key");
}

#[tokio::test]
async fn oversized_bodies_answer_413() {
    let mut config = config();
    config.max_body_bytes = 1024;
    let app = app_with(config);
    let t = token(&["Alice"], &[], false);
    let big = json!({"parties": ["Alice"], "filter": {"x": "y".repeat(4096)}});
    let (response, problem) = send(&app, request("POST", "/v2/query", Some(&t), Some(&big))).await;
    assert_eq!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "{problem}"
    );
    assert!(is_problem(&response));
    assert_eq!(problem["code"], "PAYLOAD_TOO_LARGE");
    // Streamed without a length, too.
    let chunks = futures_stream(vec![vec![b' '; 800], vec![b' '; 800]]);
    let req = raw(
        "POST",
        "/v2/query",
        &t,
        "application/json",
        Body::from_stream(chunks),
    );
    let (response, _) = send(&app, req).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn request_ids_are_kept_or_generated_and_echoed() {
    let app = app();
    let mut req = request("GET", "/livez", None, None);
    req.headers_mut()
        .insert("x-request-id", "my-id-42".parse().unwrap());
    let (response, body) = send(&app, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body["status"], "pass");
    assert_eq!(response.headers()["x-request-id"], "my-id-42");
    let (response, _) = send(&app, request("GET", "/v2/version", None, None)).await;
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "{generated}");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let mut config = config();
    config.cors_allowed_origins = vec!["https://app.example".into()];
    let app = app_with(config);
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v2/query")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let (response, _) = send(&app, preflight("https://app.example")).await;
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let (response, _) = send(&app, preflight("https://evil.example")).await;
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
    // Without configuration there are no CORS headers at all.
    let (response, _) = send(&common::app(), preflight("https://app.example")).await;
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn framework_errors_are_problem_documents() {
    let app = app();
    let (response, problem) = send(&app, request("GET", "/v2/nope", None, None)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(is_problem(&response));
    assert_eq!(problem["code"], "NOT_FOUND");
    let (response, problem) = send(&app, request("PUT", "/v2/query", None, None)).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(problem["code"], "METHOD_NOT_ALLOWED");
    // A plain GET on a websocket stream, with a valid token.
    let t = token(&["Alice"], &[], false);
    let (response, problem) = send(&app, request("GET", "/v2/updates", Some(&t), None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{problem}");
    assert!(is_problem(&response));
    // Without a token the stream says 401.
    let (response, _) = send(&app, request("GET", "/v2/updates", None, None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn readiness_reports_the_missing_ledger_and_docs_are_served() {
    let mut config = config();
    config.advertised_url = Some("https://api.example".into());
    let app = app_with(config);
    let (response, body) = send(&app, request("GET", "/readyz", None, None)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "fail");
    assert_ne!(body["checks"]["ledger"], "pass");
    let (response, body) = send(&app, request("GET", "/docs/openapi", None, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("https://api.example"),
        "servers uses the advertised URL"
    );
    let (_, json) = send(&app, request("GET", "/docs/openapi.json", None, None)).await;
    assert_eq!(json["servers"][0]["url"], "https://api.example");
    let (response, html) = send(&app, request("GET", "/docs", None, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = html.as_str().unwrap();
    assert!(
        html.contains("/docs/openapi.json") && !html.contains("cdn"),
        "offline explorer"
    );
    let (response, metrics) = send(&app, request("GET", "/metrics", None, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("tandem_gateway_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("tandem_gateway_cache_max_bytes"));
}
