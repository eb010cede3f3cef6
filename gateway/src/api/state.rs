//! `/v2/state/*` and `/v2/updates`: active contracts at an offset, the ledger end, and the
//! transactions between two offsets, read from the participant (not the cache) as lists.

use super::commands::ListParams;
use super::docs::{BodyErrors, Errors};
use super::filter::PartyFilter;
use super::model::*;
use crate::auth::{policy, Caller};
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};
use crate::state::SharedState;
use axum::extract::State;
use axum::Json;
use tandem_proto::ledger::v2 as pb;

/// The current ledger end: the offset of the last update.
#[utoipa::path(get, operation_id = "get_ledger_end", path = "/v2/state/ledger-end", tag = "state",
    responses((status = 200, description = "The ledger end", body = LedgerEndResponse), Errors),
    security(("bearer" = [])))]
pub async fn ledger_end(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<LedgerEndResponse>, ApiError> {
    let offset = state.ledger.ledger_end(&caller.ctx).await?;
    Ok(Json(LedgerEndResponse { offset }))
}

/// The contracts active at an offset (the ledger end by default) that the filter's parties see.
#[utoipa::path(post, operation_id = "list_active_contracts", path = "/v2/state/active-contracts", tag = "state",
    request_body = GetActiveContractsRequest,
    params(ListParams),
    responses(
        (status = 200, description = "The active contracts, each with the snapshot's offset", body = Vec<JsGetActiveContractsResponse>),
        BodyErrors
    ),
    security(("bearer" = [])))]
pub async fn active_contracts(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiJson(body): ApiJson<GetActiveContractsRequest>,
) -> Result<Json<Vec<JsGetActiveContractsResponse>>, ApiError> {
    let limit = super::limit(&state, params.limit)?;
    let (request, filter) = acs_request(&state, &caller, &body).await?;
    let mut stream = state
        .ledger
        .state()
        .get_active_contracts(state.ledger.stream_request(request, &caller.ctx))
        .await?
        .into_inner();
    let names = state.names_for(filter.templates(), &caller.ctx).await;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(item) = stream.message().await? else {
            break;
        };
        if let Some(js) = acs_item(&item, &filter, &names) {
            out.push(js);
        }
    }
    Ok(Json(out))
}

/// Checks an active-contracts request and builds the Ledger API request.
pub async fn acs_request(
    state: &SharedState,
    caller: &Caller,
    body: &GetActiveContractsRequest,
) -> Result<(pb::GetActiveContractsRequest, PartyFilter), ApiError> {
    let filter = PartyFilter::from_js(&body.filter, "filter")?;
    if body.active_at_offset < 0 {
        return Err(ApiError::field("activeAtOffset", "must not be negative"));
    }
    let rights = caller.rights(state).await?;
    policy::check_read_as(&rights, &filter.parties(), "filter.filtersByParty")?;
    Ok((
        pb::GetActiveContractsRequest {
            filter: Some(filter.to_pb()),
            active_at_offset: body.active_at_offset,
        },
        filter,
    ))
}

/// One snapshot element, if the filter takes it.
pub fn acs_item(
    item: &pb::GetActiveContractsResponse,
    filter: &PartyFilter,
    names: &std::collections::HashMap<String, String>,
) -> Option<JsGetActiveContractsResponse> {
    let event = item.created_event.as_ref()?;
    if !filter.accepts(&event.template_id, &event.witness_parties, names) {
        return None;
    }
    Some(JsGetActiveContractsResponse {
        offset: item.offset,
        contract_entry: JsContractEntry::JsActiveContract(JsActiveContract {
            created_event: event.into(),
        }),
    })
}

/// The transactions after `beginExclusive` up to `endInclusive` (the ledger end at the start
/// of the request by default), as the filter's parties see them.
#[utoipa::path(post, operation_id = "list_updates", path = "/v2/updates", tag = "updates",
    request_body = GetUpdatesRequest,
    params(ListParams),
    responses(
        (status = 200, description = "Transactions and checkpoints in offset order", body = Vec<JsGetUpdatesResponse>),
        BodyErrors
    ),
    security(("bearer" = [])))]
pub async fn updates(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiJson(body): ApiJson<GetUpdatesRequest>,
) -> Result<Json<Vec<JsGetUpdatesResponse>>, ApiError> {
    let limit = super::limit(&state, params.limit)?;
    let filter = updates_filter(&state, &caller, &body).await?;
    let end = state.ledger.ledger_end(&caller.ctx).await?;
    super::within_ledger_end("beginExclusive", body.begin_exclusive, end)?;
    if let Some(e) = body.end_inclusive {
        super::within_ledger_end("endInclusive", e, end)?;
    }
    let end_inclusive = match body.end_inclusive {
        Some(e) if e < body.begin_exclusive => {
            return Err(ApiError::field(
                "endInclusive",
                "must not be below beginExclusive",
            ))
        }
        Some(e) => e,
        None => end,
    };
    let mut out = Vec::new();
    if end_inclusive == body.begin_exclusive {
        return Ok(Json(out));
    }
    let request = pb::GetUpdatesRequest {
        begin_exclusive: body.begin_exclusive,
        end_inclusive,
        filter: Some(filter.to_pb()),
    };
    let mut stream = state
        .ledger
        .updates()
        .get_updates(state.ledger.stream_request(request, &caller.ctx))
        .await?
        .into_inner();
    let names = state.names_for(filter.templates(), &caller.ctx).await;
    while out.len() < limit {
        let Some(item) = stream.message().await? else {
            break;
        };
        if let Some(js) = update_item(&item, &filter, &names) {
            out.push(js);
        }
    }
    Ok(Json(out))
}

/// Checks an updates request's filter, offsets and rights.
pub async fn updates_filter(
    state: &SharedState,
    caller: &Caller,
    body: &GetUpdatesRequest,
) -> Result<PartyFilter, ApiError> {
    let filter = PartyFilter::from_js(&body.filter, "filter")?;
    if body.begin_exclusive < 0 {
        return Err(ApiError::field("beginExclusive", "must not be negative"));
    }
    if body.end_inclusive.is_some_and(|e| e < 0) {
        return Err(ApiError::field("endInclusive", "must not be negative"));
    }
    let rights = caller.rights(state).await?;
    policy::check_read_as(&rights, &filter.parties(), "filter.filtersByParty")?;
    Ok(filter)
}

/// One update element, narrowed to the filter (`None` if nothing is left).
pub fn update_item(
    item: &pb::GetUpdatesResponse,
    filter: &PartyFilter,
    names: &std::collections::HashMap<String, String>,
) -> Option<JsGetUpdatesResponse> {
    let update = match item.update.as_ref()? {
        pb::get_updates_response::Update::Transaction(tx) => {
            JsUpdate::Transaction(TransactionValue {
                value: filter.narrow(tx.into(), names)?,
            })
        }
        pb::get_updates_response::Update::OffsetCheckpoint(c) => {
            JsUpdate::OffsetCheckpoint(CheckpointValue { value: c.into() })
        }
    };
    Some(JsGetUpdatesResponse { update })
}
