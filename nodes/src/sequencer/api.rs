//! The gRPC services of a sequencer: the member-facing sequencer API and the operator's admin
//! service. Every request is validated before anything is written: an error here leaves no trace.

use super::fanout::PAGE;
use super::writer::{SendError, Submission};
use super::{
    acknowledge_signing_bytes, now_us, send_signing_bytes, subscribe_signing_bytes, Sequencer,
};
use crate::identity::MemberKind;
use crate::identity::{verify_with, MemberId};
use crate::store::sequencer::{NewEvent, StoredEvent};
use crate::topology::{Mapping, SignedTransaction, TopologyState, Transaction, BROADCAST};
use std::collections::BTreeSet;
use std::time::Duration;
use tandem_proto::sequencer::v1 as pb;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// How far a subscription request's clock may be from ours.
const REQUEST_CLOCK_SKEW_US: i64 = 60_000_000;
/// How long `Send` waits for its batch to be written.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_MESSAGE_ID_LEN: usize = 255;

pub struct SequencerApi(pub Sequencer);
pub struct SequencerAdmin(pub Sequencer);

fn store_unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("sequencer database unavailable: {e}"))
}

impl Sequencer {
    /// Checks that `member` is registered and that `signature` is its signature over `bytes`.
    async fn authenticate(
        &self,
        member: &str,
        bytes: &[u8],
        signature: &[u8],
    ) -> Result<(), Status> {
        MemberId::parse(member).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = self
            .members
            .key_of(member)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| {
                Status::permission_denied(format!("{member} is not a member of this synchronizer"))
            })?;
        verify_with(&key, bytes, signature)
            .map_err(|e| Status::unauthenticated(format!("{member}: {e}")))
    }

    async fn validate_send(&self, r: &pb::SubmissionRequest) -> Result<(), Status> {
        let bytes = send_signing_bytes(
            &r.sender,
            &r.message_id,
            &r.recipients,
            &r.payload,
            r.max_sequencing_time_us,
        );
        self.authenticate(&r.sender, &bytes, &r.signature).await?;
        if r.message_id.is_empty() || r.message_id.len() > MAX_MESSAGE_ID_LEN {
            return Err(Status::invalid_argument(format!(
                "message_id: must be 1 to {MAX_MESSAGE_ID_LEN} bytes"
            )));
        }
        if r.recipients.is_empty() {
            return Err(Status::invalid_argument("recipients: names nobody"));
        }
        if r.recipients.iter().any(|x| x == BROADCAST) {
            if r.recipients.len() != 1 {
                return Err(Status::invalid_argument(
                    "recipients: a broadcast (*) names no one else",
                ));
            }
            if self
                .members
                .trust_root()
                .await
                .map_err(store_unavailable)?
                .as_deref()
                != Some(r.sender.as_str())
            {
                return Err(Status::permission_denied(
                    "recipients: only the topology manager may broadcast (*)",
                ));
            }
        }
        if r.recipients.len() > self.config.max_recipients {
            return Err(Status::invalid_argument(format!(
                "recipients: at most {} allowed",
                self.config.max_recipients
            )));
        }
        let mut seen = BTreeSet::new();
        for recipient in &r.recipients {
            if !seen.insert(recipient) {
                return Err(Status::invalid_argument(format!(
                    "recipients: {recipient} is listed twice"
                )));
            }
            if recipient != BROADCAST
                && self
                    .members
                    .key_of(recipient)
                    .await
                    .map_err(store_unavailable)?
                    .is_none()
            {
                return Err(Status::invalid_argument(format!(
                    "recipients: {recipient} is not a member of this synchronizer"
                )));
            }
        }
        if r.payload.len() > self.config.max_payload_bytes {
            return Err(Status::resource_exhausted(format!(
                "payload: {} bytes is more than the maximum of {}",
                r.payload.len(),
                self.config.max_payload_bytes
            )));
        }
        if r.max_sequencing_time_us <= now_us() {
            return Err(Status::deadline_exceeded(
                "max_sequencing_time_us: already passed",
            ));
        }
        Ok(())
    }
}

fn to_proto(e: &StoredEvent, member: &str, previous: i64) -> pb::SequencedEvent {
    let is_sender = e.sender == member;
    let is_recipient = e.addressed_to(member);
    pb::SequencedEvent {
        timestamp_us: e.ts,
        previous_timestamp_us: previous,
        message_id: if is_sender {
            e.message_id.clone()
        } else {
            String::new()
        },
        sender: e.sender.clone(),
        recipients: e.recipients.clone(),
        payload: if is_recipient && e.error.is_none() {
            e.payload.clone()
        } else {
            Vec::new()
        },
        deliver_error: e
            .error
            .clone()
            .map(|(code, message)| pb::DeliverError { code, message }),
    }
}

#[tonic::async_trait]
impl pb::sequencer_service_server::SequencerService for SequencerApi {
    async fn send(
        &self,
        request: Request<pb::SubmissionRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let r = request.into_inner();
        self.0.validate_send(&r).await?;
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            event: NewEvent {
                ts: 0,
                sender: r.sender,
                message_id: r.message_id,
                recipients: r.recipients,
                payload: r.payload,
                error: None,
            },
            max_sequencing_time_us: r.max_sequencing_time_us,
            reply,
        };
        self.0
            .submissions
            .send(submission)
            .await
            .map_err(|_| Status::unavailable("sequencer is shutting down"))?;
        let result = tokio::time::timeout(SEND_TIMEOUT, answer)
            .await
            .map_err(|_| {
                Status::unavailable(
                    "sequencing did not finish in time; retry with the same message id",
                )
            })?
            .map_err(|_| Status::unavailable("sequencer is shutting down"))?;
        match result {
            Ok(ts) => Ok(Response::new(pb::SendResponse { timestamp_us: ts })),
            Err(e @ SendError::Duplicate(_)) => Err(Status::already_exists(e.to_string())),
            Err(e @ SendError::TooLate(_)) => Err(Status::deadline_exceeded(e.to_string())),
            Err(e @ SendError::Unavailable(_)) => Err(Status::unavailable(e.to_string())),
        }
    }

    type SubscribeStream = ReceiverStream<Result<pb::SequencedEvent, Status>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscriptionRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.into_inner();
        let bytes = subscribe_signing_bytes(&r.member, r.from_timestamp_us, r.request_time_us);
        self.0.authenticate(&r.member, &bytes, &r.signature).await?;
        if (now_us() - r.request_time_us).abs() > REQUEST_CLOCK_SKEW_US {
            return Err(Status::unauthenticated(
                "request_time_us: more than a minute from the sequencer's clock",
            ));
        }
        if r.from_timestamp_us < 0 {
            return Err(Status::invalid_argument(
                "from_timestamp_us: must not be negative",
            ));
        }
        let previous = self
            .0
            .store
            .previous_event_of(&r.member, r.from_timestamp_us)
            .await
            .map_err(store_unavailable)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(deliver(
            self.0.clone(),
            r.member,
            r.from_timestamp_us,
            previous,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let r = request.into_inner();
        let bytes = acknowledge_signing_bytes(&r.member, r.timestamp_us);
        self.0.authenticate(&r.member, &bytes, &r.signature).await?;
        self.0
            .store
            .acknowledge(&r.member, r.timestamp_us)
            .await
            .map_err(store_unavailable)?;
        Ok(Response::new(pb::AcknowledgeResponse {}))
    }

    async fn get_time(
        &self,
        _: Request<pb::GetTimeRequest>,
    ) -> Result<Response<pb::GetTimeResponse>, Status> {
        Ok(Response::new(pb::GetTimeResponse {
            timestamp_us: now_us(),
        }))
    }
}

/// Streams `member`'s events after `from` until the client goes away: first what lies before
/// the fan-out's position, read for this member, then the fan-out's batches. A batch that starts
/// past what was delivered (this subscription fell behind the channel) is preceded by a read of
/// the gap.
async fn deliver(
    seq: Sequencer,
    member: String,
    from: i64,
    mut previous: i64,
    tx: mpsc::Sender<Result<pb::SequencedEvent, Status>>,
) {
    let (mut batches, position, _subscribed) = seq.fanout.subscribe(&member);
    let mut delivered_to = from;
    if catch_up(
        &seq,
        &member,
        &mut delivered_to,
        &mut previous,
        position,
        &tx,
    )
    .await
    .is_err()
    {
        return;
    }
    loop {
        let batch = tokio::select! {
            () = seq.shutdown.cancelled() => return,
            () = tx.closed() => return,
            received = batches.recv() => match received {
                Ok(batch) => batch,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if batch.up_to <= delivered_to {
            continue;
        }
        if catch_up(
            &seq,
            &member,
            &mut delivered_to,
            &mut previous,
            batch.after,
            &tx,
        )
        .await
        .is_err()
        {
            return;
        }
        let fresh = batch.events.iter().filter(|e| e.ts > delivered_to);
        for event in fresh.filter(|e| e.is_for(&member)) {
            if tx
                .send(Ok(to_proto(event, &member, previous)))
                .await
                .is_err()
            {
                return;
            }
            previous = event.ts;
        }
        delivered_to = batch.up_to;
    }
}

/// Delivers `member`'s events with `delivered_to < ts <= up_to`, read from the database. Err
/// once the stream is over (the client left, or the database failed and the client was told).
async fn catch_up(
    seq: &Sequencer,
    member: &str,
    delivered_to: &mut i64,
    previous: &mut i64,
    up_to: i64,
    tx: &mpsc::Sender<Result<pb::SequencedEvent, Status>>,
) -> Result<(), ()> {
    while up_to > *delivered_to {
        let events = match seq
            .store
            .events_for(member, *delivered_to, up_to, PAGE)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                let _ = tx.send(Err(store_unavailable(e))).await;
                return Err(());
            }
        };
        let full = events.len() as i64 == PAGE;
        for event in &events {
            tx.send(Ok(to_proto(event, member, *previous)))
                .await
                .map_err(|_| ())?;
            *previous = event.ts;
            *delivered_to = event.ts;
        }
        if !full {
            // Nothing else can appear at or below `up_to`: it is at or below the head, so every
            // online writer's watermark is at least `up_to`, and a writer rejoining starts above
            // it.
            *delivered_to = up_to;
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::sequencer_admin_service_server::SequencerAdminService for SequencerAdmin {
    async fn bootstrap(
        &self,
        request: Request<pb::BootstrapRequest>,
    ) -> Result<Response<pb::BootstrapResponse>, Status> {
        let genesis = request
            .into_inner()
            .genesis
            .ok_or_else(|| Status::invalid_argument("genesis: missing"))?;
        let genesis = SignedTransaction::try_from(&genesis).map_err(|e| e.to_status())?;
        let (root, key) = match &genesis.transaction.mapping {
            Mapping::Member { member, public_key }
                if member.kind == MemberKind::TopologyManager =>
            {
                (member.to_string(), public_key.clone())
            }
            _ => {
                return Err(Status::invalid_argument(
                    "genesis: must be the topology manager's admission of itself",
                ))
            }
        };
        // A self-signed admission with serial 1 is exactly what an empty state accepts.
        let check = TopologyState::new()
            .check(&genesis)
            .map_err(|e| e.to_status())?;
        if !check.missing.is_empty() {
            return Err(Status::invalid_argument(
                "genesis: must be signed by the topology manager's own key",
            ));
        }
        let (current, current_key) = self
            .0
            .store
            .set_trust_root(&root, &key)
            .await
            .map_err(store_unavailable)?;
        if current != root || current_key != key {
            return Err(Status::failed_precondition(format!(
                "this synchronizer was bootstrapped by {current}, not {root}"
            )));
        }
        self.0.members.refresh().await.map_err(store_unavailable)?;
        let (member, own_key) = &*self.0.identity;
        let admission =
            SignedTransaction::unsigned(Transaction::admission(member, &own_key.public_key()))
                .sign(own_key);
        Ok(Response::new(pb::BootstrapResponse {
            sequencer_admission: Some((&admission).into()),
        }))
    }

    async fn list_members(
        &self,
        _: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.0.members.refresh().await.map_err(store_unavailable)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: self.0.members.all(),
        }))
    }

    async fn writers(
        &self,
        _: Request<pb::WritersRequest>,
    ) -> Result<Response<pb::WritersResponse>, Status> {
        let writers = self.0.store.writers().await.map_err(store_unavailable)?;
        Ok(Response::new(pb::WritersResponse {
            writers: writers
                .into_iter()
                .map(|w| pb::Writer {
                    index: w.index,
                    online: w.online,
                    watermark_us: w.watermark_us,
                })
                .collect(),
            own_index: self
                .0
                .writer_index()
                .map_or(-1, |i| i32::try_from(i).unwrap_or(-1)),
        }))
    }
}
