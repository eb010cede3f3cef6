//! The committed `openapi/openapi.yaml` is what the handlers generate; `UPDATE_OPENAPI=1`
//! rewrites it. Every operation's responses are described and errors are problem documents.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.yaml")
}

#[test]
fn committed_openapi_is_up_to_date() {
    let generated = tandem_gateway::openapi::yaml();
    let path = committed();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "{} is stale: run `UPDATE_OPENAPI=1 cargo test -p tandem-gateway --test openapi` and commit it",
        path.display()
    );
}

#[test]
fn every_response_is_described_and_errors_are_problems() {
    let doc: serde_json::Value =
        serde_json::from_str(&tandem_gateway::openapi::document().to_json().unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["info"]["license"]["name"]
        .as_str()
        .is_some_and(|l| !l.is_empty()));
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    !description.is_empty(),
                    "{method} {path} {status} has no description"
                );
                let code: u16 = status.parse().unwrap();
                if code >= 400 && path != "/readyz" {
                    let content = response["content"].as_object().unwrap();
                    assert!(
                        content.contains_key("application/problem+json"),
                        "{method} {path} {status}"
                    );
                }
            }
            let public = ["/livez", "/readyz"].contains(&path.as_str());
            if !public {
                assert!(
                    op["security"].is_array(),
                    "{method} {path} declares no security"
                );
                assert!(
                    responses.contains_key("401") && responses.contains_key("403"),
                    "{method} {path}"
                );
            }
        }
    }
    assert!(operations >= 28, "only {operations} operations documented");
}
