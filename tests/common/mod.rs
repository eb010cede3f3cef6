//! Fixtures for whole-topology tests: real `tandem node` processes over a real database, a health
//! sampler that checks "never two actives", and condition waits with deadlines.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem::process::{NodeProcess, NodeSpec};
use tandem_nodes::health::probe;
use tandem_nodes::store::Store;
use tandem_nodes::testing::PgDatabase;
use tokio_util::sync::CancellationToken;

pub mod topology;

pub const NODE: &str = "bench";
pub const DEADLINE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One replicated node (`bench`) with `n` replicas, each a real process.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub storage: String,
    pub specs: Vec<NodeSpec>,
    pub processes: Vec<Option<NodeProcess>>,
    pub pg: Option<PgDatabase>,
}

impl Cluster {
    /// `None` when the backend is Postgres and Postgres tests are skipped.
    pub async fn start(backend: Backend, replicas: u32) -> Option<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let (storage, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/node.db", dir.path().display()), None),
            Backend::Postgres => {
                let db = PgDatabase::fresh()?;
                (db.url.clone(), Some(db))
            }
        };
        Some(Self::start_on(dir, storage, pg, replicas).await)
    }

    pub async fn start_on(
        dir: tempfile::TempDir,
        storage: String,
        pg: Option<PgDatabase>,
        replicas: u32,
    ) -> Cluster {
        let config = dir.path().join("topology.toml");
        std::fs::write(
            &config,
            tandem::commands::bench::bench_topology(&storage, replicas),
        )
        .unwrap();
        let specs: Vec<NodeSpec> = (0..replicas)
            .map(|replica| NodeSpec {
                bin: PathBuf::from(env!("CARGO_BIN_EXE_tandem")),
                config: config.clone(),
                node: NODE.into(),
                replica,
                log: dir.path().join(format!("replica-{replica}.log")),
            })
            .collect();
        let mut processes = Vec::new();
        for spec in &specs {
            processes.push(Some(
                NodeProcess::spawn(spec, Duration::from_secs(30))
                    .await
                    .unwrap(),
            ));
        }
        Cluster {
            dir,
            storage,
            specs,
            processes,
            pg,
        }
    }

    pub fn process(&self, i: usize) -> &NodeProcess {
        self.processes[i].as_ref().unwrap()
    }

    pub fn health_addrs(&self) -> Vec<SocketAddr> {
        self.processes
            .iter()
            .map(|p| p.as_ref().unwrap().ready.health)
            .collect()
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.storage, Duration::from_secs(5))
            .await
            .unwrap()
    }

    pub async fn health(&self, i: usize) -> Option<(u16, serde_json::Value)> {
        let p = self.processes[i].as_ref()?;
        let (status, body) = probe(p.ready.health, "/health", Duration::from_millis(500))
            .await
            .ok()?;
        Some((status, serde_json::from_str(&body).unwrap_or_default()))
    }

    /// The replicas whose /health answers 200 right now.
    pub async fn actives(&self) -> Vec<usize> {
        let mut actives = Vec::new();
        for i in 0..self.processes.len() {
            if matches!(self.health(i).await, Some((200, _))) {
                actives.push(i);
            }
        }
        actives
    }

    /// Waits until exactly one replica, other than `except`, is active; returns it.
    pub async fn wait_active(&self, except: Option<usize>) -> usize {
        let until = Instant::now() + DEADLINE;
        loop {
            let actives = self.actives().await;
            if let [one] = actives[..] {
                if Some(one) != except {
                    return one;
                }
            }
            assert!(
                Instant::now() < until,
                "no single active replica within {DEADLINE:?}; logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A metric's value from replica `i`'s /metrics.
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let p = self.process(i);
        let (_, text) = probe(p.ready.health, "/metrics", Duration::from_secs(2))
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn stop(&mut self) {
        for p in self.processes.iter_mut().flatten() {
            p.stop(Duration::from_secs(10)).await;
        }
    }
}

/// Waits until `condition` holds, polling every 10 ms, or panics after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One observation of one replica's /health.
#[derive(Debug, Clone)]
pub struct Sample {
    pub replica: usize,
    pub sent: Instant,
    pub received: Instant,
    pub status: u16,
    pub epoch: u64,
}

/// Samples every replica's /health and the leader row in the database, in the background, until
/// finished; then checks that no two replicas were ever active at once.
pub struct Sampler {
    stop: CancellationToken,
    samples: Arc<Mutex<Vec<Sample>>>,
    epochs: Arc<Mutex<Vec<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(addrs: Vec<SocketAddr>, store: Store) -> Sampler {
        let stop = CancellationToken::new();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let epochs = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (replica, addr) in addrs.into_iter().enumerate() {
            let (stop, samples) = (stop.clone(), samples.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let sent = Instant::now();
                    if let Ok((status, body)) =
                        probe(addr, "/health", Duration::from_millis(300)).await
                    {
                        let body: serde_json::Value =
                            serde_json::from_str(&body).unwrap_or_default();
                        let epoch = body["epoch"].as_u64().unwrap_or(0);
                        let received = Instant::now();
                        samples.lock().unwrap().push(Sample {
                            replica,
                            sent,
                            received,
                            status,
                            epoch,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
        let (stop2, epochs2) = (stop.clone(), epochs.clone());
        tasks.push(tokio::spawn(async move {
            while !stop2.is_cancelled() {
                if let Ok(Some(leader)) = store.leader(NODE).await {
                    epochs2.lock().unwrap().push(leader.epoch);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        Sampler {
            stop,
            samples,
            epochs,
            tasks,
        }
    }

    /// Waits until the sampler itself has seen `replica` answer 200. A caller that saw a replica
    /// turn active acts at once (kills it, or finishes), and on a loaded machine the sampler's
    /// own probe of that short term could otherwise still be in flight.
    pub async fn wait_seen_active(&self, replica: usize) {
        wait_until("the sampler has seen the replica active", || async {
            self.samples
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.replica == replica && s.status == 200)
        })
        .await;
    }

    /// Stops sampling and asserts the invariants; returns the samples.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        let samples = self.samples.lock().unwrap().clone();
        let epochs = self.epochs.lock().unwrap().clone();
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "leader epoch went backwards: {epochs:?}"
        );
        assert_single_active(&samples);
        samples
    }
}

/// No two replicas active at once: whenever replica A answered 200 (epoch a) and a request sent to
/// another replica B after A's answer arrived also got 200 (epoch b), B must hold a newer epoch.
/// Requests whose round trips overlap prove nothing either way and are not compared.
pub fn assert_single_active(samples: &[Sample]) {
    let actives: Vec<&Sample> = samples.iter().filter(|s| s.status == 200).collect();
    assert!(!actives.is_empty(), "no active replica was ever observed");
    for a in &actives {
        for b in &actives {
            if a.replica != b.replica && b.sent > a.received {
                assert!(
                    b.epoch > a.epoch,
                    "two actives: replica {} (epoch {}) answered 200, and later replica {} answered 200 with epoch {}",
                    a.replica, a.epoch, b.replica, b.epoch
                );
            }
        }
    }
}
