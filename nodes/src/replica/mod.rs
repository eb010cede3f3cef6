//! Replica management: which replica of a logical node is active. The elector (active-passive
//! kinds) or the liveness loop (active-active sequencers) runs in the background and publishes
//! every transition on a watch channel; the node's servers subscribe to it to start and stop
//! what they serve. `set-passive` requests reach the elector through [`ReplicaHandle`].

mod active_active;
mod elector;
mod state;

pub use state::{Handover, HandoverError, Identity, ReplicaState, Role};

use crate::config::ReplicationConfig;
use crate::metrics::NodeMetrics;
use crate::store::Store;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a replica's servers listen, recorded in its heartbeat so peers and operators find it.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub health: String,
    pub admin: String,
}

pub(crate) enum Command {
    SetPassive {
        timeout: Duration,
        reply: oneshot::Sender<Result<Handover, HandoverError>>,
    },
}

/// The running replica manager, as seen by the node's servers.
#[derive(Clone)]
pub struct ReplicaHandle {
    identity: Identity,
    state: watch::Receiver<ReplicaState>,
    commands: mpsc::Sender<Command>,
    default_handover_timeout: Duration,
}

impl ReplicaHandle {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The latest published state.
    pub fn state(&self) -> ReplicaState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every transition.
    pub fn subscribe(&self) -> watch::Receiver<ReplicaState> {
        self.state.clone()
    }

    /// Hands leadership to a standby; `None` uses the configured timeout.
    pub async fn set_passive(&self, timeout: Option<Duration>) -> Result<Handover, HandoverError> {
        let (reply, answer) = oneshot::channel();
        let timeout = timeout.unwrap_or(self.default_handover_timeout);
        self.commands
            .send(Command::SetPassive { timeout, reply })
            .await
            .map_err(|_| HandoverError::ShuttingDown)?;
        answer.await.map_err(|_| HandoverError::ShuttingDown)?
    }
}

/// Starts the replica manager of one replica. `service_health` is the node service's own verdict
/// (a sequencer's writer being online), which an active-active replica needs to be healthy. It runs until `shutdown` is cancelled; an active
/// leader then releases its lease so a standby takes over at once.
pub fn spawn(
    store: Store,
    identity: Identity,
    config: ReplicationConfig,
    addresses: Addresses,
    metrics: NodeMetrics,
    service_health: Option<watch::Receiver<Result<(), String>>>,
    shutdown: CancellationToken,
) -> (ReplicaHandle, JoinHandle<()>) {
    let (state_tx, state_rx) = watch::channel(ReplicaState::starting());
    let (commands_tx, commands_rx) = mpsc::channel(8);
    let handle = ReplicaHandle {
        identity: identity.clone(),
        state: state_rx,
        commands: commands_tx,
        default_handover_timeout: Duration::from_millis(config.handover_timeout_ms),
    };
    let task = if identity.kind.is_active_active() {
        let live = active_active::Liveness::new(
            store,
            identity,
            config,
            addresses,
            state_tx,
            metrics,
            service_health,
        );
        tokio::spawn(live.run(commands_rx, shutdown))
    } else {
        let elector = elector::Elector::new(store, identity, config, addresses, state_tx, metrics);
        tokio::spawn(elector.run(commands_rx, shutdown))
    };
    (handle, task)
}

/// Runs `session(epoch, stop)` each time this replica becomes active, and cancels it (waiting
/// for it to finish) as soon as the replica is no longer active with that epoch, or on
/// `shutdown`. How active-passive node kinds start and stop what only the active replica does.
pub async fn run_while_active<F, Fut>(
    mut state: watch::Receiver<ReplicaState>,
    shutdown: CancellationToken,
    session: F,
) where
    F: Fn(u64, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let epoch = {
            let s = state.borrow_and_update();
            (s.role == Role::Active).then_some(s.epoch)
        };
        if let Some(epoch) = epoch {
            let stop = shutdown.child_token();
            let task = tokio::spawn(session(epoch, stop.clone()));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    changed = state.changed() => {
                        let s = state.borrow();
                        if changed.is_err() || s.role != Role::Active || s.epoch != epoch {
                            break;
                        }
                    }
                }
            }
            stop.cancel();
            if let Err(e) = task.await {
                tracing::error!(error = %e, "active session failed");
            }
            if shutdown.is_cancelled() {
                return;
            }
            // The state that ended the session may already be the next one.
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}
