//! The gateway's error boundary: [`ApiError`] is every way a request can fail, and it answers
//! as a [`Problem`] document. Internals (transport errors, library messages) are logged here,
//! once, and never shown to the client.

pub mod codes;
mod problem;

pub use problem::{Problem, PROBLEM_JSON};

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use tandem_auth::AuthError;

/// The header the ledger puts its error code in (trailer or header).
pub const ERROR_CODE_METADATA: &str = "x-tandem-error-code";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid token (401).
    #[error("{0}")]
    Unauthenticated(AuthError),
    /// The caller lacks a right (403); nothing was sent to the ledger.
    #[error("{0}")]
    Forbidden(String),
    /// Bad input (400), naming the field when there is one.
    #[error("{detail}")]
    BadRequest {
        field: Option<String>,
        detail: String,
    },
    /// A body over the limit (413).
    #[error("the request body is larger than the gateway accepts (its max_body_bytes)")]
    PayloadTooLarge,
    /// A body that is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Nothing at that path (404).
    #[error("{0}")]
    NotFound(String),
    /// The ledger refused or failed.
    #[error("{}", .0.message())]
    Ledger(tonic::Status),
    /// The gateway cannot answer now (503), e.g. its cache did not catch up in time.
    #[error("{detail}")]
    Unavailable { code: &'static str, detail: String },
    /// A bug or an unexpected state; the detail is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Bad input in `field`.
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> Problem {
        match self {
            ApiError::Unauthenticated(e) => {
                let mut p = Problem::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", e.message());
                p.reason = Some(e.reason().as_str().to_owned());
                p
            }
            ApiError::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", detail.clone())
            }
            ApiError::BadRequest { field, detail } => {
                let mut p =
                    Problem::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", detail.clone());
                p.field = field.clone();
                p
            }
            ApiError::PayloadTooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                self.to_string(),
            ),
            ApiError::UnsupportedMediaType(detail) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                detail.clone(),
            ),
            ApiError::NotFound(detail) => {
                Problem::new(StatusCode::NOT_FOUND, "NOT_FOUND", detail.clone())
            }
            ApiError::Ledger(status) => ledger_problem(status),
            ApiError::Unavailable { code, detail } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, detail.clone())
            }
            ApiError::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "the gateway failed unexpectedly; the request id identifies it in the logs",
            ),
        }
    }
}

/// The problem document for a gRPC status from the ledger. The error code comes from the
/// `x-tandem-error-code` metadata or the message prefix; a status without one (a transport
/// failure, a panic upstream) gets a generic detail, and its message is logged.
pub fn ledger_problem(status: &tonic::Status) -> Problem {
    let metadata_code = status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|c| codes::is_error_code(c));
    let (message_code, text) = codes::split_message(status.code(), status.message());
    let grpc = codes::grpc_name(status.code());
    let (code, detail) = match metadata_code.or(message_code) {
        Some(code) => (code, text.to_owned()),
        None => {
            tracing::warn!(
                grpc_status = grpc,
                message = status.message(),
                "ledger call failed without an error code"
            );
            let detail = match status.code() {
                tonic::Code::Unavailable => "the ledger is unavailable; retry later".to_owned(),
                tonic::Code::DeadlineExceeded => "the ledger did not answer in time".to_owned(),
                tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss => {
                    "the ledger failed unexpectedly".to_owned()
                }
                _ => text.to_owned(),
            };
            (grpc, detail)
        }
    };
    let mut problem = Problem::new(codes::http_status_for(status.code(), code), code, detail);
    problem.grpc_status = Some(grpc.to_owned());
    problem
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        ApiError::Ledger(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let problem = self.problem();
        let mut response = problem.clone().into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthenticated(e) => {
                if let Ok(v) = HeaderValue::from_str(&e.www_authenticate()) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::Ledger(s) if s.code() == tonic::Code::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        if problem.status == 503 {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_statuses_become_problems() {
        let p = ledger_problem(&tonic::Status::invalid_argument(
            "INVALID_ARGUMENT: TEMPLATE_NOT_FOUND: no template #iou:Iou:Nope",
        ));
        assert_eq!(p.status, 400);
        assert_eq!(p.code, "TEMPLATE_NOT_FOUND");
        assert_eq!(p.detail, "no template #iou:Iou:Nope");
        assert_eq!(p.grpc_status.as_deref(), Some("INVALID_ARGUMENT"));

        let mut with_trailer = tonic::Status::already_exists("seen before");
        with_trailer
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, "DUPLICATE_COMMAND".parse().unwrap());
        let p = ledger_problem(&with_trailer);
        assert_eq!((p.status, p.code.as_str()), (409, "DUPLICATE_COMMAND"));

        let p = ledger_problem(&tonic::Status::unavailable(
            "tcp connect error: 10.0.0.1:5001",
        ));
        assert_eq!((p.status, p.code.as_str()), (503, "UNAVAILABLE"));
        assert!(
            !p.detail.contains("10.0.0.1"),
            "internals leak: {}",
            p.detail
        );

        let p = ledger_problem(&tonic::Status::permission_denied(
            "PERMISSION_DENIED: not yours",
        ));
        assert_eq!((p.status, p.code.as_str()), (403, "PERMISSION_DENIED"));
        let p = ledger_problem(&tonic::Status::unauthenticated("UNAUTHENTICATED: expired"));
        assert_eq!(p.status, 401);
    }

    #[test]
    fn responses_are_problem_json_with_headers() {
        let response = ApiError::Ledger(tonic::Status::unavailable("REPLICA_PASSIVE: passive"))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::field("pageToken", "bad").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
