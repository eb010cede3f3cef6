//! `/v2/users`: user management and rights. Admins manage everyone; a user may read its own
//! record and rights. The rights cache forgets a user whose rights the gateway changed.

use super::docs::{BodyErrors, Errors};
use super::parties::PageParams;
use crate::auth::{policy, Caller};
use crate::error::ApiError;
use crate::json::{ApiJson, ApiPath, ApiQuery};
use crate::state::SharedState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tandem_proto::ledger::v2 as pb;
use utoipa::ToSchema;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsUser {
    pub id: String,
    #[serde(default)]
    pub primary_party: String,
    #[serde(default)]
    pub is_deactivated: bool,
}

impl From<pb::User> for JsUser {
    fn from(u: pb::User) -> Self {
        Self {
            id: u.id,
            primary_party: u.primary_party,
            is_deactivated: u.is_deactivated,
        }
    }
}

impl From<JsUser> for pb::User {
    fn from(u: JsUser) -> Self {
        Self {
            id: u.id,
            primary_party: u.primary_party,
            is_deactivated: u.is_deactivated,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartyRight {
    pub party: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartyRightValue {
    pub value: PartyRight,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyValue {
    #[serde(default)]
    pub value: Empty,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsRightKind {
    CanActAs(PartyRightValue),
    CanReadAs(PartyRightValue),
    ParticipantAdmin(EmptyValue),
}

/// A right, as Canton's JSON API writes it: `{"kind": {"CanActAs": {"value": {"party": ..}}}}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsRight {
    pub kind: JsRightKind,
}

impl From<JsRight> for pb::Right {
    fn from(r: JsRight) -> Self {
        use pb::right::Kind;
        let kind = match r.kind {
            JsRightKind::CanActAs(p) => Kind::CanActAs(pb::right::CanActAs {
                party: p.value.party,
            }),
            JsRightKind::CanReadAs(p) => Kind::CanReadAs(pb::right::CanReadAs {
                party: p.value.party,
            }),
            JsRightKind::ParticipantAdmin(_) => {
                Kind::ParticipantAdmin(pb::right::ParticipantAdmin {})
            }
        };
        Self { kind: Some(kind) }
    }
}

fn rights_to_js(rights: Vec<pb::Right>) -> Vec<JsRight> {
    use pb::right::Kind;
    rights
        .into_iter()
        .filter_map(|r| {
            let kind = match r.kind? {
                Kind::CanActAs(p) => JsRightKind::CanActAs(PartyRightValue {
                    value: PartyRight { party: p.party },
                }),
                Kind::CanReadAs(p) => JsRightKind::CanReadAs(PartyRightValue {
                    value: PartyRight { party: p.party },
                }),
                Kind::ParticipantAdmin(_) => JsRightKind::ParticipantAdmin(EmptyValue::default()),
            };
            Some(JsRight { kind })
        })
        .collect()
}

impl Default for EmptyValue {
    fn default() -> Self {
        Self { value: Empty {} }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserRequest {
    pub user: JsUser,
    #[serde(default)]
    pub rights: Vec<JsRight>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UserResponse {
    pub user: JsUser,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListUsersResponse {
    pub users: Vec<JsUser>,
    pub next_page_token: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ListUserRightsResponse {
    pub rights: Vec<JsRight>,
}

/// Grant or revoke: the user is the path's; `userId` may repeat it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRightsRequest {
    #[serde(default)]
    pub user_id: Option<String>,
    pub rights: Vec<JsRight>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantUserRightsResponse {
    pub newly_granted_rights: Vec<JsRight>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokeUserRightsResponse {
    pub newly_revoked_rights: Vec<JsRight>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct DeleteUserResponse {}

/// Users of this participant.
#[utoipa::path(get, operation_id = "list_users", path = "/v2/users", tag = "users", params(PageParams),
    responses((status = 200, description = "A page of users", body = ListUsersResponse), Errors),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ListUsersResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    let request = state.ledger.request(
        pb::ListUsersRequest {
            page_size: page.page_size.unwrap_or(0),
            page_token: page.page_token.unwrap_or_default(),
        },
        &caller.ctx,
    );
    let r = state.ledger.users().list_users(request).await?.into_inner();
    Ok(Json(ListUsersResponse {
        users: r.users.into_iter().map(Into::into).collect(),
        next_page_token: r.next_page_token,
    }))
}

/// Creates a user with rights.
#[utoipa::path(post, operation_id = "create_user", path = "/v2/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 200, description = "The new user", body = UserResponse), BodyErrors),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<SharedState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    if body.user.id.is_empty() {
        return Err(ApiError::field("user.id", "must not be empty"));
    }
    let id = body.user.id.clone();
    let request = state.ledger.request(
        pb::CreateUserRequest {
            user: Some(body.user.into()),
            rights: body.rights.into_iter().map(Into::into).collect(),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .users()
        .create_user(request)
        .await?
        .into_inner();
    state.rights.forget(&id).await;
    let user = r
        .user
        .ok_or_else(|| ApiError::Internal("the ledger answered without a user".into()))?;
    Ok(Json(UserResponse { user: user.into() }))
}

/// The user the token belongs to.
#[utoipa::path(get, operation_id = "get_authenticated_user", path = "/v2/authenticated-user", tag = "users",
    responses((status = 200, description = "The calling user", body = UserResponse), Errors),
    security(("bearer" = [])))]
pub async fn authenticated_user(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<UserResponse>, ApiError> {
    get_user(&state, &caller, String::new()).await
}

/// One user.
#[utoipa::path(get, operation_id = "get_user", path = "/v2/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The user id")),
    responses((status = 200, description = "The user", body = UserResponse), Errors),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<UserResponse>, ApiError> {
    policy::check_self_or_admin(&*caller.rights(&state).await?, &user_id)?;
    get_user(&state, &caller, user_id).await
}

async fn get_user(
    state: &SharedState,
    caller: &Caller,
    user_id: String,
) -> Result<Json<UserResponse>, ApiError> {
    let request = state
        .ledger
        .request(pb::GetUserRequest { user_id }, &caller.ctx);
    let r = state.ledger.users().get_user(request).await?.into_inner();
    let user = r
        .user
        .ok_or_else(|| ApiError::Internal("the ledger answered without a user".into()))?;
    Ok(Json(UserResponse { user: user.into() }))
}

/// Deletes a user.
#[utoipa::path(delete, operation_id = "delete_user", path = "/v2/users/{user_id}", tag = "users",
    params(("user_id" = String, Path, description = "The user id")),
    responses((status = 200, description = "Deleted", body = DeleteUserResponse), Errors),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<DeleteUserResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    let request = state.ledger.request(
        pb::DeleteUserRequest {
            user_id: user_id.clone(),
        },
        &caller.ctx,
    );
    state.ledger.users().delete_user(request).await?;
    state.rights.forget(&user_id).await;
    Ok(Json(DeleteUserResponse {}))
}

/// A user's rights.
#[utoipa::path(get, operation_id = "list_user_rights", path = "/v2/users/{user_id}/rights", tag = "users",
    params(("user_id" = String, Path, description = "The user id")),
    responses((status = 200, description = "The user's rights", body = ListUserRightsResponse), Errors),
    security(("bearer" = [])))]
pub async fn list_rights(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<ListUserRightsResponse>, ApiError> {
    policy::check_self_or_admin(&*caller.rights(&state).await?, &user_id)?;
    let request = state
        .ledger
        .request(pb::ListUserRightsRequest { user_id }, &caller.ctx);
    let r = state
        .ledger
        .users()
        .list_user_rights(request)
        .await?
        .into_inner();
    Ok(Json(ListUserRightsResponse {
        rights: rights_to_js(r.rights),
    }))
}

fn check_user_id(path: &str, body: &UserRightsRequest) -> Result<(), ApiError> {
    match &body.user_id {
        Some(id) if !id.is_empty() && id != path => Err(ApiError::field(
            "userId",
            "differs from the user id in the path",
        )),
        _ => Ok(()),
    }
}

/// Grants rights to a user.
#[utoipa::path(post, operation_id = "grant_user_rights", path = "/v2/users/{user_id}/rights", tag = "users",
    params(("user_id" = String, Path, description = "The user id")),
    request_body = UserRightsRequest,
    responses((status = 200, description = "The rights the user did not have before", body = GrantUserRightsResponse), BodyErrors),
    security(("bearer" = [])))]
pub async fn grant(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<UserRightsRequest>,
) -> Result<Json<GrantUserRightsResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    check_user_id(&user_id, &body)?;
    let request = state.ledger.request(
        pb::GrantUserRightsRequest {
            user_id: user_id.clone(),
            rights: body.rights.into_iter().map(Into::into).collect(),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .users()
        .grant_user_rights(request)
        .await?
        .into_inner();
    state.rights.forget(&user_id).await;
    Ok(Json(GrantUserRightsResponse {
        newly_granted_rights: rights_to_js(r.newly_granted_rights),
    }))
}

/// Revokes rights from a user.
#[utoipa::path(patch, operation_id = "revoke_user_rights", path = "/v2/users/{user_id}/rights", tag = "users",
    params(("user_id" = String, Path, description = "The user id")),
    request_body = UserRightsRequest,
    responses((status = 200, description = "The rights the user had and lost", body = RevokeUserRightsResponse), BodyErrors),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<SharedState>,
    caller: Caller,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<UserRightsRequest>,
) -> Result<Json<RevokeUserRightsResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    check_user_id(&user_id, &body)?;
    let request = state.ledger.request(
        pb::RevokeUserRightsRequest {
            user_id: user_id.clone(),
            rights: body.rights.into_iter().map(Into::into).collect(),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .users()
        .revoke_user_rights(request)
        .await?
        .into_inner();
    state.rights.forget(&user_id).await;
    Ok(Json(RevokeUserRightsResponse {
        newly_revoked_rights: rights_to_js(r.newly_revoked_rights),
    }))
}
