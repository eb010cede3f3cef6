//! Runs one replica of one logical node: connects its database (migrating it), binds its admin
//! and health ports, and starts its replica manager and servers. This is what `tandem node` calls;
//! tests call it in-process on `127.0.0.1:0`.

use crate::config::{NodeKind, TopologyConfig};
use crate::identity::MemberKind;
use crate::mediator::{Mediator, MediatorAdmin};
use crate::metrics::NodeMetrics;
use crate::participant::admin::ParticipantAdmin;
use crate::participant::api::LedgerApi;
use crate::participant::Participant;
use crate::replica::{self, Addresses, Identity, ReplicaHandle};
use crate::sequencer::{Sequencer, SequencerAdmin, SequencerApi, SequencerSettings};
use crate::store::{Store, StoreError};
use crate::topology_manager::{TopologyManager, TopologyManagerAdmin};
use crate::{admin, health};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tandem_proto::mediator::v1::mediator_admin_service_server::MediatorAdminServiceServer;
use tandem_proto::participant::v1::party_hosting_service_server::PartyHostingServiceServer;
use tandem_proto::participant::v1::synchronizer_connectivity_service_server::SynchronizerConnectivityServiceServer;
use tandem_proto::sequencer::v1::sequencer_admin_service_server::SequencerAdminServiceServer;
use tandem_proto::sequencer::v1::sequencer_service_server::SequencerServiceServer;
use tandem_proto::topology::v1::topology_manager_service_server::TopologyManagerServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no node named {name:?} in the topology; known nodes: {known}")]
    UnknownNode { name: String, known: String },
    #[error("node {node} has {count} replica(s) (0..{count}); there is no replica {replica}")]
    UnknownReplica {
        node: String,
        replica: u32,
        count: usize,
    },
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{key}: {source}")]
    Store { key: String, source: StoreError },
    #[error("{key}: {message}")]
    Auth { key: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0} stopped unexpectedly: {1}")]
    Task(&'static str, String),
}

/// What a started replica announces: `tandem up`, the bench and tests read this line to learn the
/// ports it bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ready {
    pub node: String,
    pub replica: u32,
    pub kind: String,
    pub pid: u32,
    pub health: SocketAddr,
    pub admin: SocketAddr,
    /// The public API (sequencer API, Ledger API), once the node kind serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<SocketAddr>,
}

/// What an active-passive node kind runs while its replica is active.
#[derive(Clone)]
enum ActiveKind {
    TopologyManager(TopologyManager),
    Mediator(Mediator),
    Participant(Participant),
}

/// Serves the Ledger API (every service answers UNAVAILABLE while the replica is passive) and
/// `grpc.health.v1`, which reports SERVING only while it is active.
async fn serve_ledger_api(
    participant: Participant,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    use tandem_proto::ledger::v2::*;
    let api = || LedgerApi(participant.clone());
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut serving = participant.serving();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let status = if *serving.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            tokio::select! {
                () = stop.cancelled() => return,
                changed = serving.changed() => if changed.is_err() { return },
            }
        }
    });
    let served = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(command_service_server::CommandServiceServer::new(api()))
        .add_service(command_submission_service_server::CommandSubmissionServiceServer::new(api()))
        .add_service(command_completion_service_server::CommandCompletionServiceServer::new(api()))
        .add_service(update_service_server::UpdateServiceServer::new(api()))
        .add_service(state_service_server::StateServiceServer::new(api()))
        .add_service(party_management_service_server::PartyManagementServiceServer::new(api()))
        .add_service(user_management_service_server::UserManagementServiceServer::new(api()))
        .add_service(package_service_server::PackageServiceServer::new(api()))
        .add_service(package_management_service_server::PackageManagementServiceServer::new(api()))
        .add_service(version_service_server::VersionServiceServer::new(api()))
        .serve_with_incoming_shutdown(
            crate::net::incoming_nodelay(listener),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "Ledger API server failed");
    }
}

/// A running replica.
pub struct RunningNode {
    pub ready: Ready,
    pub replica: ReplicaHandle,
    pub store: Store,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl RunningNode {
    /// Waits until every task ended (after `shutdown` was cancelled) and closes the database.
    pub async fn wait(self) -> Result<(), NodeError> {
        let mut first_error = None;
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                first_error.get_or_insert(NodeError::Task(name, e.to_string()));
            }
        }
        self.store.close().await;
        first_error.map_or(Ok(()), Err)
    }
}

async fn bind(addr: SocketAddr, key: String) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { key, addr, source })
}

/// Starts replica `replica` of node `node`; it runs until `shutdown` is cancelled.
pub async fn start(
    topology: &TopologyConfig,
    node: &str,
    replica: u32,
    shutdown: CancellationToken,
) -> Result<RunningNode, NodeError> {
    let node_ref = topology.node(node).ok_or_else(|| NodeError::UnknownNode {
        name: node.to_string(),
        known: topology
            .nodes()
            .iter()
            .map(|n| n.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let replicas = &node_ref.config.replicas;
    let config = usize::try_from(replica)
        .ok()
        .and_then(|i| replicas.get(i))
        .ok_or_else(|| NodeError::UnknownReplica {
            node: node.to_string(),
            replica,
            count: replicas.len(),
        })?;
    let key = format!("{}.replicas[{replica}]", node_ref.key);
    let health_listener = bind(config.health, format!("{key}.health")).await?;
    let admin_listener = bind(config.admin, format!("{key}.admin")).await?;
    let health_addr = health_listener
        .local_addr()
        .map_err(|source| NodeError::Bind {
            key: format!("{key}.health"),
            addr: config.health,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| NodeError::Bind {
            key: format!("{key}.admin"),
            addr: config.admin,
            source,
        })?;

    let timeout = Duration::from_millis(topology.replication.connect_timeout_ms);
    let store = Store::connect(&node_ref.config.storage, timeout)
        .await
        .map_err(|source| NodeError::Store {
            key: format!("{}.storage", node_ref.key),
            source,
        })?;

    let identity = Identity {
        node: node.to_string(),
        replica,
        kind: node_ref.kind,
    };
    let metrics = NodeMetrics::new(&identity)?;
    let addresses = Addresses {
        health: health_addr.to_string(),
        admin: admin_addr.to_string(),
    };
    // The node kind's own services: what they serve publicly, what they add to the admin port,
    // and their verdict on their own health.
    let mut admin_routes = tonic::service::RoutesBuilder::default();
    let mut tasks = Vec::new();
    let mut api_addr = None;
    let mut service_health = None;
    if node_ref.kind == NodeKind::Sequencer {
        let api = config
            .api
            .ok_or_else(|| NodeError::Task("sequencer", "no api address".into()))?;
        let listener = bind(api, format!("{key}.api")).await?;
        api_addr = Some(listener.local_addr().map_err(|source| NodeError::Bind {
            key: format!("{key}.api"),
            addr: api,
            source,
        })?);
        let (health_tx, health_rx) =
            tokio::sync::watch::channel(Err("sequencer writer starting".to_string()));
        service_health = Some(health_rx);
        let identity = store
            .node_identity(node, MemberKind::Sequencer)
            .await
            .map_err(|source| NodeError::Store {
                key: format!("{}.storage", node_ref.key),
                source,
            })?;
        let settings = SequencerSettings {
            sequencing: topology.synchronizer.sequencing.clone(),
            topology_change_delay: Duration::from_millis(
                topology.synchronizer.topology_change_delay_ms,
            ),
            identity,
        };
        let (sequencer, sequencer_tasks) = Sequencer::start(
            store.clone(),
            settings,
            replica,
            health_tx,
            shutdown.clone(),
        );
        tasks.extend(sequencer_tasks.into_iter().map(|t| ("sequencer", t)));
        admin_routes.add_service(SequencerAdminServiceServer::new(SequencerAdmin(
            sequencer.clone(),
        )));
        let shutdown = shutdown.clone();
        tasks.push((
            "sequencer API",
            tokio::spawn(async move {
                let served = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(SequencerServiceServer::new(SequencerApi(sequencer)))
                    .serve_with_incoming_shutdown(
                        crate::net::incoming_nodelay(listener),
                        shutdown.cancelled_owned(),
                    )
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "sequencer API server failed");
                }
            }),
        ));
    }
    let store_error = |source| NodeError::Store {
        key: format!("{}.storage", node_ref.key),
        source,
    };
    let mut active_session = None;
    // For active-passive kinds: whether the active replica's services are up (state loaded).
    let mut serving = None;
    match node_ref.kind {
        NodeKind::TopologyManager => {
            let settings = crate::topology_manager::Settings::from_topology(topology);
            let tm = TopologyManager::new(store.clone(), node, replica, settings)
                .await
                .map_err(store_error)?;
            admin_routes.add_service(TopologyManagerServiceServer::new(TopologyManagerAdmin(
                tm.clone(),
            )));
            serving = Some(tm.serving());
            active_session = Some(("topology manager", ActiveKind::TopologyManager(tm)));
        }
        NodeKind::Mediator => {
            let settings = crate::mediator::Settings::from_topology(topology);
            let mediator = Mediator::new(store.clone(), node, replica, settings)
                .await
                .map_err(store_error)?;
            admin_routes.add_service(MediatorAdminServiceServer::new(MediatorAdmin(
                mediator.clone(),
            )));
            serving = Some(mediator.serving());
            active_session = Some(("mediator", ActiveKind::Mediator(mediator)));
        }
        NodeKind::Participant => {
            let mut settings =
                crate::participant::Settings::from_topology(topology, node_ref.config).map_err(
                    |e| NodeError::Auth {
                        key: format!("{}.{}", node_ref.key, e.key),
                        message: e.message,
                    },
                )?;
            settings.phase_seconds = Some(metrics.transaction_phase_seconds.clone());
            let participant = Participant::new(store.clone(), node, replica, settings)
                .await
                .map_err(store_error)?;
            admin_routes.add_service(PartyHostingServiceServer::new(ParticipantAdmin(
                participant.clone(),
            )));
            admin_routes.add_service(SynchronizerConnectivityServiceServer::new(
                ParticipantAdmin(participant.clone()),
            ));
            let api = config
                .api
                .ok_or_else(|| NodeError::Task("participant", "no api address".into()))?;
            let listener = bind(api, format!("{key}.api")).await?;
            api_addr = Some(listener.local_addr().map_err(|source| NodeError::Bind {
                key: format!("{key}.api"),
                addr: api,
                source,
            })?);
            tasks.push((
                "ledger API",
                tokio::spawn(serve_ledger_api(
                    participant.clone(),
                    listener,
                    shutdown.clone(),
                )),
            ));
            serving = Some(participant.serving());
            active_session = Some(("participant", ActiveKind::Participant(participant)));
        }
        NodeKind::Sequencer => {}
    }
    let (handle, elector) = replica::spawn(
        store.clone(),
        identity,
        topology.replication.clone(),
        addresses,
        metrics.clone(),
        service_health,
        shutdown.clone(),
    );
    if let Some((name, kind)) = active_session {
        let state = handle.subscribe();
        let shutdown = shutdown.clone();
        tasks.push((
            name,
            tokio::spawn(replica::run_while_active(
                state,
                shutdown,
                replica::SESSION_RESTART,
                move |epoch, stop| {
                    let kind = kind.clone();
                    async move {
                        match kind {
                            ActiveKind::TopologyManager(tm) => tm.run_active(epoch, stop).await,
                            ActiveKind::Mediator(m) => m.run_active(epoch, stop).await,
                            ActiveKind::Participant(p) => p.run_active(epoch, stop).await,
                        }
                    }
                },
            )),
        ));
    }
    let health_app = health::router(handle.clone(), metrics, serving);
    let health_task = tokio::spawn(health::serve_http1(
        health_listener,
        health_app,
        shutdown.clone(),
    ));
    let admin_task = {
        let (handle, store, shutdown) = (handle.clone(), store.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) =
                admin::serve(admin_listener, handle, store, admin_routes, shutdown).await
            {
                tracing::error!(error = %e, "admin server failed");
            }
        })
    };
    tracing::info!(node, replica, kind = %node_ref.kind, health = %health_addr, admin = %admin_addr, "replica started");
    Ok(RunningNode {
        ready: Ready {
            node: node.to_string(),
            replica,
            kind: node_ref.kind.as_str().to_string(),
            pid: std::process::id(),
            health: health_addr,
            admin: admin_addr,
            api: api_addr,
        },
        replica: handle,
        store,
        tasks: {
            tasks.extend([
                ("replica manager", elector),
                ("health server", health_task),
                ("admin server", admin_task),
            ]);
            tasks
        },
    })
}
