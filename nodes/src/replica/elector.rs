//! The elector of an active-passive node: a standby keeps trying to take the lease; the leader
//! renews it, steps down on any doubt (fenced, database unreachable, renewal too slow) and hands
//! over gracefully on `set-passive`.

use super::{Addresses, Command, Handover, HandoverError, Identity, ReplicaState, Role};
use crate::config::ReplicationConfig;
use crate::metrics::NodeMetrics;
use crate::store::{Acquire, Fence, Leadership, Member, Store, StoreError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often every replica records its heartbeat in `replica_members`.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// A standby whose heartbeat is older than this is not counted on for a handover.
const STANDBY_FRESHNESS_MS: u64 = 1_000;

pub(super) struct Elector {
    store: Store,
    leadership: Leadership,
    id: Identity,
    cfg: ReplicationConfig,
    addresses: Addresses,
    state: watch::Sender<ReplicaState>,
    metrics: NodeMetrics,
    /// After stepping down, leave the next term to the peers for a moment.
    yield_until: Option<Instant>,
    next_heartbeat: Instant,
}

impl Elector {
    pub(super) fn new(
        store: Store,
        id: Identity,
        cfg: ReplicationConfig,
        addresses: Addresses,
        state: watch::Sender<ReplicaState>,
        metrics: NodeMetrics,
    ) -> Self {
        Self {
            leadership: Leadership::new(store.clone(), &id.node, id.replica),
            store,
            id,
            cfg,
            addresses,
            state,
            metrics,
            yield_until: None,
            next_heartbeat: Instant::now(),
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn current_epoch(&self) -> Option<u64> {
        let state = self.state.borrow();
        (state.role == Role::Active).then_some(state.epoch)
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        loop {
            self.heartbeat_if_due().await;
            let wait = match self.current_epoch() {
                Some(epoch) => {
                    self.renew(epoch).await;
                    Self::ms(self.cfg.renew_interval_ms)
                }
                None => {
                    self.try_acquire().await;
                    Self::ms(self.cfg.poll_interval_ms)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(command) = commands.recv() => self.handle(command).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(epoch) = self.current_epoch() {
            // Releasing lets a standby take over at its next poll instead of after a lease.
            if let Err(e) = self.leadership.release(epoch).await {
                tracing::warn!(replica = %self.id, error = %e, "could not release leadership on shutdown");
            }
            self.publish_passive("stopped", true);
        }
        self.leadership.close().await;
    }

    async fn heartbeat_if_due(&mut self) {
        if Instant::now() < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
        let member = Member {
            replica: self.id.replica,
            role: self.state.borrow().role.as_str().into(),
            pid: std::process::id(),
            health_address: self.addresses.health.clone(),
            admin_address: self.addresses.admin.clone(),
            last_seen_ms_ago: 0,
        };
        // Never at the renewal's expense: a leader drops a heartbeat that cannot land within a
        // renewal interval (on SQLite it queues for the write turn). A standby has no lease to
        // keep and waits up to a lease, so a busy leader does not hide it from a handover.
        let limit = match self.current_epoch() {
            Some(_) => Self::ms(self.cfg.renew_interval_ms),
            None => Self::ms(self.cfg.lease_ms),
        };
        let beat = self.store.heartbeat_member(&self.id.node, &member);
        let error = match tokio::time::timeout(limit, beat).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", limit.as_millis()),
        };
        self.metrics.database_errors.inc();
        tracing::debug!(replica = %self.id, error, "heartbeat failed");
    }

    async fn try_acquire(&mut self) {
        if self.yield_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        let started = Instant::now();
        let lease = self.cfg.lease_ms;
        match tokio::time::timeout(Self::ms(lease), self.leadership.try_acquire(lease)).await {
            Ok(Ok(Acquire::Acquired { epoch })) => self.activate(epoch, started).await,
            Ok(Ok(Acquire::Held { leader })) => {
                let detail = match &leader {
                    Some(l) => format!(
                        "standby; leader is {}/{} (epoch {})",
                        self.id.node, l.replica, l.epoch
                    ),
                    None => "standby; no leader yet".into(),
                };
                self.state.send_modify(|s| {
                    s.database_ok = true;
                    s.detail = detail;
                    s.leader = leader;
                });
            }
            Ok(Err(e)) => self.database_trouble(&e.to_string()),
            Err(_) => self.database_trouble("no answer within the lease"),
        }
    }

    fn database_trouble(&mut self, error: &str) {
        self.metrics.database_errors.inc();
        self.leadership.reset();
        let detail = format!("database unreachable: {error}");
        if self.state.borrow().detail != detail {
            tracing::warn!(replica = %self.id, error, "database unreachable");
        }
        self.state.send_modify(|s| {
            s.database_ok = false;
            s.detail = detail;
        });
    }

    async fn activate(&mut self, epoch: u64, started: Instant) {
        let fence = self.fence(epoch);
        if let Err(e) = self.store.record_event(&fence, "activated").await {
            // Deposed between taking the lease and the first write; stay passive.
            tracing::warn!(replica = %self.id, epoch, error = %e, "activation write refused");
            self.note_fenced(&e);
            return;
        }
        self.yield_until = None;
        tracing::info!(replica = %self.id, epoch, "became active");
        self.metrics.transition(Role::Active, epoch);
        let leader = crate::store::Leader {
            replica: self.id.replica,
            epoch,
            lease_remaining_ms: i64::try_from(self.cfg.lease_ms).unwrap_or(i64::MAX),
        };
        self.state.send_replace(ReplicaState {
            role: Role::Active,
            epoch,
            database_ok: true,
            detail: format!("active: leader of {} (epoch {epoch})", self.id.node),
            lease_valid_until: Some(started + Self::ms(self.cfg.lease_ms)),
            leader: Some(leader),
        });
    }

    fn fence(&self, epoch: u64) -> Fence {
        Fence {
            node: self.id.node.clone(),
            replica: self.id.replica,
            epoch,
        }
    }

    fn note_fenced(&self, e: &StoreError) {
        if matches!(e, StoreError::Fenced { .. }) {
            self.metrics.fenced_writes.inc();
        }
    }

    async fn renew(&mut self, epoch: u64) {
        let started = Instant::now();
        let lease = self.cfg.lease_ms;
        let result =
            tokio::time::timeout(Self::ms(lease), self.leadership.renew(epoch, lease)).await;
        self.metrics
            .lease_renewal_seconds
            .observe(started.elapsed().as_secs_f64());
        let error = match result {
            Ok(Ok(())) => {
                self.state.send_modify(|s| {
                    s.database_ok = true;
                    s.lease_valid_until = Some(started + Self::ms(lease));
                });
                return;
            }
            Ok(Err(e)) => e,
            Err(_) => {
                self.leadership.reset();
                StoreError::Unavailable("lease renewal timed out".into())
            }
        };
        // Unhealthy at once, whatever the reason turns out to be.
        self.state.send_modify(|s| {
            s.database_ok = false;
            s.detail = format!("renewal failed: {error}");
        });
        // A failed or timed-out renewal (say, of a process stopped mid-call) may mean the database
        // is gone, or that a standby took over meanwhile: the leader row tells which.
        let deposed = match &error {
            StoreError::Fenced { .. } => true,
            _ => self.superseded(epoch).await,
        };
        tracing::warn!(replica = %self.id, epoch, error = %error, deposed, "lost leadership");
        if deposed {
            self.metrics.fenced_writes.inc();
            self.step_down(&format!("deposed: epoch {epoch} was superseded"), true);
        } else {
            self.metrics.database_errors.inc();
            self.step_down(&format!("database unreachable: {error}"), false);
        }
    }

    /// Whether the database names a leader other than this replica's `epoch`.
    async fn superseded(&self, epoch: u64) -> bool {
        let check = tokio::time::timeout(
            Self::ms(self.cfg.lease_ms),
            self.store.leader(&self.id.node),
        )
        .await;
        matches!(check, Ok(Ok(Some(leader))) if leader.epoch != epoch || leader.replica != self.id.replica)
    }

    /// Publishes passive and leaves the next term to the peers: they may take over once the
    /// lease has run out, so stay out of the race until a little after that.
    fn step_down(&mut self, detail: &str, database_ok: bool) {
        let stand_back = self.cfg.lease_ms + 2 * self.cfg.poll_interval_ms;
        self.yield_until = Some(Instant::now() + Self::ms(stand_back));
        self.publish_passive(detail, database_ok);
    }

    fn publish_passive(&mut self, detail: &str, database_ok: bool) {
        self.metrics.transition(Role::Passive, 0);
        self.state.send_modify(|s| {
            s.role = Role::Passive;
            s.epoch = 0;
            s.database_ok = database_ok;
            s.detail = detail.to_string();
            s.lease_valid_until = None;
        });
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::SetPassive { timeout, reply } => {
                let result = self.hand_over(timeout).await;
                match &result {
                    Ok(h) => {
                        tracing::info!(replica = %self.id, new_leader = h.new_leader, handover_ms = h.handover_ms, "handed over")
                    }
                    Err(e) => tracing::warn!(replica = %self.id, error = %e, "set-passive refused"),
                }
                let _ = reply.send(result);
            }
        }
    }

    async fn hand_over(&mut self, timeout: Duration) -> Result<Handover, HandoverError> {
        let Some(epoch) = self.current_epoch() else {
            return Err(HandoverError::NotActive(self.state.borrow().detail.clone()));
        };
        let members = self.store.members(&self.id.node).await?;
        let standby = members
            .iter()
            .any(|m| m.replica != self.id.replica && m.last_seen_ms_ago < STANDBY_FRESHNESS_MS);
        if !standby {
            return Err(HandoverError::NoStandby);
        }
        let started = Instant::now();
        self.leadership.release(epoch).await?;
        self.yield_until = Some(started + timeout);
        self.publish_passive("handing over", true);
        let deadline = started + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.store.leader(&self.id.node).await? {
                if leader.epoch > epoch {
                    // The successor holds the lease now; this replica is an ordinary standby again.
                    self.yield_until = None;
                    self.state.send_modify(|s| {
                        s.detail = format!(
                            "standby; leader is {}/{} (epoch {})",
                            self.id.node, leader.replica, leader.epoch
                        );
                        s.leader = Some(leader.clone());
                    });
                    return Ok(Handover {
                        new_leader: leader.replica,
                        new_epoch: leader.epoch,
                        handover_ms: u32::try_from(started.elapsed().as_millis())
                            .unwrap_or(u32::MAX),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Nobody came: take the lease back so the node keeps serving.
        self.yield_until = None;
        self.try_acquire().await;
        if self.current_epoch().is_none() {
            if let Some(leader) = self
                .state
                .borrow()
                .leader
                .clone()
                .filter(|l| l.epoch > epoch)
            {
                return Ok(Handover {
                    new_leader: leader.replica,
                    new_epoch: leader.epoch,
                    handover_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
                });
            }
        }
        Err(HandoverError::NotTakenOver {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }
}
