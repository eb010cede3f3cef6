use super::*;
use crate::identity::KeyPair;

struct Node {
    key: KeyPair,
    id: MemberId,
}

fn node(kind: MemberKind, name: &str, seed: u8) -> Node {
    let key = KeyPair::from_seed([seed; 32]);
    let id = MemberId::new(kind, name, &key.public_key());
    Node { key, id }
}

fn admission(n: &Node) -> SignedTransaction {
    SignedTransaction::unsigned(Transaction::admission(&n.id, &n.key.public_key())).sign(&n.key)
}

/// A state with the topology manager and two participants admitted, in effect from 100.
fn genesis() -> (TopologyState, Node, Node, Node) {
    let tm = node(MemberKind::TopologyManager, "tm", 1);
    let p1 = node(MemberKind::Participant, "p1", 2);
    let p2 = node(MemberKind::Participant, "p2", 3);
    let mut state = TopologyState::new();
    state.apply(&admission(&tm), 100).unwrap();
    for p in [&p1, &p2] {
        state.apply(&admission(p).sign(&tm.key), 100).unwrap();
    }
    (state, tm, p1, p2)
}

fn hosting(party: &str, threshold: u32, hosts: &[(&Node, Permission)]) -> Transaction {
    Transaction {
        operation: Operation::Replace,
        serial: 1,
        mapping: Mapping::Party(PartyHosting {
            party: crate::model::ids::Party::parse(party).unwrap(),
            threshold,
            participants: hosts.iter().map(|(n, p)| (n.id.clone(), *p)).collect(),
        }),
    }
}

#[test]
fn an_admission_is_a_proposal_until_the_topology_manager_signs() {
    let (mut state, tm, _, _) = genesis();
    let med = node(MemberKind::Mediator, "mediator", 9);
    let check = state.check(&admission(&med)).unwrap();
    assert_eq!(check.missing, vec![tm.id.fingerprint.clone()]);
    assert!(matches!(
        state.apply(&admission(&med), 200),
        Err(TopologyError::Precondition(_))
    ));
    let mut merged = admission(&med);
    merged.merge(
        &SignedTransaction::unsigned(Transaction::admission(&med.id, &med.key.public_key()))
            .sign(&tm.key),
    );
    state.apply(&merged, 200).unwrap();
    let member = med.id.to_string();
    assert_eq!(
        state.key_of(&member, 199),
        None,
        "not in effect before its time"
    );
    assert_eq!(state.key_of(&member, 200), Some(&med.key.public_key()[..]));
}

#[test]
fn serials_rise_by_exactly_one_per_key() {
    let (state, tm, p1, _) = genesis();
    let mut again = Transaction::admission(&p1.id, &p1.key.public_key());
    assert_eq!(
        state.check(&SignedTransaction::unsigned(again.clone())),
        Err(TopologyError::Serial {
            key: format!("member:{}", p1.id),
            expected: 2,
            got: 1
        })
    );
    again.serial = 3;
    assert!(matches!(
        state.check(&SignedTransaction::unsigned(again.clone()).sign(&tm.key)),
        Err(TopologyError::Serial {
            expected: 2,
            got: 3,
            ..
        })
    ));
}

#[test]
fn signatures_are_checked_and_only_required_signers_may_sign() {
    let (state, tm, p1, p2) = genesis();
    let med = node(MemberKind::Mediator, "mediator", 9);
    // p1 is not a required signer of the mediator's admission.
    assert_eq!(
        state.check(&admission(&med).sign(&p1.key)),
        Err(TopologyError::NotRequiredSigner(p1.id.fingerprint.clone()))
    );
    // A signature by the topology manager's fingerprint made with another key.
    let mut forged = admission(&med);
    let hash = forged.transaction.hash();
    forged.signatures.insert(
        tm.id.fingerprint.clone(),
        p2.key.sign(&Transaction::signing_bytes(&hash)),
    );
    assert!(matches!(
        state.check(&forged),
        Err(TopologyError::BadSignature { signer, .. }) if signer == tm.id.fingerprint
    ));
}

#[test]
fn only_one_topology_manager_and_none_before_it() {
    let (state, _, _, _) = genesis();
    let other = node(MemberKind::TopologyManager, "tm2", 7);
    assert!(matches!(
        state.check(&admission(&other)),
        Err(TopologyError::Precondition(m)) if m.contains("there is only one")
    ));
    let empty = TopologyState::new();
    let p = node(MemberKind::Participant, "p", 8);
    assert!(matches!(
        empty.check(&admission(&p)),
        Err(TopologyError::Precondition(m)) if m.contains("no topology manager")
    ));
}

#[test]
fn a_multi_hosted_party_needs_its_owner_and_every_new_host() {
    let (mut state, _, p1, p2) = genesis();
    let party = format!("Alice::{}", p1.id.fingerprint);
    let tx = hosting(
        &party,
        2,
        &[
            (&p1, Permission::Submission),
            (&p2, Permission::Confirmation),
        ],
    );
    let by_owner = SignedTransaction::unsigned(tx.clone()).sign(&p1.key);
    assert_eq!(
        state.check(&by_owner).unwrap().missing,
        vec![p2.id.fingerprint.clone()]
    );
    let mut both = by_owner.clone();
    both.merge(&SignedTransaction::unsigned(tx).sign(&p2.key));
    state.apply(&both, 300).unwrap();
    let h = state.hosting_at(&party, 300).unwrap();
    assert_eq!(h.threshold, 2);
    assert_eq!(h.confirming_hosts().count(), 2);
    assert!(state.hosting_at(&party, 299).is_none());
    // Removing needs the owner only.
    let remove = Transaction {
        operation: Operation::Remove,
        serial: 2,
        mapping: both.transaction.mapping.clone(),
    };
    state
        .apply(&SignedTransaction::unsigned(remove).sign(&p1.key), 400)
        .unwrap();
    assert!(state.hosting_at(&party, 400).is_none());
    assert!(state.hosting_at(&party, 350).is_some(), "history is kept");
}

#[test]
fn hostings_are_refused_when_malformed_or_unowned() {
    let (state, _, p1, p2) = genesis();
    let unowned = hosting("Bob::1220aa", 1, &[(&p1, Permission::Submission)]);
    assert!(matches!(
        state.check(&SignedTransaction::unsigned(unowned)),
        Err(TopologyError::Precondition(m)) if m.contains("owner")
    ));
    let party = format!("Alice::{}", p1.id.fingerprint);
    let too_high = hosting(
        &party,
        2,
        &[
            (&p1, Permission::Submission),
            (&p2, Permission::Observation),
        ],
    );
    assert!(matches!(
        check_hosting(match &too_high.mapping {
            Mapping::Party(h) => h,
            Mapping::Member { .. } => unreachable!(),
        }),
        Err(TopologyError::Malformed(m)) if m.starts_with("threshold")
    ));
}

#[test]
fn wire_round_trip_keeps_the_hash() {
    let (_, _, p1, p2) = genesis();
    let party = format!("Alice::{}", p1.id.fingerprint);
    let tx = hosting(
        &party,
        1,
        &[
            (&p1, Permission::Submission),
            (&p2, Permission::Observation),
        ],
    );
    let signed = SignedTransaction::unsigned(tx).sign(&p1.key);
    let decoded = SignedTransaction::decode(&signed.encode()).unwrap();
    assert_eq!(decoded, signed);
    assert_eq!(decoded.transaction.hash(), signed.transaction.hash());
    assert!(SignedTransaction::decode(b"\xff\xff").is_err());
}
