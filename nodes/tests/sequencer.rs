//! The sequencer, in process, on SQLite and Postgres: three sequencers share one database; every
//! member sees the same total order with no gap or duplicate and gets a receipt for each send;
//! point-to-point traffic across sequencers reaches exactly its recipients; bad requests are
//! refused with a precise status and write nothing; a subscriber that stalls catches up without
//! a gap.
#![allow(clippy::unwrap_used)]

use sqlx::Connection;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tandem_nodes::identity::{KeyPair, MemberId, MemberKind};
use tandem_nodes::sequencer::client::SequencerClient;
use tandem_nodes::sequencer::now_us;
use tandem_nodes::testing::Synchronizer;
use tandem_proto::sequencer::v1 as pb;

/// None of these tests stops a writer, so `offline_after` is generous: on a loaded 2-core CI
/// machine a SQLite heartbeat can wait half a second behind the other writers, and a writer its
/// peers marked offline refuses sends until it rejoins (the kill tests cover that path).
async fn start(postgres: bool, sequencers: u32) -> Option<Synchronizer> {
    Synchronizer::start(
        postgres,
        sequencers,
        0,
        0,
        "topology_change_delay_ms = 50",
        "heartbeat_interval_ms = 50\noffline_after_ms = 5000",
    )
    .await
    .unwrap()
}

async fn admit(sync: &Synchronizer, name: &str) -> (MemberId, Arc<KeyPair>) {
    sync.admit(MemberKind::Participant, name).await.unwrap()
}

/// Admits `count` members, `member0`, `member1`, …
async fn admit_members(sync: &Synchronizer, count: usize) -> Vec<(MemberId, Arc<KeyPair>)> {
    let mut members = Vec::new();
    for i in 0..count {
        members.push(admit(sync, &format!("member{i}")).await);
    }
    members
}

/// Subscribes member `i` from the start through sequencer `i + offset`.
async fn subscribe_each(
    sync: &Synchronizer,
    members: &[(MemberId, Arc<KeyPair>)],
    offset: usize,
) -> Vec<tonic::Streaming<pb::SequencedEvent>> {
    let mut streams = Vec::new();
    for (i, (member, key)) in members.iter().enumerate() {
        let mut client =
            SequencerClient::connect(&sync.endpoint(i + offset), member.clone(), key.clone())
                .await
                .unwrap();
        streams.push(client.subscribe(0).await.unwrap());
    }
    streams
}

/// Member `i` sends `per_member` messages to `to(i)` through sequencer `i`, one after another,
/// with message ids `m{n}` and payloads `{i}:{n}`; returns the sending tasks.
async fn send_from_each(
    sync: &Synchronizer,
    members: &[(MemberId, Arc<KeyPair>)],
    per_member: usize,
    to: impl Fn(usize) -> Vec<String>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut senders = Vec::new();
    for (i, (member, key)) in members.iter().enumerate() {
        let mut client = SequencerClient::connect(&sync.endpoint(i), member.clone(), key.clone())
            .await
            .unwrap();
        let to = to(i);
        senders.push(tokio::spawn(async move {
            for n in 0..per_member {
                let request = client.request(
                    &format!("m{n}"),
                    &to,
                    format!("{i}:{n}").into_bytes(),
                    in_a_minute(),
                );
                client.send(request).await.unwrap();
            }
        }));
    }
    senders
}

/// The topology manager's broadcasts reach every member's stream too.
fn is_broadcast(e: &pb::SequencedEvent) -> bool {
    e.recipients.iter().any(|r| r == "*")
}

fn in_a_minute() -> i64 {
    now_us() + 60_000_000
}

/// Reads events from `stream` until `count` events other than broadcasts arrived (or panics
/// after a deadline); returns them all, broadcasts included.
async fn collect(
    stream: &mut tonic::Streaming<pb::SequencedEvent>,
    count: usize,
) -> Vec<pb::SequencedEvent> {
    let mut events = Vec::new();
    let mut counted = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counted < count {
        let next = tokio::time::timeout_at(deadline, stream.message()).await;
        match next {
            Ok(Ok(Some(e))) => {
                counted += usize::from(!is_broadcast(&e));
                events.push(e);
            }
            other => panic!(
                "stream ended or stalled after {} of {count} events: {other:?}",
                events.len()
            ),
        }
    }
    events
}

async fn total_order(postgres: bool) {
    const MEMBERS: usize = 6;
    const PER_MEMBER: usize = 40;
    let Some(sync) = start(postgres, 3).await else {
        return;
    };
    let members = admit_members(&sync, MEMBERS).await;
    let everyone: Vec<String> = members.iter().map(|(m, _)| m.to_string()).collect();

    // Everyone subscribes first, each through a different sequencer than it sends to.
    let mut streams = subscribe_each(&sync, &members, 1).await;
    let senders = send_from_each(&sync, &members, PER_MEMBER, |_| everyone.clone()).await;
    for s in senders {
        s.await.unwrap();
    }

    let mut orders = Vec::new();
    for (i, stream) in streams.iter_mut().enumerate() {
        let all = collect(stream, MEMBERS * PER_MEMBER).await;
        let mut previous = 0;
        for e in &all {
            assert_eq!(
                e.previous_timestamp_us, previous,
                "gap in member {i}'s stream"
            );
            assert!(e.timestamp_us > previous, "out of order");
            previous = e.timestamp_us;
        }
        let events: Vec<_> = all.into_iter().filter(|e| !is_broadcast(e)).collect();
        let mut seen = HashSet::new();
        let mut receipts = 0;
        for e in &events {
            assert!(
                seen.insert(e.payload.clone()),
                "duplicate {:?}",
                String::from_utf8_lossy(&e.payload)
            );
            if e.sender == everyone[i] {
                assert!(!e.message_id.is_empty(), "a receipt carries the message id");
                receipts += 1;
            } else {
                assert!(e.message_id.is_empty(), "others never see the message id");
            }
        }
        assert_eq!(
            receipts, PER_MEMBER,
            "member {i} got a receipt for each send"
        );
        orders.push(
            events
                .iter()
                .map(|e| (e.timestamp_us, e.payload.clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "every member sees the same order"
    );
    // Writes came from all three writers (timestamps are partitioned by writer index).
    let writers: HashSet<i64> = orders[0].iter().map(|(ts, _)| ts % 8).collect();
    assert_eq!(writers.len(), 3, "{writers:?}");

    // A late subscriber resumes from a timestamp with no gap and no duplicate.
    let (member, key) = &members[0];
    let middle = orders[0][100].0;
    let mut client = SequencerClient::connect(&sync.endpoint(2), member.clone(), key.clone())
        .await
        .unwrap();
    let mut resumed = client.subscribe(middle).await.unwrap();
    let rest = collect(&mut resumed, MEMBERS * PER_MEMBER - 101).await;
    assert_eq!(rest[0].previous_timestamp_us, middle);
    assert!(
        rest.iter().all(|e| !is_broadcast(e)),
        "no admission after the sends"
    );
    assert_eq!(
        rest.iter().map(|e| e.timestamp_us).collect::<Vec<_>>(),
        orders[0][101..].iter().map(|(t, _)| *t).collect::<Vec<_>>()
    );
    sync.stop().await.unwrap();
}

async fn bad_requests_are_refused(postgres: bool) {
    let Some(sync) = start(postgres, 1).await else {
        return;
    };
    let (alice, alice_key) = admit(&sync, "alice").await;
    let (bob, _) = admit(&sync, "bob").await;
    let mut client = SequencerClient::connect(&sync.endpoint(0), alice.clone(), alice_key.clone())
        .await
        .unwrap();
    let to_bob = vec![bob.to_string()];

    let mut cases: BTreeMap<&str, (pb::SubmissionRequest, tonic::Code, &str)> = BTreeMap::new();
    cases.insert(
        "nobody",
        (
            client.request("a", &[], b"x".to_vec(), in_a_minute()),
            tonic::Code::InvalidArgument,
            "names nobody",
        ),
    );
    let stranger = MemberId::new(
        MemberKind::Participant,
        "stranger",
        &KeyPair::generate().unwrap().public_key(),
    )
    .to_string();
    cases.insert(
        "unknown recipient",
        (
            client.request(
                "b",
                std::slice::from_ref(&stranger),
                b"x".to_vec(),
                in_a_minute(),
            ),
            tonic::Code::InvalidArgument,
            "is not a member",
        ),
    );
    cases.insert(
        "too large",
        (
            client.request("c", &to_bob, vec![0; (1 << 20) + 1], in_a_minute()),
            tonic::Code::ResourceExhausted,
            "maximum",
        ),
    );
    cases.insert(
        "too late",
        (
            client.request("d", &to_bob, b"x".to_vec(), now_us() - 1),
            tonic::Code::DeadlineExceeded,
            "already passed",
        ),
    );
    let mut forged = client.request("e", &to_bob, b"x".to_vec(), in_a_minute());
    forged.payload = b"tampered".to_vec();
    cases.insert(
        "bad signature",
        (forged, tonic::Code::Unauthenticated, "does not verify"),
    );
    let mut unsigned = client.request("f", &to_bob, b"x".to_vec(), in_a_minute());
    unsigned.signature.clear();
    cases.insert(
        "unsigned",
        (unsigned, tonic::Code::Unauthenticated, "64 bytes"),
    );
    let mut unknown_sender = client.request("g", &to_bob, b"x".to_vec(), in_a_minute());
    unknown_sender.sender = stranger;
    cases.insert(
        "unknown member",
        (
            unknown_sender,
            tonic::Code::PermissionDenied,
            "not a member",
        ),
    );
    let mut malformed = client.request("h", &to_bob, b"x".to_vec(), in_a_minute());
    malformed.sender = "alice".into();
    cases.insert(
        "malformed member",
        (malformed, tonic::Code::InvalidArgument, "not a member id"),
    );
    cases.insert(
        "broadcast by a participant",
        (
            client.request("i", &["*".to_string()], b"x".to_vec(), in_a_minute()),
            tonic::Code::PermissionDenied,
            "only the topology manager may broadcast",
        ),
    );
    for (what, (request, code, text)) in cases {
        let err = client.send(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(text), "{what}: {}", err.message());
    }
    // A replayed message id is refused and not sequenced twice.
    client
        .send(client.request("once", &to_bob, b"1".to_vec(), in_a_minute()))
        .await
        .unwrap();
    let err = client
        .send(client.request("once", &to_bob, b"2".to_vec(), in_a_minute()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");

    // Nothing but the one accepted message was written: alice sees exactly her one receipt.
    let mut stream = client.subscribe(0).await.unwrap();
    let events = collect(&mut stream, 1).await;
    let last = events.last().unwrap();
    assert_eq!(last.message_id, "once");
    assert!(
        events[..events.len() - 1].iter().all(is_broadcast),
        "only admissions before it"
    );
    client
        .send(client.request("marker", &[alice.to_string()], b"m".to_vec(), in_a_minute()))
        .await
        .unwrap();
    let next = collect(&mut stream, 1).await;
    assert_eq!(next[0].message_id, "marker", "no other event in between");
    sync.stop().await.unwrap();
}

/// A subscriber that stops reading falls behind the sequencer's fan-out channel; once it reads
/// again it gets every event, in order, with no gap and no duplicate (the gap is read from the
/// database).
async fn a_stalled_subscriber_catches_up(postgres: bool) {
    // Each send is its own batch. The first few hundred fill the HTTP/2 windows and the
    // stream's buffer, the next 1,024 the fan-out channel; the rest overrun it.
    const SENDS: usize = 2_000;
    const PAYLOAD: usize = 16 * 1024;
    let Some(sync) = start(postgres, 1).await else {
        return;
    };
    let (alice, alice_key) = admit(&sync, "alice").await;
    let (bob, bob_key) = admit(&sync, "bob").await;
    let mut reader = SequencerClient::connect(&sync.endpoint(0), alice.clone(), alice_key)
        .await
        .unwrap();
    let mut stream = reader.subscribe(0).await.unwrap();
    let mut sender = SequencerClient::connect(&sync.endpoint(0), bob, bob_key)
        .await
        .unwrap();
    let to_alice = vec![alice.to_string()];
    for n in 0..SENDS {
        let mut payload = n.to_string().into_bytes();
        payload.resize(PAYLOAD, b' ');
        sender
            .send(sender.request(&format!("s{n}"), &to_alice, payload, in_a_minute()))
            .await
            .unwrap();
    }
    let all = collect(&mut stream, SENDS).await;
    let mut previous = 0;
    for e in &all {
        assert_eq!(e.previous_timestamp_us, previous, "gap");
        previous = e.timestamp_us;
    }
    let numbers: Vec<usize> = all
        .iter()
        .filter(|e| !is_broadcast(e))
        .map(|e| String::from_utf8_lossy(&e.payload).trim().parse().unwrap())
        .collect();
    assert_eq!(numbers, (0..SENDS).collect::<Vec<_>>());
    sync.stop().await.unwrap();
}

/// Each member sends to itself and to the next member, which subscribes through another
/// sequencer. A sequencer serves its own writer's events without reading them back and reads
/// only what its subscribers want of the other writers' events: every member still gets exactly
/// the events addressed to it, in order, with no gap. So does a second subscription of member 0
/// that joins midway through a sequencer where member 0 had none, and every sequencer's listener
/// losing its connection, five times, while the members send.
async fn point_to_point_across_sequencers(postgres: bool) {
    const MEMBERS: usize = 6;
    const PER_MEMBER: usize = 150;
    let Some(sync) = start(postgres, 3).await else {
        return;
    };
    let members = admit_members(&sync, MEMBERS).await;
    let names: Vec<String> = members.iter().map(|(m, _)| m.to_string()).collect();
    let mut streams = subscribe_each(&sync, &members, 0).await;
    let senders = send_from_each(&sync, &members, PER_MEMBER, |i| {
        vec![names[i].clone(), names[(i + 1) % MEMBERS].clone()]
    })
    .await;
    // Midway, once member 0 has half its events, it subscribes again.
    let mut received: Vec<Vec<pb::SequencedEvent>> = vec![Vec::new(); MEMBERS];
    received[0] = collect(&mut streams[0], PER_MEMBER).await;
    let (member, key) = &members[0];
    let mut late = SequencerClient::connect(&sync.endpoint(1), member.clone(), key.clone())
        .await
        .unwrap()
        .subscribe(0)
        .await
        .unwrap();
    // Notifications sent while a sequencer's listener reconnects are lost: the sequencer must
    // read what it missed rather than skip it.
    if let Some(pg) = sync.postgres() {
        let mut admin = sqlx::PgConnection::connect(&pg.url).await.unwrap();
        // A session just ended may still be listed for a moment: those are left out.
        let mut ended = HashSet::new();
        for _ in 0..5 {
            // Once every sequencer listens again, end all three listeners' sessions.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let listeners = loop {
                let pids: Vec<i32> = sqlx::query_scalar(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                )
                .bind(&pg.name)
                .fetch_all(&mut admin)
                .await
                .unwrap();
                let listeners: Vec<i32> = pids.into_iter().filter(|p| !ended.contains(p)).collect();
                if listeners.len() == 3 {
                    break listeners;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "a listener never came back"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            for pid in listeners {
                let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
                assert!(terminated, "listener session {pid} could not be ended");
                ended.insert(pid);
            }
        }
    }
    for s in senders {
        s.await.unwrap();
    }

    let mut first = Vec::new();
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut all = std::mem::take(&mut received[i]);
        let counted = all.iter().filter(|e| !is_broadcast(e)).count();
        all.extend(collect(stream, 2 * PER_MEMBER - counted).await);
        let mut previous = 0;
        for e in &all {
            assert_eq!(
                e.previous_timestamp_us, previous,
                "gap in member {i}'s stream"
            );
            previous = e.timestamp_us;
        }
        let payloads: Vec<String> = all
            .iter()
            .filter(|e| !is_broadcast(e))
            .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
            .collect();
        let expected: HashSet<String> = (0..PER_MEMBER)
            .flat_map(|n| {
                [
                    format!("{i}:{n}"),
                    format!("{}:{n}", (i + MEMBERS - 1) % MEMBERS),
                ]
            })
            .collect();
        assert_eq!(payloads.len(), expected.len(), "member {i}: {payloads:?}");
        assert_eq!(payloads.iter().cloned().collect::<HashSet<_>>(), expected);
        if i == 0 {
            first = all;
        }
    }
    let again = collect(&mut late, 2 * PER_MEMBER).await;
    let order = |events: &[pb::SequencedEvent]| -> Vec<(i64, Vec<u8>)> {
        events
            .iter()
            .map(|e| (e.timestamp_us, e.payload.clone()))
            .collect()
    };
    assert_eq!(
        order(&again),
        order(&first),
        "the late subscription saw another stream"
    );
    sync.stop().await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite_backend { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await } )* }
        mod postgres_backend { $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await } )* }
    };
}

both_backends!(
    total_order,
    point_to_point_across_sequencers,
    bad_requests_are_refused,
    a_stalled_subscriber_catches_up
);
