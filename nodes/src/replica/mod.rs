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

/// How long an active replica waits before starting again a session that ended by itself.
pub const SESSION_RESTART: Duration = Duration::from_secs(1);

/// Runs `session(epoch, stop)` each time this replica becomes active, and cancels it (waiting
/// for it to finish) as soon as the replica is no longer active with that epoch, or on
/// `shutdown`. How active-passive node kinds start and stop what only the active replica does.
/// A session that ends by itself while the replica is still active (a database error, say) is
/// started again after `restart_after`, from the stored state, rather than leaving an active
/// replica that serves nothing until it loses its lease.
pub async fn run_while_active<F, Fut>(
    mut state: watch::Receiver<ReplicaState>,
    shutdown: CancellationToken,
    restart_after: Duration,
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
            // The running session; None once it ended by itself, until `restart_at`.
            let mut task = Some(tokio::spawn(session(epoch, stop.clone())));
            let mut restart_at = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    changed = state.changed() => {
                        let s = state.borrow();
                        if changed.is_err() || s.role != Role::Active || s.epoch != epoch {
                            break;
                        }
                    }
                    ended = async {
                        match task.as_mut() {
                            Some(running) => running.await,
                            None => std::future::pending().await,
                        }
                    }, if task.is_some() => {
                        task = None;
                        if let Err(e) = ended {
                            tracing::error!(error = %e, "active session failed");
                        }
                        if shutdown.is_cancelled() {
                            // It ended because of the shutdown, which this select saw second.
                            break;
                        }
                        tracing::warn!(epoch, "the active session ended by itself; starting it again");
                        restart_at = tokio::time::Instant::now() + restart_after;
                    }
                    () = tokio::time::sleep_until(restart_at), if task.is_none() => {
                        task = Some(tokio::spawn(session(epoch, stop.clone())));
                    }
                }
            }
            stop.cancel();
            if let Some(task) = task {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "active session failed");
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn active(epoch: u64) -> ReplicaState {
        ReplicaState {
            role: Role::Active,
            epoch,
            ..ReplicaState::starting()
        }
    }

    /// A session that ends by itself is started again while the replica stays active, and no
    /// more once it is passive.
    // A paused clock: the waits below advance it only once every task is idle, so they are
    // deterministic.
    #[tokio::test(start_paused = true)]
    async fn a_session_that_ends_by_itself_is_restarted_while_active() {
        let (tx, rx) = watch::channel(active(1));
        let started = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run_while_active(
            rx,
            shutdown.clone(),
            Duration::from_millis(10),
            {
                let started = started.clone();
                move |_, _| {
                    let started = started.clone();
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                    }
                }
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while started.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send_replace(ReplicaState::starting());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = started.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            after,
            "restarted while passive"
        );
        shutdown.cancel();
        runner.await.unwrap();
    }
}
