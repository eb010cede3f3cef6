//! SIGKILL of one of three sequencer processes under load, on SQLite and Postgres: members on the
//! other sequencers keep receiving, the killed writer is marked offline within `offline_after`,
//! senders retry elsewhere with the same message id (sequenced once or refused as a duplicate),
//! the restarted sequencer rejoins, and every member still sees one order with no gap or
//! duplicate.
#![allow(clippy::unwrap_used)]

use nix::sys::signal::Signal;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem::process::{NodeProcess, NodeSpec};
use tandem_nodes::config::TopologyConfig;
use tandem_nodes::identity::{KeyPair, MemberId, MemberKind};
use tandem_nodes::member::admit_within;
use tandem_nodes::sequencer::client::SequencerClient;
use tandem_nodes::sequencer::now_us;
use tandem_nodes::testing::PgDatabase;
use tandem_proto::sequencer::v1 as pb;
use tandem_proto::sequencer::v1::sequencer_admin_service_client::SequencerAdminServiceClient;

const OFFLINE_AFTER_MS: u64 = 600;
const MEMBERS: usize = 4;
const PER_MEMBER: usize = 60;

/// Sends through `endpoints`, moving to the next one when a sequencer is unreachable; a retry
/// with the same message id that finds it already sequenced counts as sent. Counts into `sent`.
async fn send_all(
    member: MemberId,
    key: Arc<KeyPair>,
    endpoints: Arc<std::sync::Mutex<Vec<String>>>,
    first: usize,
    everyone: Vec<String>,
    sent: Arc<AtomicUsize>,
) -> usize {
    let mut which = first;
    let mut duplicates = 0;
    for n in 0..PER_MEMBER {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "message {n} of {member} could not be sent"
            );
            let endpoint = endpoints.lock().unwrap()[which % 3].clone();
            let attempt = async {
                let mut client = SequencerClient::connect(&endpoint, member.clone(), key.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                let request = client.request(
                    &format!("m{n}"),
                    &everyone,
                    format!("{member}:{n}").into_bytes(),
                    now_us() + 30_000_000,
                );
                client.send(request).await.map_err(|s| {
                    if s.code() == tonic::Code::AlreadyExists {
                        "duplicate".to_string()
                    } else {
                        s.to_string()
                    }
                })
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(_)) => {
                    sent.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(Err(e)) if e == "duplicate" => {
                    duplicates += 1;
                    sent.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                _ => which += 1,
            }
        }
    }
    duplicates
}

async fn sigkill_one_sequencer_under_load(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (storage, _pg) = if postgres {
        let Some(db) = PgDatabase::fresh() else {
            return;
        };
        (db.url.clone(), Some(db))
    } else {
        (format!("sqlite://{}/seq.db", dir.path().display()), None)
    };
    let config = dir.path().join("topology.toml");
    let sequencing = format!("heartbeat_interval_ms = 50\noffline_after_ms = {OFFLINE_AFTER_MS}");
    let text = tandem_nodes::testing::synchronizer_topology(
        &storage,
        3,
        0,
        "topology_change_delay_ms = 50",
        &sequencing,
    );
    std::fs::write(&config, &text).unwrap();
    let spec = |replica: u32| NodeSpec {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_tandem")),
        config: config.clone(),
        node: "sequencer".into(),
        replica,
        log: dir.path().join(format!("sequencer-{replica}.log")),
    };
    let mut bound = TopologyConfig::parse(&text).unwrap();
    let mut processes = Vec::new();
    for i in 0..3 {
        processes.push(
            NodeProcess::spawn(&spec(i), Duration::from_secs(30))
                .await
                .unwrap(),
        );
    }
    for (i, p) in (0..).zip(&processes) {
        bound.record_bound("sequencer", i, p.ready.api, p.ready.admin, p.ready.health);
    }
    // The topology manager bootstraps the sequencers and admits the members.
    let mut tm = NodeProcess::spawn_recorded(
        &PathBuf::from(env!("CARGO_BIN_EXE_tandem")),
        dir.path(),
        &mut bound,
        "topology-manager",
        0,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let endpoints: Vec<String> = processes
        .iter()
        .map(|p| format!("http://{}", p.ready.api.unwrap()))
        .collect();
    let endpoints = Arc::new(std::sync::Mutex::new(endpoints));
    let mut admin =
        SequencerAdminServiceClient::connect(format!("http://{}", processes[1].ready.admin))
            .await
            .unwrap();

    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let key = Arc::new(KeyPair::generate().unwrap());
        let member = MemberId::new(
            MemberKind::Participant,
            &format!("member{i}"),
            &key.public_key(),
        );
        admit_within(
            &bound.topology_manager_endpoints(),
            &member,
            &key,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        members.push((member, key));
    }
    let everyone: Vec<String> = members.iter().map(|(m, _)| m.to_string()).collect();

    // Subscribers on sequencers 1 and 2, which stay up.
    let mut readers = Vec::new();
    for (i, (member, key)) in members.iter().enumerate() {
        let endpoint = endpoints.lock().unwrap()[1 + i % 2].clone();
        let mut client = SequencerClient::connect(&endpoint, member.clone(), key.clone())
            .await
            .unwrap();
        let mut stream = client.subscribe(0).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut events = Vec::new();
            let mut messages = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            while messages < MEMBERS * PER_MEMBER {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Ok(Ok(Some(e))) => {
                        // The topology manager's broadcasts reach every member too.
                        messages += usize::from(!e.recipients.iter().any(|r| r == "*"));
                        events.push(e);
                    }
                    other => panic!("reader stalled after {} events: {other:?}", events.len()),
                }
            }
            events
        }));
    }
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for (i, (member, key)) in members.iter().enumerate() {
        senders.push(tokio::spawn(send_all(
            member.clone(),
            key.clone(),
            endpoints.clone(),
            i,
            everyone.clone(),
            sent.clone(),
        )));
    }

    // Kill sequencer 0 once traffic flows, and watch its peers mark its writer offline.
    let until = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::SeqCst) < MEMBERS * PER_MEMBER / 4 {
        assert!(Instant::now() < until, "traffic did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let writers = admin
        .writers(pb::WritersRequest {})
        .await
        .unwrap()
        .into_inner();
    let killed_index = {
        let mut own =
            SequencerAdminServiceClient::connect(format!("http://{}", processes[0].ready.admin))
                .await
                .unwrap();
        own.writers(pb::WritersRequest {})
            .await
            .unwrap()
            .into_inner()
            .own_index
    };
    assert!(
        writers.writers.iter().filter(|w| w.online).count() == 3,
        "{writers:?}"
    );
    processes[0].signal(Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    processes[0].wait().await.unwrap();
    loop {
        let writers = admin
            .writers(pb::WritersRequest {})
            .await
            .unwrap()
            .into_inner();
        let killed = writers
            .writers
            .iter()
            .find(|w| w.index as i32 == killed_index)
            .unwrap();
        if !killed.online {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_millis(OFFLINE_AFTER_MS * 3),
            "not marked offline in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let offline_ms = killed_at.elapsed().as_millis();
    eprintln!(
        "postgres={postgres}: killed writer {killed_index} marked offline after {offline_ms} ms"
    );
    assert!(
        offline_ms <= u128::from(OFFLINE_AFTER_MS) + 400,
        "marked offline after {offline_ms} ms"
    );

    // Restart it: it rejoins and takes traffic again.
    processes[0] = NodeProcess::spawn(&spec(0), Duration::from_secs(30))
        .await
        .unwrap();
    endpoints.lock().unwrap()[0] = format!("http://{}", processes[0].ready.api.unwrap());

    let mut duplicates = 0;
    for s in senders {
        duplicates += s.await.unwrap();
    }
    let mut orders = Vec::new();
    for r in readers {
        let events = r.await.unwrap();
        let mut previous = 0;
        let mut payloads = HashSet::new();
        for e in &events {
            assert_eq!(e.previous_timestamp_us, previous, "gap");
            previous = e.timestamp_us;
            assert!(payloads.insert(e.payload.clone()), "duplicate delivery");
        }
        orders.push(
            events
                .iter()
                .map(|e| (e.timestamp_us, e.payload.clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "members disagree on the order"
    );
    eprintln!(
        "postgres={postgres}: {} events each, {duplicates} retries found already sequenced",
        orders[0].len()
    );
    for p in &mut processes {
        p.stop(Duration::from_secs(10)).await;
    }
    tm.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_one_sequencer_under_load() {
    sigkill_one_sequencer_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkill_one_sequencer_under_load() {
    sigkill_one_sequencer_under_load(true).await;
}
