//! Replica leadership with real processes over real databases, on SQLite and Postgres: at most one
//! active replica at every observation, failover after SIGKILL, fencing of a stopped leader,
//! graceful handover, and (Postgres) a killed lock connection and a database outage.
#![allow(clippy::unwrap_used)]

mod common;

use common::{wait_until, Backend, Cluster, Sampler};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use tandem_proto::admin::v1 as pb;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Backend::Sqlite).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Backend::Postgres).await; })*
        }
    };
}

both_backends!(
    three_replicas_fail_over_on_sigkill_and_never_two_are_active,
    a_stopped_leader_is_fenced_when_it_resumes,
    set_passive_hands_over_and_fails_without_a_standby,
);

async fn three_replicas_fail_over_on_sigkill_and_never_two_are_active(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 3).await else {
        return;
    };
    let sampler = Sampler::start(cluster.health_addrs(), cluster.store().await);
    let first = cluster.wait_active(None).await;
    sampler.wait_seen_active(first).await;

    cluster.process(first).signal(Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let second = cluster.wait_active(Some(first)).await;
    let failover = killed_at.elapsed();
    eprintln!(
        "{backend:?}: SIGKILL of replica {first} -> replica {second} active after {failover:?}"
    );

    sampler.wait_seen_active(second).await;

    // And once more, from the second leader to the last replica standing.
    cluster.process(second).signal(Signal::SIGKILL).unwrap();
    let third = cluster.wait_active(Some(second)).await;
    assert!(![first, second].contains(&third));
    sampler.wait_seen_active(third).await;

    let samples = sampler.finish().await;
    let mut active_epochs: Vec<u64> = samples
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.epoch)
        .collect();
    active_epochs.sort_unstable();
    active_epochs.dedup();
    assert_eq!(
        active_epochs,
        [1, 2, 3],
        "the sampler must see each of the three leaders"
    );
    let epochs = cluster
        .store()
        .await
        .leader(common::NODE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(epochs.epoch, 3, "exactly three activations");
    cluster.stop().await;
}

async fn a_stopped_leader_is_fenced_when_it_resumes(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 2).await else {
        return;
    };
    let sampler = Sampler::start(cluster.health_addrs(), cluster.store().await);
    let old = cluster.wait_active(None).await;
    let old_epoch = cluster.health(old).await.unwrap().1["epoch"]
        .as_u64()
        .unwrap();

    cluster.process(old).signal(Signal::SIGSTOP).unwrap();
    let new = cluster.wait_active(Some(old)).await;
    cluster.process(old).signal(Signal::SIGCONT).unwrap();

    // The resumed leader must notice it was deposed: its renewal (a write fenced by its epoch)
    // is refused and it turns passive, without ever answering 200 again (the sampler checks).
    wait_until("the resumed leader counts a fenced write", || async {
        cluster
            .metric(old, "tandem_replica_fenced_writes_total")
            .await
            >= 1.0
    })
    .await;
    let (status, body) = cluster.health(old).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "passive", "{body}");
    assert_eq!(cluster.actives().await, vec![new]);

    // Nothing was written under the old epoch after the new one began.
    let store = cluster.store().await;
    let events = store.events(common::NODE).await.unwrap();
    let new_epoch = events
        .iter()
        .find(|(r, _, _)| *r as usize == new)
        .unwrap()
        .1;
    assert!(new_epoch > old_epoch);
    let after_takeover = events.iter().skip_while(|(_, e, _)| *e < new_epoch);
    assert!(
        after_takeover.clone().all(|(_, e, _)| *e >= new_epoch),
        "{events:?}"
    );
    sampler.finish().await;
    cluster.stop().await;
}

async fn set_passive_hands_over_and_fails_without_a_standby(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 2).await else {
        return;
    };
    let sampler = Sampler::start(cluster.health_addrs(), cluster.store().await);
    let first = cluster.wait_active(None).await;
    let standby = 1 - first;
    // A handover needs a standby the active one knows of: wait for its first heartbeat (a
    // loaded machine may still be starting that process when the other is already active).
    let store = cluster.store().await;
    wait_until("the standby has registered", || async {
        store.members(common::NODE).await.is_ok_and(|members| {
            members
                .iter()
                .any(|m| m.replica as usize == standby && m.last_seen_ms_ago < 500)
        })
    })
    .await;

    // Graceful handover to the standby.
    let mut admin = tandem::commands::admin::client(cluster.process(first).ready.admin)
        .await
        .unwrap();
    let started = Instant::now();
    let answer = admin
        .set_passive(pb::SetPassiveRequest { timeout_ms: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.new_leader as usize, standby);
    assert_eq!(cluster.wait_active(Some(first)).await, standby);
    eprintln!(
        "{backend:?}: handover reported {} ms, observed {:?}",
        answer.handover_ms,
        started.elapsed()
    );

    // The standby is frozen: a handover back cannot complete, so it fails and the replica stays
    // active (it takes its lease back).
    cluster.process(first).signal(Signal::SIGSTOP).unwrap();
    let mut admin = tandem::commands::admin::client(cluster.process(standby).ready.admin)
        .await
        .unwrap();
    let err = admin
        .set_passive(pb::SetPassiveRequest { timeout_ms: 300 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("stays active"), "{}", err.message());
    assert_eq!(cluster.wait_active(None).await, standby);
    cluster.process(first).signal(Signal::SIGCONT).unwrap();

    // A passive replica refuses set-passive.
    let mut passive = tandem::commands::admin::client(cluster.process(first).ready.admin)
        .await
        .unwrap();
    let err = passive
        .set_passive(pb::SetPassiveRequest { timeout_ms: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    sampler.finish().await;

    // With the only other replica gone for good, set-passive fails at once.
    cluster.processes[first]
        .take()
        .unwrap()
        .stop(Duration::from_secs(10))
        .await;
    wait_until("the stopped replica's heartbeat is stale", || async {
        let members = cluster.store().await.members(common::NODE).await.unwrap();
        members
            .iter()
            .all(|m| m.replica as usize == standby || m.last_seen_ms_ago > 1_000)
    })
    .await;
    let err = admin
        .set_passive(pb::SetPassiveRequest { timeout_ms: 0 })
        .await
        .unwrap_err();
    assert!(err.message().contains("no standby"), "{}", err.message());
    assert_eq!(cluster.health(standby).await.unwrap().0, 200);
    cluster.stop().await;
}

/// Postgres: killing the leader's lock connection from the server side moves leadership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_terminating_the_lock_connection_moves_leadership() {
    let Some(mut cluster) = Cluster::start(Backend::Postgres, 2).await else {
        return;
    };
    let sampler = Sampler::start(cluster.health_addrs(), cluster.store().await);
    let first = cluster.wait_active(None).await;
    let pg = cluster.pg.as_ref().unwrap();
    let admin =
        tandem_nodes::store::Store::connect(&pg.cluster.server_url(), Duration::from_secs(5))
            .await
            .unwrap();
    let application = format!("tandem-leader {}/{first}", common::NODE);
    let terminated = admin
        .terminate_sessions(&application, &pg.name)
        .await
        .unwrap();
    assert_eq!(terminated, 1, "exactly the leader's lock connection");

    let second = cluster.wait_active(Some(first)).await;
    assert_ne!(first, second);
    let (status, body) = cluster.health(first).await.unwrap();
    assert_eq!(status, 503, "{body}");
    sampler.finish().await;
    cluster.stop().await;
}

/// Postgres: when the database goes away the active replica stops claiming health; when it
/// returns, one replica is active again, without restarting any process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_makes_the_leader_unhealthy_until_the_database_returns() {
    // A private cluster: stopping the shared one would disturb the other tests.
    let cluster = match tandem_nodes::testing::PgCluster::start() {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            assert!(
                std::env::var("TANDEM_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{e}"
            );
            eprintln!("SKIP: Postgres tests skipped: {e}");
            return;
        }
    };
    let db = cluster.database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Cluster::start_on(dir, db.url.clone(), Some(db), 2).await;
    nodes.wait_active(None).await;
    let pids: Vec<u32> = (0..2).map(|i| nodes.process(i).pid()).collect();

    cluster.stop_server();
    wait_until(
        "no replica claims health while the database is down",
        || async { nodes.actives().await.is_empty() },
    )
    .await;
    for i in 0..2 {
        wait_until("each replica says the database is unreachable", || async {
            let (status, body) = nodes.health(i).await.unwrap();
            status == 503 && body["detail"].as_str().unwrap_or("").contains("database")
        })
        .await;
    }

    cluster.start_server().unwrap();
    nodes.wait_active(None).await;
    let still: Vec<u32> = (0..2).map(|i| nodes.process(i).pid()).collect();
    assert_eq!(pids, still, "no process was restarted");
    assert!(nodes
        .processes
        .iter_mut()
        .all(|p| p.as_mut().unwrap().try_exit().is_none()));
    nodes.stop().await;
}
