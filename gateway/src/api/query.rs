//! `POST /v2/query`: the handler around [`crate::query`]: checks the request, waits for the
//! cache to reach the caller's offset (or the ledger end), and pages the result.

use super::docs::BodyErrors;
use super::model::JsCreatedEvent;
use crate::auth::{policy, Caller};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::query::{filter, page, template, Query};
use crate::state::SharedState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A payload query over the local cache.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryRequest {
    /// Templates to include (`#<package name>:<Module>:<Template>` or by package id); all
    /// when empty.
    #[serde(default)]
    pub template_ids: Vec<String>,
    /// Whose contracts; every party the caller may read as when empty.
    #[serde(default)]
    pub parties: Vec<String>,
    /// Field → predicate: a literal for equality (decimals by value), a nested object for
    /// record fields, or operators `%eq`, `%lt`, `%lte`, `%gt`, `%gte`, `%in`.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub filter: Option<serde_json::Value>,
    /// Read at least at this offset (e.g. a `completionOffset` you got); the ledger end at the
    /// start of the request when absent.
    #[serde(default)]
    pub offset: Option<i64>,
    /// At most this many contracts (default and maximum set by the gateway).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// From the previous page's `nextPageToken`; keep every other field the same.
    #[serde(default)]
    pub page_token: Option<String>,
}

/// One page of matching active contracts.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryResponse {
    /// In creation order; `witnessParties` are the queried parties that see each.
    pub contracts: Vec<JsCreatedEvent>,
    /// Empty on the last page.
    pub next_page_token: String,
    /// The offset the page was read at (at least the one asked for).
    pub offset: i64,
}

/// Active contracts filtered on their payload, from the gateway's cache, never older than the
/// ledger end at the start of the request (or the `offset` given).
#[utoipa::path(post, operation_id = "query", path = "/v2/query", tag = "query", request_body = QueryRequest,
    responses((status = 200, description = "A page of contracts", body = QueryResponse), BodyErrors),
    security(("bearer" = [])))]
pub async fn query(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<QueryRequest>,
) -> Result<Json<QueryResponse>, ApiError> {
    let rights = caller.rights(&state).await?;
    let mut parties = if body.parties.is_empty() {
        rights.readable_parties()
    } else {
        body.parties.clone()
    };
    parties.sort();
    parties.dedup();
    if parties.is_empty() {
        return Err(ApiError::Forbidden(
            "the caller may read as no party (parties)".into(),
        ));
    }
    policy::check_read_as(&rights, &parties, "parties")?;
    let query = check(&state, &body)?;
    // Only a query that pages needs the hash its page tokens bind to, and then once.
    let mut hash: Option<String> = None;
    let token = match body.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Some(
            page::PageToken::decode(t, hash.insert(token_hash(&body)))
                .map_err(|e| ApiError::field("pageToken", e))?,
        ),
        None => None,
    };
    if body.offset.is_some_and(|o| o < 0) {
        return Err(ApiError::field("offset", "must not be negative"));
    }
    let at_least = match (body.offset, &token) {
        (Some(o), Some(t)) => Some(o.max(t.read_at)),
        (Some(o), None) => Some(o),
        (None, Some(t)) => Some(t.read_at),
        (None, None) => None,
    };
    let query = Query {
        after: token.map(|t| (t.offset, t.contract_id)),
        ..query
    };
    let (entries, read_at) = state.cache.read(&parties, &caller.ctx, at_least).await?;
    let names = state
        .names_for(query.template_ids.iter().map(String::as_str), &caller.ctx)
        .await;
    let result = crate::query::run(&query, &entries, &names);
    Ok(Json(QueryResponse {
        contracts: result.contracts,
        next_page_token: match result.next {
            Some((offset, cid)) => {
                let hash = hash.get_or_insert_with(|| token_hash(&body));
                page::PageToken::new(offset, &cid, read_at, hash).encode()
            }
            None => String::new(),
        },
        offset: read_at,
    }))
}

/// Validates the request's query parts.
fn check(state: &SharedState, body: &QueryRequest) -> Result<Query, ApiError> {
    for (i, t) in body.template_ids.iter().enumerate() {
        if template::split(t).is_none() {
            return Err(ApiError::field(
                format!("templateIds[{i}]"),
                "not a template id (<package>:<Module>:<Template>)",
            ));
        }
    }
    let predicate = body
        .filter
        .as_ref()
        .map(|f| filter::parse(f, "filter").map_err(|e| ApiError::field(e.path, e.message)))
        .transpose()?;
    let page_size = match body.page_size {
        None => state.config.query_default_page_size,
        Some(0) => return Err(ApiError::field("pageSize", "must be positive")),
        Some(n) if n > state.config.query_max_page_size => {
            return Err(ApiError::field(
                "pageSize",
                format!("at most {}", state.config.query_max_page_size),
            ))
        }
        Some(n) => n,
    };
    Ok(Query {
        template_ids: body.template_ids.clone(),
        predicate,
        page_size: page_size as usize,
        after: None,
    })
}

/// The hash of the query parts a page token binds to.
fn token_hash(body: &QueryRequest) -> String {
    let mut templates = body.template_ids.clone();
    templates.sort();
    let mut parties = body.parties.clone();
    parties.sort();
    page::query_hash(&serde_json::json!({
        "templateIds": templates, "parties": parties, "filter": body.filter,
    }))
}
