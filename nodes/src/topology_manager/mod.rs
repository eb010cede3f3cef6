//! The topology manager (design.md §5.3), active-passive. The active replica:
//! 1. loads the transactions it stored (proposals, accepted, sequenced) and rebuilds the state;
//! 2. on first activation admits itself (the genesis) and bootstraps the sequencers with it,
//!    which makes it their trust root, and admits the sequencer node they answer with;
//! 3. validates submitted transactions, merges signatures of proposals, signs admissions its
//!    policy allows (open synchronizer, allow-list, the configured mediator and sequencer);
//! 4. broadcasts accepted transactions one by one through the sequencers, and learns when each
//!    was sequenced from its own subscription, as every other member does.
//!
//! Every write is fenced by the replica's epoch, so a deposed replica cannot accept or record.

mod service;

pub use service::TopologyManagerAdmin;

use crate::config::{AdmissionConfig, TopologyConfig};
use crate::identity::{KeyPair, MemberId, MemberKind};
use crate::member::{Member, Sent};
use crate::sequencer::now_us;
use crate::store::synchronizer::{StoredTopology, TopologyStatus};
use crate::store::{Fence, Store, StoreError};
use crate::topology::{
    Mapping, Operation, SignedTransaction, TopologyState, Transaction, BROADCAST,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tandem_proto::sequencer::v1::sequencer_admin_service_client::SequencerAdminServiceClient;
use tandem_proto::sequencer::v1::BootstrapRequest;
use tandem_proto::synchronizer::v1 as msg;
use tandem_proto::topology::v1 as tpb;
use tokio::sync::{watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// How long `wait_for_effective` waits for a transaction to be sequenced.
const SEQUENCING_WAIT: Duration = Duration::from_secs(10);

/// What the topology manager needs from the topology file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub delay_us: i64,
    pub admission: AdmissionConfig,
    pub mediator: String,
    pub sequencer: String,
    pub sequencer_endpoints: Vec<String>,
    pub sequencer_admin_endpoints: Vec<String>,
}

impl Settings {
    pub fn from_topology(t: &TopologyConfig) -> Settings {
        let sync = &t.synchronizer;
        Settings {
            delay_us: sync.topology_change_delay_us(),
            admission: sync.admission.clone(),
            mediator: sync.mediator.name.clone(),
            sequencer: sync.sequencer.name.clone(),
            sequencer_endpoints: t.sequencer_endpoints(),
            sequencer_admin_endpoints: sync
                .sequencer
                .replicas
                .iter()
                .map(|r| format!("http://{}", r.admin))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    signed: SignedTransaction,
    status: TopologyStatus,
    order: Option<i64>,
    sequenced_us: Option<i64>,
    effective_us: Option<i64>,
}

/// The state of an active replica.
struct Active {
    fence: Fence,
    /// What the sequencers have ordered: the state every member has.
    sequenced: TopologyState,
    /// `sequenced` plus the accepted transactions not yet sequenced: what new submissions are
    /// checked against.
    projected: TopologyState,
    records: BTreeMap<String, Record>,
    next_order: i64,
}

struct Inner {
    node: String,
    replica: u32,
    store: Store,
    id: MemberId,
    key: Arc<KeyPair>,
    settings: Settings,
    active: Mutex<Option<Active>>,
    /// True while the active state is loaded and the admin API serves.
    serving: watch::Sender<bool>,
    /// Bumped whenever a transaction is sequenced.
    sequenced: watch::Sender<u64>,
    wake_broadcaster: Notify,
}

/// A handle on the topology manager of this replica.
#[derive(Clone)]
pub struct TopologyManager(Arc<Inner>);

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("topology manager database unavailable: {e}"))
}

fn stored(hash: &str, r: &Record) -> StoredTopology {
    StoredTopology {
        hash: hash.to_string(),
        signed: r.signed.encode(),
        status: r.status,
        sequenced_us: r.sequenced_us,
        effective_us: r.effective_us,
    }
}

impl TopologyManager {
    /// Loads (creating on first use) the node's identity.
    pub async fn new(
        store: Store,
        node: &str,
        replica: u32,
        settings: Settings,
    ) -> Result<TopologyManager, StoreError> {
        let (id, key) = store
            .node_identity(node, MemberKind::TopologyManager)
            .await?;
        Ok(TopologyManager(Arc::new(Inner {
            node: node.to_string(),
            replica,
            store,
            id,
            key: Arc::new(key),
            settings,
            active: Mutex::new(None),
            serving: watch::channel(false).0,
            sequenced: watch::channel(0).0,
            wake_broadcaster: Notify::new(),
        })))
    }

    pub fn id(&self) -> &MemberId {
        &self.0.id
    }

    /// Whether this replica serves (active, its state loaded), as it changes.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.0.serving.subscribe()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.key.public_key()
    }

    /// What the active replica does while it holds `epoch`, until `stop`.
    pub async fn run_active(self, epoch: u64, stop: CancellationToken) {
        if let Err(e) = self.activate(epoch).await {
            tracing::error!(error = %e, "topology manager cannot activate");
            return;
        }
        tracing::info!(member = %self.0.id, epoch, "topology manager active");
        let member = match Member::new(
            self.0.id.clone(),
            self.0.key.clone(),
            &self.0.settings.sequencer_endpoints,
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "bad sequencer endpoint");
                return;
            }
        };
        self.0.serving.send_replace(true);
        let bootstrap = self.clone().bootstrap(stop.clone());
        let follow = self.clone().follow(member.clone(), stop.clone());
        let broadcast = self.clone().broadcast(member, stop.clone());
        tokio::join!(bootstrap, follow, broadcast);
        self.0.serving.send_replace(false);
        *self.0.active.lock().await = None;
    }

    /// Rebuilds the state from the store; writes the genesis on first activation.
    async fn activate(&self, epoch: u64) -> Result<(), StoreError> {
        let fence = Fence {
            node: self.0.node.clone(),
            replica: self.0.replica,
            epoch,
        };
        let mut active = Active {
            fence,
            sequenced: TopologyState::new(),
            projected: TopologyState::new(),
            records: BTreeMap::new(),
            next_order: 0,
        };
        let rows = self.0.store.topology_transactions(&self.0.node).await?;
        for (order, row) in (0_i64..).zip(rows) {
            let Ok(signed) = SignedTransaction::decode(&row.signed) else {
                tracing::error!(hash = row.hash, "undecodable stored topology transaction");
                continue;
            };
            if row.status == TopologyStatus::Sequenced {
                if let Err(e) = active
                    .sequenced
                    .apply(&signed, row.effective_us.unwrap_or(0))
                {
                    tracing::warn!(hash = row.hash, error = %e, "stored transaction does not apply");
                }
            }
            active.records.insert(
                row.hash.clone(),
                Record {
                    signed,
                    status: row.status,
                    order: Some(order),
                    sequenced_us: row.sequenced_us,
                    effective_us: row.effective_us,
                },
            );
            active.next_order = order + 1;
        }
        active.reproject();
        let genesis = self.genesis();
        let hash = genesis.transaction.hash();
        if !active.records.contains_key(&hash) {
            active
                .accept(&self.0.store, &self.0.node, hash, genesis)
                .await?;
        }
        *self.0.active.lock().await = Some(active);
        self.0.wake_broadcaster.notify_one();
        Ok(())
    }

    /// The topology manager's admission of itself.
    fn genesis(&self) -> SignedTransaction {
        SignedTransaction::unsigned(Transaction::admission(&self.0.id, &self.0.key.public_key()))
            .sign(&self.0.key)
    }

    /// Makes this topology manager the sequencers' trust root and admits the sequencer node.
    async fn bootstrap(self, stop: CancellationToken) {
        let request = BootstrapRequest {
            genesis: Some((&self.genesis()).into()),
        };
        let mut said = String::new();
        loop {
            for endpoint in &self.0.settings.sequencer_admin_endpoints {
                let answer = async {
                    let mut client = SequencerAdminServiceClient::connect(endpoint.clone())
                        .await
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                    client.bootstrap(request.clone()).await
                };
                match answer.await {
                    Ok(r) => {
                        let Some(admission) = r.into_inner().sequencer_admission else {
                            continue;
                        };
                        let result = match SignedTransaction::try_from(&admission) {
                            Ok(signed) => self.submit(signed, false).await.map(|_| ()),
                            Err(e) => Err(e.to_status()),
                        };
                        match result {
                            Ok(()) => return,
                            Err(s) => tracing::error!(status = %s, "cannot admit the sequencer"),
                        }
                    }
                    Err(s) => {
                        let why = format!("{endpoint}: {}", s.message());
                        if why != said {
                            tracing::warn!("cannot bootstrap the sequencers yet: {why}");
                            said = why;
                        }
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Processes this member's sequenced events: its own broadcasts mark transactions sequenced.
    async fn follow(self, member: Member, stop: CancellationToken) {
        let from = match self.0.store.member_cursor(&self.0.node).await {
            Ok(ts) => ts,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the subscription cursor");
                return;
            }
        };
        let mut events = member.subscribe(from, stop.clone());
        while let Some(event) = events.recv().await {
            let broadcast = event.sender == self.0.id.to_string()
                && crate::member::is_broadcast(&event)
                && event.deliver_error.is_none();
            let txs = if broadcast {
                crate::sequencer::decode_broadcast(&event.payload)
            } else {
                Vec::new()
            };
            let mut guard = self.0.active.lock().await;
            let Some(active) = guard.as_mut() else { return };
            let result = active
                .sequenced_at(
                    &self.0.store,
                    &self.0.node,
                    txs,
                    event.timestamp_us,
                    self.0.settings.delay_us,
                )
                .await;
            drop(guard);
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot record sequenced topology; leaving the session");
                return;
            }
            self.0.sequenced.send_modify(|n| *n += 1);
        }
    }

    /// Broadcasts accepted transactions one at a time, in acceptance order, each once sequenced
    /// before the next (serials must arrive in order).
    async fn broadcast(self, member: Member, stop: CancellationToken) {
        loop {
            let next = {
                let guard = self.0.active.lock().await;
                let Some(active) = guard.as_ref() else { return };
                active
                    .records
                    .iter()
                    .filter(|(_, r)| r.status == TopologyStatus::Accepted)
                    .min_by_key(|(_, r)| r.order)
                    .map(|(hash, r)| (hash.clone(), r.signed.clone()))
            };
            let Some((hash, signed)) = next else {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.0.wake_broadcaster.notified() => continue,
                }
            };
            let payload = prost::Message::encode_to_vec(&msg::SynchronizerMessage {
                message: Some(msg::synchronizer_message::Message::Topology(
                    msg::TopologyBroadcast {
                        transactions: vec![(&signed).into()],
                    },
                )),
            });
            let message_id = format!("topology-{hash}");
            let everyone = [BROADCAST.to_string()];
            let sent = tokio::select! {
                () = stop.cancelled() => return,
                s = member.send(&message_id, &everyone, payload) => s,
            };
            match sent {
                Ok(Sent::At(_) | Sent::AlreadySequenced) => {
                    if !self.wait_sequenced(&hash, &stop).await && !stop.is_cancelled() {
                        tracing::warn!(
                            hash,
                            "broadcast not seen on the subscription yet; resending"
                        );
                    }
                }
                Err(s) => {
                    tracing::warn!(hash, status = %s, "broadcast refused; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }

    /// Waits until `hash` is sequenced; false on timeout or stop.
    async fn wait_sequenced(&self, hash: &str, stop: &CancellationToken) -> bool {
        let mut changes = self.0.sequenced.subscribe();
        let deadline = tokio::time::Instant::now() + SEQUENCING_WAIT;
        loop {
            if self
                .record(hash)
                .await
                .is_some_and(|r| r.status == TopologyStatus::Sequenced)
            {
                return true;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep_until(deadline) => return false,
                changed = changes.changed() => if changed.is_err() { return false },
            }
        }
    }

    async fn record(&self, hash: &str) -> Option<Record> {
        self.0
            .active
            .lock()
            .await
            .as_ref()
            .and_then(|a| a.records.get(hash).cloned())
    }

    /// Whether this topology manager signs `tx` by itself.
    fn policy_allows(&self, tx: &Transaction) -> bool {
        let Mapping::Member { member, .. } = &tx.mapping else {
            return false;
        };
        if tx.operation != Operation::Replace {
            return false;
        }
        let s = &self.0.settings;
        match member.kind {
            MemberKind::Participant => {
                s.admission.open
                    || s.admission
                        .allow
                        .iter()
                        .any(|a| *a == member.name || *a == member.to_string())
            }
            MemberKind::Mediator => member.name == s.mediator,
            MemberKind::Sequencer => member.name == s.sequencer,
            MemberKind::TopologyManager => member == &self.0.id,
        }
    }

    /// Merges `signed` into what is known of its transaction; signs it when the policy (or the
    /// operator, with `authorize`) allows; accepts it once fully signed.
    pub async fn submit(
        &self,
        signed: SignedTransaction,
        authorize: bool,
    ) -> Result<tpb::SubmitResponse, Status> {
        let mut guard = self.0.active.lock().await;
        let active = guard
            .as_mut()
            .ok_or_else(|| Status::unavailable("replica is passive"))?;
        let hash = signed.transaction.hash();
        let mut merged = signed;
        if let Some(known) = active.records.get(&hash) {
            if known.status != TopologyStatus::Proposed {
                return Ok(active.response(&hash, Vec::new()));
            }
            merged.merge(&known.signed);
        }
        let mut check = active.projected.check(&merged).map_err(|e| e.to_status())?;
        let own = self.0.id.fingerprint.clone();
        if check.missing.contains(&own) && (authorize || self.policy_allows(&merged.transaction)) {
            merged = merged.sign(&self.0.key);
            check = active.projected.check(&merged).map_err(|e| e.to_status())?;
        } else if authorize && !check.missing.contains(&own) {
            return Err(Status::failed_precondition(format!(
                "{hash}: the topology manager's signature is not required or already there"
            )));
        }
        if check.missing.is_empty() {
            active
                .accept(&self.0.store, &self.0.node, hash.clone(), merged)
                .await
                .map_err(unavailable)?;
            self.0.wake_broadcaster.notify_one();
        } else {
            let record = Record {
                signed: merged,
                status: TopologyStatus::Proposed,
                order: None,
                sequenced_us: None,
                effective_us: None,
            };
            let mut tx = self
                .0
                .store
                .begin_fenced(&active.fence)
                .await
                .map_err(unavailable)?;
            tx.save_topology(&self.0.node, &stored(&hash, &record), None)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            active.records.insert(hash.clone(), record);
        }
        Ok(active.response(&hash, check.missing))
    }

    /// Waits until the transaction behind `response` is in effect.
    pub async fn wait_effective(
        &self,
        response: tpb::SubmitResponse,
    ) -> Result<tpb::SubmitResponse, Status> {
        if response.status == tpb::TransactionStatus::Proposed as i32 {
            return Ok(response);
        }
        if !self
            .wait_sequenced(&response.hash, &CancellationToken::new())
            .await
        {
            return Err(Status::deadline_exceeded(format!(
                "{}: accepted but not sequenced within {} s; it will be broadcast",
                response.hash,
                SEQUENCING_WAIT.as_secs()
            )));
        }
        let guard = self.0.active.lock().await;
        let active = guard
            .as_ref()
            .ok_or_else(|| Status::unavailable("replica is passive"))?;
        let done = active.response(&response.hash, Vec::new());
        drop(guard);
        let wait = done.effective_at_us - now_us();
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(u64::try_from(wait).unwrap_or(0))).await;
        }
        Ok(done)
    }

    /// Runs `f` on the active state, or answers UNAVAILABLE on a passive replica.
    async fn with_active<T>(&self, f: impl FnOnce(&Active) -> T) -> Result<T, Status> {
        let guard = self.0.active.lock().await;
        guard
            .as_ref()
            .map(f)
            .ok_or_else(|| Status::unavailable("replica is passive"))
    }
}

impl Active {
    fn reproject(&mut self) {
        let mut projected = self.sequenced.clone();
        let mut accepted: Vec<&Record> = self
            .records
            .values()
            .filter(|r| r.status == TopologyStatus::Accepted)
            .collect();
        accepted.sort_by_key(|r| r.order);
        for r in accepted {
            if let Err(e) = projected.apply(&r.signed, i64::MAX) {
                tracing::warn!(error = %e, "accepted transaction no longer applies");
            }
        }
        self.projected = projected;
    }

    async fn accept(
        &mut self,
        store: &Store,
        node: &str,
        hash: String,
        signed: SignedTransaction,
    ) -> Result<(), StoreError> {
        let order = self.next_order;
        let record = Record {
            signed,
            status: TopologyStatus::Accepted,
            order: Some(order),
            sequenced_us: None,
            effective_us: None,
        };
        let mut tx = store.begin_fenced(&self.fence).await?;
        tx.save_topology(node, &stored(&hash, &record), Some(order))
            .await?;
        tx.commit().await?;
        if let Err(e) = self.projected.apply(&record.signed, i64::MAX) {
            tracing::warn!(hash, error = %e, "accepted transaction does not apply to the projection");
        }
        self.records.insert(hash, record);
        self.next_order += 1;
        Ok(())
    }

    /// Records the transactions of a broadcast sequenced at `ts` (and the cursor) in one
    /// fenced transaction, then applies them.
    async fn sequenced_at(
        &mut self,
        store: &Store,
        node: &str,
        txs: Vec<SignedTransaction>,
        ts: i64,
        delay_us: i64,
    ) -> Result<(), StoreError> {
        let mut db = store.begin_fenced(&self.fence).await?;
        let mut updates = Vec::new();
        for signed in txs {
            let hash = signed.transaction.hash();
            // Every member ignores a transaction that does not apply; it is still recorded as
            // sequenced so the broadcaster moves on.
            if let Err(e) = self.sequenced.apply(&signed, ts + delay_us) {
                tracing::warn!(hash, error = %e, "sequenced transaction does not apply; ignored");
            }
            let order = self.records.get(&hash).and_then(|r| r.order);
            let record = Record {
                signed,
                status: TopologyStatus::Sequenced,
                order,
                sequenced_us: Some(ts),
                effective_us: Some(ts + delay_us),
            };
            db.save_topology(node, &stored(&hash, &record), order)
                .await?;
            updates.push((hash, record));
        }
        db.set_member_cursor(node, ts).await?;
        db.commit().await?;
        let any = !updates.is_empty();
        self.records.extend(updates);
        if any {
            self.reproject();
        }
        Ok(())
    }

    fn response(&self, hash: &str, missing: Vec<String>) -> tpb::SubmitResponse {
        let record = self.records.get(hash);
        let status = match record.map(|r| r.status) {
            Some(TopologyStatus::Sequenced) => tpb::TransactionStatus::Sequenced,
            Some(TopologyStatus::Accepted) => tpb::TransactionStatus::Accepted,
            _ => tpb::TransactionStatus::Proposed,
        };
        tpb::SubmitResponse {
            hash: hash.to_string(),
            status: status as i32,
            missing_signers: missing,
            sequenced_at_us: record.and_then(|r| r.sequenced_us).unwrap_or(0),
            effective_at_us: record.and_then(|r| r.effective_us).unwrap_or(0),
        }
    }
}
