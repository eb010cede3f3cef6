//! Between the wire form (`tandem.topology.v1`) and the checked domain types. Decoding checks
//! every field's format and names the field that is wrong.

use super::{
    check_hosting, check_member, Mapping, Operation, PartyHosting, Permission, SignedTransaction,
    TopologyError, Transaction,
};
use crate::identity::MemberId;
use crate::model::ids::Party;
use std::collections::BTreeMap;
use tandem_proto::topology::v1 as pb;

fn malformed(field: &str, why: impl std::fmt::Display) -> TopologyError {
    TopologyError::Malformed(format!("{field}: {why}"))
}

pub fn permission_from(p: i32) -> Result<Permission, TopologyError> {
    match pb::Permission::try_from(p) {
        Ok(pb::Permission::Submission) => Ok(Permission::Submission),
        Ok(pb::Permission::Confirmation) => Ok(Permission::Confirmation),
        Ok(pb::Permission::Observation) => Ok(Permission::Observation),
        _ => Err(malformed(
            "permission",
            "must be SUBMISSION, CONFIRMATION or OBSERVATION",
        )),
    }
}

pub fn permission_to(p: Permission) -> pb::Permission {
    match p {
        Permission::Submission => pb::Permission::Submission,
        Permission::Confirmation => pb::Permission::Confirmation,
        Permission::Observation => pb::Permission::Observation,
    }
}

impl TryFrom<&pb::TopologyTransaction> for Transaction {
    type Error = TopologyError;

    fn try_from(t: &pb::TopologyTransaction) -> Result<Self, TopologyError> {
        let operation = match pb::Operation::try_from(t.operation) {
            Ok(pb::Operation::Replace) => Operation::Replace,
            Ok(pb::Operation::Remove) => Operation::Remove,
            _ => return Err(malformed("operation", "must be REPLACE or REMOVE")),
        };
        if t.serial == 0 {
            return Err(malformed("serial", "starts at 1"));
        }
        let mapping = match &t.mapping {
            None => return Err(malformed("mapping", "missing")),
            Some(pb::topology_transaction::Mapping::MemberAdmission(m)) => {
                let member = MemberId::parse(&m.member)
                    .map_err(|e| malformed("member_admission.member", e))?;
                check_member(&member, &m.public_key)?;
                Mapping::Member {
                    member,
                    public_key: m.public_key.clone(),
                }
            }
            Some(pb::topology_transaction::Mapping::PartyToParticipant(p)) => {
                let party = Party::parse(&p.party)
                    .map_err(|e| malformed("party_to_participant.party", e))?;
                let participants = p
                    .participants
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let field = format!("party_to_participant.participants[{i}]");
                        let id = MemberId::parse(&h.participant)
                            .map_err(|e| malformed(&format!("{field}.participant"), e))?;
                        let permission = permission_from(h.permission)
                            .map_err(|e| malformed(&format!("{field}.permission"), e))?;
                        Ok((id, permission))
                    })
                    .collect::<Result<Vec<_>, TopologyError>>()?;
                let hosting = PartyHosting {
                    party,
                    threshold: p.threshold,
                    participants,
                };
                if operation == Operation::Replace {
                    check_hosting(&hosting)?;
                }
                Mapping::Party(hosting)
            }
        };
        Ok(Transaction {
            operation,
            serial: t.serial,
            mapping,
        })
    }
}

impl From<&Transaction> for pb::TopologyTransaction {
    fn from(t: &Transaction) -> Self {
        let mapping = match &t.mapping {
            Mapping::Member { member, public_key } => {
                pb::topology_transaction::Mapping::MemberAdmission(pb::MemberAdmission {
                    member: member.to_string(),
                    public_key: public_key.clone(),
                })
            }
            Mapping::Party(h) => {
                pb::topology_transaction::Mapping::PartyToParticipant(hosting_to(h))
            }
        };
        pb::TopologyTransaction {
            operation: match t.operation {
                Operation::Replace => pb::Operation::Replace,
                Operation::Remove => pb::Operation::Remove,
            } as i32,
            serial: t.serial,
            mapping: Some(mapping),
        }
    }
}

pub fn hosting_to(h: &PartyHosting) -> pb::PartyToParticipant {
    pb::PartyToParticipant {
        party: h.party.to_string(),
        threshold: h.threshold,
        participants: h
            .participants
            .iter()
            .map(|(p, permission)| pb::HostingParticipant {
                participant: p.to_string(),
                permission: permission_to(*permission) as i32,
            })
            .collect(),
    }
}

impl TryFrom<&pb::SignedTopologyTransaction> for SignedTransaction {
    type Error = TopologyError;

    fn try_from(s: &pb::SignedTopologyTransaction) -> Result<Self, TopologyError> {
        let transaction = Transaction::try_from(
            s.transaction
                .as_ref()
                .ok_or_else(|| malformed("transaction", "missing"))?,
        )?;
        let mut signatures = BTreeMap::new();
        for (i, sig) in s.signatures.iter().enumerate() {
            if signatures
                .insert(sig.signed_by.clone(), sig.signature.clone())
                .is_some()
            {
                return Err(malformed(
                    &format!("signatures[{i}].signed_by"),
                    format!("{} signed twice", sig.signed_by),
                ));
            }
        }
        Ok(SignedTransaction {
            transaction,
            signatures,
        })
    }
}

impl From<&SignedTransaction> for pb::SignedTopologyTransaction {
    fn from(s: &SignedTransaction) -> Self {
        pb::SignedTopologyTransaction {
            transaction: Some((&s.transaction).into()),
            signatures: s
                .signatures
                .iter()
                .map(|(signer, signature)| pb::Signature {
                    signed_by: signer.clone(),
                    signature: signature.clone(),
                })
                .collect(),
        }
    }
}

impl SignedTransaction {
    /// The wire bytes, for storage and broadcast.
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::SignedTopologyTransaction::from(self))
    }

    pub fn decode(bytes: &[u8]) -> Result<SignedTransaction, TopologyError> {
        let wire: pb::SignedTopologyTransaction = prost::Message::decode(bytes)
            .map_err(|e| malformed("transaction", format!("undecodable: {e}")))?;
        SignedTransaction::try_from(&wire)
    }
}
