//! A participant reduced to its part in the confirmation protocol, for testing the mediator and
//! the topology manager through real sequencers: it sends confirmation requests, answers them
//! (by hand or automatically for the parties it confirms for) and records every verdict.

use crate::identity::{KeyPair, MemberId, MemberKind};
use crate::member::{Member, Sent};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_proto::synchronizer::v1 as msg;
use tandem_proto::topology::v1 as tpb;
use tandem_proto::topology::v1::topology_manager_service_client::TopologyManagerServiceClient;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen {
    requests: BTreeMap<i64, msg::ConfirmationRequest>,
    verdicts: BTreeMap<i64, Vec<msg::Verdict>>,
    events: usize,
}

pub struct TestMember {
    pub id: MemberId,
    pub key: Arc<KeyPair>,
    pub member: Member,
    mediator: String,
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    stop: CancellationToken,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode(message: msg::synchronizer_message::Message) -> Vec<u8> {
    prost::Message::encode_to_vec(&msg::SynchronizerMessage {
        message: Some(message),
    })
}

impl TestMember {
    /// Follows the member's subscription from the start. With `approve_for`, every
    /// confirmation request naming one of those parties as confirming is approved for them.
    pub fn start(
        id: MemberId,
        key: Arc<KeyPair>,
        sequencers: &[String],
        mediator: &str,
        approve_for: Vec<String>,
    ) -> Result<TestMember, String> {
        let member = Member::new(id.clone(), key.clone(), sequencers).map_err(|e| e.to_string())?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (changed_tx, changed) = watch::channel(0);
        let stop = CancellationToken::new();
        let mut events = member.subscribe(0, stop.clone());
        let (follower, seen2, mediator2) = (member.clone(), seen.clone(), mediator.to_string());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let message =
                    <msg::SynchronizerMessage as prost::Message>::decode(&event.payload[..])
                        .ok()
                        .and_then(|m| m.message);
                lock(&seen2).events += 1;
                match message {
                    Some(msg::synchronizer_message::Message::ConfirmationRequest(r)) => {
                        for (view, v) in r.views.iter().enumerate() {
                            let parties: Vec<String> = v
                                .confirming_parties
                                .iter()
                                .filter(|p| approve_for.contains(p))
                                .cloned()
                                .collect();
                            if parties.is_empty() {
                                continue;
                            }
                            let response = msg::ConfirmationResponse {
                                request_ts_us: event.timestamp_us,
                                view: u32::try_from(view).unwrap_or(u32::MAX),
                                parties,
                                approve: true,
                                reason: String::new(),
                            };
                            let id = format!("approve-{}-{view}", event.timestamp_us);
                            let payload = encode(
                                msg::synchronizer_message::Message::ConfirmationResponse(response),
                            );
                            if let Err(s) = follower
                                .send(&id, std::slice::from_ref(&mediator2), payload)
                                .await
                            {
                                tracing::warn!(status = %s, "test member could not respond");
                            }
                        }
                        lock(&seen2).requests.insert(event.timestamp_us, r);
                    }
                    Some(msg::synchronizer_message::Message::Verdict(v)) => {
                        lock(&seen2)
                            .verdicts
                            .entry(v.request_ts_us)
                            .or_default()
                            .push(v);
                    }
                    _ => {}
                }
                changed_tx.send_modify(|n| *n += 1);
            }
        });
        Ok(TestMember {
            id,
            key,
            member,
            mediator: mediator.to_string(),
            seen,
            changed,
            stop,
        })
    }

    /// Sends a confirmation request for `views` (informees, confirming parties) to the mediator,
    /// itself and `others`; returns its sequencing timestamp (the request id).
    pub async fn request(
        &self,
        submission_id: &str,
        views: &[(Vec<String>, Vec<String>)],
        others: &[String],
    ) -> Result<i64, tonic::Status> {
        let request = msg::ConfirmationRequest {
            submission_id: submission_id.to_string(),
            views: views
                .iter()
                .map(|(informees, confirming)| msg::ViewSummary {
                    informees: informees.clone(),
                    confirming_parties: confirming.clone(),
                })
                .collect(),
            transaction: Vec::new(),
        };
        // The submitter is a recipient too: it hosts parties of the request it may confirm for.
        let mut recipients = vec![self.mediator.clone(), self.id.to_string()];
        for o in others {
            if !recipients.contains(o) {
                recipients.push(o.clone());
            }
        }
        let payload = encode(msg::synchronizer_message::Message::ConfirmationRequest(
            request,
        ));
        match self
            .member
            .send(&format!("request-{submission_id}"), &recipients, payload)
            .await?
        {
            Sent::At(ts) => Ok(ts),
            Sent::AlreadySequenced => Err(tonic::Status::already_exists(submission_id.to_string())),
        }
    }

    /// Answers request `request_ts` for `parties` of `view`.
    pub async fn respond(
        &self,
        request_ts: i64,
        view: u32,
        parties: &[String],
        approve: bool,
        reason: &str,
    ) -> Result<(), tonic::Status> {
        let response = msg::ConfirmationResponse {
            request_ts_us: request_ts,
            view,
            parties: parties.to_vec(),
            approve,
            reason: reason.to_string(),
        };
        let id = format!("vote-{request_ts}-{view}-{approve}");
        let payload = encode(msg::synchronizer_message::Message::ConfirmationResponse(
            response,
        ));
        self.member
            .send(&id, std::slice::from_ref(&self.mediator), payload)
            .await
            .map(|_| ())
    }

    /// Waits until `f` holds for what this member has seen, up to `within`.
    async fn until<T>(&self, within: Duration, f: impl Fn(&Seen) -> Option<T>) -> Option<T> {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(t) = f(&lock(&self.seen)) {
                return Some(t);
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return None,
                c = changed.changed() => if c.is_err() { return None },
            }
        }
    }

    /// The verdict on `request_ts`, once it arrived.
    pub async fn verdict(&self, request_ts: i64, within: Duration) -> Option<msg::Verdict> {
        self.until(within, |s| {
            s.verdicts.get(&request_ts).and_then(|v| v.first().cloned())
        })
        .await
    }

    /// Whether request `request_ts` reached this member.
    pub async fn saw_request(&self, request_ts: i64, within: Duration) -> bool {
        self.until(within, |s| {
            s.requests.contains_key(&request_ts).then_some(())
        })
        .await
        .is_some()
    }

    /// How many verdicts arrived per request.
    pub fn verdict_counts(&self) -> BTreeMap<i64, usize> {
        lock(&self.seen)
            .verdicts
            .iter()
            .map(|(ts, v)| (*ts, v.len()))
            .collect()
    }

    /// Every verdict received, by request.
    pub fn verdicts(&self) -> BTreeMap<i64, Vec<msg::Verdict>> {
        lock(&self.seen).verdicts.clone()
    }
}

impl Drop for TestMember {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The mediator's member id as the topology manager at `endpoints` lists it, once admitted.
pub async fn mediator_id(endpoints: &[String], within: Duration) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        for endpoint in endpoints {
            let Ok(mut client) = TopologyManagerServiceClient::connect(endpoint.clone()).await
            else {
                continue;
            };
            if let Ok(state) = client.list_state(tpb::ListStateRequest { at_us: 0 }).await {
                if let Some(m) = state.into_inner().members.into_iter().find(|m| {
                    m.member
                        .starts_with(&format!("{}::", MemberKind::Mediator.prefix()))
                }) {
                    return Ok(m.member);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("the mediator was not admitted in time".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
