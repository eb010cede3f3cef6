//! Liveness of an active-active replica (a sequencer): every running replica serves; it is
//! healthy while its database answers. There is no leadership to elect or hand over.

use super::{Addresses, Command, HandoverError, Identity, ReplicaState, Role};
use crate::config::ReplicationConfig;
use crate::metrics::NodeMetrics;
use crate::store::{Member, Store};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub(super) struct Liveness {
    store: Store,
    id: Identity,
    cfg: ReplicationConfig,
    addresses: Addresses,
    state: watch::Sender<ReplicaState>,
    metrics: NodeMetrics,
}

impl Liveness {
    pub(super) fn new(
        store: Store,
        id: Identity,
        cfg: ReplicationConfig,
        addresses: Addresses,
        state: watch::Sender<ReplicaState>,
        metrics: NodeMetrics,
    ) -> Self {
        Self {
            store,
            id,
            cfg,
            addresses,
            state,
            metrics,
        }
    }

    pub(super) async fn run(
        self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let interval = Duration::from_millis(self.cfg.renew_interval_ms);
        loop {
            self.check().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(Command::SetPassive { reply, .. }) = commands.recv() => {
                    let _ = reply.send(Err(HandoverError::ActiveActive));
                }
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn check(&self) {
        let member = Member {
            replica: self.id.replica,
            role: Role::Active.as_str().into(),
            pid: std::process::id(),
            health_address: self.addresses.health.clone(),
            admin_address: self.addresses.admin.clone(),
            last_seen_ms_ago: 0,
        };
        let timeout = Duration::from_millis(self.cfg.lease_ms);
        let result =
            tokio::time::timeout(timeout, self.store.heartbeat_member(&self.id.node, &member))
                .await;
        let (ok, detail) = match result {
            Ok(Ok(())) => (
                true,
                format!("active: sequencer {} of {}", self.id.replica, self.id.node),
            ),
            Ok(Err(e)) => (false, format!("database unreachable: {e}")),
            Err(_) => (false, "database unreachable: no answer in time".to_string()),
        };
        if !ok {
            self.metrics.database_errors.inc();
        }
        let was_ok = self.state.borrow().database_ok;
        if ok != was_ok {
            self.metrics
                .transition(if ok { Role::Active } else { Role::Passive }, 0);
        }
        self.state.send_modify(|s| {
            s.role = if ok { Role::Active } else { Role::Passive };
            s.database_ok = ok;
            s.detail = detail;
        });
    }
}
