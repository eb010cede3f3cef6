//! The topology state: every accepted transaction applied in sequencing order, each in effect
//! from its sequencing time plus `topology_change_delay`. Any node that applies the same
//! transactions in the same order gets the same state, and can answer for any timestamp.

use super::{Mapping, Operation, PartyHosting, SignedTransaction, TopologyError, Transaction};
use crate::identity::{verify, MemberId, MemberKind};
use std::collections::{BTreeMap, BTreeSet};

/// A key's history: from which time which value (None: removed). Effective times only grow.
type History<T> = Vec<(i64, Option<T>)>;

fn at<T>(history: &History<T>, at_us: i64) -> Option<&T> {
    history
        .iter()
        .rev()
        .find(|(effective, _)| *effective <= at_us)
        .and_then(|(_, value)| value.as_ref())
}

fn latest<T>(history: Option<&History<T>>) -> Option<&T> {
    history
        .and_then(|h| h.last())
        .and_then(|(_, value)| value.as_ref())
}

/// The outcome of checking a transaction: its hash, who must sign it and who has not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub hash: String,
    pub required: BTreeSet<String>,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TopologyState {
    /// The topology manager: the first member admitted, by itself.
    trust_root: Option<(MemberId, Vec<u8>)>,
    members: BTreeMap<String, History<(MemberId, Vec<u8>)>>,
    parties: BTreeMap<String, History<PartyHosting>>,
    serials: BTreeMap<String, u32>,
    /// Every admitted key by fingerprint, regardless of effective time: what signatures on
    /// later transactions are checked against.
    keys: BTreeMap<String, (MemberId, Vec<u8>)>,
}

impl TopologyState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trust_root(&self) -> Option<&(MemberId, Vec<u8>)> {
        self.trust_root.as_ref()
    }

    /// The last serial applied for `key` (0 if none).
    pub fn serial(&self, key: &str) -> u32 {
        self.serials.get(key).copied().unwrap_or(0)
    }

    /// The key `member` signs with, if admitted and in effect at `at_us`.
    pub fn key_of(&self, member: &str, at_us: i64) -> Option<&[u8]> {
        self.members
            .get(member)
            .and_then(|h| at(h, at_us))
            .map(|(_, key)| key.as_slice())
    }

    /// Whether `member` was admitted, whether or not in effect yet.
    pub fn is_admitted(&self, member: &str) -> bool {
        latest(self.members.get(member)).is_some()
    }

    /// The members in effect at `at_us`.
    pub fn members_at(&self, at_us: i64) -> Vec<(MemberId, Vec<u8>)> {
        self.members
            .values()
            .filter_map(|h| at(h, at_us).cloned())
            .collect()
    }

    /// Who hosts `party` at `at_us`.
    pub fn hosting_at(&self, party: &str, at_us: i64) -> Option<&PartyHosting> {
        self.parties.get(party).and_then(|h| at(h, at_us))
    }

    /// Every party hosting in effect at `at_us`.
    pub fn parties_at(&self, at_us: i64) -> Vec<&PartyHosting> {
        self.parties.values().filter_map(|h| at(h, at_us)).collect()
    }

    /// The latest hosting of `party`, in effect or not.
    pub fn latest_hosting(&self, party: &str) -> Option<&PartyHosting> {
        latest(self.parties.get(party))
    }

    fn admitted_participant(&self, fingerprint: &str) -> bool {
        self.keys
            .get(fingerprint)
            .is_some_and(|(m, _)| m.kind == MemberKind::Participant)
    }

    fn tm_fingerprint(&self) -> Result<&str, TopologyError> {
        self.trust_root
            .as_ref()
            .map(|(m, _)| m.fingerprint.as_str())
            .ok_or_else(|| {
                TopologyError::Precondition(
                    "the synchronizer has no topology manager yet: its own admission comes first"
                        .into(),
                )
            })
    }

    /// Who must sign `tx` given the current state.
    fn required_signers(&self, tx: &Transaction) -> Result<BTreeSet<String>, TopologyError> {
        let mut required = BTreeSet::new();
        match (&tx.mapping, tx.operation) {
            (Mapping::Member { member, .. }, Operation::Replace) => {
                if member.kind == MemberKind::TopologyManager {
                    if let Some((root, _)) = &self.trust_root {
                        if root != member {
                            return Err(TopologyError::Precondition(format!(
                                "the synchronizer's topology manager is {root}; there is only one"
                            )));
                        }
                    }
                } else {
                    required.insert(self.tm_fingerprint()?.to_string());
                }
                required.insert(member.fingerprint.clone());
            }
            (Mapping::Member { member, .. }, Operation::Remove) => {
                if member.kind == MemberKind::TopologyManager {
                    return Err(TopologyError::Precondition(
                        "the topology manager cannot be removed".into(),
                    ));
                }
                if !self.is_admitted(&member.to_string()) {
                    return Err(TopologyError::Precondition(format!(
                        "{member} is not a member; nothing to remove"
                    )));
                }
                required.insert(self.tm_fingerprint()?.to_string());
            }
            (Mapping::Party(h), operation) => {
                let owner = h
                    .party
                    .as_str()
                    .split_once("::")
                    .map(|(_, fp)| fp.to_string())
                    .unwrap_or_default();
                if !self.admitted_participant(&owner) {
                    return Err(TopologyError::Precondition(format!(
                        "{}: its owner {owner} is not an admitted participant",
                        h.party
                    )));
                }
                required.insert(owner);
                let current = self.latest_hosting(h.party.as_str());
                if operation == Operation::Remove {
                    if current.is_none() {
                        return Err(TopologyError::Precondition(format!(
                            "{} is not hosted; nothing to remove",
                            h.party
                        )));
                    }
                } else {
                    for (participant, _) in &h.participants {
                        if !self.is_admitted(&participant.to_string()) {
                            return Err(TopologyError::Precondition(format!(
                                "{participant} is not an admitted participant"
                            )));
                        }
                        if current.is_none_or(|c| c.permission_of(participant).is_none()) {
                            required.insert(participant.fingerprint.clone());
                        }
                    }
                }
            }
        }
        Ok(required)
    }

    /// Checks serial, signers and signatures; says who still has to sign.
    pub fn check(&self, signed: &SignedTransaction) -> Result<Check, TopologyError> {
        let tx = &signed.transaction;
        let key = tx.mapping.key();
        let expected = self.serial(&key) + 1;
        if tx.serial != expected {
            return Err(TopologyError::Serial {
                key,
                expected,
                got: tx.serial,
            });
        }
        let required = self.required_signers(tx)?;
        let hash = tx.hash();
        let message = Transaction::signing_bytes(&hash);
        for (signer, signature) in &signed.signatures {
            if !required.contains(signer) {
                return Err(TopologyError::NotRequiredSigner(signer.clone()));
            }
            let own_key = match (&tx.mapping, tx.operation) {
                (Mapping::Member { member, public_key }, Operation::Replace)
                    if &member.fingerprint == signer =>
                {
                    Some(public_key.as_slice())
                }
                _ => None,
            };
            let key = own_key
                .or_else(|| self.keys.get(signer).map(|(_, k)| k.as_slice()))
                .ok_or_else(|| TopologyError::BadSignature {
                    signer: signer.clone(),
                    reason: "no admitted key has this fingerprint".into(),
                })?;
            verify(key, &message, signature).map_err(|e| TopologyError::BadSignature {
                signer: signer.clone(),
                reason: e.to_string(),
            })?;
        }
        let missing = required
            .iter()
            .filter(|r| !signed.signatures.contains_key(*r))
            .cloned()
            .collect();
        Ok(Check {
            hash,
            required,
            missing,
        })
    }

    /// Applies a fully signed transaction, in effect from `effective_us`.
    pub fn apply(
        &mut self,
        signed: &SignedTransaction,
        effective_us: i64,
    ) -> Result<(), TopologyError> {
        let check = self.check(signed)?;
        if !check.missing.is_empty() {
            return Err(TopologyError::Precondition(format!(
                "not fully signed: missing {}",
                check.missing.join(", ")
            )));
        }
        let tx = &signed.transaction;
        self.serials.insert(tx.mapping.key(), tx.serial);
        match (&tx.mapping, tx.operation) {
            (Mapping::Member { member, public_key }, Operation::Replace) => {
                if member.kind == MemberKind::TopologyManager && self.trust_root.is_none() {
                    self.trust_root = Some((member.clone(), public_key.clone()));
                }
                self.keys.insert(
                    member.fingerprint.clone(),
                    (member.clone(), public_key.clone()),
                );
                self.members
                    .entry(member.to_string())
                    .or_default()
                    .push((effective_us, Some((member.clone(), public_key.clone()))));
            }
            (Mapping::Member { member, .. }, Operation::Remove) => {
                self.keys.remove(&member.fingerprint);
                self.members
                    .entry(member.to_string())
                    .or_default()
                    .push((effective_us, None));
            }
            (Mapping::Party(h), operation) => {
                let value = (operation == Operation::Replace).then(|| h.clone());
                self.parties
                    .entry(h.party.to_string())
                    .or_default()
                    .push((effective_us, value));
            }
        }
        Ok(())
    }
}
