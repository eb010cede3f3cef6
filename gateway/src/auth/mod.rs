//! Authentication and authorization of HTTP requests: the [`Caller`] extractor verifies the
//! bearer token with the shared `tandem-auth` verifier (401 with the reason otherwise), and
//! [`Caller::rights`] finds what the caller may do; [`policy`] decides per endpoint class.

pub mod policy;
mod rights;

pub use rights::{Rights, RightsCache};

use crate::error::ApiError;
use crate::ledger::CallContext;
use crate::state::SharedState;
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{header, HeaderMap};
use std::sync::Arc;
use tandem_auth::{AuthError, Claims, Grant, Reason};

/// The request id header, set (or kept) by the request-id layer.
pub const REQUEST_ID: &str = "x-request-id";

/// A caller whose token was verified.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
    /// The token and request id to forward to the ledger.
    pub ctx: CallContext,
}

impl Caller {
    /// Verifies `token` (already cut out of its header or subprotocol).
    pub async fn verify(
        state: &SharedState,
        token: Result<&str, AuthError>,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let verified = match token {
            Ok(token) => state.verifier.verify(token).await.map(|c| (c, token)),
            Err(e) => Err(e),
        };
        match verified {
            Ok((claims, token)) => Ok(Self {
                ctx: CallContext {
                    token: Some(token.to_owned()),
                    request_id: request_id(headers),
                },
                claims,
            }),
            Err(e) => {
                state.metrics.auth_refused(e.reason());
                Err(ApiError::Unauthenticated(e))
            }
        }
    }

    /// What the caller may do: the token's own rights, or its user's rights from user
    /// management (cached briefly).
    pub async fn rights(&self, state: &SharedState) -> Result<Arc<Rights>, ApiError> {
        match &self.claims.grant {
            Grant::Rights(rights) => Ok(Arc::new(Rights::from_token(rights))),
            Grant::User { user_id } => state.rights.get(user_id, &state.ledger, &self.ctx).await,
        }
    }
}

impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let token = match parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            Some(Err(_)) => Err(AuthError::new(
                Reason::Malformed,
                "the Authorization header is not ASCII",
            )),
            Some(Ok(value)) => tandem_auth::bearer_token(Some(value)),
            None => tandem_auth::bearer_token(None),
        };
        Self::verify(state, token, &parts.headers).await
    }
}

/// The request id of a request (set by the request-id layer).
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
