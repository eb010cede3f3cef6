//! A participant's replicas as real processes under load, on SQLite and Postgres: four clients
//! submit with retries on the same command ids through both replicas while the active one
//! first hands over (`set-passive`) and then is SIGKILLed. Afterwards every acknowledged
//! command appears exactly once in the update stream and the offsets are dense. A participant
//! with `manual_connect` is not reconnected by the replica that takes over.
#![allow(clippy::unwrap_used)]

mod common;

use common::topology::{active, Processes};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_nodes::participant::client::LedgerClient;
use tandem_proto::admin::v1 as repl;
use tandem_proto::admin::v1::replication_service_client::ReplicationServiceClient;
use tandem_proto::ledger::v2 as lapi;
use tandem_proto::participant::v1 as padmin;
use tandem_proto::participant::v1::synchronizer_connectivity_service_client::SynchronizerConnectivityServiceClient;
use tonic::Code;

const IOU: &str = "#iou:Iou:Iou";
const CLIENTS: usize = 4;
const PER_CLIENT: usize = 12;

struct Load {
    acknowledged: Mutex<Vec<String>>,
    /// When each command was acknowledged.
    acked_at: Mutex<Vec<Instant>>,
}

fn code_of(s: &tonic::Status) -> &str {
    s.message().split(':').next().unwrap_or_default()
}

/// Submits `PER_CLIENT` creates with command ids `{prefix}{client}-{i}`, retrying each on
/// whichever replica answers until it is acknowledged (committed now, or found a duplicate of
/// an earlier commit).
async fn client(
    replicas: Vec<LedgerClient>,
    bank: String,
    prefix: String,
    n: usize,
    load: Arc<Load>,
) {
    let mut which = 0;
    for i in 0..PER_CLIENT {
        let id = format!("{prefix}{n}-{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "command {id} never acknowledged");
            let c = &replicas[which % replicas.len()];
            let args = json!({"issuer": bank, "owner": bank, "currency": id, "amount": "1.0", "viewers": []});
            let commands = c.commands(
                &id,
                std::slice::from_ref(&bank),
                vec![LedgerClient::create(IOU, &args)],
            );
            match c.submit_and_wait(commands).await {
                Ok(_) => break,
                Err(s) if s.code() == Code::AlreadyExists && code_of(&s) == "DUPLICATE_COMMAND" => {
                    break
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable
                            | Code::AlreadyExists
                            | Code::Aborted
                            | Code::DeadlineExceeded
                            | Code::Unknown
                            | Code::Cancelled
                    ) =>
                {
                    which += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(s) => panic!("command {id}: {s:?}"),
            }
        }
        load.acknowledged.lock().unwrap().push(id);
        load.acked_at.lock().unwrap().push(Instant::now());
    }
}

fn ledger_clients(p: &mut Processes, node: &str) -> Vec<LedgerClient> {
    p.replicas(node)
        .iter()
        .map(|r| {
            tandem_nodes::testing::ledger_client(
                &format!("http://{}", r.ready.api.unwrap()),
                "participant_admin",
            )
            .unwrap()
        })
        .collect()
}

async fn until_ok<T, F: std::future::Future<Output = Result<T, tonic::Status>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(t) => return t,
            Err(s) => {
                assert!(Instant::now() < deadline, "{what}: {s:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn run_phase(
    replicas: &[LedgerClient],
    bank: &str,
    prefix: &str,
    load: &Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                replicas.to_vec(),
                bank.to_string(),
                prefix.to_string(),
                n,
                load.clone(),
            ))
        })
        .collect()
}

async fn wait_acks(load: &Load, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.acknowledged.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "load stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn failover_under_load(postgres: bool) {
    let Some(mut p) = Processes::start(
        postgres,
        1,
        "confirmation_response_timeout_ms = 10000",
        |_| {},
    )
    .await
    else {
        return;
    };
    let replicas = ledger_clients(&mut p, "participant1");
    let package = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/packages/iou.yaml"
    ))
    .unwrap();
    // Leadership may still move while the nodes settle (a lease renewal late on a loaded
    // machine): like the load's clients, the setup tries the other replica when one refuses.
    let mut attempt = active(p.replicas("participant1"), None).await;
    let mut next = || {
        attempt += 1;
        &replicas[(attempt - 1) % replicas.len()]
    };
    until_ok("upload", || next().upload_package(package.clone(), "yaml")).await;
    let bank = until_ok("allocate", || {
        next().allocate_party("Bank", "participant_admin")
    })
    .await;
    let load = Arc::new(Load {
        acknowledged: Mutex::default(),
        acked_at: Mutex::default(),
    });

    // Phase 1: graceful handover in the middle of the load.
    let tasks = run_phase(&replicas, &bank, "h", &load).await;
    wait_acks(&load, CLIENTS * PER_CLIENT / 3).await;
    let from = active(p.replicas("participant1"), None).await;
    let admin = format!("http://{}", p.replicas("participant1")[from].ready.admin);
    let handover = ReplicationServiceClient::connect(admin)
        .await
        .unwrap()
        .set_passive(repl::SetPassiveRequest { timeout_ms: 0 })
        .await
        .unwrap()
        .into_inner();
    for t in tasks {
        t.await.unwrap();
    }

    // Phase 2: SIGKILL of the active replica in the middle of the load.
    let before = load.acknowledged.lock().unwrap().len();
    let tasks = run_phase(&replicas, &bank, "k", &load).await;
    wait_acks(&load, before + CLIENTS * PER_CLIENT / 3).await;
    let victim = active(p.replicas("participant1"), None).await;
    p.replicas("participant1")[victim]
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let killed = Instant::now();
    p.replicas("participant1")[victim].wait().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let next_ack = load
        .acked_at
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t > killed)
        .min()
        .unwrap();
    let failover_ms = next_ack.duration_since(killed).as_millis();

    // Every acknowledged command exactly once, offsets dense.
    let standby = active(p.replicas("participant1"), Some(victim)).await;
    let reader = &replicas[standby];
    let end = reader.ledger_end().await.unwrap();
    let txs = reader
        .updates(std::slice::from_ref(&bank), 0, end)
        .await
        .unwrap();
    let offsets: Vec<i64> = txs.iter().map(|t| t.offset).collect();
    assert_eq!(offsets, (1..=end).collect::<Vec<_>>(), "offsets are dense");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for t in &txs {
        for e in &t.events {
            if let Some(lapi::event::Event::Created(c)) = &e.event {
                let args = c
                    .create_arguments
                    .as_ref()
                    .map(tandem_nodes::participant::codec::proto_to_json)
                    .unwrap();
                *seen
                    .entry(args["currency"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    let acknowledged = load.acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 2 * CLIENTS * PER_CLIENT);
    for id in &acknowledged {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "command {id} is in the update stream exactly once"
        );
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a command committed twice: {seen:?}"
    );
    eprintln!(
        "postgres={postgres}: handover {} ms (replica {from} → {}); SIGKILL of replica {victim} → next acknowledged command after {failover_ms} ms; {} commands, {end} offsets",
        handover.handover_ms, handover.new_leader, acknowledged.len()
    );
    p.stop().await;
}

async fn connected(p: &mut Processes, node: &str, replica: usize) -> Result<bool, tonic::Status> {
    let admin = format!("http://{}", p.replicas(node)[replica].ready.admin);
    let mut c = SynchronizerConnectivityServiceClient::connect(admin)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let r = c
        .list_connected_synchronizers(padmin::ListConnectedSynchronizersRequest {})
        .await?;
    Ok(r.into_inner().synchronizers.iter().any(|s| s.connected))
}

async fn manual_connect_is_not_reconnected(postgres: bool) {
    let Some(mut p) =
        Processes::start(postgres, 1, "", |t| t.participants[0].manual_connect = true).await
    else {
        return;
    };
    let first = active(p.replicas("participant1"), None).await;
    assert!(
        !connected(&mut p, "participant1", first).await.unwrap(),
        "manual_connect: not connected by itself"
    );
    let admin = format!("http://{}", p.replicas("participant1")[first].ready.admin);
    SynchronizerConnectivityServiceClient::connect(admin)
        .await
        .unwrap()
        .connect_synchronizer(padmin::ConnectSynchronizerRequest {
            synchronizer: "synchronizer1".into(),
        })
        .await
        .unwrap();
    assert!(connected(&mut p, "participant1", first).await.unwrap());
    p.replicas("participant1")[first]
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    p.replicas("participant1")[first].wait().await.unwrap();
    let next = active(p.replicas("participant1"), Some(first)).await;
    let is = until_ok("list connections", || {
        let admin = format!("http://{}", p.nodes["participant1"][next].ready.admin);
        async move {
            let mut c = SynchronizerConnectivityServiceClient::connect(admin)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            c.list_connected_synchronizers(padmin::ListConnectedSynchronizersRequest {})
                .await
        }
    })
    .await;
    let s = &is.into_inner().synchronizers[0];
    assert!(
        s.manual_connect && !s.connected,
        "the new active replica did not reconnect: {s:?}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_participant_failover_under_load() {
    failover_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_participant_failover_under_load() {
    failover_under_load(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_manual_connect_is_not_reconnected() {
    manual_connect_is_not_reconnected(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_manual_connect_is_not_reconnected() {
    manual_connect_is_not_reconnected(true).await;
}
