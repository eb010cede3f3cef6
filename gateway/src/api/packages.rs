//! `/v2/packages`: the uploaded ledger packages, and uploading one (the YAML or JSON package
//! document of design.md §7, as the request body).

use super::docs::{BodyErrors, Errors};
use crate::auth::{policy, Caller};
use crate::error::ApiError;
use crate::json::read_body;
use crate::state::SharedState;
use crate::value::micros_to_rfc3339;
use axum::extract::{Request, State};
use axum::Json;
use http::header;
use serde::{Deserialize, Serialize};
use tandem_proto::ledger::v2 as pb;
use utoipa::ToSchema;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsPackageDetails {
    pub package_id: String,
    pub name: String,
    pub version: String,
    /// RFC 3339.
    pub uploaded_at: String,
}

impl From<pb::PackageDetails> for JsPackageDetails {
    fn from(p: pb::PackageDetails) -> Self {
        Self {
            package_id: p.package_id,
            name: p.name,
            version: p.version,
            uploaded_at: micros_to_rfc3339(p.uploaded_at_us),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPackagesResponse {
    pub package_ids: Vec<String>,
    pub package_details: Vec<JsPackageDetails>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UploadPackageResponse {
    pub package: JsPackageDetails,
}

/// The packages uploaded to this participant.
#[utoipa::path(get, operation_id = "list_packages", path = "/v2/packages", tag = "packages",
    responses((status = 200, description = "The packages", body = ListPackagesResponse), Errors),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<SharedState>,
    caller: Caller,
) -> Result<Json<ListPackagesResponse>, ApiError> {
    let request = state
        .ledger
        .request(pb::ListPackagesRequest {}, &caller.ctx);
    let r = state
        .ledger
        .packages()
        .list_packages(request)
        .await?
        .into_inner();
    state.remember_names(&r.packages);
    Ok(Json(ListPackagesResponse {
        package_ids: r.packages.iter().map(|p| p.package_id.clone()).collect(),
        package_details: r.packages.into_iter().map(Into::into).collect(),
    }))
}

/// Uploads a package document. `Content-Type: application/yaml` (or `text/yaml`) for YAML,
/// `application/json` for JSON; the participant checks it before accepting it.
#[utoipa::path(post, operation_id = "upload_package", path = "/v2/packages", tag = "packages",
    request_body(description = "The package document", content(
        (String = "application/yaml"),
        (serde_json::Value = "application/json")
    )),
    responses((status = 200, description = "The uploaded package", body = UploadPackageResponse), BodyErrors),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<SharedState>,
    caller: Caller,
    request: Request,
) -> Result<Json<UploadPackageResponse>, ApiError> {
    policy::check_admin(&*caller.rights(&state).await?)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let format = match content_type.as_str() {
        "application/json" => "json",
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => "yaml",
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "a package is application/yaml or application/json, not {other:?}"
            )))
        }
    };
    let content = read_body(request, &state).await?;
    if content.is_empty() {
        return Err(ApiError::BadRequest {
            field: None,
            detail: "the body is empty; send the package document".into(),
        });
    }
    let request = state.ledger.request(
        pb::UploadPackageRequest {
            format: format.to_owned(),
            content: content.to_vec(),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .package_management()
        .upload_package(request)
        .await?
        .into_inner();
    let package = r
        .package
        .ok_or_else(|| ApiError::Internal("the ledger answered without package details".into()))?;
    state.remember_names(std::slice::from_ref(&package));
    Ok(Json(UploadPackageResponse {
        package: package.into(),
    }))
}
