//! `/v2/parties`: listing, allocating and looking up parties (admin), and the participant id.

use super::docs::{BodyErrors, Errors};
use crate::auth::{policy, Caller};
use crate::error::ApiError;
use crate::json::{ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tandem_proto::ledger::v2 as pb;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostingParticipant {
    pub participant: String,
    /// `submission`, `confirmation` or `observation`.
    pub permission: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsPartyDetails {
    pub party: String,
    /// Hosted on this participant.
    pub is_local: bool,
    pub threshold: u32,
    pub hosting: Vec<HostingParticipant>,
}

impl From<pb::PartyDetails> for JsPartyDetails {
    fn from(p: pb::PartyDetails) -> Self {
        Self {
            party: p.party,
            is_local: p.is_local,
            threshold: p.threshold,
            hosting: p
                .hosting
                .into_iter()
                .map(|h| HostingParticipant {
                    participant: h.participant,
                    permission: h.permission,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPartiesResponse {
    pub party_details: Vec<JsPartyDetails>,
    /// Empty on the last page.
    pub next_page_token: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetPartiesResponse {
    pub party_details: Vec<JsPartyDetails>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllocatePartyRequest {
    /// The party id becomes `<hint>::<participant fingerprint>`.
    #[serde(default)]
    pub party_id_hint: String,
    /// Grant `CanActAs` on the new party to this user.
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocatePartyResponse {
    pub party_details: JsPartyDetails,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantIdResponse {
    pub participant_id: String,
}

/// Page parameters of list endpoints backed by the participant.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// At most this many (the participant's default and maximum is 1000).
    pub page_size: Option<u32>,
    /// From a previous answer's `nextPageToken`.
    pub page_token: Option<String>,
}

/// The parties this participant knows.
#[utoipa::path(get, operation_id = "list_parties", path = "/v2/parties", tag = "parties", params(PageParams),
    responses((status = 200, description = "A page of parties", body = ListPartiesResponse), Errors),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListPartiesResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    let request = state.ledger.request(
        pb::ListKnownPartiesRequest {
            page_size: page.page_size.unwrap_or(0),
            page_token: page.page_token.unwrap_or_default(),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .parties()
        .list_known_parties(request)
        .await?
        .into_inner();
    Ok(Json(ListPartiesResponse {
        party_details: r.party_details.into_iter().map(Into::into).collect(),
        next_page_token: r.next_page_token,
    }))
}

/// Allocates a party hosted on this participant.
#[utoipa::path(post, operation_id = "allocate_party", path = "/v2/parties", tag = "parties", request_body = AllocatePartyRequest,
    responses((status = 200, description = "The new party", body = AllocatePartyResponse), BodyErrors),
    security(("bearer" = [])))]
pub async fn allocate(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<AllocatePartyRequest>,
) -> Result<Json<AllocatePartyResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    let request = state.ledger.request(
        pb::AllocatePartyRequest {
            party_id_hint: body.party_id_hint,
            user_id: body.user_id.clone().unwrap_or_default(),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .parties()
        .allocate_party(request)
        .await?
        .into_inner();
    if let Some(user) = &body.user_id {
        state.rights.forget(user).await;
    }
    let details = r
        .party_details
        .ok_or_else(|| ApiError::Internal("the ledger answered without party details".into()))?;
    Ok(Json(AllocatePartyResponse {
        party_details: details.into(),
    }))
}

/// One party's details.
#[utoipa::path(get, operation_id = "get_party", path = "/v2/parties/{party}", tag = "parties",
    params(("party" = String, Path, description = "The party id")),
    responses((status = 200, description = "The party's details (empty if unknown)", body = GetPartiesResponse), Errors),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(party): ApiPath<String>,
) -> Result<Json<GetPartiesResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    let request = state.ledger.request(
        pb::GetPartiesRequest {
            parties: vec![party],
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .parties()
        .get_parties(request)
        .await?
        .into_inner();
    Ok(Json(GetPartiesResponse {
        party_details: r.party_details.into_iter().map(Into::into).collect(),
    }))
}

/// This participant's id.
#[utoipa::path(get, operation_id = "get_participant_id", path = "/v2/parties/participant-id", tag = "parties",
    responses((status = 200, description = "The participant id", body = ParticipantIdResponse), Errors),
    security(("bearer" = [])))]
pub async fn participant_id(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<ParticipantIdResponse>, ApiError> {
    let request = state
        .ledger
        .request(pb::GetParticipantIdRequest {}, &caller.ctx);
    let r = state
        .ledger
        .parties()
        .get_participant_id(request)
        .await?
        .into_inner();
    Ok(Json(ParticipantIdResponse {
        participant_id: r.participant_id,
    }))
}
