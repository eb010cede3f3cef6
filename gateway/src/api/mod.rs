//! The HTTP API: one module per resource, the JSON shapes in [`model`], and [`router`], which
//! assembles the documented routes (utoipa) and yields the OpenAPI document with them, so the
//! document cannot drift from the routes.

pub mod commands;
pub mod docs;
pub mod filter;
pub mod model;
pub mod packages;
pub mod parties;
pub mod query;
pub mod state;
pub mod streams;
pub mod system;
pub mod users;

use crate::error::ApiError;
use crate::state::SharedState;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The documented routes and the OpenAPI document describing exactly them.
pub fn router() -> (Router<SharedState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(commands::submit_and_wait))
        .routes(routes!(commands::submit_and_wait_for_transaction))
        .routes(routes!(commands::submit))
        .routes(routes!(commands::completions, streams::completions))
        .routes(routes!(state::active_contracts, streams::active_contracts))
        .routes(routes!(state::ledger_end))
        .routes(routes!(state::updates, streams::updates))
        .routes(routes!(query::query))
        .routes(routes!(parties::list, parties::allocate))
        .routes(routes!(parties::participant_id))
        .routes(routes!(parties::get))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::authenticated_user))
        .routes(routes!(users::get, users::delete))
        .routes(routes!(users::list_rights, users::grant, users::revoke))
        .routes(routes!(packages::list, packages::upload))
        .routes(routes!(system::version))
        .routes(routes!(system::livez))
        .routes(routes!(system::readyz))
        .split_for_parts()
}

/// A 400 naming `field` when `offset` lies beyond the ledger end `end`.
pub fn within_ledger_end(field: &str, offset: i64, end: i64) -> Result<(), ApiError> {
    if offset > end {
        return Err(ApiError::field(
            field,
            format!("offset {offset} is beyond the ledger end {end}"),
        ));
    }
    Ok(())
}

/// The `?limit=` of a list request, bounded by `max_list_items`.
pub fn limit(state: &SharedState, asked: Option<u64>) -> Result<usize, ApiError> {
    let max = state.max_items();
    match asked {
        None => Ok(max),
        Some(0) => Err(ApiError::field("limit", "must be positive")),
        Some(n) if n > max as u64 => Err(ApiError::field("limit", format!("at most {max}"))),
        Some(n) => Ok(n as usize),
    }
}
