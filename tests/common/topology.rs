//! A whole topology as real processes on port 0, started in dependency order (sequencers, the
//! topology manager, the mediator, then the participants), each finding the others at the
//! addresses they bound; two replicas of every node.

use super::PgDatabase;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tandem::process::NodeProcess;
use tandem_nodes::config::TopologyConfig;
use tandem_nodes::health::probe;
use tandem_nodes::testing::synchronizer_topology;

pub struct Processes {
    pub dir: tempfile::TempDir,
    pub topology: TopologyConfig,
    /// Replicas by node name.
    pub nodes: BTreeMap<String, Vec<NodeProcess>>,
    _pg: Option<PgDatabase>,
}

impl Processes {
    /// Starts a topology with `participants` participants on SQLite or a fresh Postgres
    /// database (`None`: Postgres wanted but not installed). `synchronizer` is extra TOML for
    /// `[synchronizer]`; `adjust` may change the parsed topology before anything starts.
    pub async fn start(
        postgres: bool,
        participants: usize,
        synchronizer: &str,
        adjust: impl FnOnce(&mut TopologyConfig),
    ) -> Option<Processes> {
        let dir = tempfile::tempdir().unwrap();
        let (storage, pg) = if postgres {
            let db = PgDatabase::fresh()?;
            (db.url.clone(), Some(db))
        } else {
            (format!("sqlite://{}/all.db", dir.path().display()), None)
        };
        let mut topology = TopologyConfig::parse(&synchronizer_topology(
            &storage,
            2,
            participants,
            &format!("topology_change_delay_ms = 50\n{synchronizer}"),
            "heartbeat_interval_ms = 50\noffline_after_ms = 500",
        ))
        .unwrap();
        adjust(&mut topology);
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_tandem"));
        let mut order: Vec<String> = ["sequencer", "topology-manager", "mediator"]
            .iter()
            .map(ToString::to_string)
            .collect();
        order.extend((1..=participants).map(|i| format!("participant{i}")));
        let mut nodes = BTreeMap::new();
        for node in order {
            let mut replicas = Vec::new();
            for replica in 0..2 {
                let timeout = Duration::from_secs(30);
                let p = NodeProcess::spawn_recorded(
                    &bin,
                    dir.path(),
                    &mut topology,
                    &node,
                    replica,
                    timeout,
                )
                .await
                .unwrap();
                replicas.push(p);
            }
            nodes.insert(node, replicas);
        }
        Some(Processes {
            dir,
            topology,
            nodes,
            _pg: pg,
        })
    }

    pub fn replicas(&mut self, node: &str) -> &mut Vec<NodeProcess> {
        self.nodes.get_mut(node).unwrap()
    }

    pub fn sequencer_endpoints(&self) -> Vec<String> {
        self.topology.sequencer_endpoints()
    }

    pub fn tm_endpoints(&self) -> Vec<String> {
        self.topology.topology_manager_endpoints()
    }

    pub async fn stop(mut self) {
        let names: Vec<String> = self.nodes.keys().rev().cloned().collect();
        for name in names {
            for p in self.replicas(&name) {
                p.stop(Duration::from_secs(10)).await;
            }
        }
    }
}

/// The replica among `replicas` whose /health answers 200, waiting for one other than `except`.
pub async fn active(replicas: &[NodeProcess], except: Option<usize>) -> usize {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, p) in replicas.iter().enumerate() {
            if Some(i) == except {
                continue;
            }
            if let Ok((200, _)) = probe(p.ready.health, "/health", Duration::from_millis(300)).await
            {
                return i;
            }
        }
        assert!(Instant::now() < until, "no active replica");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
