//! What a replica manager publishes: the role, the epoch it holds and whether it is healthy.

use crate::config::NodeKind;
use crate::store::{Leader, StoreError};
use std::time::Instant;

/// Which replica of which node this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node: String,
    pub replica: u32,
    pub kind: NodeKind,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.replica)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Active,
    Passive,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Passive => "passive",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplicaState {
    pub role: Role,
    /// The epoch held while active on an active-passive node; 0 otherwise.
    pub epoch: u64,
    pub database_ok: bool,
    /// Why the replica is in this role, for `/health` bodies and `admin status`.
    pub detail: String,
    /// By this process's monotonic clock, when the lease runs out unless renewed. A leader that
    /// was stopped or starved past it stops claiming health before it even learns it was deposed.
    pub lease_valid_until: Option<Instant>,
    /// The leader as last read from the database.
    pub leader: Option<Leader>,
}

impl ReplicaState {
    pub(crate) fn starting() -> Self {
        Self {
            role: Role::Passive,
            epoch: 0,
            database_ok: false,
            detail: "starting".into(),
            lease_valid_until: None,
            leader: None,
        }
    }

    /// `Ok(why)` when the replica is active and functional, else `Err(why not)`.
    pub fn health(&self, now: Instant) -> Result<String, String> {
        if self.role != Role::Active {
            return Err(self.detail.clone());
        }
        if !self.database_ok {
            return Err(format!("active but unhealthy: {}", self.detail));
        }
        if self.lease_valid_until.is_some_and(|until| now >= until) {
            return Err("active but the lease ran out before it was renewed".into());
        }
        Ok(self.detail.clone())
    }
}

/// A completed graceful handover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub new_leader: u32,
    pub new_epoch: u64,
    pub handover_ms: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("this replica is not active; {0}")]
    NotActive(String),
    #[error("sequencers run active-active; there is no leadership to hand over")]
    ActiveActive,
    #[error("no standby replica is running; this replica stays active")]
    NoStandby,
    #[error("no standby took over within {timeout_ms} ms; this replica stays active")]
    NotTakenOver { timeout_ms: u64 },
    #[error("handover failed: {0}")]
    Store(#[from] StoreError),
    #[error("the replica is shutting down")]
    ShuttingDown,
}
