//! The mediator's verdict rule (design.md §5.2), pure. Per view, each confirming party is
//! approved once approvals from its hosts with Submission or Confirmation permission reach its
//! threshold, and rejected once rejections reach it or it can no longer be reached. Observation
//! hosts do not vote; a host's repeated vote is ignored; a contradicting one is an equivocation
//! (logged, the first vote stands). The request is approved when every confirming party of every
//! view is; rejected as soon as one party is, or at its deadline (naming the parties still open).

use crate::topology::TopologyState;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tandem_proto::synchronizer::v1 as msg;

pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
pub const REJECTED_BY_PARTICIPANT: &str = "REJECTED_BY_PARTICIPANT";
pub const MEDIATOR_TIMEOUT: &str = "MEDIATOR_TIMEOUT";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyVotes {
    pub threshold: u32,
    /// The party's hosts that vote.
    pub hosts: BTreeSet<String>,
    pub approvals: BTreeSet<String>,
    /// Rejecting host → its reason.
    pub rejections: BTreeMap<String, String>,
}

impl PartyVotes {
    /// `Some(true)` approved, `Some(false)` rejected, `None` still open.
    pub fn outcome(&self) -> Option<bool> {
        let threshold = self.threshold as usize;
        if self.approvals.len() >= threshold {
            Some(true)
        } else if self.rejections.len() >= threshold
            || self.hosts.len() - self.rejections.len() < threshold
        {
            Some(false)
        } else {
            None
        }
    }
}

/// The votes so far on one confirmation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregation {
    /// Per view: confirming party → its votes.
    pub views: Vec<BTreeMap<String, PartyVotes>>,
    /// Who gets the verdict: the submitter and every host (any permission) of an informee.
    pub recipients: BTreeSet<String>,
}

/// What a response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    Counted,
    Ignored(String),
    /// The host voted the other way before; its first vote stands.
    Equivocation(String),
}

/// A decided request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    Rejected {
        code: &'static str,
        reason: String,
        parties: Vec<String>,
    },
}

impl Aggregation {
    /// Sets up the votes of `request` from `submitter` with the topology in effect at its
    /// sequencing time; `Err` says why the request is malformed.
    pub fn new(
        submitter: &str,
        request: &msg::ConfirmationRequest,
        topology: &TopologyState,
        at_us: i64,
    ) -> Result<Aggregation, String> {
        if request.views.is_empty() {
            return Err("views: the request has none".into());
        }
        let mut recipients = BTreeSet::from([submitter.to_string()]);
        let mut views = Vec::with_capacity(request.views.len());
        for (i, view) in request.views.iter().enumerate() {
            if view.confirming_parties.is_empty() {
                return Err(format!("views[{i}]: names no confirming party"));
            }
            for party in &view.informees {
                let hosting = topology.hosting_at(party, at_us).ok_or_else(|| {
                    format!("views[{i}].informees: {party} is not hosted on this synchronizer")
                })?;
                recipients.extend(hosting.participants.iter().map(|(p, _)| p.to_string()));
            }
            let mut parties = BTreeMap::new();
            for party in &view.confirming_parties {
                if !view.informees.contains(party) {
                    return Err(format!(
                        "views[{i}].confirming_parties: {party} is not an informee of the view"
                    ));
                }
                let hosting = topology.hosting_at(party, at_us).ok_or_else(|| {
                    format!("views[{i}].confirming_parties: {party} is not hosted")
                })?;
                parties.insert(
                    party.clone(),
                    PartyVotes {
                        threshold: hosting.threshold,
                        hosts: hosting.confirming_hosts().map(|p| p.to_string()).collect(),
                        approvals: BTreeSet::new(),
                        rejections: BTreeMap::new(),
                    },
                );
            }
            views.push(parties);
        }
        Ok(Aggregation { views, recipients })
    }

    /// Counts `from`'s response, party by party.
    pub fn respond(&mut self, from: &str, response: &msg::ConfirmationResponse) -> Vec<Vote> {
        let Some(view) = usize::try_from(response.view)
            .ok()
            .and_then(|v| self.views.get_mut(v))
        else {
            return vec![Vote::Ignored(format!("no view {}", response.view))];
        };
        if response.parties.is_empty() {
            return vec![Vote::Ignored("the response names no party".into())];
        }
        response
            .parties
            .iter()
            .map(|party| {
                let Some(votes) = view.get_mut(party) else {
                    return Vote::Ignored(format!(
                        "{party} is not a confirming party of view {}",
                        response.view
                    ));
                };
                if !votes.hosts.contains(from) {
                    return Vote::Ignored(format!(
                        "{from} does not host {party} with confirmation rights"
                    ));
                }
                let approved_before = votes.approvals.contains(from);
                let rejected_before = votes.rejections.contains_key(from);
                match (response.approve, approved_before, rejected_before) {
                    (true, true, _) | (false, _, true) => {
                        Vote::Ignored(format!("{from} already voted for {party}"))
                    }
                    (true, false, true) | (false, true, false) => Vote::Equivocation(format!(
                        "{from} voted both ways for {party}; its first vote stands"
                    )),
                    (true, false, false) => {
                        votes.approvals.insert(from.to_string());
                        Vote::Counted
                    }
                    (false, false, false) => {
                        votes
                            .rejections
                            .insert(from.to_string(), response.reason.clone());
                        Vote::Counted
                    }
                }
            })
            .collect()
    }

    /// The verdict, once there is one.
    pub fn outcome(&self) -> Option<Outcome> {
        let mut rejected = Vec::new();
        let mut reasons = BTreeSet::new();
        let mut open = false;
        for view in &self.views {
            for (party, votes) in view {
                match votes.outcome() {
                    Some(true) => {}
                    Some(false) => {
                        rejected.push(party.clone());
                        reasons.extend(votes.rejections.values().cloned());
                    }
                    None => open = true,
                }
            }
        }
        if !rejected.is_empty() {
            rejected.dedup();
            let reason = reasons.into_iter().collect::<Vec<_>>().join("; ");
            return Some(Outcome::Rejected {
                code: REJECTED_BY_PARTICIPANT,
                reason: format!("rejected for {}: {reason}", rejected.join(", ")),
                parties: rejected,
            });
        }
        (!open).then_some(Outcome::Approved)
    }

    /// The verdict at the deadline: rejected, naming the parties still waiting for votes.
    pub fn timeout(&self, timeout_ms: u64) -> Outcome {
        let waiting: BTreeSet<String> = self
            .views
            .iter()
            .flat_map(|v| v.iter())
            .filter(|(_, votes)| votes.outcome().is_none())
            .map(|(party, _)| party.clone())
            .collect();
        let parties: Vec<String> = waiting.into_iter().collect();
        Outcome::Rejected {
            code: MEDIATOR_TIMEOUT,
            reason: format!(
                "no verdict within {timeout_ms} ms; unresponsive: {}",
                parties.join(", ")
            ),
            parties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{KeyPair, MemberId, MemberKind};
    use crate::topology::{
        Mapping, Operation, PartyHosting, Permission, SignedTransaction, Transaction,
    };

    struct Setup {
        state: TopologyState,
        parts: Vec<(MemberId, KeyPair)>,
    }

    /// A topology manager and three participants; `Alice` owned by p0.
    fn setup(alice_hosts: &[(usize, Permission)], threshold: u32) -> (Setup, String) {
        let tm_key = KeyPair::from_seed([1; 32]);
        let tm = MemberId::new(MemberKind::TopologyManager, "tm", &tm_key.public_key());
        let mut state = TopologyState::new();
        let admit = |id: &MemberId, k: &KeyPair| {
            SignedTransaction::unsigned(Transaction::admission(id, &k.public_key())).sign(k)
        };
        state.apply(&admit(&tm, &tm_key), 0).unwrap();
        let mut parts = Vec::new();
        for i in 0..3u8 {
            let k = KeyPair::from_seed([10 + i; 32]);
            let id = MemberId::new(MemberKind::Participant, &format!("p{i}"), &k.public_key());
            state.apply(&admit(&id, &k).sign(&tm_key), 0).unwrap();
            parts.push((id, k));
        }
        let alice = format!("Alice::{}", parts[0].0.fingerprint);
        let tx = Transaction {
            operation: Operation::Replace,
            serial: 1,
            mapping: Mapping::Party(PartyHosting {
                party: crate::model::ids::Party::parse(&alice).unwrap(),
                threshold,
                participants: alice_hosts
                    .iter()
                    .map(|(i, p)| (parts[*i].0.clone(), *p))
                    .collect(),
            }),
        };
        let mut signed = SignedTransaction::unsigned(tx);
        for (i, _) in alice_hosts {
            signed = signed.sign(&parts[*i].1);
        }
        if !alice_hosts.iter().any(|(i, _)| *i == 0) {
            signed = signed.sign(&parts[0].1);
        }
        state.apply(&signed, 0).unwrap();
        (Setup { state, parts }, alice)
    }

    fn request(alice: &str) -> msg::ConfirmationRequest {
        msg::ConfirmationRequest {
            submission_id: "s1".into(),
            views: vec![msg::ViewSummary {
                informees: vec![alice.into()],
                confirming_parties: vec![alice.into()],
            }],
            transaction: Vec::new(),
        }
    }

    fn vote(alice: &str, approve: bool) -> msg::ConfirmationResponse {
        msg::ConfirmationResponse {
            request_ts_us: 1,
            view: 0,
            parties: vec![alice.into()],
            approve,
            reason: if approve {
                String::new()
            } else {
                "LOCKED".into()
            },
        }
    }

    #[test]
    fn threshold_two_needs_both_confirming_hosts_and_ignores_observers() {
        let (s, alice) = setup(
            &[
                (0, Permission::Submission),
                (1, Permission::Confirmation),
                (2, Permission::Observation),
            ],
            2,
        );
        let p = |i: usize| s.parts[i].0.to_string();
        let mut agg = Aggregation::new(&p(0), &request(&alice), &s.state, 10).unwrap();
        assert_eq!(agg.recipients.len(), 3, "observers get the verdict too");
        assert!(matches!(
            agg.respond(&p(2), &vote(&alice, true))[0],
            Vote::Ignored(_)
        ));
        assert_eq!(agg.respond(&p(0), &vote(&alice, true)), vec![Vote::Counted]);
        assert!(matches!(
            agg.respond(&p(0), &vote(&alice, true))[0],
            Vote::Ignored(_)
        ));
        assert_eq!(agg.outcome(), None);
        assert_eq!(agg.respond(&p(1), &vote(&alice, true)), vec![Vote::Counted]);
        assert_eq!(agg.outcome(), Some(Outcome::Approved));
    }

    #[test]
    fn a_rejection_that_makes_the_threshold_unreachable_rejects() {
        let (s, alice) = setup(
            &[(0, Permission::Submission), (1, Permission::Confirmation)],
            2,
        );
        let p = |i: usize| s.parts[i].0.to_string();
        let mut agg = Aggregation::new(&p(0), &request(&alice), &s.state, 10).unwrap();
        agg.respond(&p(0), &vote(&alice, true));
        agg.respond(&p(1), &vote(&alice, false));
        match agg.outcome() {
            Some(Outcome::Rejected {
                code,
                parties,
                reason,
            }) => {
                assert_eq!(code, REJECTED_BY_PARTICIPANT);
                assert_eq!(parties, vec![alice.clone()]);
                assert!(reason.contains("LOCKED"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn equivocation_keeps_the_first_vote() {
        let (s, alice) = setup(
            &[(0, Permission::Submission), (1, Permission::Confirmation)],
            1,
        );
        let p = |i: usize| s.parts[i].0.to_string();
        let mut agg = Aggregation::new(&p(0), &request(&alice), &s.state, 10).unwrap();
        assert_eq!(
            agg.respond(&p(1), &vote(&alice, false)),
            vec![Vote::Counted]
        );
        assert!(matches!(
            agg.respond(&p(1), &vote(&alice, true))[0],
            Vote::Equivocation(_)
        ));
        assert!(matches!(agg.outcome(), Some(Outcome::Rejected { .. })));
    }

    #[test]
    fn timeout_names_the_unresponsive_parties() {
        let (s, alice) = setup(
            &[(0, Permission::Submission), (1, Permission::Confirmation)],
            2,
        );
        let p = |i: usize| s.parts[i].0.to_string();
        let mut agg = Aggregation::new(&p(0), &request(&alice), &s.state, 10).unwrap();
        agg.respond(&p(0), &vote(&alice, true));
        match agg.timeout(500) {
            Outcome::Rejected { code, parties, .. } => {
                assert_eq!(code, MEDIATOR_TIMEOUT);
                assert_eq!(parties, vec![alice]);
            }
            Outcome::Approved => panic!("approved on timeout"),
        }
    }

    #[test]
    fn malformed_requests_are_refused_with_the_field() {
        let (s, alice) = setup(&[(0, Permission::Submission)], 1);
        let p0 = s.parts[0].0.to_string();
        let empty = msg::ConfirmationRequest {
            submission_id: "x".into(),
            views: vec![],
            transaction: Vec::new(),
        };
        assert!(Aggregation::new(&p0, &empty, &s.state, 10)
            .unwrap_err()
            .starts_with("views"));
        let mut stranger = request(&alice);
        stranger.views[0].informees.push("Bob::1220ab".into());
        assert!(Aggregation::new(&p0, &stranger, &s.state, 10)
            .unwrap_err()
            .contains("Bob::1220ab"));
        let mut not_informee = request(&alice);
        not_informee.views[0].informees.clear();
        not_informee.views[0].informees.push(alice.clone());
        not_informee.views[0].confirming_parties = vec!["Carol::12".into()];
        assert!(Aggregation::new(&p0, &not_informee, &s.state, 10)
            .unwrap_err()
            .contains("not an informee"));
        assert!(
            Aggregation::new(&p0, &request(&alice), &s.state, -1).is_err(),
            "not hosted before it took effect"
        );
    }
}
