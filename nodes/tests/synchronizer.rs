//! The topology manager and the mediator in process, through real sequencers, on SQLite and
//! Postgres: admission (open, allow-list, operator authorization), multi-hosted parties as
//! proposals whose signatures merge, the state at a timestamp, topology transactions refused
//! with a precise error and nothing written, and the mediator's verdicts (threshold, observer,
//! rejection, timeout naming the unresponsive party, malformed request).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use tandem_nodes::identity::{KeyPair, MemberId, MemberKind};
use tandem_nodes::model::ids::Party;
use tandem_nodes::testing::{mediator_id, Synchronizer, TestMember};
use tandem_nodes::topology::{
    Mapping, Operation, PartyHosting, Permission, SignedTransaction, Transaction,
};
use tandem_proto::topology::v1 as tpb;
use tandem_proto::topology::v1::topology_manager_service_client::TopologyManagerServiceClient;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

async fn tm(sync: &Synchronizer) -> TopologyManagerServiceClient<Channel> {
    let endpoint = sync.config.topology_manager_endpoints()[0].clone();
    TopologyManagerServiceClient::connect(endpoint)
        .await
        .unwrap()
}

fn hosting(
    owner: &MemberId,
    hint: &str,
    threshold: u32,
    hosts: &[(&MemberId, Permission)],
) -> Transaction {
    Transaction {
        operation: Operation::Replace,
        serial: 1,
        mapping: Mapping::Party(PartyHosting {
            party: Party::parse(&format!("{hint}::{}", owner.fingerprint)).unwrap(),
            threshold,
            participants: hosts
                .iter()
                .map(|(p, perm)| ((*p).clone(), *perm))
                .collect(),
        }),
    }
}

fn submit(signed: &SignedTransaction, wait: bool) -> tpb::SubmitRequest {
    tpb::SubmitRequest {
        transaction: Some(signed.into()),
        wait_for_effective: wait,
    }
}

async fn topology_admission_and_hosting(postgres: bool) {
    let Some(sync) = Synchronizer::start(
        postgres,
        1,
        0,
        0,
        "topology_change_delay_ms = 50\nadmission = { open = false, allow = [\"listed\"] }",
        "",
    )
    .await
    .unwrap() else {
        return;
    };
    let mut client = tm(&sync).await;

    // A closed synchronizer admits the allow-listed participant by itself...
    let (listed, listed_key) = sync.admit(MemberKind::Participant, "listed").await.unwrap();
    // ... and keeps anyone else as a proposal until the operator authorizes it.
    let key = Arc::new(KeyPair::generate().unwrap());
    let other = MemberId::new(MemberKind::Participant, "other", &key.public_key());
    let own =
        SignedTransaction::unsigned(Transaction::admission(&other, &key.public_key())).sign(&key);
    let r = client
        .submit(submit(&own, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, tpb::TransactionStatus::Proposed as i32);
    assert_eq!(
        r.missing_signers.len(),
        1,
        "the topology manager's signature is missing"
    );
    let proposals = client
        .list_proposals(tpb::ListProposalsRequest {
            filter: other.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .proposals;
    assert_eq!(proposals.len(), 1);
    let r = client
        .authorize(tpb::AuthorizeRequest {
            hash: r.hash,
            wait_for_effective: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, tpb::TransactionStatus::Sequenced as i32);
    assert!(r.effective_at_us >= r.sequenced_at_us + 50_000, "{r:?}");

    // A party hosted on both with threshold 2: a proposal until the new host signs too.
    let tx = hosting(
        &listed,
        "Alice",
        2,
        &[
            (&listed, Permission::Submission),
            (&other, Permission::Confirmation),
        ],
    );
    let by_owner = SignedTransaction::unsigned(tx.clone()).sign(&listed_key);
    let r = client
        .submit(submit(&by_owner, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, tpb::TransactionStatus::Proposed as i32);
    assert_eq!(r.missing_signers, vec![other.fingerprint.clone()]);
    let listed_for_other = client
        .list_proposals(tpb::ListProposalsRequest {
            filter: other.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .proposals;
    assert_eq!(
        listed_for_other.len(),
        1,
        "the other host finds the proposal"
    );
    let before = tandem_nodes::sequencer::now_us();
    let by_host = SignedTransaction::unsigned(tx).sign(&key);
    let r = client
        .submit(submit(&by_host, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tpb::TransactionStatus::Sequenced as i32,
        "signatures merged"
    );
    let alice = format!("Alice::{}", listed.fingerprint);
    let now = client
        .list_state(tpb::ListStateRequest { at_us: 0 })
        .await
        .unwrap()
        .into_inner();
    let hosted = now.parties.iter().find(|p| p.party == alice).unwrap();
    assert_eq!((hosted.threshold, hosted.participants.len()), (2, 2));
    let kinds: Vec<&str> = now.members.iter().map(|m| &m.member[..3]).collect();
    for kind in ["TM:", "SEQ", "PAR"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let earlier = client
        .list_state(tpb::ListStateRequest { at_us: before })
        .await
        .unwrap()
        .into_inner();
    assert!(
        earlier.parties.iter().all(|p| p.party != alice),
        "not in effect before"
    );

    // Bad transactions: each refused precisely, nothing written.
    let count = |c: &mut TopologyManagerServiceClient<Channel>| {
        let mut c = c.clone();
        async move {
            let txs = c
                .list_transactions(tpb::ListTransactionsRequest {})
                .await
                .unwrap()
                .into_inner()
                .transactions
                .len();
            let props = c
                .list_proposals(tpb::ListProposalsRequest {
                    filter: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .proposals
                .len();
            (txs, props)
        }
    };
    let written = count(&mut client).await;
    let stranger_key = KeyPair::generate().unwrap();
    let stranger = MemberId::new(
        MemberKind::Participant,
        "stranger",
        &stranger_key.public_key(),
    );
    let mut wrong_serial = Transaction::admission(&listed, &listed_key.public_key());
    wrong_serial.serial = 5;
    let mut forged = SignedTransaction::unsigned(hosting(
        &listed,
        "Bob",
        1,
        &[(&listed, Permission::Submission)],
    ));
    forged
        .signatures
        .insert(listed.fingerprint.clone(), stranger_key.sign(b"not this"));
    let cases: Vec<(&str, tpb::SubmitRequest, tonic::Code, &str)> = vec![
        (
            "wrong serial",
            submit(
                &SignedTransaction::unsigned(wrong_serial).sign(&listed_key),
                false,
            ),
            tonic::Code::FailedPrecondition,
            "serial must be 2, got 5",
        ),
        (
            "bad signature",
            submit(&forged, false),
            tonic::Code::InvalidArgument,
            "does not verify",
        ),
        (
            "not a required signer",
            submit(
                &SignedTransaction::unsigned(hosting(
                    &listed,
                    "Carol",
                    1,
                    &[(&listed, Permission::Submission)],
                ))
                .sign(&stranger_key),
                false,
            ),
            tonic::Code::InvalidArgument,
            "not a required signer",
        ),
        (
            "unknown host",
            submit(
                &SignedTransaction::unsigned(hosting(
                    &listed,
                    "Dave",
                    1,
                    &[
                        (&listed, Permission::Submission),
                        (&stranger, Permission::Confirmation),
                    ],
                ))
                .sign(&listed_key),
                false,
            ),
            tonic::Code::FailedPrecondition,
            "is not an admitted participant",
        ),
        (
            "threshold too high",
            submit(
                &SignedTransaction::unsigned(hosting(
                    &listed,
                    "Erin",
                    2,
                    &[(&listed, Permission::Submission)],
                ))
                .sign(&listed_key),
                false,
            ),
            tonic::Code::InvalidArgument,
            "threshold",
        ),
        (
            "no transaction",
            tpb::SubmitRequest::default(),
            tonic::Code::InvalidArgument,
            "transaction: missing",
        ),
        (
            "malformed member",
            tpb::SubmitRequest {
                transaction: Some(tpb::SignedTopologyTransaction {
                    transaction: Some(tpb::TopologyTransaction {
                        operation: tpb::Operation::Replace as i32,
                        serial: 1,
                        mapping: Some(tpb::topology_transaction::Mapping::MemberAdmission(
                            tpb::MemberAdmission {
                                member: "PAR::x".into(),
                                public_key: vec![1; 32],
                            },
                        )),
                    }),
                    signatures: vec![],
                }),
                wait_for_effective: false,
            },
            tonic::Code::InvalidArgument,
            "member_admission.member",
        ),
        (
            "second topology manager",
            {
                let k = KeyPair::generate().unwrap();
                let id = MemberId::new(MemberKind::TopologyManager, "tm2", &k.public_key());
                submit(
                    &SignedTransaction::unsigned(Transaction::admission(&id, &k.public_key()))
                        .sign(&k),
                    false,
                )
            },
            tonic::Code::FailedPrecondition,
            "there is only one",
        ),
    ];
    for (what, request, code, text) in cases {
        let err = client.submit(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(text), "{what}: {}", err.message());
    }
    assert_eq!(
        count(&mut client).await,
        written,
        "nothing written by refused transactions"
    );
    sync.stop().await.unwrap();
}

async fn mediator_verdicts(postgres: bool) {
    let Some(sync) = Synchronizer::start(
        postgres,
        2,
        1,
        0,
        "topology_change_delay_ms = 50\nconfirmation_response_timeout_ms = 1500",
        "",
    )
    .await
    .unwrap() else {
        return;
    };
    let endpoints = sync.config.topology_manager_endpoints();
    let mediator = mediator_id(&endpoints, WAIT).await.unwrap();
    let mut parts = Vec::new();
    for name in ["p1", "p2", "p3"] {
        parts.push(sync.admit(MemberKind::Participant, name).await.unwrap());
    }
    let ids: Vec<MemberId> = parts.iter().map(|(id, _)| id.clone()).collect();
    // Alice: p1 submits, p2 confirms, p3 observes; threshold 2.
    let tx = hosting(
        &ids[0],
        "Alice",
        2,
        &[
            (&ids[0], Permission::Submission),
            (&ids[1], Permission::Confirmation),
            (&ids[2], Permission::Observation),
        ],
    );
    let mut signed = SignedTransaction::unsigned(tx);
    for (_, key) in &parts {
        signed = signed.sign(key);
    }
    tm(&sync).await.submit(submit(&signed, true)).await.unwrap();
    let alice = format!("Alice::{}", ids[0].fingerprint);
    let seq: Vec<String> = (0..2).map(|i| sync.endpoint(i)).collect();
    let members: Vec<TestMember> = parts
        .iter()
        .map(|(id, key)| {
            TestMember::start(id.clone(), key.clone(), &seq, &mediator, Vec::new()).unwrap()
        })
        .collect();
    let everyone: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let view = vec![(vec![alice.clone()], vec![alice.clone()])];
    let a = vec![alice.clone()];

    // Both confirming hosts approve; the observer's vote does not count; all three get it.
    let ts = members[0]
        .request("approved", &view, &everyone)
        .await
        .unwrap();
    assert!(members[2].saw_request(ts, WAIT).await);
    members[2]
        .respond(ts, 0, &a, false, "observers do not vote")
        .await
        .unwrap();
    members[0].respond(ts, 0, &a, true, "").await.unwrap();
    members[1].respond(ts, 0, &a, true, "").await.unwrap();
    for m in &members {
        let v = m.verdict(ts, WAIT).await.unwrap();
        assert!(v.approved, "{v:?}");
        assert_eq!(v.submission_id, "approved");
    }

    // A confirming host rejects: the threshold can no longer be reached.
    let ts = members[0]
        .request("rejected", &view, &everyone)
        .await
        .unwrap();
    members[0].respond(ts, 0, &a, true, "").await.unwrap();
    members[1]
        .respond(ts, 0, &a, false, "LOCKED_CONTRACTS: 00ab")
        .await
        .unwrap();
    let v = members[0].verdict(ts, WAIT).await.unwrap();
    assert!(!v.approved);
    assert_eq!(v.code, "REJECTED_BY_PARTICIPANT");
    assert!(v.reason.contains("LOCKED_CONTRACTS"), "{}", v.reason);

    // Only one of two confirming hosts answers: rejected at the timeout, naming Alice.
    let ts = members[0]
        .request("timeout", &view, &everyone)
        .await
        .unwrap();
    members[0].respond(ts, 0, &a, true, "").await.unwrap();
    let v = members[1]
        .verdict(ts, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(v.code, "MEDIATOR_TIMEOUT");
    assert_eq!(v.parties, vec![alice.clone()]);

    // A request naming a party nobody hosts is malformed; only the submitter hears back.
    let bad = vec![(
        vec!["Nobody::1220ff".to_string()],
        vec!["Nobody::1220ff".to_string()],
    )];
    let ts = members[0].request("malformed", &bad, &[]).await.unwrap();
    let v = members[0].verdict(ts, WAIT).await.unwrap();
    assert_eq!(v.code, "MALFORMED_REQUEST");
    assert!(v.reason.contains("Nobody::1220ff"), "{}", v.reason);

    // One verdict per request, never two.
    for m in &members {
        assert!(
            m.verdict_counts().values().all(|n| *n == 1),
            "{:?}",
            m.verdict_counts()
        );
    }
    // The mediator's receipts mark every verdict sent, so a replica that takes over resends none.
    let store = &sync.mediators[0].store;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = store.mediator_open_requests("mediator").await.unwrap();
        if open.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "verdicts never marked sent: {:?}",
            open.iter().map(|r| r.request_ts).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = store.mediator_requests("mediator", 10).await.unwrap();
    assert_eq!(all.len(), 4, "four requests");
    assert!(all.iter().all(|r| r.verdict_sent && r.verdict.is_some()));
    drop(members);
    sync.stop().await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite_backend { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await } )* }
        mod postgres_backend { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await } )* }
    };
}

both_backends!(topology_admission_and_hosting, mediator_verdicts);
