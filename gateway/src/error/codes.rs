//! The one table from ledger failures to HTTP: a gRPC status code gives the default HTTP
//! status, a few stable ledger error codes override it. Pure; used by [`super::ApiError`].

use http::StatusCode;
use tonic::Code;

/// The HTTP status for a gRPC status code (grpc-gateway's mapping, with `FAILED_PRECONDITION`
/// and `ABORTED` as 409: the ledger's state, not the request's shape, refused it).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Ledger error codes whose HTTP status differs from their gRPC code's default.
const OVERRIDES: &[(&str, StatusCode)] = &[
    ("DUPLICATE_COMMAND", StatusCode::CONFLICT),
    ("SUBMISSION_ALREADY_IN_FLIGHT", StatusCode::CONFLICT),
    ("CONTRACT_NOT_FOUND", StatusCode::NOT_FOUND),
    ("CONTRACT_NOT_ACTIVE", StatusCode::CONFLICT),
    ("PARTY_NOT_FOUND", StatusCode::NOT_FOUND),
    ("TEMPLATE_NOT_FOUND", StatusCode::BAD_REQUEST),
    ("PACKAGE_NOT_FOUND", StatusCode::BAD_REQUEST),
    ("OFFSET_AFTER_LEDGER_END", StatusCode::BAD_REQUEST),
    ("OFFSET_PRUNED", StatusCode::GONE),
    ("REPLICA_PASSIVE", StatusCode::SERVICE_UNAVAILABLE),
];

/// The HTTP status for a ledger error code reported with a gRPC status code.
pub fn http_status_for(code: Code, error_code: &str) -> StatusCode {
    OVERRIDES
        .iter()
        .find(|(c, _)| *c == error_code)
        .map_or_else(|| http_status(code), |(_, s)| *s)
}

/// The canonical name of a gRPC status code, e.g. `INVALID_ARGUMENT`.
pub fn grpc_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Whether `s` looks like a stable error code (`SCREAMING_SNAKE_CASE`).
pub fn is_error_code(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Splits a ledger error message into its error code and the rest. The message starts with a
/// stable code, optionally after the gRPC code name: `INVALID_ARGUMENT: TEMPLATE_NOT_FOUND:
/// no template #x:Y:Z` → (`TEMPLATE_NOT_FOUND`, `no template #x:Y:Z`).
pub fn split_message(code: Code, message: &str) -> (Option<&str>, &str) {
    let mut rest = message;
    if let Some(after) = rest
        .strip_prefix(grpc_name(code))
        .and_then(|r| r.strip_prefix(": "))
    {
        rest = after;
    }
    match rest.split_once(": ") {
        Some((head, tail)) if is_error_code(head) => (Some(head), tail),
        _ if is_error_code(rest.trim()) => (Some(rest.trim()), ""),
        _ => (None, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(Code::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            http_status(Code::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            http_status_for(Code::InvalidArgument, "OFFSET_PRUNED"),
            StatusCode::GONE
        );
        assert_eq!(
            http_status_for(Code::AlreadyExists, "ANYTHING_ELSE"),
            StatusCode::CONFLICT
        );
        // A user the ledger does not know: 404 when an admin names it, 403 when a token does
        // (the caller has no rights).
        assert_eq!(
            http_status_for(Code::NotFound, "USER_NOT_FOUND"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            http_status_for(Code::PermissionDenied, "USER_NOT_FOUND"),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn messages_split_into_code_and_text() {
        assert_eq!(
            split_message(
                Code::InvalidArgument,
                "INVALID_ARGUMENT: TEMPLATE_NOT_FOUND: no #a:B:C"
            ),
            (Some("TEMPLATE_NOT_FOUND"), "no #a:B:C")
        );
        assert_eq!(
            split_message(Code::AlreadyExists, "DUPLICATE_COMMAND: seen at 5"),
            (Some("DUPLICATE_COMMAND"), "seen at 5")
        );
        assert_eq!(
            split_message(Code::Unavailable, "tcp connect error: refused"),
            (None, "tcp connect error: refused")
        );
        assert_eq!(
            split_message(Code::NotFound, "USER_NOT_FOUND"),
            (Some("USER_NOT_FOUND"), "")
        );
    }
}
