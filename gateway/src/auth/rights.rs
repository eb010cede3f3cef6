//! What a caller may do: [`Rights`] from a custom-claims token, or from the participant's user
//! management for a user token (`ListUserRights` with the caller's own token), remembered
//! briefly per user in a moka cache. Failed lookups are never cached.

use crate::error::ApiError;
use crate::ledger::{CallContext, LedgerClient};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tandem_auth::LegacyRights;
use tandem_proto::ledger::v2 as pb;

/// The rights of one caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rights {
    /// The participant user (user tokens) or the token's application id (custom claims).
    pub user_id: Option<String>,
    pub act_as: BTreeSet<String>,
    pub read_as: BTreeSet<String>,
    pub admin: bool,
}

impl Rights {
    /// The rights a custom-claims token carries.
    pub fn from_token(rights: &LegacyRights) -> Self {
        Self {
            user_id: rights.application_id.clone(),
            act_as: rights.act_as.iter().cloned().collect(),
            read_as: rights.read_as.iter().cloned().collect(),
            admin: rights.admin,
        }
    }

    /// The rights user management lists for `user_id`.
    pub fn from_user(user_id: &str, rights: &[pb::Right]) -> Self {
        let mut out = Self {
            user_id: Some(user_id.to_owned()),
            ..Self::default()
        };
        for right in rights {
            match &right.kind {
                Some(pb::right::Kind::ParticipantAdmin(_)) => out.admin = true,
                Some(pb::right::Kind::CanActAs(r)) => {
                    out.act_as.insert(r.party.clone());
                }
                Some(pb::right::Kind::CanReadAs(r)) => {
                    out.read_as.insert(r.party.clone());
                }
                None => {}
            }
        }
        out
    }

    pub fn can_act_as(&self, party: &str) -> bool {
        self.act_as.contains(party)
    }

    /// Acting as a party includes reading as it.
    pub fn can_read_as(&self, party: &str) -> bool {
        self.act_as.contains(party) || self.read_as.contains(party)
    }

    /// Every party the caller may read as, sorted.
    pub fn readable_parties(&self) -> Vec<String> {
        self.act_as.union(&self.read_as).cloned().collect()
    }
}

/// Rights of user-token callers by user id, for a short time.
#[derive(Clone)]
pub struct RightsCache {
    cache: moka::future::Cache<String, Arc<Rights>>,
}

impl RightsCache {
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The rights of `user_id`, looked up with the caller's token when not cached. Concurrent
    /// lookups of one user share one call.
    pub async fn get(
        &self,
        user_id: &str,
        ledger: &LedgerClient,
        ctx: &CallContext,
    ) -> Result<Arc<Rights>, ApiError> {
        self.cache
            .try_get_with(user_id.to_owned(), async {
                let request = ledger.request(
                    pb::ListUserRightsRequest {
                        user_id: String::new(),
                    },
                    ctx,
                );
                let response = ledger.users().list_user_rights(request).await?;
                Ok::<_, tonic::Status>(Arc::new(Rights::from_user(
                    user_id,
                    &response.into_inner().rights,
                )))
            })
            .await
            .map_err(|e: Arc<tonic::Status>| ApiError::Ledger((*e).clone()))
    }

    /// Forgets a user's rights (after the gateway changed them).
    pub async fn forget(&self, user_id: &str) {
        self.cache.invalidate(user_id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_from_user_management_and_tokens() {
        let listed = vec![
            pb::Right {
                kind: Some(pb::right::Kind::CanActAs(pb::right::CanActAs {
                    party: "Alice".into(),
                })),
            },
            pb::Right {
                kind: Some(pb::right::Kind::CanReadAs(pb::right::CanReadAs {
                    party: "Bob".into(),
                })),
            },
            pb::Right {
                kind: Some(pb::right::Kind::ParticipantAdmin(
                    pb::right::ParticipantAdmin {},
                )),
            },
        ];
        let r = Rights::from_user("alice", &listed);
        assert!(r.admin && r.can_act_as("Alice") && !r.can_act_as("Bob"));
        assert!(r.can_read_as("Alice") && r.can_read_as("Bob") && !r.can_read_as("Carol"));
        assert_eq!(r.readable_parties(), vec!["Alice", "Bob"]);
        let t = Rights::from_token(&LegacyRights {
            act_as: vec!["A".into()],
            application_id: Some("app".into()),
            ..LegacyRights::default()
        });
        assert_eq!(t.user_id.as_deref(), Some("app"));
        assert!(!t.admin && t.can_read_as("A"));
    }
}
