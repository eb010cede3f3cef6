//! Topology transactions (design.md §5.3): who is a member of the synchronizer and with which
//! key, and which participants host which party with which permission and threshold. Pure: the
//! topology manager validates and signs with it, and every member rebuilds the same state from
//! the transactions it receives through the sequencer.
//!
//! - A transaction maps a key (a member, or a party) with an operation and a serial that rises by
//!   exactly one per key. Its hash covers every field in a canonical encoding; signatures are
//!   over the hash, so the protobuf bytes never need to be canonical.
//! - Required signers: a member admission needs the member's own key (proof of possession) and
//!   the topology manager's; a party hosting needs the party's owner (the participant whose
//!   fingerprint is the party's namespace) and every participant it newly adds. An under-signed
//!   transaction is a proposal; signatures on the same hash merge.

mod convert;
mod state;

pub use convert::{hosting_to, permission_from as convert_permission};
pub use state::{Check, TopologyState};

use crate::identity::{canonical, fingerprint, MemberId, MemberKind};
use crate::model::ids::Party;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The recipient that addresses every member, present and future (topology manager only).
pub const BROADCAST: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Submission,
    Confirmation,
    Observation,
}

impl Permission {
    /// Submission and Confirmation hosts vote for the party; Observation hosts only see.
    pub fn confirms(self) -> bool {
        self != Permission::Observation
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Submission => "submission",
            Permission::Confirmation => "confirmation",
            Permission::Observation => "observation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Replace,
    Remove,
}

/// Which participants host a party, and how many of its confirming hosts must approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyHosting {
    pub party: Party,
    pub threshold: u32,
    /// In the order the transaction lists them; no participant twice.
    pub participants: Vec<(MemberId, Permission)>,
}

impl PartyHosting {
    pub fn permission_of(&self, participant: &MemberId) -> Option<Permission> {
        self.participants
            .iter()
            .find(|(p, _)| p == participant)
            .map(|(_, permission)| *permission)
    }

    /// The hosts that vote for the party.
    pub fn confirming_hosts(&self) -> impl Iterator<Item = &MemberId> {
        self.participants
            .iter()
            .filter(|(_, permission)| permission.confirms())
            .map(|(p, _)| p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    Member {
        member: MemberId,
        public_key: Vec<u8>,
    },
    Party(PartyHosting),
}

impl Mapping {
    /// The key serials count per: one member, or one party.
    pub fn key(&self) -> String {
        match self {
            Mapping::Member { member, .. } => format!("member:{member}"),
            Mapping::Party(h) => format!("party:{}", h.party),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub operation: Operation,
    pub serial: u32,
    pub mapping: Mapping,
}

impl Transaction {
    /// Hex SHA-256 of the canonical encoding of every field.
    pub fn hash(&self) -> String {
        let op: &[u8] = match self.operation {
            Operation::Replace => b"replace",
            Operation::Remove => b"remove",
        };
        let serial = self.serial.to_be_bytes();
        let mut owned: Vec<Vec<u8>> = Vec::new();
        match &self.mapping {
            Mapping::Member { member, public_key } => {
                owned.push(b"member".to_vec());
                owned.push(member.to_string().into_bytes());
                owned.push(public_key.clone());
            }
            Mapping::Party(h) => {
                owned.push(b"party".to_vec());
                owned.push(h.party.as_str().as_bytes().to_vec());
                owned.push(h.threshold.to_be_bytes().to_vec());
                for (p, permission) in &h.participants {
                    owned.push(p.to_string().into_bytes());
                    owned.push(permission.as_str().as_bytes().to_vec());
                }
            }
        }
        let mut fields: Vec<&[u8]> = vec![op, &serial];
        fields.extend(owned.iter().map(Vec::as_slice));
        hex::encode(Sha256::digest(canonical("tandem.topology.tx.v1", &fields)))
    }

    /// What a signer signs: the hash, tagged.
    pub fn signing_bytes(hash: &str) -> Vec<u8> {
        canonical("tandem.topology.v1", &[hash.as_bytes()])
    }

    /// A member admitting itself with its key, serial 1: what a node submits to join.
    pub fn admission(member: &MemberId, public_key: &[u8]) -> Transaction {
        Transaction {
            operation: Operation::Replace,
            serial: 1,
            mapping: Mapping::Member {
                member: member.clone(),
                public_key: public_key.to_vec(),
            },
        }
    }
}

/// A transaction and the signatures it has so far, by signer fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransaction {
    pub transaction: Transaction,
    pub signatures: BTreeMap<String, Vec<u8>>,
}

impl SignedTransaction {
    pub fn unsigned(transaction: Transaction) -> Self {
        Self {
            transaction,
            signatures: BTreeMap::new(),
        }
    }

    /// Adds `key`'s signature.
    pub fn sign(mut self, key: &crate::identity::KeyPair) -> Self {
        let hash = self.transaction.hash();
        self.signatures.insert(
            key.fingerprint(),
            key.sign(&Transaction::signing_bytes(&hash)),
        );
        self
    }

    /// Adds the signatures of `other` (the same transaction) that this one lacks.
    pub fn merge(&mut self, other: &SignedTransaction) {
        for (signer, signature) in &other.signatures {
            self.signatures
                .entry(signer.clone())
                .or_insert_with(|| signature.clone());
        }
    }
}

/// Why a topology transaction is refused. Each maps to one gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("{0}")]
    Malformed(String),
    #[error("{key}: serial must be {expected}, got {got}")]
    Serial {
        key: String,
        expected: u32,
        got: u32,
    },
    #[error("{0}")]
    Precondition(String),
    #[error("signature by {0}: not a required signer of this transaction")]
    NotRequiredSigner(String),
    #[error("signature by {signer}: {reason}")]
    BadSignature { signer: String, reason: String },
}

impl TopologyError {
    pub fn to_status(&self) -> tonic::Status {
        match self {
            TopologyError::Malformed(_)
            | TopologyError::NotRequiredSigner(_)
            | TopologyError::BadSignature { .. } => {
                tonic::Status::invalid_argument(self.to_string())
            }
            TopologyError::Serial { .. } | TopologyError::Precondition(_) => {
                tonic::Status::failed_precondition(self.to_string())
            }
        }
    }
}

/// Checks a member admission's own fields: a valid key whose fingerprint the id carries.
fn check_member(member: &MemberId, public_key: &[u8]) -> Result<(), TopologyError> {
    crate::identity::check_public_key(public_key)
        .map_err(|e| TopologyError::Malformed(format!("public_key: {e}")))?;
    if fingerprint(public_key) != member.fingerprint {
        return Err(TopologyError::Malformed(format!(
            "member: {member} does not carry the fingerprint of its public key"
        )));
    }
    Ok(())
}

/// Checks a hosting's own fields: participants named once each, threshold reachable.
fn check_hosting(h: &PartyHosting) -> Result<(), TopologyError> {
    if h.participants.is_empty() {
        return Err(TopologyError::Malformed(format!(
            "participants: {} must be hosted by at least one participant",
            h.party
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (p, _) in &h.participants {
        if p.kind != MemberKind::Participant {
            return Err(TopologyError::Malformed(format!(
                "participants: {p} is not a participant"
            )));
        }
        if !seen.insert(p) {
            return Err(TopologyError::Malformed(format!(
                "participants: {p} is listed twice"
            )));
        }
    }
    let confirming = h.confirming_hosts().count();
    if h.threshold == 0 || h.threshold as usize > confirming {
        return Err(TopologyError::Malformed(format!(
            "threshold: must be between 1 and the {confirming} participant(s) with submission or confirmation permission, got {}",
            h.threshold
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
