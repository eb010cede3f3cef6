//! The mediator (design.md §5.2), active-passive. The active replica asks the topology manager
//! to admit it, follows its sequencer subscription from where the previous active stopped,
//! aggregates confirmation responses per `aggregation`, and sends each verdict to the submitter
//! and every informee participant. Every event is processed in one fenced transaction with the
//! subscription cursor, and pending requests (with their votes) live in the shared database, so
//! a newly active replica resumes them and reaches the same verdicts.

pub mod aggregation;

use crate::config::TopologyConfig;
use crate::identity::{KeyPair, MemberId, MemberKind};
use crate::member::{self, Member, Sent};
use crate::sequencer::now_us;
use crate::store::mediator::StoredRequest;
use crate::store::{Fence, FencedTx, Store, StoreError};
use crate::topology::TopologyState;
use aggregation::{Aggregation, Outcome, Vote, MALFORMED_REQUEST};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tandem_proto::mediator::v1 as apb;
use tandem_proto::sequencer::v1::SequencedEvent;
use tandem_proto::synchronizer::v1 as msg;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// A request is timed out this long after its deadline by the mediator's clock, so responses
/// sequenced just before the deadline have been read.
const TIMEOUT_GRACE_US: i64 = 100_000;

/// Most events processed in one database transaction.
const MAX_BATCH: usize = 256;

/// Most verdicts waiting for their sequencer receipt at once.
const VERDICTS_IN_FLIGHT: usize = 64;

#[derive(Debug, Clone)]
pub struct Settings {
    pub delay_us: i64,
    pub timeout_ms: u64,
    pub sequencer_endpoints: Vec<String>,
    pub topology_manager_endpoints: Vec<String>,
}

impl Settings {
    pub fn from_topology(t: &TopologyConfig) -> Settings {
        let sync = &t.synchronizer;
        Settings {
            delay_us: sync.topology_change_delay_us(),
            timeout_ms: sync.confirmation_response_timeout_ms,
            sequencer_endpoints: t.sequencer_endpoints(),
            topology_manager_endpoints: t.topology_manager_endpoints(),
        }
    }
}

struct Inner {
    node: String,
    replica: u32,
    store: Store,
    id: MemberId,
    key: Arc<KeyPair>,
    settings: Settings,
    /// True while this replica is active, admitted and following its subscription.
    serving: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct Mediator(Arc<Inner>);

/// A request and its aggregation, as kept in memory while active.
struct Pending {
    row: StoredRequest,
    aggregation: Aggregation,
}

impl Pending {
    fn decide(&mut self, outcome: Outcome) {
        let (state, verdict) = verdict_of(&self.row, outcome);
        self.row.state = state.into();
        self.row.verdict = Some(verdict);
    }

    fn sync_aggregation(&mut self) {
        self.row.aggregation = serde_json::to_string(&self.aggregation).unwrap_or_default();
    }
}

fn verdict_of(row: &StoredRequest, outcome: Outcome) -> (&'static str, Vec<u8>) {
    let verdict = match outcome {
        Outcome::Approved => msg::Verdict {
            request_ts_us: row.request_ts,
            submission_id: row.submission_id.clone(),
            approved: true,
            ..Default::default()
        },
        Outcome::Rejected {
            code,
            reason,
            parties,
        } => msg::Verdict {
            request_ts_us: row.request_ts,
            submission_id: row.submission_id.clone(),
            approved: false,
            code: code.into(),
            reason,
            parties,
        },
    };
    let state = if verdict.approved {
        "approved"
    } else {
        "rejected"
    };
    let envelope = msg::SynchronizerMessage {
        message: Some(msg::synchronizer_message::Message::Verdict(verdict)),
    };
    (state, prost::Message::encode_to_vec(&envelope))
}

/// A decided verdict waiting to be sent.
struct Outgoing {
    request_ts: i64,
    recipients: Vec<String>,
    payload: Vec<u8>,
}

/// The message id of the verdict on the request sequenced at `request_ts`: a resend after a
/// crash or failover carries the same id, which the sequencer refuses as a duplicate.
fn verdict_message_id(request_ts: i64) -> String {
    format!("{VERDICT_ID_PREFIX}{request_ts}")
}

const VERDICT_ID_PREFIX: &str = "verdict-";

/// The request whose verdict `event` is this mediator's receipt for (`me` is its member id): the
/// sequencer has that verdict. A verdict refused with a deliver error was not sent.
fn verdict_receipt(event: &SequencedEvent, me: &str) -> Option<i64> {
    if event.sender != me || event.deliver_error.is_some() {
        return None;
    }
    event
        .message_id
        .strip_prefix(VERDICT_ID_PREFIX)?
        .parse()
        .ok()
}

impl Mediator {
    pub async fn new(
        store: Store,
        node: &str,
        replica: u32,
        settings: Settings,
    ) -> Result<Mediator, StoreError> {
        let (id, key) = store.node_identity(node, MemberKind::Mediator).await?;
        Ok(Mediator(Arc::new(Inner {
            node: node.to_string(),
            replica,
            store,
            id,
            key: Arc::new(key),
            settings,
            serving: watch::channel(false).0,
        })))
    }

    pub fn id(&self) -> &MemberId {
        &self.0.id
    }

    /// Whether this replica serves (active, admitted, following), as it changes.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.0.serving.subscribe()
    }

    /// What the active replica does while it holds `epoch`, until `stop`.
    pub async fn run_active(self, epoch: u64, stop: CancellationToken) {
        let s = &self.0.settings;
        if member::admitted(
            &s.topology_manager_endpoints,
            &self.0.id,
            &self.0.key,
            &stop,
        )
        .await
        .is_none()
        {
            return;
        }
        let fence = Fence {
            node: self.0.node.clone(),
            replica: self.0.replica,
            epoch,
        };
        let member = match Member::new(
            self.0.id.clone(),
            self.0.key.clone(),
            &s.sequencer_endpoints,
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "bad sequencer endpoint");
                return;
            }
        };
        self.0.serving.send_replace(true);
        tracing::info!(member = %self.0.id, epoch, "mediator active");
        if let Err(e) = self
            .clone()
            .process(fence.clone(), member.clone(), stop.clone())
            .await
        {
            tracing::error!(error = %e, "mediator session ended");
        }
        self.0.serving.send_replace(false);
    }

    async fn process(
        self,
        fence: Fence,
        member: Member,
        stop: CancellationToken,
    ) -> Result<(), StoreError> {
        let store = &self.0.store;
        let node = &self.0.node;
        let mut topology = member::stored_topology(store, node).await?;
        let mut pending: BTreeMap<i64, Pending> = BTreeMap::new();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        for row in store.mediator_open_requests(node).await? {
            let aggregation = serde_json::from_str(&row.aggregation).map_err(|e| {
                StoreError::Database(format!("request {}: bad aggregation: {e}", row.request_ts))
            })?;
            let p = Pending { row, aggregation };
            if let (Some(payload), false) = (&p.row.verdict, p.row.verdict_sent) {
                let _ = out_tx.send(outgoing(&p, payload.clone()));
            }
            if p.row.state == "pending" {
                pending.insert(p.row.request_ts, p);
            }
        }
        let marks = VerdictMarks {
            store: store.clone(),
            fence: fence.clone(),
            node: node.clone(),
        };
        let sender = tokio::spawn(send_verdicts(member.clone(), marks, out_rx, stop.clone()));
        let from = store.member_cursor(node).await?;
        let mut events = member.subscribe(from, stop.clone());
        let result = loop {
            let next_deadline = pending
                .values()
                .map(|p| p.row.deadline_us + TIMEOUT_GRACE_US)
                .min();
            let sleep = next_deadline.map_or(Duration::from_secs(3600), |d| {
                Duration::from_micros(u64::try_from(d - now_us()).unwrap_or(0))
            });
            tokio::select! {
                () = stop.cancelled() => break Ok(()),
                event = events.recv() => {
                    let Some(first) = event else { break Ok(()) };
                    // Whatever else has arrived goes into the same database transaction.
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match events.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.on_events(&fence, &mut topology, &mut pending, &out_tx, batch).await {
                        break Err(e);
                    }
                }
                () = tokio::time::sleep(sleep) => {
                    if let Err(e) = self.time_out(&fence, &mut pending, &out_tx).await {
                        break Err(e);
                    }
                }
            }
        };
        stop.cancel();
        let _ = sender.await;
        result
    }

    /// Processes a batch of events in one fenced transaction with the cursor. The verdicts
    /// decided go out before it commits, so the participants' wait does not include it: a
    /// verdict decided by events follows from them in sequencer order alone, so a replica that
    /// processes them again after a crash or failover decides the same verdict under the same
    /// message id, which the sequencer refuses as a duplicate. (A timeout verdict depends on the
    /// clock too; it goes out after its transaction, see `time_out`.) A verdict is marked sent
    /// when this mediator's receipt for it comes by in the subscription, in that batch's
    /// transaction: the verdict, and so its receipt, is sequenced after the events that decided
    /// it, so their batch has committed by then; a replica that resumes before the receipt sends
    /// the verdict again.
    async fn on_events(
        &self,
        fence: &Fence,
        topology: &mut TopologyState,
        pending: &mut BTreeMap<i64, Pending>,
        out: &mpsc::UnboundedSender<Outgoing>,
        events: Vec<SequencedEvent>,
    ) -> Result<(), StoreError> {
        let Some(last) = events.last().map(|e| e.timestamp_us) else {
            return Ok(());
        };
        let me = self.0.id.to_string();
        let mut db = self.0.store.begin_fenced(fence).await?;
        let mut decided = Vec::new();
        for event in events {
            match verdict_receipt(&event, &me) {
                Some(request_ts) => db.mark_verdict_sent(&self.0.node, request_ts).await?,
                None => {
                    self.on_event(&mut db, topology, pending, event, &mut decided)
                        .await?
                }
            }
        }
        // The decided rows are written (and locked) before their verdicts go out: a verdict the
        // sequencer already has is marked sent in a transaction of its own (`VerdictMarks`),
        // which must find the row and wait for this one, not be overwritten by it.
        db.flush().await?;
        for p in decided {
            if let Some(payload) = p.row.verdict.clone() {
                let _ = out.send(outgoing(&p, payload));
            }
        }
        db.set_member_cursor(&self.0.node, last).await?;
        db.commit().await?;
        Ok(())
    }

    async fn on_event(
        &self,
        db: &mut FencedTx,
        topology: &mut TopologyState,
        pending: &mut BTreeMap<i64, Pending>,
        event: SequencedEvent,
        decided: &mut Vec<Pending>,
    ) -> Result<(), StoreError> {
        let node = &self.0.node;
        let ts = event.timestamp_us;
        let message = (event.deliver_error.is_none() && !event.payload.is_empty())
            .then(|| <msg::SynchronizerMessage as prost::Message>::decode(&event.payload[..]).ok())
            .flatten()
            .and_then(|m| m.message);
        match message {
            // Only the topology manager may broadcast; a topology message sent any other way
            // is ignored.
            Some(msg::synchronizer_message::Message::Topology(b))
                if member::is_broadcast(&event) =>
            {
                member::apply_broadcast(db, node, topology, &b, ts, self.0.settings.delay_us)
                    .await?;
            }
            Some(msg::synchronizer_message::Message::ConfirmationRequest(r)) => {
                let submitter = event.sender.clone();
                let row = StoredRequest {
                    request_ts: ts,
                    submitter: submitter.clone(),
                    submission_id: r.submission_id.clone(),
                    deadline_us: ts
                        + i64::try_from(self.0.settings.timeout_ms).unwrap_or(i64::MAX / 1000)
                            * 1000,
                    state: "pending".into(),
                    aggregation: String::new(),
                    verdict: None,
                    verdict_sent: false,
                };
                let is_participant =
                    MemberId::parse(&submitter).is_ok_and(|m| m.kind == MemberKind::Participant);
                let (aggregation, malformed) = match Aggregation::new(&submitter, &r, topology, ts)
                {
                    Ok(a) if is_participant => (a, None),
                    Ok(a) => (a, Some(format!("{submitter} is not a participant"))),
                    Err(why) => (
                        Aggregation {
                            views: Vec::new(),
                            recipients: [submitter.clone()].into(),
                        },
                        Some(why),
                    ),
                };
                let mut p = Pending { row, aggregation };
                p.sync_aggregation();
                if let Some(why) = malformed {
                    tracing::info!(request_ts = ts, %why, "malformed confirmation request");
                    p.decide(Outcome::Rejected {
                        code: MALFORMED_REQUEST,
                        reason: why,
                        parties: Vec::new(),
                    });
                } else if let Some(outcome) = p.aggregation.outcome() {
                    p.decide(outcome);
                }
                db.save_mediator_request(node, &p.row).await?;
                if p.row.verdict.is_some() {
                    decided.push(p);
                } else {
                    pending.insert(ts, p);
                }
            }
            Some(msg::synchronizer_message::Message::ConfirmationResponse(r)) => {
                match pending.get_mut(&r.request_ts_us) {
                    Some(p) if ts <= p.row.deadline_us => {
                        let mut counted = false;
                        for vote in p.aggregation.respond(&event.sender, &r) {
                            match vote {
                                Vote::Counted => counted = true,
                                Vote::Ignored(why) => {
                                    tracing::debug!(request_ts = r.request_ts_us, %why, "response ignored")
                                }
                                Vote::Equivocation(why) => {
                                    tracing::warn!(request_ts = r.request_ts_us, %why, "equivocation")
                                }
                            }
                        }
                        if counted {
                            p.sync_aggregation();
                            if let Some(outcome) = p.aggregation.outcome() {
                                p.decide(outcome);
                            }
                            db.save_mediator_request(node, &p.row).await?;
                            if p.row.verdict.is_some() {
                                decided.extend(pending.remove(&r.request_ts_us));
                            }
                        }
                    }
                    Some(_) => {
                        tracing::debug!(request_ts = r.request_ts_us, "late response ignored")
                    }
                    None => tracing::debug!(
                        request_ts = r.request_ts_us,
                        "response to no pending request"
                    ),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Rejects every pending request whose deadline passed.
    async fn time_out(
        &self,
        fence: &Fence,
        pending: &mut BTreeMap<i64, Pending>,
        out: &mpsc::UnboundedSender<Outgoing>,
    ) -> Result<(), StoreError> {
        let now = now_us();
        let due: Vec<i64> = pending
            .values()
            .filter(|p| p.row.deadline_us + TIMEOUT_GRACE_US <= now)
            .map(|p| p.row.request_ts)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut db: FencedTx = self.0.store.begin_fenced(fence).await?;
        let mut done = Vec::new();
        for ts in due {
            if let Some(mut p) = pending.remove(&ts) {
                p.decide(p.aggregation.timeout(self.0.settings.timeout_ms));
                db.save_mediator_request(&self.0.node, &p.row).await?;
                done.push(p);
            }
        }
        db.commit().await?;
        for p in done {
            if let Some(payload) = p.row.verdict.clone() {
                let _ = out.send(outgoing(&p, payload));
            }
        }
        Ok(())
    }
}

fn outgoing(p: &Pending, payload: Vec<u8>) -> Outgoing {
    Outgoing {
        request_ts: p.row.request_ts,
        recipients: p.aggregation.recipients.iter().cloned().collect(),
        payload,
    }
}

/// Sends verdicts as they are decided, up to [`VERDICTS_IN_FLIGHT`] at once (each waits for
/// its sequencer receipt; verdicts are independent and their message ids make a resend
/// harmless). The subscription's receipts mark them sent, see `on_events`.
async fn send_verdicts(
    member: Member,
    marks: VerdictMarks,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    stop: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(VERDICTS_IN_FLIGHT));
    let mut sending = tokio::task::JoinSet::new();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => break,
            n = queue.recv() => n,
        };
        let Some(v) = next else { break };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (member, marks, stop) = (member.clone(), marks.clone(), stop.clone());
        sending.spawn(async move {
            send_verdict(&member, &marks, v, &stop).await;
            drop(slot);
        });
        while sending.try_join_next().is_some() {}
    }
    while sending.join_next().await.is_some() {}
}

/// Where a verdict the sequencer already had is marked sent.
#[derive(Clone)]
struct VerdictMarks {
    store: Store,
    fence: Fence,
    node: String,
}

impl VerdictMarks {
    /// Marks the verdict on `request_ts` sent in a transaction of its own: for a resend the
    /// sequencer refused as a duplicate, whose receipt may lie before the cursor (sent by a
    /// replica that stopped before it saw it, or before receipts marked verdicts).
    async fn mark(&self, request_ts: i64) {
        let marked = async {
            let mut db = self.store.begin_fenced(&self.fence).await?;
            db.mark_verdict_sent(&self.node, request_ts).await?;
            db.commit().await
        };
        if let Err(e) = marked.await {
            tracing::warn!(request_ts, error = %e, "cannot mark the verdict sent");
        }
    }
}

/// Sends one verdict until the sequencer has it.
async fn send_verdict(
    member: &Member,
    marks: &VerdictMarks,
    v: Outgoing,
    stop: &CancellationToken,
) {
    let message_id = verdict_message_id(v.request_ts);
    loop {
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            s = member.send(&message_id, &v.recipients, v.payload.clone()) => s,
        };
        match sent {
            Ok(Sent::At(_)) => return,
            Ok(Sent::AlreadySequenced) => return marks.mark(v.request_ts).await,
            Err(s) => {
                tracing::warn!(request_ts = v.request_ts, status = %s, "verdict not sent; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

/// The mediator's admin service (active replica only).
pub struct MediatorAdmin(pub Mediator);

#[tonic::async_trait]
impl apb::mediator_admin_service_server::MediatorAdminService for MediatorAdmin {
    async fn list_requests(
        &self,
        request: Request<apb::ListRequestsRequest>,
    ) -> Result<Response<apb::ListRequestsResponse>, Status> {
        if !*self.0 .0.serving.borrow() {
            return Err(Status::unavailable("replica is passive"));
        }
        let limit = match request.into_inner().limit {
            0 => 100,
            n if n > 1000 => return Err(Status::invalid_argument("limit: at most 1000")),
            n => i64::from(n),
        };
        let rows = self
            .0
             .0
            .store
            .mediator_requests(&self.0 .0.node, limit)
            .await
            .map_err(|e| Status::unavailable(format!("mediator database unavailable: {e}")))?;
        let requests = rows
            .into_iter()
            .map(|r| {
                let verdict = r
                    .verdict
                    .as_deref()
                    .and_then(|v| <msg::SynchronizerMessage as prost::Message>::decode(v).ok())
                    .and_then(|m| match m.message {
                        Some(msg::synchronizer_message::Message::Verdict(v)) => Some(v),
                        _ => None,
                    })
                    .unwrap_or_default();
                apb::RequestInfo {
                    request_ts_us: r.request_ts,
                    submitter: r.submitter,
                    submission_id: r.submission_id,
                    state: r.state,
                    code: verdict.code,
                    reason: verdict.reason,
                    parties: verdict.parties,
                    verdict_sequenced: r.verdict_sent,
                    deadline_us: r.deadline_us,
                }
            })
            .collect();
        Ok(Response::new(apb::ListRequestsResponse { requests }))
    }
}
