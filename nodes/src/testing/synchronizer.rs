//! A whole synchronizer in process on port 0: sequencers over one database, then the topology
//! manager (which bootstraps them), then optionally the mediator, each started only after the
//! addresses it needs were bound. Members are admitted the way nodes are, through the topology
//! manager.

use super::PgDatabase;
use crate::config::TopologyConfig;
use crate::identity::{KeyPair, MemberId, MemberKind};
use crate::member::admit_within;
use crate::node::{self, RunningNode};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct Synchronizer {
    /// The topology with every started replica's bound addresses recorded.
    pub config: TopologyConfig,
    pub sequencers: Vec<RunningNode>,
    pub topology_managers: Vec<RunningNode>,
    pub mediators: Vec<RunningNode>,
    /// Replica 0 of each participant, in order.
    pub participants: Vec<RunningNode>,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl Synchronizer {
    /// Starts `sequencers` sequencers, one topology manager replica, `mediators` mediator
    /// replicas (0–2) and replica 0 of `participants` participants on SQLite or a fresh
    /// Postgres database; `None` when Postgres is wanted but not installed (the caller's SKIP).
    /// `synchronizer`/`sequencing` are extra TOML as for [`super::synchronizer_topology`].
    pub async fn start(
        postgres: bool,
        sequencers: u32,
        mediators: u32,
        participants: u32,
        synchronizer: &str,
        sequencing: &str,
    ) -> Result<Option<Synchronizer>, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (storage, pg) = if postgres {
            let Some(db) = PgDatabase::fresh() else {
                return Ok(None);
            };
            (db.url.clone(), Some(db))
        } else {
            (format!("sqlite://{}/sync.db", dir.path().display()), None)
        };
        let text = super::synchronizer_topology(
            &storage,
            sequencers as usize,
            participants as usize,
            synchronizer,
            sequencing,
        );
        let mut config = TopologyConfig::parse(&text).map_err(|e| e.to_string())?;
        let shutdown = CancellationToken::new();
        let start = |config: TopologyConfig, name: String, i: u32, shutdown: CancellationToken| async move {
            node::start(&config, &name, i, shutdown)
                .await
                .map_err(|e| format!("{name}/{i}: {e}"))
        };
        let mut sync = Synchronizer {
            sequencers: Vec::new(),
            topology_managers: Vec::new(),
            mediators: Vec::new(),
            participants: Vec::new(),
            config: config.clone(),
            shutdown: shutdown.clone(),
            _dir: dir,
            _pg: pg,
        };
        for i in 0..sequencers {
            let n = start(config.clone(), "sequencer".into(), i, shutdown.clone()).await?;
            config.record_bound("sequencer", i, n.ready.api, n.ready.admin, n.ready.health);
            sync.sequencers.push(n);
        }
        let tm = start(
            config.clone(),
            "topology-manager".into(),
            0,
            shutdown.clone(),
        )
        .await?;
        config.record_bound("topology-manager", 0, None, tm.ready.admin, tm.ready.health);
        sync.topology_managers.push(tm);
        for i in 0..mediators.min(2) {
            let n = start(config.clone(), "mediator".into(), i, shutdown.clone()).await?;
            config.record_bound("mediator", i, None, n.ready.admin, n.ready.health);
            sync.mediators.push(n);
        }
        for i in 1..=participants {
            let name = format!("participant{i}");
            let n = start(config.clone(), name.clone(), 0, shutdown.clone()).await?;
            config.record_bound(&name, 0, n.ready.api, n.ready.admin, n.ready.health);
            sync.participants.push(n);
        }
        sync.config = config;
        Ok(Some(sync))
    }

    /// The Postgres database the nodes share, if they run on Postgres.
    pub fn postgres(&self) -> Option<&PgDatabase> {
        self._pg.as_ref()
    }

    /// The sequencer API endpoint of sequencer `i` (modulo their number).
    pub fn endpoint(&self, i: usize) -> String {
        let n = &self.sequencers[i % self.sequencers.len()];
        format!(
            "http://{}",
            n.ready.api.map_or_else(String::new, |a| a.to_string())
        )
    }

    /// A new member of `kind` called `name`, admitted through the topology manager and in
    /// effect when this returns.
    pub async fn admit(
        &self,
        kind: MemberKind,
        name: &str,
    ) -> Result<(MemberId, Arc<KeyPair>), String> {
        let key = Arc::new(KeyPair::generate().map_err(|e| e.to_string())?);
        let id = MemberId::new(kind, name, &key.public_key());
        admit_within(
            &self.config.topology_manager_endpoints(),
            &id,
            &key,
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|e| format!("admitting {id}: {e}"))?;
        Ok((id, key))
    }

    pub async fn stop(self) -> Result<(), String> {
        self.shutdown.cancel();
        for n in self
            .participants
            .into_iter()
            .chain(self.mediators)
            .chain(self.topology_managers)
            .chain(self.sequencers)
        {
            n.wait().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
