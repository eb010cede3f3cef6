//! The OpenAPI document's fixed parts: info, the bearer security scheme, tags, and the error
//! responses every operation shares (all `application/problem+json` [`Problem`]s). Paths come
//! from the handlers' `#[utoipa::path]` annotations.

use crate::error::{Problem, PROBLEM_JSON};
use std::collections::BTreeMap;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, ResponsesBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tandem JSON Ledger API",
        description = "The HTTP JSON API of a Tandem participant, shaped after the Canton JSON \
Ledger API v2, plus `POST /v2/query` served from the gateway's local cache. Every `/v2` \
operation takes `Authorization: Bearer <JWT>`; errors are RFC 9457 problem documents \
(`application/problem+json`) carrying a stable `code`. Websocket streams (GET on \
`/v2/updates`, `/v2/commands/completions`, `/v2/state/active-contracts`) take the token as \
the subprotocol `jwt.token.<JWT>` (offer `daml.ws.auth` too) and the request as their first \
text message.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(Problem)),
    tags(
        (name = "commands", description = "Submitting commands and reading their completions"),
        (name = "state", description = "Active contracts and the ledger end"),
        (name = "updates", description = "Transactions between offsets"),
        (name = "query", description = "Payload queries over the gateway's local cache"),
        (name = "parties", description = "Party management"),
        (name = "users", description = "User management and rights"),
        (name = "packages", description = "Ledger packages"),
        (name = "system", description = "Version and health")
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Daml ledger API token: audience- or scope-based user token, or custom claims",
                    ))
                    .build(),
            ),
        );
    }
}

fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

const AUTH: &[(&str, &str)] = &[
    ("401", "No valid token: missing, malformed, expired, not yet valid, wrong audience or issuer, bad signature, unknown key; `reason` says which"),
    ("403", "The token is valid but lacks a right this request needs; nothing was sent to the ledger"),
];
const INPUT: &[(&str, &str)] = &[
    ("400", "Bad input: malformed JSON, a wrong type, an unknown field, a bad offset or page token; `field` names it. Also ledger refusals of the request's content"),
    ("413", "The request body is larger than the gateway accepts"),
    ("415", "The request body is not JSON"),
];
const LEDGER: &[(&str, &str)] = &[
    ("404", "The ledger does not know the user, party or contract named"),
    ("409", "The ledger refused the change in its current state: a duplicate command, a contract no longer active, a submission in flight"),
    ("429", "The ledger is overloaded; retry later"),
    ("500", "An unexpected failure; the x-request-id identifies it in the logs"),
    ("503", "The ledger (or the gateway's cache) is unavailable; retry after Retry-After"),
    ("504", "The request took longer than the gateway's timeout"),
];

fn responses(sets: &[&[(&str, &str)]]) -> BTreeMap<String, RefOr<Response>> {
    let mut builder = ResponsesBuilder::new();
    for set in sets {
        for (status, description) in *set {
            builder = builder.response(*status, problem(description));
        }
    }
    builder.build().into()
}

/// Errors of an operation with a JSON body.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[AUTH, INPUT, LEDGER])
    }
}

/// Errors of an operation without a body (query string and path parameters may still be bad).
pub struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[AUTH, &INPUT[..1], LEDGER])
    }
}

/// Errors of a websocket stream's upgrade request.
pub struct StreamErrors;

impl IntoResponses for StreamErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut r = responses(&[AUTH, LEDGER]);
        r.insert(
            "400".into(),
            problem("Not a websocket upgrade request (connect with a websocket client)"),
        );
        r
    }
}

/// Errors of unauthenticated system endpoints.
pub struct SystemErrors;

impl IntoResponses for SystemErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        responses(&[&LEDGER[3..5]])
    }
}
