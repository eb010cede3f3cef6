//! The active replica's ledger state and the transaction protocol of design.md §6, steps 2–4,
//! as seen by one participant: every confirmation request is checked in sequencer order
//! (re-interpretation, conformance, activeness, locks), answered for the parties hosted here
//! with confirmation rights, and committed or rolled back on the mediator's verdict. Each step
//! writes through one fenced transaction the caller opens and commits with the cursor.

use super::codec::{contract_from_json, contract_to_json, template_id};
use super::submit::{decode_commands, views_of, TxPayload};
use crate::identity::MemberId;
use crate::model::ids::{ContractId, Party, SubmissionSeed};
use crate::model::{
    interpret, Contract, ContractLookup, GlobalKey, NodeKind, PackageStore, Submitters, Transaction,
};
use crate::store::{Fence, FencedTx, StoreError};
use crate::topology::{Permission, TopologyState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tandem_proto::sequencer::v1::SequencedEvent;
use tandem_proto::synchronizer::v1 as msg;

/// A user's rights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    pub admin: bool,
    pub act_as: BTreeSet<String>,
    pub read_as: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub primary_party: String,
    pub rights: Rights,
}

/// A submission of this participant waiting for its outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InFlight {
    pub change_id: String,
    pub submission_id: String,
    pub command_id: String,
    pub user_id: String,
    pub act_as: Vec<String>,
    pub message_id: String,
    pub max_sequencing_us: i64,
    pub dedup_until_us: i64,
    #[serde(default)]
    pub request_ts: Option<i64>,
    /// When the submission was accepted (µs since the epoch, this host's clock); 0 in rows
    /// written before it was recorded.
    #[serde(default)]
    pub submitted_us: i64,
}

/// The in-flight submissions stored as `(change id, body, request ts)` rows, each with the
/// timestamp of its request if that was sequenced: the pending row written in the transaction
/// that saw the request carries the request's message id (rows from older builds carry the
/// timestamp themselves). Unreadable rows are skipped.
pub fn in_flight_from_rows(
    rows: Vec<(String, String, Option<i64>)>,
    pending: &BTreeMap<i64, Pending>,
) -> HashMap<String, InFlight> {
    let sequenced: HashMap<&str, i64> = pending
        .values()
        .filter_map(|p| Some((p.message_id.as_deref()?, p.request_ts)))
        .collect();
    rows.into_iter()
        .filter_map(|(change, body, ts)| {
            let mut f: InFlight = serde_json::from_str(&body).ok()?;
            f.request_ts = ts.or_else(|| sequenced.get(f.message_id.as_str()).copied());
            Some((change, f))
        })
        .collect()
}

/// The outcome of a submission, as the completion stream and SubmitAndWait report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionBody {
    pub offset: i64,
    pub change_id: String,
    pub command_id: String,
    pub submission_id: String,
    pub user_id: String,
    pub act_as: Vec<String>,
    /// gRPC code: 0 on success.
    pub status_code: i32,
    pub error_code: String,
    pub message: String,
    pub update_id: String,
    /// The update's ledger offset on success.
    pub ledger_offset: i64,
    pub record_time_us: i64,
}

/// What this participant keeps about a confirmation request until its verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub request_ts: i64,
    /// The message id of this participant's own request (the sequencer shows it to the sender
    /// only): what links the request to its in-flight submission. `None` for another
    /// participant's request, and in rows written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub change_id: String,
    pub command_id: String,
    pub workflow_id: String,
    /// Input contracts this participant knows that the transaction consumes (locked).
    pub locked: Vec<String>,
    /// Contracts it creates that a party hosted here is a stakeholder of: (id, template, JSON).
    pub created: Vec<(String, String, Json)>,
    /// The update's events, with witnesses among the parties hosted here.
    pub events: Vec<Json>,
}

/// The state of an active participant replica.
pub struct Engine {
    pub node: String,
    pub fence: Fence,
    pub me: MemberId,
    pub synchronizer: String,
    pub delay_us: i64,
    pub topology: TopologyState,
    pub acs: HashMap<ContractId, Arc<Contract>>,
    pub keys: HashMap<GlobalKey, ContractId>,
    pub locks: HashMap<ContractId, i64>,
    pub pending: BTreeMap<i64, Pending>,
    pub dedup: HashMap<String, (String, i64, i64)>,
    pub in_flight: HashMap<String, InFlight>,
    pub ledger_end: i64,
    pub completion_end: i64,
    pub users: BTreeMap<String, UserRecord>,
    pub parties: BTreeSet<String>,
}

/// What a processed event asks the caller to do: the responses at once, the rest once its
/// transaction committed.
#[derive(Default)]
pub struct Effects {
    /// Responses to send: (message id, the mediator, payload); they need not wait for the
    /// commit (see `Participant::on_events`).
    pub responses: Vec<(String, String, Vec<u8>)>,
    pub completions: Vec<CompletionBody>,
    pub ledger_end_moved: bool,
    /// Phase durations (µs) of this participant's own submissions, for the metrics.
    pub phases: Vec<(&'static str, i64)>,
    /// Sequencing times of verdicts on own submissions, to time their commit.
    pub verdicts_at: Vec<i64>,
}

/// Input contracts of a request as the submitter sent them; the only contracts a confirmer's
/// re-interpretation may read.
struct Inputs<'a> {
    by_id: &'a HashMap<ContractId, Arc<Contract>>,
}

impl ContractLookup for Inputs<'_> {
    fn contract(&self, id: &ContractId) -> Option<Arc<Contract>> {
        self.by_id.get(id).cloned()
    }
    fn contract_by_key(&self, key: &GlobalKey) -> Option<ContractId> {
        self.by_id
            .values()
            .find(|c| c.global_key().as_ref() == Some(key))
            .map(|c| c.id.clone())
    }
}

/// What a submitter reads: the active contracts, none locked by its own pending requests
/// excluded (conflicts are decided in sequencer order, not here).
pub struct Acs<'a>(pub &'a Engine);

impl ContractLookup for Acs<'_> {
    fn contract(&self, id: &ContractId) -> Option<Arc<Contract>> {
        self.0.acs.get(id).cloned()
    }
    fn contract_by_key(&self, key: &GlobalKey) -> Option<ContractId> {
        self.0.keys.get(key).cloned()
    }
}

fn strings(ps: &BTreeSet<Party>) -> Vec<String> {
    ps.iter().map(ToString::to_string).collect()
}

/// The update id: the same on every participant, derived from the request's sequencing time.
pub fn update_id(synchronizer: &str, request_ts: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("update:{synchronizer}:{request_ts}").as_bytes());
    format!("1220{}", hex::encode(digest))
}

impl Engine {
    /// The permission this participant has for `party` at `at_us`.
    pub fn permission(&self, party: &str, at_us: i64) -> Option<Permission> {
        self.topology
            .hosting_at(party, at_us)
            .and_then(|h| h.permission_of(&self.me))
    }

    /// The synchronizer's mediator in effect at `at_us`.
    pub fn mediator_at(&self, at_us: i64) -> Option<String> {
        self.topology
            .members_at(at_us)
            .into_iter()
            .find(|(m, _)| m.kind == crate::identity::MemberKind::Mediator)
            .map(|(m, _)| m.to_string())
    }

    pub fn hosts(&self, party: &str, at_us: i64) -> bool {
        self.permission(party, at_us).is_some()
    }

    fn hosts_any(&self, parties: &BTreeSet<Party>, at_us: i64) -> bool {
        parties.iter().any(|p| self.hosts(p.as_str(), at_us))
    }

    /// Checks the confirmation request `event` carries, locks what it consumes when valid,
    /// stores it as pending and prepares the responses.
    pub async fn on_request(
        &mut self,
        db: &mut FencedTx,
        packages: &PackageStore,
        event: &SequencedEvent,
        request: &msg::ConfirmationRequest,
        effects: &mut Effects,
    ) -> Result<(), StoreError> {
        let (sender, ts) = (event.sender.as_str(), event.timestamp_us);
        let message_id = (!event.message_id.is_empty()).then(|| event.message_id.clone());
        let payload: TxPayload = match serde_json::from_slice(&request.transaction) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(ts, error = %e, "undecodable transaction in a confirmation request");
                return Ok(());
            }
        };
        let checked = self.check(packages, sender, ts, request, &payload);
        let (valid, reason, tx) = match checked {
            Ok(tx) => (true, String::new(), Some(tx)),
            Err(reason) => (false, reason, None),
        };
        // Answer the mediator for each view's confirming parties hosted here with
        // confirmation rights.
        let mediator = self.mediator_at(ts);
        if mediator.is_none() {
            tracing::warn!(ts, "no mediator in the topology; not answering");
        }
        for (i, view) in request.views.iter().enumerate() {
            let Some(mediator) = &mediator else { break };
            let parties: Vec<String> = view
                .confirming_parties
                .iter()
                .filter(|p| self.permission(p, ts).is_some_and(Permission::confirms))
                .cloned()
                .collect();
            if parties.is_empty() {
                continue;
            }
            let response = msg::ConfirmationResponse {
                request_ts_us: ts,
                view: u32::try_from(i).unwrap_or(u32::MAX),
                parties,
                approve: valid,
                reason: reason.clone(),
            };
            let payload = prost::Message::encode_to_vec(&msg::SynchronizerMessage {
                message: Some(msg::synchronizer_message::Message::ConfirmationResponse(
                    response,
                )),
            });
            effects
                .responses
                .push((format!("response-{ts}-{i}"), mediator.clone(), payload));
        }
        let Some(tx) = tx else {
            tracing::info!(ts, %reason, "rejecting a confirmation request");
            // Still remembered, so the submitter's completion and the verdict find it.
            let pending = Pending {
                request_ts: ts,
                message_id,
                change_id: payload.change_id.clone(),
                command_id: payload.command_id.clone(),
                workflow_id: payload.workflow_id.clone(),
                locked: Vec::new(),
                created: Vec::new(),
                events: Vec::new(),
            };
            return self.store_pending(db, pending).await;
        };
        let locked: Vec<ContractId> = tx
            .consumed_inputs()
            .filter(|id| self.acs.contains_key(*id))
            .cloned()
            .collect();
        for id in &locked {
            self.locks.insert(id.clone(), ts);
        }
        let created = tx
            .created_contracts()
            .filter(|c| self.hosts_any(&c.stakeholders(), ts))
            .map(|c| {
                (
                    c.id.to_string(),
                    template_id(&c.template_id),
                    contract_to_json(c),
                )
            })
            .collect();
        let pending = Pending {
            request_ts: ts,
            message_id,
            change_id: payload.change_id,
            command_id: payload.command_id,
            workflow_id: payload.workflow_id,
            locked: locked.iter().map(ToString::to_string).collect(),
            created,
            events: self.events(&tx, ts),
        };
        self.store_pending(db, pending).await
    }

    async fn store_pending(
        &mut self,
        db: &mut FencedTx,
        pending: Pending,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_vec(&pending).unwrap_or_default();
        db.put_pending(&self.node, pending.request_ts, &body)
            .await?;
        if let Some(own) = &pending.message_id {
            // Not written to the in-flight row: the pending row written with it carries the
            // message id, and loading links the two (see `Participant::load`).
            if let Some(f) = self.in_flight.values_mut().find(|f| &f.message_id == own) {
                f.request_ts = Some(pending.request_ts);
            }
        }
        self.pending.insert(pending.request_ts, pending);
        Ok(())
    }

    /// Re-checks a request as a confirmer: the submitter may act for its act-as parties, the
    /// commands re-interpret to the same views from the inputs it sent, and the inputs this
    /// participant knows are active and not locked by an earlier request.
    fn check(
        &self,
        packages: &PackageStore,
        sender: &str,
        ts: i64,
        request: &msg::ConfirmationRequest,
        payload: &TxPayload,
    ) -> Result<Transaction, String> {
        let submitter = MemberId::parse(sender).map_err(|e| format!("MALFORMED_REQUEST: {e}"))?;
        for party in &payload.act_as {
            let allowed = self
                .topology
                .hosting_at(party, ts)
                .and_then(|h| h.permission_of(&submitter))
                == Some(Permission::Submission);
            if !allowed {
                return Err(format!(
                    "NO_SUBMISSION_PERMISSION: {sender} may not submit for {party}"
                ));
            }
        }
        let mut inputs = HashMap::new();
        for (id, template, body) in &payload.inputs {
            let c = contract_from_json(packages, id, template, body)
                .map_err(|e| format!("MALFORMED_REQUEST: input {id}: {e}"))?;
            if self.hosts_any(&c.stakeholders(), ts) && !self.acs.contains_key(&c.id) {
                return Err(format!("CONTRACT_NOT_ACTIVE: {id}"));
            }
            inputs.insert(c.id.clone(), c);
        }
        let commands = decode_commands(packages, &payload.commands)
            .map_err(|(code, e)| format!("{code}: {e}"))?;
        let parse = |ps: &[String]| -> Result<BTreeSet<Party>, String> {
            ps.iter()
                .map(|p| Party::parse(p).map_err(|e| format!("MALFORMED_REQUEST: {e}")))
                .collect()
        };
        let submitters = Submitters {
            act_as: parse(&payload.act_as)?,
            read_as: parse(&payload.read_as)?,
        };
        let seed = hex::decode(&payload.seed)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("MALFORMED_REQUEST: seed")?;
        let tx = interpret(
            packages,
            &submitters,
            &commands,
            &Inputs { by_id: &inputs },
            &SubmissionSeed(seed),
        )
        .map_err(|e| format!("{}: {e}", e.code()))?;
        let ours = views_of(&tx);
        let theirs: Vec<(Vec<String>, Vec<String>)> = request
            .views
            .iter()
            .map(|v| {
                let mut i = v.informees.clone();
                let mut c = v.confirming_parties.clone();
                i.sort();
                c.sort();
                (i, c)
            })
            .collect();
        if ours != theirs {
            return Err("CONFORMANCE: the views do not match the commands".into());
        }
        for id in tx.input_contracts.iter().map(|c| &c.id) {
            if let Some(&other) = self.locks.get(id) {
                return Err(format!(
                    "LOCKED_CONTRACTS: {id} is locked by the request at {other}"
                ));
            }
        }
        Ok(tx)
    }

    /// The update's events in pre-order with witnesses among the parties hosted here:
    /// created, exercised, and archived after a consuming exercise.
    fn events(&self, tx: &Transaction, ts: i64) -> Vec<Json> {
        let mut events = Vec::new();
        let mut last_descendant = vec![0usize; tx.nodes.len()];
        for i in (0..tx.nodes.len()).rev() {
            last_descendant[i] = tx.nodes[i]
                .children
                .iter()
                .map(|c| last_descendant[*c])
                .max()
                .unwrap_or(i);
        }
        for (i, node) in tx.nodes.iter().enumerate() {
            let witnesses: Vec<String> = node
                .informees
                .iter()
                .filter(|p| self.hosts(p.as_str(), ts))
                .map(ToString::to_string)
                .collect();
            if witnesses.is_empty() {
                continue;
            }
            match &node.kind {
                NodeKind::Create { contract } => events.push(json!({
                    "kind": "created", "node_id": i, "contract_id": contract.id.to_string(),
                    "template_id": template_id(&contract.template_id),
                    "contract": contract_to_json(contract), "witnesses": witnesses,
                })),
                NodeKind::Exercise {
                    contract_id,
                    template_id: t,
                    choice,
                    argument,
                    actors,
                    consuming,
                    stakeholders,
                    ..
                } => {
                    events.push(json!({
                        "kind": "exercised", "node_id": i, "contract_id": contract_id.to_string(),
                        "template_id": template_id(t), "choice": choice.to_string(),
                        "choice_argument": crate::model::to_json(argument),
                        "acting_parties": strings(actors), "consuming": consuming,
                        "witnesses": witnesses, "last_descendant_node_id": last_descendant[i],
                    }));
                    if *consuming {
                        let stakeholder_witnesses: Vec<String> = stakeholders
                            .iter()
                            .filter(|p| self.hosts(p.as_str(), ts))
                            .map(ToString::to_string)
                            .collect();
                        if !stakeholder_witnesses.is_empty() {
                            events.push(json!({
                                "kind": "archived", "node_id": i,
                                "contract_id": contract_id.to_string(),
                                "template_id": template_id(t), "witnesses": stakeholder_witnesses,
                            }));
                        }
                    }
                }
                NodeKind::Fetch { .. } => {}
            }
        }
        events
    }

    /// Commits or rolls back request `ts` on its verdict.
    pub async fn on_verdict(
        &mut self,
        db: &mut FencedTx,
        packages: &PackageStore,
        verdict: &msg::Verdict,
        verdict_ts: i64,
        effects: &mut Effects,
    ) -> Result<(), StoreError> {
        let ts = verdict.request_ts_us;
        let Some(pending) = self.pending.remove(&ts) else {
            tracing::debug!(ts, "verdict for a request this participant does not know");
            return Ok(());
        };
        for id in &pending.locked {
            if let Ok(id) = ContractId::parse(id) {
                if self.locks.get(&id) == Some(&ts) {
                    self.locks.remove(&id);
                }
            }
        }
        db.delete_pending(&self.node, ts).await?;
        let update_id = update_id(&self.synchronizer, ts);
        let mut ledger_offset = 0;
        if verdict.approved {
            ledger_offset = self.ledger_end + 1;
            for id in &pending.locked {
                db.archive_contract(&self.node, id, ledger_offset).await?;
                if let Ok(id) = ContractId::parse(id) {
                    if let Some(c) = self.acs.remove(&id) {
                        if let Some(k) = c.global_key() {
                            self.keys.remove(&k);
                        }
                    }
                }
            }
            for (id, template, body) in &pending.created {
                match contract_from_json(packages, id, template, body) {
                    Ok(c) => {
                        let stakeholders: Vec<String> = strings(&c.stakeholders());
                        db.insert_contract(
                            &self.node,
                            id,
                            template,
                            &body.to_string(),
                            &Json::from(stakeholders).to_string(),
                            ledger_offset,
                            ts,
                        )
                        .await?;
                        if let Some(k) = c.global_key() {
                            self.keys.insert(k, c.id.clone());
                        }
                        self.acs.insert(c.id.clone(), c);
                    }
                    Err(e) => tracing::error!(id, error = %e, "cannot decode a created contract"),
                }
            }
            let body = json!({
                "update_id": update_id, "command_id": pending.command_id,
                "workflow_id": pending.workflow_id, "effective_at_us": ts,
                "record_time_us": ts, "events": pending.events,
                "synchronizer_id": self.synchronizer,
            });
            db.insert_update(&self.node, ledger_offset, &update_id, ts, &body.to_string())
                .await?;
            self.ledger_end = ledger_offset;
            effects.ledger_end_moved = true;
        }
        if let Some(f) = self.in_flight.remove(&pending.change_id) {
            if f.submitted_us > 0 {
                effects
                    .phases
                    .push(("submitted_to_request_sequenced", ts - f.submitted_us));
                effects
                    .phases
                    .push(("request_to_verdict_sequenced", verdict_ts - ts));
                effects.verdicts_at.push(verdict_ts);
            }
            let (status_code, error_code, message) = if verdict.approved {
                (0, String::new(), String::new())
            } else {
                rejection(verdict)
            };
            if verdict.approved {
                db.put_dedup(
                    &self.node,
                    &f.change_id,
                    &update_id,
                    ledger_offset,
                    f.dedup_until_us,
                )
                .await?;
                self.dedup.insert(
                    f.change_id.clone(),
                    (update_id.clone(), ledger_offset, f.dedup_until_us),
                );
            }
            let completion = CompletionBody {
                offset: 0,
                change_id: f.change_id.clone(),
                command_id: f.command_id.clone(),
                submission_id: f.submission_id.clone(),
                user_id: f.user_id.clone(),
                act_as: f.act_as.clone(),
                status_code,
                error_code,
                message,
                update_id: if verdict.approved {
                    update_id
                } else {
                    String::new()
                },
                ledger_offset,
                record_time_us: verdict_ts,
            };
            self.complete(db, &f, completion, effects).await?;
        }
        Ok(())
    }

    /// Writes a completion for in-flight submission `f` (already removed from memory).
    pub async fn complete(
        &mut self,
        db: &mut FencedTx,
        f: &InFlight,
        mut completion: CompletionBody,
        effects: &mut Effects,
    ) -> Result<(), StoreError> {
        self.completion_end += 1;
        completion.offset = self.completion_end;
        let body = serde_json::to_string(&completion).unwrap_or_default();
        db.insert_completion(&self.node, completion.offset, &f.user_id, &body)
            .await?;
        db.delete_in_flight(&self.node, &f.change_id).await?;
        effects.completions.push(completion);
        Ok(())
    }
}

/// The gRPC code, error code and message a rejected submission completes with.
fn rejection(v: &msg::Verdict) -> (i32, String, String) {
    let aborted = tonic::Code::Aborted as i32;
    let code = if v.reason.contains("LOCKED_CONTRACTS") || v.reason.contains("CONTRACT_NOT_ACTIVE")
    {
        "LOCKED_CONTRACTS".to_string()
    } else if v.code == "REJECTED_BY_PARTICIPANT" {
        v.reason
            .split(": ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .filter(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_') && !c.is_empty())
            .unwrap_or("REJECTED_BY_PARTICIPANT")
            .to_string()
    } else {
        v.code.clone()
    };
    (aborted, code, v.reason.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(change: &str, submission: &str) -> InFlight {
        InFlight {
            change_id: change.into(),
            submission_id: submission.into(),
            command_id: format!("cmd-{change}"),
            user_id: "alice".into(),
            act_as: vec!["Alice::1220aa".into()],
            message_id: format!("request-{change}-{submission}"),
            max_sequencing_us: 1_000,
            dedup_until_us: 2_000,
            request_ts: None,
            submitted_us: 10,
        }
    }

    fn pending(ts: i64, change: &str, message_id: Option<&str>) -> (i64, Pending) {
        let p = Pending {
            request_ts: ts,
            message_id: message_id.map(Into::into),
            change_id: change.into(),
            command_id: format!("cmd-{change}"),
            workflow_id: String::new(),
            locked: Vec::new(),
            created: Vec::new(),
            events: Vec::new(),
        };
        (ts, p)
    }

    #[test]
    fn loading_links_in_flight_submissions_to_their_own_sequenced_requests() {
        let row = |f: &InFlight, ts: Option<i64>| {
            (f.change_id.clone(), serde_json::to_string(f).unwrap(), ts)
        };
        let (sequenced, waiting, older) = (
            in_flight("c1", "s1"),
            in_flight("c2", "s2"),
            in_flight("c3", "s3"),
        );
        let pending: BTreeMap<i64, Pending> = [
            // Another participant's request of the same change, seen earlier: not ours.
            pending(3, "c1", None),
            pending(5, "c1", Some("request-c1-s1")),
            // An earlier submission of c2 whose request was sequenced; the one in flight is not.
            pending(6, "c2", Some("request-c2-s0")),
        ]
        .into();
        let rows = vec![
            row(&sequenced, None),
            row(&waiting, None),
            row(&older, Some(7)),
            ("bad".into(), "not json".into(), None),
        ];
        let loaded = in_flight_from_rows(rows, &pending);
        let ts = |c: &str| loaded.get(c).map(|f| f.request_ts);
        assert_eq!(ts("c1"), Some(Some(5)));
        assert_eq!(ts("c2"), Some(None), "still waiting to be sequenced");
        assert_eq!(ts("c3"), Some(Some(7)), "a row from an older build");
        assert_eq!(loaded.len(), 3, "the unreadable row is skipped");
        // A pending row from before message ids were kept still reads.
        let old: Pending = serde_json::from_value(json!({
            "request_ts": 9, "change_id": "c9", "command_id": "x", "workflow_id": "",
            "locked": [], "created": [], "events": []
        }))
        .unwrap();
        assert_eq!(old.message_id, None);
    }
}
