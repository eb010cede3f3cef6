//! The participant (design.md §6), active-passive. The active replica loads its ledger from the
//! shared database, connects to the synchronizer (unless `manual_connect`), asks the topology
//! manager to admit it, and follows its sequencer subscription from the stored cursor: every
//! event is processed in one fenced transaction together with the cursor (`engine`). The Ledger
//! API (`api`) and the admin API (`admin`) answer on the active replica only.

pub mod admin;
pub mod api;
pub mod client;
pub mod codec;
pub mod engine;
pub mod submit;

use crate::config::TopologyConfig;
use crate::identity::{KeyPair, MemberId, MemberKind};
use crate::member::{self, Member, Sent};
use crate::model::ids::SubmissionSeed;
use crate::model::{interpret, PackageStore, Party, Submitters};
use crate::sequencer::now_us;
use crate::store::{Fence, Store, StoreError};
use crate::topology::Permission;
use engine::{CompletionBody, Effects, Engine, InFlight, Rights, UserRecord};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tandem_proto::ledger::v2 as lapi;
use tandem_proto::synchronizer::v1 as msg;
use tokio::sync::{oneshot, watch, Mutex};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// How long an accepted change is remembered by default (Canton: 7 days).
const DEFAULT_DEDUP_US: i64 = 7 * 24 * 3600 * 1_000_000;
/// Longest deduplication period a submission may ask for.
const MAX_DEDUP_US: i64 = 30 * 24 * 3600 * 1_000_000;
/// Most events processed in one database transaction.
const MAX_BATCH: usize = 64;
/// A submission's request must be sequenced within this long.
const MAX_SEQUENCING_US: i64 = 10_000_000;
/// An in-flight submission whose request was not seen this long after its max sequencing time
/// is completed as not sequenced.
const NOT_SEQUENCED_GRACE_US: i64 = 2_000_000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub synchronizer: String,
    pub delay_us: i64,
    pub manual_connect: bool,
    /// Users that are participant admins without a row in the user table.
    pub admin_users: Vec<String>,
    pub sequencer_endpoints: Vec<String>,
    pub topology_manager_endpoints: Vec<String>,
    /// Verifies the bearer JWT of every Ledger API call.
    pub verifier: tandem_auth::Verifier,
    /// Where the phases of own submissions are observed (`None` outside a node process).
    pub phase_seconds: Option<prometheus::HistogramVec>,
}

impl Settings {
    /// The participant's settings; fails when its `auth` keys cannot be loaded (a PEM file that
    /// is missing or holds no key).
    pub fn from_topology(
        t: &TopologyConfig,
        node: &crate::config::NodeConfig,
    ) -> Result<Settings, tandem_auth::ConfigError> {
        let sync = &t.synchronizer;
        let auth = node.auth.clone().unwrap_or_default();
        Ok(Settings {
            synchronizer: sync.name.clone(),
            delay_us: sync.topology_change_delay_us(),
            manual_connect: node.manual_connect,
            admin_users: node.admin_users.clone(),
            sequencer_endpoints: t.sequencer_endpoints(),
            topology_manager_endpoints: t.topology_manager_endpoints(),
            verifier: tandem_auth::Verifier::new(&auth)?,
            phase_seconds: None,
        })
    }
}

/// Who is calling, as the authorization point decided.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub rights: Rights,
    /// When the caller's token stops being accepted (seconds since the epoch): its `exp` plus
    /// the verifier's leeway, if it has an `exp`. Streams opened with it end then.
    pub refused_after: Option<u64>,
}

impl Caller {
    pub fn can_act_as(&self, party: &str) -> bool {
        self.rights.act_as.contains(party)
    }

    pub fn can_read_as(&self, party: &str) -> bool {
        self.rights.admin
            || self.rights.act_as.contains(party)
            || self.rights.read_as.contains(party)
    }

    /// PERMISSION_DENIED unless the caller may act as `party`.
    pub fn check_act_as(&self, party: &str) -> Result<(), Status> {
        if self.can_act_as(party) {
            Ok(())
        } else {
            Err(denied(format!(
                "user {} may not act as {party}",
                self.user_id
            )))
        }
    }

    /// PERMISSION_DENIED unless the caller may read as `party`.
    pub fn check_read_as(&self, party: &str) -> Result<(), Status> {
        if self.can_read_as(party) {
            Ok(())
        } else {
            Err(denied(format!(
                "user {} may not read as {party}",
                self.user_id
            )))
        }
    }
}

/// PERMISSION_DENIED with the `PERMISSION_DENIED` error code.
pub fn denied(message: impl std::fmt::Display) -> Status {
    error(tonic::Code::PermissionDenied, "PERMISSION_DENIED", message)
}

struct Connection {
    member: Member,
    stop: CancellationToken,
}

struct Inner {
    node: String,
    replica: u32,
    store: Store,
    id: MemberId,
    key: Arc<KeyPair>,
    settings: Settings,
    packages: RwLock<Arc<PackageStore>>,
    engine: Mutex<Option<Engine>>,
    /// True while the engine is loaded and the APIs serve; `/health` waits for it.
    serving: watch::Sender<bool>,
    connection: Mutex<Option<Connection>>,
    waiters: std::sync::Mutex<HashMap<String, Vec<oneshot::Sender<CompletionBody>>>>,
    ledger_end: watch::Sender<i64>,
    completion_end: watch::Sender<i64>,
}

#[derive(Clone)]
pub struct Participant(Arc<Inner>);

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("participant database unavailable: {e}"))
}

/// A status whose message starts with the stable error code.
pub fn error(code: tonic::Code, error_code: &str, message: impl std::fmt::Display) -> Status {
    let mut status = Status::new(code, format!("{error_code}: {message}"));
    if let Ok(v) = error_code.parse() {
        status.metadata_mut().insert("x-tandem-error-code", v);
    }
    status
}

impl Participant {
    pub async fn new(
        store: Store,
        node: &str,
        replica: u32,
        settings: Settings,
    ) -> Result<Participant, StoreError> {
        let (id, key) = store.node_identity(node, MemberKind::Participant).await?;
        Ok(Participant(Arc::new(Inner {
            node: node.to_string(),
            replica,
            store,
            id,
            key: Arc::new(key),
            settings,
            packages: RwLock::new(Arc::new(PackageStore::new())),
            engine: Mutex::new(None),
            serving: watch::channel(false).0,
            connection: Mutex::new(None),
            waiters: std::sync::Mutex::new(HashMap::new()),
            ledger_end: watch::channel(0).0,
            completion_end: watch::channel(0).0,
        })))
    }

    pub fn id(&self) -> &MemberId {
        &self.0.id
    }

    /// The packages loaded now (a cheap shared snapshot).
    pub(crate) fn packages(&self) -> Arc<PackageStore> {
        self.0
            .packages
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the active replica does while it holds `epoch`, until `stop`.
    pub async fn run_active(self, epoch: u64, stop: CancellationToken) {
        let fence = Fence {
            node: self.0.node.clone(),
            replica: self.0.replica,
            epoch,
        };
        match self.load(fence).await {
            Ok(engine) => {
                self.0.ledger_end.send_replace(engine.ledger_end);
                self.0.completion_end.send_replace(engine.completion_end);
                *self.0.engine.lock().await = Some(engine);
                self.0.serving.send_replace(true);
            }
            Err(e) => {
                tracing::error!(error = %e, "participant cannot load its ledger");
                return;
            }
        }
        tracing::info!(member = %self.0.id, epoch, "participant active");
        if !self.0.settings.manual_connect {
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(s) = me.connect(&stop).await {
                    tracing::warn!(status = %s, "cannot connect to the synchronizer");
                }
            });
        }
        stop.cancelled().await;
        self.0.serving.send_replace(false);
        self.disconnect().await;
        *self.0.engine.lock().await = None;
        // Waiters of this session's submissions learn the replica is no longer active; the
        // next active replica completes the submissions.
        self.0
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    async fn load(&self, fence: Fence) -> Result<Engine, StoreError> {
        let store = &self.0.store;
        let node = &self.0.node;
        let mut packages = PackageStore::new();
        for (id, format, content, _) in store.participant_packages(node).await? {
            let format = if format == "json" {
                crate::model::Format::Json
            } else {
                crate::model::Format::Yaml
            };
            if let Err(e) = packages.upload(&content, format) {
                tracing::error!(id, error = %e, "stored package does not load");
            }
        }
        let topology = member::stored_topology(store, node).await?;
        let mut acs = HashMap::new();
        let mut keys = HashMap::new();
        for (id, template, body, _, _) in store.participant_contracts(node, None).await? {
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            match codec::contract_from_json(&packages, &id, &template, &json) {
                Ok(c) => {
                    if let Some(k) = c.global_key() {
                        keys.insert(k, c.id.clone());
                    }
                    acs.insert(c.id.clone(), c);
                }
                Err(e) => tracing::error!(id, error = %e, "stored contract does not decode"),
            }
        }
        let mut pending = BTreeMap::new();
        let mut locks = HashMap::new();
        for (ts, body) in store.participant_pending(node).await? {
            if let Ok(p) = serde_json::from_slice::<engine::Pending>(&body) {
                for id in &p.locked {
                    if let Ok(id) = crate::model::ContractId::parse(id) {
                        locks.insert(id, ts);
                    }
                }
                pending.insert(ts, p);
            }
        }
        let dedup = store
            .participant_dedup(node)
            .await?
            .into_iter()
            .map(|(change, update, offset, expires)| (change, (update, offset, expires)))
            .collect();
        let in_flight =
            engine::in_flight_from_rows(store.participant_in_flight(node).await?, &pending);
        let users = store
            .participant_users(node)
            .await?
            .into_iter()
            .map(|(id, primary_party, rights)| {
                let rights = serde_json::from_str(&rights).unwrap_or_default();
                (
                    id,
                    UserRecord {
                        primary_party,
                        rights,
                    },
                )
            })
            .collect();
        let parties = store.participant_parties(node).await?.into_iter().collect();
        *self.0.packages.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(packages);
        Ok(Engine {
            node: node.clone(),
            fence,
            me: self.0.id.clone(),
            synchronizer: self.0.settings.synchronizer.clone(),
            delay_us: self.0.settings.delay_us,
            topology,
            acs,
            keys,
            locks,
            pending,
            dedup,
            in_flight,
            ledger_end: store.participant_ledger_end(node).await?,
            completion_end: store.participant_completion_end(node).await?,
            users,
            parties,
        })
    }

    /// Whether the replica is active (its engine loaded).
    pub fn is_active(&self) -> bool {
        *self.0.serving.borrow()
    }

    /// Whether the active replica's APIs serve (its ledger loaded), as it changes.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.0.serving.subscribe()
    }

    /// Connects to the synchronizer: admission, then the subscription. Idempotent.
    pub async fn connect(&self, stop: &CancellationToken) -> Result<(), Status> {
        if self.0.connection.lock().await.is_some() {
            return Ok(());
        }
        let s = &self.0.settings;
        if member::admitted(&s.topology_manager_endpoints, &self.0.id, &self.0.key, stop)
            .await
            .is_none()
        {
            return Err(Status::unavailable(
                "stopped before the synchronizer admitted us",
            ));
        }
        let member = Member::new(
            self.0.id.clone(),
            self.0.key.clone(),
            &s.sequencer_endpoints,
        )
        .map_err(|e| Status::invalid_argument(format!("sequencer endpoint: {e}")))?;
        let mut connection = self.0.connection.lock().await;
        if connection.is_some() {
            return Ok(());
        }
        let conn_stop = stop.child_token();
        self.record_connection(true).await;
        tokio::spawn(self.clone().follow(member.clone(), conn_stop.clone()));
        *connection = Some(Connection {
            member,
            stop: conn_stop,
        });
        Ok(())
    }

    pub async fn disconnect(&self) {
        if let Some(c) = self.0.connection.lock().await.take() {
            c.stop.cancel();
            self.record_connection(false).await;
        }
    }

    pub async fn is_connected(&self) -> bool {
        self.0.connection.lock().await.is_some()
    }

    async fn record_connection(&self, connected: bool) {
        let guard = self.0.engine.lock().await;
        let Some(engine) = guard.as_ref() else { return };
        let result = async {
            let mut db = self.0.store.begin_fenced(&engine.fence).await?;
            db.set_connection(&self.0.node, &self.0.settings.synchronizer, connected)
                .await?;
            db.commit().await
        };
        if let Err(e) = result.await {
            tracing::warn!(error = %e, "cannot record the connection state");
        }
    }

    async fn member(&self) -> Result<Member, Status> {
        self.0
            .connection
            .lock()
            .await
            .as_ref()
            .map(|c| c.member.clone())
            .ok_or_else(|| {
                error(
                    tonic::Code::Unavailable,
                    "NOT_CONNECTED",
                    "the participant is not connected to the synchronizer",
                )
            })
    }

    /// Processes the subscription from the stored cursor until `stop`.
    async fn follow(self, member: Member, stop: CancellationToken) {
        let from = match self.0.store.member_cursor(&self.0.node).await {
            Ok(ts) => ts,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the subscription cursor");
                return;
            }
        };
        let mut events = member.subscribe(from, stop.clone());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let effects = tokio::select! {
                () = stop.cancelled() => return,
                event = events.recv() => match event {
                    Some(e) => {
                        // Whatever else already arrived goes into the same transaction.
                        let mut batch = vec![e];
                        while batch.len() < MAX_BATCH {
                            match events.try_recv() {
                                Ok(e) => batch.push(e),
                                Err(_) => break,
                            }
                        }
                        self.on_events(&member, batch).await
                    }
                    None => return,
                },
                _ = tick.tick() => self.expire_unsequenced().await,
            };
            match effects {
                Ok(effects) => self.apply(effects),
                Err(e) => {
                    tracing::error!(error = %e, "cannot record an event; leaving the synchronizer");
                    stop.cancel();
                    return;
                }
            }
        }
    }

    /// Processes a batch of events in one fenced transaction with the cursor. The confirmation
    /// responses go out before that transaction commits, so the mediator's wait does not include
    /// it: a response follows from the events in sequencer order alone, so a replica that
    /// processes the same events again after a crash or failover decides the same responses,
    /// under the same message ids, which the sequencer refuses as duplicates.
    async fn on_events(
        &self,
        member: &Member,
        events: Vec<tandem_proto::sequencer::v1::SequencedEvent>,
    ) -> Result<Effects, StoreError> {
        let mut effects = Effects::default();
        let mut guard = self.0.engine.lock().await;
        let Some(engine) = guard.as_mut() else {
            return Ok(effects);
        };
        let Some(last) = events.last().map(|e| e.timestamp_us) else {
            return Ok(effects);
        };
        let mut db = self.0.store.begin_fenced(&engine.fence).await?;
        for event in events {
            self.on_event(engine, &mut db, event, &mut effects).await?;
        }
        send_responses(member, std::mem::take(&mut effects.responses));
        db.set_member_cursor(&self.0.node, last).await?;
        db.commit().await?;
        let committed = now_us();
        for verdict_at in std::mem::take(&mut effects.verdicts_at) {
            effects
                .phases
                .push(("verdict_to_committed", committed - verdict_at));
        }
        if effects.ledger_end_moved {
            self.0.ledger_end.send_replace(engine.ledger_end);
        }
        if !effects.completions.is_empty() {
            self.0.completion_end.send_replace(engine.completion_end);
        }
        Ok(effects)
    }

    async fn on_event(
        &self,
        engine: &mut Engine,
        db: &mut crate::store::FencedTx,
        event: tandem_proto::sequencer::v1::SequencedEvent,
        effects: &mut Effects,
    ) -> Result<(), StoreError> {
        let ts = event.timestamp_us;
        if let Some(e) = &event.deliver_error {
            // Our own request could not be sequenced.
            let change = engine
                .in_flight
                .values()
                .find(|f| f.message_id == event.message_id)
                .map(|f| f.change_id.clone());
            if let Some(f) = change.and_then(|c| engine.in_flight.remove(&c)) {
                let completion = not_completed(&f, "SEQUENCER_DELIVER_ERROR", &e.message, ts);
                engine.complete(db, &f, completion, effects).await?;
            }
        }
        let message = (!event.payload.is_empty())
            .then(|| <msg::SynchronizerMessage as prost::Message>::decode(&event.payload[..]).ok())
            .flatten()
            .and_then(|m| m.message);
        match message {
            Some(msg::synchronizer_message::Message::Topology(b))
                if member::is_broadcast(&event) =>
            {
                let delay_us = engine.delay_us;
                member::apply_broadcast(db, &self.0.node, &mut engine.topology, &b, ts, delay_us)
                    .await?;
            }
            Some(msg::synchronizer_message::Message::ConfirmationRequest(r)) => {
                let packages = self.packages();
                engine
                    .on_request(db, &packages, &event, &r, effects)
                    .await?;
            }
            Some(msg::synchronizer_message::Message::Verdict(v)) => {
                let from_mediator =
                    MemberId::parse(&event.sender).is_ok_and(|m| m.kind == MemberKind::Mediator);
                if from_mediator {
                    let packages = self.packages();
                    engine.on_verdict(db, &packages, &v, ts, effects).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Completes submissions whose request was never sequenced.
    async fn expire_unsequenced(&self) -> Result<Effects, StoreError> {
        let mut effects = Effects::default();
        let mut guard = self.0.engine.lock().await;
        let Some(engine) = guard.as_mut() else {
            return Ok(effects);
        };
        let now = now_us();
        let expired: Vec<String> = engine
            .in_flight
            .values()
            .filter(|f| {
                f.request_ts.is_none() && f.max_sequencing_us + NOT_SEQUENCED_GRACE_US < now
            })
            .map(|f| f.change_id.clone())
            .collect();
        if expired.is_empty() {
            return Ok(effects);
        }
        let mut db = self.0.store.begin_fenced(&engine.fence).await?;
        for change in expired {
            if let Some(f) = engine.in_flight.remove(&change) {
                let c = not_completed(
                    &f,
                    "SUBMISSION_NOT_SEQUENCED",
                    "the request was not sequenced in time; resubmitting is safe",
                    now,
                );
                engine.complete(&mut db, &f, c, &mut effects).await?;
            }
        }
        db.commit().await?;
        self.0.completion_end.send_replace(engine.completion_end);
        Ok(effects)
    }

    async fn persist_in_flight(&self, fence: &Fence, in_flight: &InFlight) -> Result<(), Status> {
        let body = serde_json::to_string(in_flight).unwrap_or_default();
        if !self
            .0
            .store
            .persist_in_flight(fence, &in_flight.change_id, &body)
            .await
            .map_err(unavailable)?
        {
            return Err(error(
                tonic::Code::AlreadyExists,
                "SUBMISSION_ALREADY_IN_FLIGHT",
                format!("command {} is being processed", in_flight.command_id),
            ));
        }
        Ok(())
    }

    /// After an event's transaction committed: record the phases, wake the waiters. (The
    /// confirmation responses went out before it committed, see `on_events`.)
    fn apply(&self, effects: Effects) {
        if let Some(h) = &self.0.settings.phase_seconds {
            for (phase, us) in &effects.phases {
                h.with_label_values(&[phase])
                    .observe((*us).max(0) as f64 / 1e6);
            }
        }
        let mut waiters = self.0.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for c in effects.completions {
            for w in waiters.remove(&c.change_id).unwrap_or_default() {
                let _ = w.send(c.clone());
            }
        }
    }

    /// Runs `f` on the engine, or answers UNAVAILABLE on a passive replica.
    pub(crate) async fn with_engine<T>(
        &self,
        f: impl FnOnce(&mut Engine) -> T,
    ) -> Result<T, Status> {
        let mut guard = self.0.engine.lock().await;
        guard
            .as_mut()
            .map(f)
            .ok_or_else(|| Status::unavailable("replica is passive"))
    }

    /// Submits `commands` for `caller`: validates, deduplicates, interprets, persists the
    /// in-flight submission and sends the confirmation request. Returns a receiver of the
    /// completion.
    pub async fn submit(
        &self,
        caller: &Caller,
        commands: &lapi::Commands,
    ) -> Result<(String, oneshot::Receiver<CompletionBody>), Status> {
        let invalid = |m: String| error(tonic::Code::InvalidArgument, "INVALID_ARGUMENT", m);
        if commands.command_id.is_empty() || commands.command_id.len() > 255 {
            return Err(invalid(
                "commands.command_id: must be 1 to 255 characters".into(),
            ));
        }
        if commands.submission_id.len() > 64 {
            return Err(invalid(
                "commands.submission_id: at most 64 characters".into(),
            ));
        }
        if commands.user_id != caller.user_id && !caller.rights.admin {
            return Err(denied(format!(
                "commands.user_id: {} may not submit as {}",
                caller.user_id, commands.user_id
            )));
        }
        let user_id = if commands.user_id.is_empty() {
            caller.user_id.clone()
        } else {
            commands.user_id.clone()
        };
        if commands.act_as.is_empty() {
            return Err(invalid("commands.act_as: names no party".into()));
        }
        let parse = |field: &str, ps: &[String]| -> Result<BTreeSet<Party>, Status> {
            ps.iter()
                .map(|p| Party::parse(p).map_err(|e| invalid(format!("commands.{field}: {e}"))))
                .collect()
        };
        let submitters = Submitters {
            act_as: parse("act_as", &commands.act_as)?,
            read_as: parse("read_as", &commands.read_as)?,
        };
        for p in &commands.act_as {
            caller.check_act_as(p)?;
        }
        for p in &commands.read_as {
            caller.check_read_as(p)?;
        }
        let dedup_us = match commands.deduplication_duration_ms {
            0 => DEFAULT_DEDUP_US,
            ms if ms < 0 || ms.saturating_mul(1000) > MAX_DEDUP_US => {
                return Err(invalid(
                    "commands.deduplication_duration_ms: must be between 0 and 30 days".into(),
                ))
            }
            ms => ms * 1000,
        };
        let packages = self.packages();
        let model_commands = submit::to_model(&packages, &commands.commands)
            .map_err(|(code, m)| error(tonic::Code::InvalidArgument, code, m))?;
        let member = self.member().await?;
        let change_id = submit::change_id(&user_id, &commands.act_as, &commands.command_id);
        let submission_id = if commands.submission_id.is_empty() {
            let mut b = [0u8; 16];
            getrandom::getrandom(&mut b).map_err(|e| Status::internal(e.to_string()))?;
            hex::encode(b)
        } else {
            commands.submission_id.clone()
        };
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| Status::internal(e.to_string()))?;
        let now = now_us();
        let (request, recipients, in_flight, receiver, mediator, fence) = {
            let mut guard = self.0.engine.lock().await;
            let engine = guard
                .as_mut()
                .ok_or_else(|| Status::unavailable("replica is passive"))?;
            let mediator = engine.mediator_at(now).ok_or_else(|| {
                error(
                    tonic::Code::Unavailable,
                    "NO_MEDIATOR",
                    "the synchronizer has no mediator yet",
                )
            })?;
            for p in &commands.act_as {
                if engine.permission(p, now) != Some(Permission::Submission) {
                    return Err(error(
                        tonic::Code::PermissionDenied,
                        "NO_SUBMISSION_PERMISSION",
                        format!("{p} is not hosted on this participant with submission permission"),
                    ));
                }
            }
            if let Some((update_id, offset, expires)) = engine.dedup.get(&change_id) {
                if *expires > now {
                    return Err(error(
                        tonic::Code::AlreadyExists,
                        "DUPLICATE_COMMAND",
                        format!(
                            "command {} was accepted as {update_id} at offset {offset}",
                            commands.command_id
                        ),
                    ));
                }
            }
            if engine.in_flight.contains_key(&change_id) {
                return Err(error(
                    tonic::Code::AlreadyExists,
                    "SUBMISSION_ALREADY_IN_FLIGHT",
                    format!("command {} is being processed", commands.command_id),
                ));
            }
            let tx = interpret(
                &packages,
                &submitters,
                &model_commands,
                &engine::Acs(engine),
                &SubmissionSeed(seed),
            )
            .map_err(|e| {
                let code = match e.code() {
                    "CONTRACT_NOT_FOUND"
                    | "CONTRACT_NOT_VISIBLE"
                    | "CONTRACT_NOT_ACTIVE"
                    | "CONTRACT_KEY_NOT_FOUND" => tonic::Code::NotFound,
                    "AUTHORIZATION_ERROR" => tonic::Code::PermissionDenied,
                    _ => tonic::Code::InvalidArgument,
                };
                // Invisible and unknown contracts look the same to the caller.
                let error_code = if e.code() == "CONTRACT_NOT_VISIBLE" {
                    "CONTRACT_NOT_FOUND"
                } else {
                    e.code()
                };
                error(code, error_code, e)
            })?;
            let views = submit::views_of(&tx);
            let mut recipients: BTreeSet<String> = BTreeSet::from([self.0.id.to_string()]);
            for party in tx.informees() {
                if let Some(h) = engine.topology.hosting_at(party.as_str(), now) {
                    recipients.extend(h.participants.iter().map(|(p, _)| p.to_string()));
                }
            }
            let payload = submit::TxPayload {
                change_id: change_id.clone(),
                submission_id: submission_id.clone(),
                command_id: commands.command_id.clone(),
                workflow_id: commands.workflow_id.clone(),
                act_as: commands.act_as.clone(),
                read_as: commands.read_as.clone(),
                commands: submit::encode_commands(&commands.commands),
                seed: hex::encode(seed),
                inputs: tx
                    .input_contracts
                    .iter()
                    .map(|c| {
                        (
                            c.id.to_string(),
                            codec::template_id(&c.template_id),
                            codec::contract_to_json(c),
                        )
                    })
                    .collect(),
            };
            let request = msg::ConfirmationRequest {
                submission_id: submission_id.clone(),
                views: views
                    .into_iter()
                    .map(|(informees, confirming_parties)| msg::ViewSummary {
                        informees,
                        confirming_parties,
                    })
                    .collect(),
                transaction: serde_json::to_vec(&payload).unwrap_or_default(),
            };
            let in_flight = InFlight {
                change_id: change_id.clone(),
                submission_id: submission_id.clone(),
                command_id: commands.command_id.clone(),
                user_id: user_id.clone(),
                act_as: commands.act_as.clone(),
                message_id: format!("request-{change_id}-{submission_id}"),
                max_sequencing_us: now + MAX_SEQUENCING_US,
                dedup_until_us: now.saturating_add(dedup_us),
                request_ts: None,
                submitted_us: now,
            };
            // Reserved in memory under the lock (a second submission of the change is refused
            // from here on), persisted below without it.
            engine
                .in_flight
                .insert(change_id.clone(), in_flight.clone());
            let (tx_done, rx_done) = oneshot::channel();
            self.0
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(change_id.clone())
                .or_default()
                .push(tx_done);
            let fence = engine.fence.clone();
            (request, recipients, in_flight, rx_done, mediator, fence)
        };
        // The in-flight row is written outside the engine lock, so submissions and the event
        // loop do not wait for each other's database round trips. The request is sent only
        // once the row is committed: the event loop cannot see it sequenced before, and a
        // replica that takes over finds it.
        if let Err(status) = self.persist_in_flight(&fence, &in_flight).await {
            let mut guard = self.0.engine.lock().await;
            if let Some(engine) = guard.as_mut() {
                engine.in_flight.remove(&change_id);
            }
            self.0
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&change_id);
            return Err(status);
        }
        let mut to: Vec<String> = vec![mediator];
        to.extend(recipients);
        let payload = prost::Message::encode_to_vec(&msg::SynchronizerMessage {
            message: Some(msg::synchronizer_message::Message::ConfirmationRequest(
                request,
            )),
        });
        match member.send(&in_flight.message_id, &to, payload).await {
            Ok(Sent::At(_) | Sent::AlreadySequenced) => Ok((submission_id, receiver)),
            Err(s) => {
                // Not sequenced: forget the submission so it can be retried at once.
                let completion = not_completed(
                    &in_flight,
                    "SUBMISSION_NOT_SEQUENCED",
                    s.message(),
                    now_us(),
                );
                let mut effects = Effects::default();
                let mut guard = self.0.engine.lock().await;
                if let Some(engine) = guard.as_mut() {
                    if let Some(f) = engine.in_flight.remove(&change_id) {
                        let mut db = self
                            .0
                            .store
                            .begin_fenced(&engine.fence)
                            .await
                            .map_err(unavailable)?;
                        engine
                            .complete(&mut db, &f, completion, &mut effects)
                            .await
                            .map_err(unavailable)?;
                        db.commit().await.map_err(unavailable)?;
                        self.0.completion_end.send_replace(engine.completion_end);
                    }
                }
                drop(guard);
                self.apply(effects);
                Err(error(
                    tonic::Code::Unavailable,
                    "SUBMISSION_NOT_SEQUENCED",
                    s.message(),
                ))
            }
        }
    }

    pub(crate) fn ledger_end_watch(&self) -> watch::Receiver<i64> {
        self.0.ledger_end.subscribe()
    }

    pub(crate) fn completion_end_watch(&self) -> watch::Receiver<i64> {
        self.0.completion_end.subscribe()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn node(&self) -> &str {
        &self.0.node
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub(crate) fn key(&self) -> &KeyPair {
        &self.0.key
    }

    /// Replaces the package store after an upload.
    pub(crate) fn set_packages(&self, packages: PackageStore) {
        *self.0.packages.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(packages);
    }
}

fn not_completed(f: &InFlight, code: &str, message: &str, at_us: i64) -> CompletionBody {
    CompletionBody {
        offset: 0,
        change_id: f.change_id.clone(),
        command_id: f.command_id.clone(),
        submission_id: f.submission_id.clone(),
        user_id: f.user_id.clone(),
        act_as: f.act_as.clone(),
        status_code: tonic::Code::Aborted as i32,
        error_code: code.to_string(),
        message: message.to_string(),
        update_id: String::new(),
        ledger_offset: 0,
        record_time_us: at_us,
    }
}

/// Sends confirmation responses to their mediators, each in a task of its own.
fn send_responses(member: &Member, responses: Vec<(String, String, Vec<u8>)>) {
    for (message_id, mediator, payload) in responses {
        let member = member.clone();
        tokio::spawn(async move {
            if let Err(s) = member.send(&message_id, &[mediator], payload).await {
                tracing::warn!(status = %s, message_id, "confirmation response not sent");
            }
        });
    }
}
