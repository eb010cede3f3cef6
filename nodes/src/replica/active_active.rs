//! Liveness of an active-active replica (a sequencer): every running replica serves; it is
//! healthy while its database answers and its service says it is functional (a sequencer's
//! writer is online). There is no leadership to elect or hand over.

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
    service: Option<watch::Receiver<Result<(), String>>>,
}

impl Liveness {
    pub(super) fn new(
        store: Store,
        id: Identity,
        cfg: ReplicationConfig,
        addresses: Addresses,
        state: watch::Sender<ReplicaState>,
        metrics: NodeMetrics,
        service: Option<watch::Receiver<Result<(), String>>>,
    ) -> Self {
        Self {
            store,
            id,
            cfg,
            addresses,
            state,
            metrics,
            service,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let interval = Duration::from_millis(self.cfg.renew_interval_ms);
        let mut service = self.service.take();
        loop {
            let verdict = service
                .as_mut()
                .map_or(Ok(()), |s| s.borrow_and_update().clone());
            self.check(verdict).await;
            let service_changed = async {
                match service.as_mut() {
                    Some(s) => s.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(Command::SetPassive { reply, .. }) = commands.recv() => {
                    let _ = reply.send(Err(HandoverError::ActiveActive));
                }
                true = service_changed => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn check(&self, service: Result<(), String>) {
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
        let (database_ok, detail) = match result {
            Ok(Ok(())) => (
                true,
                format!(
                    "active: {} {} of {}",
                    self.id.kind, self.id.replica, self.id.node
                ),
            ),
            Ok(Err(e)) => (false, format!("database unreachable: {e}")),
            Err(_) => (false, "database unreachable: no answer in time".to_string()),
        };
        if !database_ok {
            self.metrics.database_errors.inc();
        }
        let (ok, detail) = match (database_ok, service) {
            (true, Err(problem)) => (false, problem),
            (ok, _) => (ok, detail),
        };
        let was_active = self.state.borrow().role == Role::Active;
        if ok != was_active {
            self.metrics
                .transition(if ok { Role::Active } else { Role::Passive }, 0);
        }
        self.state.send_modify(|s| {
            s.role = if ok { Role::Active } else { Role::Passive };
            s.database_ok = database_ok;
            s.detail = detail;
        });
    }
}
