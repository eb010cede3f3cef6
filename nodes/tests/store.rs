//! Store behaviour, written once and run against SQLite and Postgres (style.md rule 6).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use tandem_nodes::store::{Acquire, Fence, Leadership, Member, Store, StoreError};
use tandem_nodes::testing::PgDatabase;

/// A database for one test; holds what keeps it alive.
struct TestDb {
    store: Store,
    _sqlite_dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/node.db", dir.path().display());
    let store = Store::connect(&url, Duration::from_secs(5)).await.unwrap();
    TestDb {
        store,
        _sqlite_dir: Some(dir),
        _pg: None,
    }
}

async fn postgres() -> Option<TestDb> {
    let db = PgDatabase::fresh()?;
    let store = Store::connect(&db.url, Duration::from_secs(5))
        .await
        .unwrap();
    Some(TestDb {
        store,
        _sqlite_dir: None,
        _pg: Some(db),
    })
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite().await).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test] async fn $name() {
                if let Some(db) = super::postgres().await { super::$name(db).await; }
            })*
        }
    };
}

both_backends!(
    first_acquire_wins_and_others_see_the_leader,
    release_hands_leadership_to_the_next_replica,
    lease_expiry_lets_a_standby_take_over_and_fences_the_old_leader,
    fenced_writes_only_succeed_for_the_current_epoch,
    members_heartbeats_are_listed,
    migrations_are_idempotent,
    ledger_writes_of_one_transaction_land_as_written_in_order,
    mediator_writes_of_one_transaction_land_as_written_in_order,
    a_busy_leader_renews_its_lease_in_time,
    in_flight_submissions_are_persisted_once_and_only_by_the_leader,
);

const LEASE: u64 = 300;

async fn first_acquire_wins_and_others_see_the_leader(db: TestDb) {
    let mut a = Leadership::new(db.store.clone(), "node", 0);
    let mut b = Leadership::new(db.store.clone(), "node", 1);
    assert_eq!(
        a.try_acquire(LEASE).await.unwrap(),
        Acquire::Acquired { epoch: 1 }
    );
    match b.try_acquire(LEASE).await.unwrap() {
        Acquire::Held {
            leader: Some(leader),
        } => {
            assert_eq!((leader.replica, leader.epoch), (0, 1));
            assert!(leader.lease_remaining_ms > 0);
        }
        other => panic!("expected the lease to be held, got {other:?}"),
    }
    a.renew(1, LEASE).await.unwrap();
    // Another node's leadership is independent.
    let mut other = Leadership::new(db.store.clone(), "other-node", 1);
    assert_eq!(
        other.try_acquire(LEASE).await.unwrap(),
        Acquire::Acquired { epoch: 1 }
    );
}

async fn release_hands_leadership_to_the_next_replica(db: TestDb) {
    let mut a = Leadership::new(db.store.clone(), "node", 0);
    let mut b = Leadership::new(db.store.clone(), "node", 1);
    assert_eq!(
        a.try_acquire(LEASE).await.unwrap(),
        Acquire::Acquired { epoch: 1 }
    );
    a.release(1).await.unwrap();
    assert_eq!(
        b.try_acquire(LEASE).await.unwrap(),
        Acquire::Acquired { epoch: 2 }
    );
    let err = a.renew(1, LEASE).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { epoch: 1, .. }), "{err}");
    let leader = db.store.leader("node").await.unwrap().unwrap();
    assert_eq!((leader.replica, leader.epoch), (1, 2));
}

async fn lease_expiry_lets_a_standby_take_over_and_fences_the_old_leader(db: TestDb) {
    let mut a = Leadership::new(db.store.clone(), "node", 0);
    let mut b = Leadership::new(db.store.clone(), "node", 1);
    assert_eq!(
        a.try_acquire(LEASE).await.unwrap(),
        Acquire::Acquired { epoch: 1 }
    );
    // `a` stops renewing, as a stopped process would; `b` keeps trying until it takes over.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let epoch = loop {
        match b.try_acquire(LEASE).await.unwrap() {
            Acquire::Acquired { epoch } => break epoch,
            Acquire::Held { .. } => assert!(Instant::now() < deadline, "no takeover"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(epoch, 2);
    assert!(started.elapsed() >= Duration::from_millis(LEASE - 50));
    assert!(
        a.renew(1, LEASE).await.is_err(),
        "the old leader must not renew"
    );
    let fence = Fence {
        node: "node".into(),
        replica: 0,
        epoch: 1,
    };
    let err = db
        .store
        .record_event(&fence, "late write")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
}

async fn fenced_writes_only_succeed_for_the_current_epoch(db: TestDb) {
    let mut a = Leadership::new(db.store.clone(), "node", 0);
    let mut b = Leadership::new(db.store.clone(), "node", 1);
    let fence_a = Fence {
        node: "node".into(),
        replica: 0,
        epoch: 1,
    };
    let fence_b = Fence {
        node: "node".into(),
        replica: 1,
        epoch: 2,
    };
    // Nobody leads yet: no write is allowed.
    assert!(db.store.record_event(&fence_a, "too early").await.is_err());
    a.try_acquire(LEASE).await.unwrap();
    db.store.record_event(&fence_a, "a writes").await.unwrap();
    assert!(db
        .store
        .record_event(&fence_b, "b is not leader")
        .await
        .is_err());
    a.release(1).await.unwrap();
    b.try_acquire(LEASE).await.unwrap();
    db.store.record_event(&fence_b, "b writes").await.unwrap();
    assert!(db
        .store
        .record_event(&fence_a, "a was deposed")
        .await
        .is_err());
    let events = db.store.events("node").await.unwrap();
    assert_eq!(
        events,
        vec![
            (0, 1, "a writes".to_string()),
            (1, 2, "b writes".to_string())
        ]
    );
}

/// A leader whose node writes flat out still renews well within its lease: on SQLite the
/// renewal queues for the file with the node's writes instead of losing every race for the lock
/// to them.
async fn a_busy_leader_renews_its_lease_in_time(db: TestDb) {
    let (mut leader, fence) = lead(&db.store, "node").await;
    let until = Instant::now() + Duration::from_millis(1_500);
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (store, fence) = (db.store.clone(), fence.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while Instant::now() < until {
                    // A transaction that holds the write lock a moment, as an engine's does.
                    let tx = store.begin_fenced(&fence).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    tx.commit().await.unwrap();
                    store
                        .record_event(&fence, &format!("w{w}-{n}"))
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let started = Instant::now();
        leader.renew(1, LEASE).await.unwrap();
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 100, "the writers wrote only {written} events");
    assert!(
        slowest < Duration::from_millis(LEASE / 2),
        "a renewal took {slowest:?} while {written} events were written"
    );
}

/// A submission's in-flight row (one statement on Postgres) lands once, committed, and only
/// for the writer that holds the current epoch.
async fn in_flight_submissions_are_persisted_once_and_only_by_the_leader(db: TestDb) {
    let s = &db.store;
    let stale = Fence {
        node: "p".into(),
        replica: 1,
        epoch: 1,
    };
    let err = s
        .persist_in_flight(&stale, "early", "{}")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let (mut leader, fence) = lead(s, "p").await;
    assert!(s
        .persist_in_flight(&fence, "c1", "{\"n\":1}")
        .await
        .unwrap());
    assert!(!s
        .persist_in_flight(&fence, "c1", "{\"n\":2}")
        .await
        .unwrap());
    // Replica 1 takes over once replica 0 lets go; replica 0's fence no longer holds.
    leader.release(1).await.unwrap();
    let mut next = Leadership::new(s.clone(), "p", 1);
    assert_eq!(
        next.try_acquire(LEASE).await.unwrap(),
        Acquire::Acquired { epoch: 2 }
    );
    let err = s.persist_in_flight(&fence, "c2", "{}").await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let rows = s.participant_in_flight("p").await.unwrap();
    assert_eq!(rows, [("c1".to_string(), "{\"n\":1}".to_string(), None)]);
}

/// Makes replica 0 the leader of `node`, epoch 1; returns its leadership and fence.
async fn lead(store: &Store, node: &str) -> (Leadership, Fence) {
    let mut leader = Leadership::new(store.clone(), node, 0);
    leader.try_acquire(LEASE).await.unwrap();
    let fence = Fence {
        node: node.into(),
        replica: 0,
        epoch: 1,
    };
    (leader, fence)
}

/// The participant's ledger writes, which Postgres gathers until the next other statement or
/// the commit, end as if each had run at once, in order; a dropped transaction leaves none.
async fn ledger_writes_of_one_transaction_land_as_written_in_order(db: TestDb) {
    let (_leader, fence) = lead(&db.store, "p").await;
    let s = &db.store;
    let mut tx = s.begin_fenced(&fence).await.unwrap();
    for (id, offset) in [("c1", 1), ("c2", 2)] {
        tx.insert_contract("p", id, "T", "{}", "[]", offset, 0)
            .await
            .unwrap();
    }
    // The first archive counts.
    tx.archive_contract("p", "c1", 2).await.unwrap();
    tx.archive_contract("p", "c1", 3).await.unwrap();
    // Archiving a contract not yet inserted changes nothing; the insert after it stands.
    tx.archive_contract("p", "c0", 2).await.unwrap();
    tx.insert_contract("p", "c0", "T", "{}", "[]", 2, 0)
        .await
        .unwrap();
    tx.insert_update("p", 1, "u1", 10, "{}").await.unwrap();
    tx.insert_update("p", 2, "u2", 20, "{}").await.unwrap();
    tx.insert_completion("p", 1, "alice", "{}").await.unwrap();
    tx.put_pending("p", 10, b"a").await.unwrap();
    tx.put_pending("p", 10, b"b").await.unwrap();
    tx.put_pending("p", 11, b"x").await.unwrap();
    tx.delete_pending("p", 11).await.unwrap();
    tx.put_dedup("p", "change", "u1", 1, 100).await.unwrap();
    tx.put_dedup("p", "change", "u2", 2, 200).await.unwrap();
    // A statement that is not gathered sees the gathered ones: the delete went first.
    assert!(tx.insert_in_flight("p", "f", "{}").await.unwrap());
    tx.delete_in_flight("p", "f").await.unwrap();
    assert!(tx.insert_in_flight("p", "f", "{}").await.unwrap());
    assert!(!tx.insert_in_flight("p", "f", "{}").await.unwrap());
    tx.commit().await.unwrap();

    let ids = |rows: Vec<tandem_nodes::store::participant::ContractRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.0).collect()
    };
    assert_eq!(
        ids(s.participant_contracts("p", None).await.unwrap()),
        ["c0", "c2"]
    );
    assert_eq!(
        ids(s.participant_contracts("p", Some(1)).await.unwrap()),
        ["c1"]
    );
    assert_eq!(
        ids(s.participant_contracts("p", Some(2)).await.unwrap()),
        ["c0", "c2"],
        "c1 was archived at offset 2, by the first archive"
    );
    let updates = s.participant_updates("p", 0, 10, 10).await.unwrap();
    assert_eq!(
        updates.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(),
        ["u1", "u2"]
    );
    assert_eq!(
        s.participant_completions("p", 0, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.participant_pending("p").await.unwrap(),
        vec![(10, b"b".to_vec())]
    );
    assert_eq!(
        s.participant_dedup("p").await.unwrap(),
        vec![("change".to_string(), "u2".to_string(), 2, 200)]
    );
    assert_eq!(s.participant_in_flight("p").await.unwrap().len(), 1);

    // Dropped without a commit: nothing of it is written.
    let mut tx = s.begin_fenced(&fence).await.unwrap();
    tx.insert_contract("p", "c3", "T", "{}", "[]", 3, 0)
        .await
        .unwrap();
    tx.insert_update("p", 3, "u3", 30, "{}").await.unwrap();
    drop(tx);
    assert_eq!(
        ids(s.participant_contracts("p", None).await.unwrap()),
        ["c0", "c2"]
    );
    assert_eq!(
        s.participant_updates("p", 0, 10, 10).await.unwrap().len(),
        2
    );
}

/// The mediator's request writes, gathered on Postgres like the ledger's, end as written in order.
async fn mediator_writes_of_one_transaction_land_as_written_in_order(db: TestDb) {
    use tandem_nodes::store::mediator::StoredRequest;
    let (_leader, fence) = lead(&db.store, "m").await;
    let request = |ts: i64, state: &str| StoredRequest {
        request_ts: ts,
        submitter: "p1".into(),
        submission_id: format!("s{ts}"),
        deadline_us: 100,
        state: state.into(),
        aggregation: "{}".into(),
        verdict: (state != "pending").then(|| vec![1, 2]),
        verdict_sent: false,
    };
    let s = &db.store;
    let mut tx = s.begin_fenced(&fence).await.unwrap();
    tx.save_mediator_request("m", &request(1, "pending"))
        .await
        .unwrap();
    tx.save_mediator_request("m", &request(2, "pending"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = s.begin_fenced(&fence).await.unwrap();
    // 1: decided, then marked sent. 2: marked (a no-op: no verdict yet counts), then saved
    // decided, which replaces the mark. 3: saved and marked in one go. 4: marked, never saved.
    tx.save_mediator_request("m", &request(1, "approved"))
        .await
        .unwrap();
    tx.mark_verdict_sent("m", 1).await.unwrap();
    tx.mark_verdict_sent("m", 2).await.unwrap();
    tx.save_mediator_request("m", &request(2, "rejected"))
        .await
        .unwrap();
    tx.save_mediator_request("m", &request(3, "approved"))
        .await
        .unwrap();
    tx.mark_verdict_sent("m", 3).await.unwrap();
    tx.mark_verdict_sent("m", 4).await.unwrap();
    // 5: saved twice; the upsert keeps the submitter of the first.
    tx.save_mediator_request("m", &request(5, "pending"))
        .await
        .unwrap();
    let again = StoredRequest {
        submitter: "p2".into(),
        ..request(5, "approved")
    };
    tx.save_mediator_request("m", &again).await.unwrap();
    tx.commit().await.unwrap();

    let mut rows = s.mediator_requests("m", 10).await.unwrap();
    rows.sort_by_key(|r| r.request_ts);
    let got: Vec<(i64, &str, bool, &str)> = rows
        .iter()
        .map(|r| {
            let (ts, state) = (r.request_ts, r.state.as_str());
            (ts, state, r.verdict_sent, r.submitter.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "approved", true, "p1"),
            (2, "rejected", false, "p1"),
            (3, "approved", true, "p1"),
            (5, "approved", false, "p1")
        ]
    );
    assert_eq!(rows[0].verdict, Some(vec![1, 2]));
    let open: Vec<i64> = s
        .mediator_open_requests("m")
        .await
        .unwrap()
        .iter()
        .map(|r| r.request_ts)
        .collect();
    assert_eq!(open, [2, 5]);
}

async fn members_heartbeats_are_listed(db: TestDb) {
    for replica in [1u32, 0] {
        let member = Member {
            replica,
            role: "passive".into(),
            pid: 100 + replica,
            health_address: format!("127.0.0.1:{}", 9000 + replica),
            admin_address: "127.0.0.1:1".into(),
            last_seen_ms_ago: 0,
        };
        db.store.heartbeat_member("node", &member).await.unwrap();
    }
    let mut active = db.store.members("node").await.unwrap()[0].clone();
    active.role = "active".into();
    db.store.heartbeat_member("node", &active).await.unwrap();
    let members = db.store.members("node").await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.replica).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(members[0].role, "active");
    assert_eq!(members[1].pid, 101);
    assert!(members.iter().all(|m| m.last_seen_ms_ago < 5_000));
}

async fn migrations_are_idempotent(db: TestDb) {
    let again = Store::connect(&reconnect_url(&db), Duration::from_secs(5))
        .await
        .unwrap();
    again.ping().await.unwrap();
}

fn reconnect_url(db: &TestDb) -> String {
    match (&db._pg, &db._sqlite_dir) {
        (Some(pg), _) => pg.url.clone(),
        (None, Some(dir)) => format!("sqlite://{}/node.db", dir.path().display()),
        (None, None) => unreachable!(),
    }
}

/// Postgres: an open fenced write does not hold up the leader's lease renewal (which only
/// moves the lease), but a takeover (which raises the epoch) waits until the write commits.
#[tokio::test]
async fn postgres_fenced_writes_hold_off_takeovers_but_not_renewals() {
    let Some(db) = postgres().await else { return };
    let mut a = Leadership::new(db.store.clone(), "node", 0);
    let mut b = Leadership::new(db.store.clone(), "node", 1);
    a.try_acquire(LEASE).await.unwrap();
    let fence = Fence {
        node: "node".into(),
        replica: 0,
        epoch: 1,
    };
    let write = db.store.begin_fenced(&fence).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), a.renew(1, LEASE))
        .await
        .expect("a renewal waited for an open fenced write")
        .unwrap();
    a.release(1).await.unwrap();
    let takeover = tokio::spawn(async move { b.try_acquire(LEASE).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !takeover.is_finished(),
        "a takeover did not wait for the open fenced write"
    );
    write.commit().await.unwrap();
    let acquired = tokio::time::timeout(Duration::from_secs(5), takeover)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(acquired, Acquire::Acquired { epoch: 2 });
}

#[tokio::test]
async fn an_unreachable_database_is_named_in_the_error() {
    let err = Store::connect(
        "postgres://tandem:secret@127.0.0.1:1/x",
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "the password leaked: {text}");
    let err = Store::connect("sqlite:///proc/no/such/dir/x.db", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/proc/no/such/dir/x.db"), "{err}");
}

/// Postgres: when the server ends the sessions, a dedicated connection fails the one statement
/// it was given and opens a new connection for the next, and a pooled connection idle for a
/// second is checked before it is handed out, so the pool replaces it instead of failing.
#[tokio::test]
async fn postgres_connections_recover_after_their_sessions_are_ended() {
    use sqlx::Connection;
    let Some(db) = postgres().await else { return };
    let pg = db._pg.as_ref().unwrap();
    let mut dedicated = db.store.dedicated();
    dedicated.events_between(0, i64::MAX, 10).await.unwrap();
    db.store.ping().await.unwrap();

    let mut admin = sqlx::PgConnection::connect(&format!("{}?application_name=test-admin", pg.url))
        .await
        .unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'tandem' AND datname = $1",
    )
    .bind(&pg.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(ended.len() >= 2, "the pool's and the dedicated sessions");

    assert!(
        dedicated.events_between(0, i64::MAX, 10).await.is_err(),
        "the ended session answered"
    );
    dedicated.events_between(0, i64::MAX, 10).await.unwrap();
    // The pool's idle connections must pass its one-second idle rule to be checked: this waits
    // out a duration, not another task.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    db.store.ping().await.unwrap();
}
