//! What every synchronizer member (mediator, topology manager, participant) does to take part:
//! ask the topology manager to admit it, send through the sequencers round-robin with failover,
//! and keep one subscription that moves to another sequencer on failure and resumes after the
//! last event it delivered, with no gap and no duplicate.

use crate::identity::{KeyPair, MemberId};
use crate::sequencer::client::SequencerClient;
use crate::sequencer::now_us;
use crate::topology::{SignedTransaction, Transaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tandem_proto::sequencer::v1 as pb;
use tandem_proto::topology::v1 as tpb;
use tandem_proto::topology::v1::topology_manager_service_client::TopologyManagerServiceClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// How long a member's messages may wait to be sequenced.
const MAX_SEQUENCING_DELAY_US: i64 = 10_000_000;
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A member's connections to the sequencers.
#[derive(Clone)]
pub struct Member {
    pub id: MemberId,
    clients: Arc<Vec<SequencerClient>>,
    next: Arc<AtomicUsize>,
}

/// Whether a send reached the sequencer's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    At(i64),
    /// An earlier attempt with the same message id was sequenced.
    AlreadySequenced,
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

impl Member {
    /// Connects lazily to every endpoint (`http://host:port`); nothing is dialled yet.
    pub fn new(
        id: MemberId,
        key: Arc<KeyPair>,
        endpoints: &[String],
    ) -> Result<Member, tonic::transport::Error> {
        let clients = endpoints
            .iter()
            .map(|e| SequencerClient::lazy(e, id.clone(), key.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Member {
            id,
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn pick(&self) -> SequencerClient {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
        self.clients[i].clone()
    }

    /// Sends `payload` to `recipients` with `message_id`, trying the sequencers in turn until one
    /// answers or the message's max sequencing time passes. Errors that retrying cannot fix
    /// (a bad request) are returned at once.
    pub async fn send(
        &self,
        message_id: &str,
        recipients: &[String],
        payload: Vec<u8>,
    ) -> Result<Sent, tonic::Status> {
        let max_sequencing_time_us = now_us() + MAX_SEQUENCING_DELAY_US;
        let mut wait = RETRY_MIN;
        loop {
            let mut client = self.pick();
            let request = client.request(
                message_id,
                recipients,
                payload.clone(),
                max_sequencing_time_us,
            );
            match client.send(request).await {
                Ok(ts) => return Ok(Sent::At(ts)),
                Err(s) if s.code() == Code::AlreadyExists => return Ok(Sent::AlreadySequenced),
                Err(s) if retryable(s.code()) && now_us() < max_sequencing_time_us => {
                    tracing::debug!(member = %self.id, status = %s, "send failed; trying the next sequencer");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(s) => return Err(s),
            }
        }
    }

    /// The member's events after `from`, in order, across sequencer failures, until `stop`.
    pub fn subscribe(
        &self,
        from: i64,
        stop: CancellationToken,
    ) -> mpsc::Receiver<pb::SequencedEvent> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(follow(self.clone(), from, tx, stop));
        rx
    }
}

async fn follow(
    member: Member,
    from: i64,
    tx: mpsc::Sender<pb::SequencedEvent>,
    stop: CancellationToken,
) {
    let mut last = from;
    let mut wait = RETRY_MIN;
    loop {
        let mut client = member.pick();
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            s = client.subscribe(last) => s,
        };
        match stream {
            Ok(mut stream) => loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    () = tx.closed() => return,
                    n = stream.message() => n,
                };
                match next {
                    Ok(Some(event)) => {
                        wait = RETRY_MIN;
                        if event.timestamp_us <= last {
                            continue;
                        }
                        if last > 0 && event.previous_timestamp_us != last {
                            tracing::error!(member = %member.id, last, previous = event.previous_timestamp_us,
                                "subscription skipped events; resubscribing");
                            break;
                        }
                        last = event.timestamp_us;
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(s) => {
                        tracing::debug!(member = %member.id, status = %s, "subscription ended; moving on");
                        break;
                    }
                }
            },
            Err(s) => {
                tracing::debug!(member = %member.id, status = %s, "cannot subscribe; trying the next sequencer");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Why a member is not admitted yet.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("no topology manager replica answered: {0}")]
    Unreachable(String),
    #[error("the topology manager refused the admission: {0}")]
    Refused(tonic::Status),
    #[error("waiting for an operator to authorize the admission (proposal {0})")]
    Proposed(String),
}

/// Asks the topology manager (any of `endpoints`; the active replica answers) to admit `id`
/// with `key`, and returns once the admission is in effect.
pub async fn request_admission(
    endpoints: &[String],
    id: &MemberId,
    key: &KeyPair,
) -> Result<tpb::SubmitResponse, AdmissionError> {
    let signed =
        SignedTransaction::unsigned(Transaction::admission(id, &key.public_key())).sign(key);
    let request = tpb::SubmitRequest {
        transaction: Some((&signed).into()),
        wait_for_effective: true,
    };
    let mut last_error = String::from("no endpoints");
    for endpoint in endpoints {
        let client = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
            Ok(e) => e.connect_timeout(Duration::from_secs(1)).connect().await,
            Err(e) => {
                last_error = format!("{endpoint}: {e}");
                continue;
            }
        };
        let mut client = match client {
            Ok(channel) => TopologyManagerServiceClient::new(channel),
            Err(e) => {
                last_error = format!("{endpoint}: {e}");
                continue;
            }
        };
        match client.submit(request.clone()).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.status == tpb::TransactionStatus::Proposed as i32 {
                    return Err(AdmissionError::Proposed(r.hash));
                }
                return Ok(r);
            }
            Err(s) if retryable(s.code()) => last_error = format!("{endpoint}: {}", s.message()),
            Err(s) => return Err(AdmissionError::Refused(s)),
        }
    }
    Err(AdmissionError::Unreachable(last_error))
}

/// Keeps asking until admitted (or `stop`), logging why not at most once per reason.
pub async fn admitted(
    endpoints: &[String],
    id: &MemberId,
    key: &KeyPair,
    stop: &CancellationToken,
) -> Option<tpb::SubmitResponse> {
    let mut said = String::new();
    loop {
        match request_admission(endpoints, id, key).await {
            Ok(r) => return Some(r),
            Err(e) => {
                let why = e.to_string();
                if why != said {
                    tracing::warn!(member = %id, "not admitted yet: {why}");
                    said = why;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Like [`request_admission`], but waits out a topology manager that is not reachable yet (still
/// electing its active replica, or starting) for up to `within`.
pub async fn admit_within(
    endpoints: &[String],
    id: &MemberId,
    key: &KeyPair,
    within: Duration,
) -> Result<tpb::SubmitResponse, AdmissionError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match request_admission(endpoints, id, key).await {
            Err(AdmissionError::Unreachable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Whether `event` is a broadcast (recipient `*`): only the topology manager may send one.
pub fn is_broadcast(event: &pb::SequencedEvent) -> bool {
    event
        .recipients
        .iter()
        .any(|r| r == crate::topology::BROADCAST)
}

/// The topology state rebuilt from the sequenced transactions `node` stored.
pub async fn stored_topology(
    store: &crate::store::Store,
    node: &str,
) -> Result<crate::topology::TopologyState, crate::store::StoreError> {
    let mut topology = crate::topology::TopologyState::new();
    for row in store.topology_transactions(node).await? {
        if let Ok(signed) = SignedTransaction::decode(&row.signed) {
            if let Err(e) = topology.apply(&signed, row.effective_us.unwrap_or(0)) {
                tracing::warn!(hash = row.hash, error = %e, "stored transaction does not apply");
            }
        }
    }
    Ok(topology)
}

/// Applies a topology broadcast sequenced at `ts` (each transaction in effect from
/// `ts + delay_us`) and stores every transaction that applied, in `db`.
pub async fn apply_broadcast(
    db: &mut crate::store::FencedTx,
    node: &str,
    topology: &mut crate::topology::TopologyState,
    broadcast: &tandem_proto::synchronizer::v1::TopologyBroadcast,
    ts: i64,
    delay_us: i64,
) -> Result<(), crate::store::StoreError> {
    use crate::store::synchronizer::{StoredTopology, TopologyStatus};
    for t in &broadcast.transactions {
        let Ok(signed) = SignedTransaction::try_from(t) else {
            continue;
        };
        let effective = ts + delay_us;
        if let Err(e) = topology.apply(&signed, effective) {
            tracing::warn!(error = %e, "ignoring a topology transaction");
            continue;
        }
        let row = StoredTopology {
            hash: signed.transaction.hash(),
            signed: signed.encode(),
            status: TopologyStatus::Sequenced,
            sequenced_us: Some(ts),
            effective_us: Some(effective),
        };
        db.save_topology(node, &row, None).await?;
    }
    Ok(())
}
