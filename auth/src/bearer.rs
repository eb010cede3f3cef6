//! Where a token travels: the `Authorization: Bearer …` header of HTTP and gRPC requests, and
//! the `jwt.token.<token>` websocket subprotocol (as Daml's JSON API and Canton accept it).
//! These only cut strings; [`crate::Verifier::verify`] judges the token.

use crate::error::AuthError;

/// The websocket subprotocol prefix that carries a token.
pub const WEBSOCKET_TOKEN_PREFIX: &str = "jwt.token.";

/// The token in an `Authorization` header value (`None` when the header is absent). The scheme
/// is matched case-insensitively (RFC 9110 §11.1).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(AuthError::missing());
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::malformed(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim_start();
    if token.is_empty() {
        return Err(AuthError::missing());
    }
    Ok(token)
}

/// The token in a `Sec-WebSocket-Protocol` header value (comma-separated; join several headers
/// with `,`), carried as the subprotocol `jwt.token.<token>` next to e.g. `daml.ws.auth`.
pub fn websocket_token(protocols: Option<&str>) -> Result<&str, AuthError> {
    protocols
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(WEBSOCKET_TOKEN_PREFIX))
        .filter(|token| !token.is_empty())
        .ok_or_else(AuthError::missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn bearer_header() {
        assert_eq!(
            bearer_token(Some("Bearer abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(bearer_token(Some("bearer  abc")).unwrap(), "abc");
        assert_eq!(bearer_token(None).unwrap_err().reason(), Reason::Missing);
        assert_eq!(
            bearer_token(Some("")).unwrap_err().reason(),
            Reason::Missing
        );
        assert_eq!(
            bearer_token(Some("Bearer ")).unwrap_err().reason(),
            Reason::Missing
        );
        assert_eq!(
            bearer_token(Some("Basic dXNlcg==")).unwrap_err().reason(),
            Reason::Malformed
        );
    }

    #[test]
    fn websocket_subprotocol() {
        assert_eq!(
            websocket_token(Some("daml.ws.auth, jwt.token.abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            websocket_token(Some("jwt.token.x,daml.ws.auth")).unwrap(),
            "x"
        );
        assert_eq!(
            websocket_token(Some("daml.ws.auth")).unwrap_err().reason(),
            Reason::Missing
        );
        assert_eq!(
            websocket_token(Some("jwt.token.")).unwrap_err().reason(),
            Reason::Missing
        );
        assert_eq!(websocket_token(None).unwrap_err().reason(), Reason::Missing);
    }
}
