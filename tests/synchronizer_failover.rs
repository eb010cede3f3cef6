//! SIGKILL of the active mediator and of the active topology manager under load, as real
//! processes on SQLite and Postgres (two sequencers, two replicas each of the topology manager
//! and the mediator). Nothing acknowledged is lost or duplicated: every sequenced confirmation
//! request gets exactly one verdict at every informee participant, and every admission the
//! topology manager acknowledged appears exactly once in the topology afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use common::topology::{active, Processes};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_nodes::identity::{KeyPair, MemberId, MemberKind};
use tandem_nodes::member::admit_within;
use tandem_nodes::model::ids::Party;
use tandem_nodes::testing::{mediator_id, TestMember};
use tandem_nodes::topology::{
    Mapping, Operation, PartyHosting, Permission, SignedTransaction, Transaction,
};
use tandem_proto::topology::v1 as tpb;
use tandem_proto::topology::v1::topology_manager_service_client::TopologyManagerServiceClient;

async fn start(postgres: bool) -> Option<Processes> {
    Processes::start(
        postgres,
        0,
        "confirmation_response_timeout_ms = 20000",
        |_| {},
    )
    .await
}

/// Submits to whichever topology manager replica is active.
async fn submit(endpoints: &[String], request: tpb::SubmitRequest) -> tpb::SubmitResponse {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        for e in endpoints {
            if let Ok(mut c) = TopologyManagerServiceClient::connect(e.clone()).await {
                if let Ok(r) = c.submit(request.clone()).await {
                    return r.into_inner();
                }
            }
        }
        assert!(
            Instant::now() < until,
            "no topology manager accepted {request:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admit(p: &Processes, name: &str) -> (MemberId, Arc<KeyPair>) {
    let key = Arc::new(KeyPair::generate().unwrap());
    let id = MemberId::new(MemberKind::Participant, name, &key.public_key());
    admit_within(&p.tm_endpoints(), &id, &key, Duration::from_secs(30))
        .await
        .unwrap();
    (id, key)
}

async fn mediator_sigkill_under_load(postgres: bool) {
    const REQUESTS: usize = 60;
    let Some(mut p) = start(postgres).await else {
        return;
    };
    let mediator = mediator_id(&p.tm_endpoints(), Duration::from_secs(30))
        .await
        .unwrap();
    let (p1, k1) = admit(&p, "p1").await;
    let (p2, k2) = admit(&p, "p2").await;
    let alice = format!("Alice::{}", p1.fingerprint);
    let hosting = Transaction {
        operation: Operation::Replace,
        serial: 1,
        mapping: Mapping::Party(PartyHosting {
            party: Party::parse(&alice).unwrap(),
            threshold: 2,
            participants: vec![
                (p1.clone(), Permission::Submission),
                (p2.clone(), Permission::Confirmation),
            ],
        }),
    };
    let signed = SignedTransaction::unsigned(hosting).sign(&k1).sign(&k2);
    let r = submit(
        &p.tm_endpoints(),
        tpb::SubmitRequest {
            transaction: Some((&signed).into()),
            wait_for_effective: true,
        },
    )
    .await;
    assert_eq!(r.status, tpb::TransactionStatus::Sequenced as i32);

    // Both hosts approve every request for Alice by themselves.
    let seq = p.sequencer_endpoints();
    let m1 =
        Arc::new(TestMember::start(p1.clone(), k1, &seq, &mediator, vec![alice.clone()]).unwrap());
    let m2 = TestMember::start(p2.clone(), k2, &seq, &mediator, vec![alice.clone()]).unwrap();
    let sequenced: Arc<Mutex<Vec<i64>>> = Arc::default();
    let load = {
        let (m1, sequenced, alice, p2) =
            (m1.clone(), sequenced.clone(), alice.clone(), p2.to_string());
        tokio::spawn(async move {
            let view = vec![(vec![alice.clone()], vec![alice])];
            for i in 0..REQUESTS {
                let ts = m1
                    .request(&format!("r{i}"), &view, std::slice::from_ref(&p2))
                    .await
                    .unwrap();
                sequenced.lock().unwrap().push(ts);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    // Kill the active mediator once a third of the requests are in.
    common::wait_until("requests flow", || {
        let n = sequenced.lock().unwrap().len();
        async move { n >= REQUESTS / 3 }
    })
    .await;
    let victim = active(p.replicas("mediator"), None).await;
    p.replicas("mediator")[victim]
        .signal(Signal::SIGKILL)
        .unwrap();
    let killed = Instant::now();
    p.replicas("mediator")[victim].wait().await.unwrap();
    let standby = active(p.replicas("mediator"), Some(victim)).await;
    let failover_ms = killed.elapsed().as_millis();
    load.await.unwrap();

    let requests = sequenced.lock().unwrap().clone();
    assert_eq!(requests.len(), REQUESTS);
    for m in [&*m1, &m2] {
        for ts in &requests {
            let v = m.verdict(*ts, Duration::from_secs(30)).await;
            assert!(
                v.as_ref().is_some_and(|v| v.approved),
                "request {ts}: {v:?}"
            );
        }
        let counts = m.verdict_counts();
        let got: BTreeSet<i64> = counts.keys().copied().collect();
        assert_eq!(
            got,
            requests.iter().copied().collect(),
            "a verdict for each request and no other"
        );
        assert!(
            counts.values().all(|n| *n == 1),
            "a duplicated verdict: {counts:?}"
        );
    }
    eprintln!(
        "postgres={postgres}: mediator {victim} killed; replica {standby} active after {failover_ms} ms; \
         {REQUESTS} requests, each with one approving verdict at both hosts"
    );
    drop(m2);
    drop(m1);
    p.stop().await;
}

async fn topology_manager_sigkill_under_load(postgres: bool) {
    const ADMISSIONS: usize = 24;
    let Some(mut p) = start(postgres).await else {
        return;
    };
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let load = {
        let (endpoints, acknowledged) = (p.tm_endpoints(), acknowledged.clone());
        tokio::spawn(async move {
            for i in 0..ADMISSIONS {
                let key = KeyPair::generate().unwrap();
                let id = MemberId::new(
                    MemberKind::Participant,
                    &format!("joiner{i}"),
                    &key.public_key(),
                );
                let r = admit_within(&endpoints, &id, &key, Duration::from_secs(30))
                    .await
                    .unwrap();
                assert_eq!(r.status, tpb::TransactionStatus::Sequenced as i32, "{r:?}");
                acknowledged.lock().unwrap().push(id.to_string());
            }
        })
    };
    common::wait_until("admissions flow", || {
        let n = acknowledged.lock().unwrap().len();
        async move { n >= ADMISSIONS / 3 }
    })
    .await;
    let victim = active(p.replicas("topology-manager"), None).await;
    p.replicas("topology-manager")[victim]
        .signal(Signal::SIGKILL)
        .unwrap();
    let killed = Instant::now();
    p.replicas("topology-manager")[victim].wait().await.unwrap();
    let standby = active(p.replicas("topology-manager"), Some(victim)).await;
    let failover_ms = killed.elapsed().as_millis();
    load.await.unwrap();

    let endpoint = format!(
        "http://{}",
        p.replicas("topology-manager")[standby].ready.admin
    );
    let mut client = TopologyManagerServiceClient::connect(endpoint)
        .await
        .unwrap();
    let txs = client
        .list_transactions(tpb::ListTransactionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .transactions;
    let mut members = Vec::new();
    for t in &txs {
        if let Some(tpb::topology_transaction::Mapping::MemberAdmission(m)) = t
            .transaction
            .as_ref()
            .and_then(|s| s.transaction.as_ref())
            .and_then(|t| t.mapping.clone())
        {
            members.push(m.member);
        }
    }
    let unique: BTreeSet<&String> = members.iter().collect();
    assert_eq!(
        unique.len(),
        members.len(),
        "an admission sequenced twice: {members:?}"
    );
    for id in acknowledged.lock().unwrap().iter() {
        assert!(members.contains(id), "acknowledged admission of {id} lost");
    }
    let hashes: BTreeSet<&String> = txs.iter().map(|t| &t.hash).collect();
    assert_eq!(hashes.len(), txs.len(), "a transaction listed twice");
    eprintln!(
        "postgres={postgres}: topology manager {victim} killed; replica {standby} active after {failover_ms} ms; \
         {ADMISSIONS} admissions acknowledged, each sequenced once"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mediator_sigkill_under_load() {
    mediator_sigkill_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mediator_sigkill_under_load() {
    mediator_sigkill_under_load(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_topology_manager_sigkill_under_load() {
    topology_manager_sigkill_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_topology_manager_sigkill_under_load() {
    topology_manager_sigkill_under_load(true).await;
}
