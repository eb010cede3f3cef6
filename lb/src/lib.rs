//! tandem-lb: the L7 load balancer of design.md §8, on pingora. Frontends (h2c, HTTP/1.1 or
//! both on one port, optional TLS) route every request, i.e. every gRPC call, to a backend
//! group: the `active` server (the one whose HTTP/1 health check answers 200) or round-robin
//! over the healthy ones. Active checks (rise/fall, servers start down) and passive health
//! (max_fails within fail_timeout) decide who is healthy; a connect failure is retried on
//! another server, nothing else is. Reloads (SIGHUP, `POST /reload`) swap the groups without
//! touching listeners or in-flight requests. An admin endpoint serves status and metrics.
//!
//! `serve` is the whole service as a library function (what `tandem lb` and the tests call).
//! Request phases live in `proxy` (pingora) and `relay` (HTTP/2 to cleartext HTTP/2 groups,
//! the gRPC fast path), connection handling in `frontend` (on the threads of
//! `tandem_nodes::workers`), selection in `select`, health in `health`/`server`, failure→status mapping in
//! `failure`. This crate depends on `tandem-nodes` for the config types and the health probe
//! only.

mod admin;
mod error;
mod failure;
mod frontend;
mod group;
mod health;
mod metrics;
mod proxy;
mod relay;
mod select;
mod server;
mod stream;
pub mod testing;
mod tls;

pub use error::LbError;
pub use failure::Failure;
pub use group::GroupStatus;
pub use server::ServerStatus;

use arc_swap::ArcSwap;
use frontend::{Frontend, FrontendApp};
use group::{Group, ServerIndex};
use metrics::Metrics;
use pingora::server::configuration::ServerConf;
use proxy::{LbProxy, Routes};
use relay::Relay;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_nodes::config::{FrontendProtocol, LoadedLb};
use tandem_nodes::workers::Workers;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long open connections get to finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The state shared by the frontends, the admin endpoint and reloads.
pub struct Lb {
    config: Mutex<LoadedLb>,
    source: Option<PathBuf>,
    routes: Arc<ArcSwap<Routes>>,
    metrics: Metrics,
    frontends: Vec<(FrontendStatus, Arc<FrontendCounters>)>,
    reload_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrontendStatus {
    pub name: String,
    /// The bound address (the configured one, with port 0 resolved).
    pub listen: SocketAddr,
    pub protocol: FrontendProtocol,
    pub tls: bool,
}

/// Live counters of one frontend.
#[derive(Debug, Default)]
pub struct FrontendCounters {
    pub connections: std::sync::atomic::AtomicI64,
    pub requests: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrontendRoute {
    #[serde(flatten)]
    pub frontend: FrontendStatus,
    pub group: Option<String>,
    /// Client connections open now.
    pub active_connections: i64,
    /// Requests received so far.
    pub requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Bumped by every successful reload.
    pub generation: u64,
    pub frontends: Vec<FrontendRoute>,
    pub groups: Vec<GroupStatus>,
}

fn group_key(loaded: &LoadedLb, name: &str) -> String {
    if let Some(i) = loaded.lb.backends.iter().position(|g| g.name == name) {
        return format!("lb.backends[{i}]");
    }
    loaded
        .lb
        .frontends
        .iter()
        .position(|f| LoadedLb::group_name(&f.backend) == name)
        .map_or_else(|| "lb".into(), |i| format!("lb.frontends[{i}].backend"))
}

fn build_routes(
    loaded: &LoadedLb,
    previous: &ServerIndex,
    metrics: &Metrics,
) -> Result<Routes, LbError> {
    let mut groups = Vec::new();
    let mut by_name = HashMap::new();
    for config in loaded.groups() {
        let key = group_key(loaded, &config.name);
        let group = Group::build(config, &key, previous, metrics)?;
        by_name.insert(group.name.clone(), group.clone());
        groups.push(group);
    }
    let by_frontend = loaded
        .lb
        .frontends
        .iter()
        .filter_map(|f| {
            let group = by_name.get(&LoadedLb::group_name(&f.backend))?;
            Some((f.name.clone(), group.clone()))
        })
        .collect();
    Ok(Routes {
        groups,
        by_frontend,
    })
}

impl Lb {
    pub fn status(&self) -> Status {
        let routes = self.routes.load();
        Status {
            generation: self.generation.load(Ordering::Relaxed),
            frontends: self
                .frontends
                .iter()
                .map(|(f, counters)| FrontendRoute {
                    frontend: f.clone(),
                    group: routes.by_frontend.get(&f.name).map(|g| g.name.clone()),
                    active_connections: counters.connections.load(Ordering::Relaxed),
                    requests: counters.requests.load(Ordering::Relaxed),
                })
                .collect(),
            groups: routes.groups.iter().map(|g| g.status()).collect(),
        }
    }

    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Reloads from the file the lb was started from.
    pub async fn reload_from_file(&self) -> Result<u64, LbError> {
        let path = self.source.clone().ok_or(LbError::NoFile)?;
        let loaded = match LoadedLb::load(&path) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                return Err(e.into());
            }
        };
        self.reload(loaded).await
    }

    /// Swaps in new backend groups. Listeners cannot change at run time: a reload that
    /// changes a frontend other than its `backend` is refused, as is any config that fails
    /// to build; either way the running config stays. Servers whose group, address and health
    /// address are unchanged keep their health state, so a reload never takes them down.
    pub async fn reload(&self, loaded: LoadedLb) -> Result<u64, LbError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.try_reload(loaded);
        let label = if result.is_ok() { "ok" } else { "refused" };
        self.metrics.reloads.with_label_values(&[label]).inc();
        match &result {
            Ok(generation) => tracing::info!(generation, "configuration reloaded"),
            Err(e) => tracing::warn!(error = %e, "reload refused; the running configuration stays"),
        }
        result
    }

    fn try_reload(&self, loaded: LoadedLb) -> Result<u64, LbError> {
        let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let (old, new) = (&config.lb.frontends, &loaded.lb.frontends);
        if old.len() != new.len() {
            return Err(LbError::Reload {
                key: "lb.frontends".into(),
                message: "adding or removing frontends needs a restart".into(),
            });
        }
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            let mut a = a.clone();
            a.backend = b.backend.clone();
            if a != *b {
                return Err(LbError::Reload {
                    key: format!("lb.frontends[{i}]"),
                    message: "only `backend` of a frontend can change at run time; \
                              listeners need a restart"
                        .into(),
                });
            }
        }
        if config.lb.admin != loaded.lb.admin {
            return Err(LbError::Reload {
                key: "lb.admin".into(),
                message: "the admin address needs a restart".into(),
            });
        }
        if config.lb.workers != loaded.lb.workers {
            return Err(LbError::Reload {
                key: "lb.workers".into(),
                message: "the number of workers needs a restart".into(),
            });
        }
        let previous: ServerIndex = self
            .routes
            .load()
            .groups
            .iter()
            .flat_map(|g| {
                g.servers
                    .iter()
                    .map(|s| ((g.name.clone(), s.key), s.clone()))
            })
            .collect();
        let routes = build_routes(&loaded, &previous, &self.metrics)?;
        for group in &routes.groups {
            group.start_checks();
        }
        let old = self.routes.swap(Arc::new(routes));
        for group in &old.groups {
            group.stop();
        }
        *config = loaded;
        Ok(self.generation.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A running lb: its bound addresses, its shared state, and its tasks.
pub struct Running {
    lb: Arc<Lb>,
    admin: SocketAddr,
    tasks: JoinSet<()>,
    workers: Arc<Workers>,
}

impl Running {
    pub fn lb(&self) -> &Arc<Lb> {
        &self.lb
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The bound address of a frontend.
    pub fn frontend(&self, name: &str) -> Option<SocketAddr> {
        self.lb
            .frontends
            .iter()
            .find(|(f, _)| f.name == name)
            .map(|(f, _)| f.listen)
    }

    pub fn frontends(&self) -> Vec<FrontendStatus> {
        self.lb.frontends.iter().map(|(f, _)| f.clone()).collect()
    }

    /// Resolves once every task has ended, after `shutdown` was cancelled.
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.workers.stop().await;
    }
}

/// Starts the lb: binds every frontend and the admin endpoint, starts health checks, and runs
/// until `shutdown`. `source` is the file to re-read on reload.
pub async fn serve(
    loaded: LoadedLb,
    source: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<Running, LbError> {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry)?;
    let routes = build_routes(&loaded, &ServerIndex::new(), &metrics)?;
    let routes = Arc::new(ArcSwap::from_pointee(routes));
    let server_conf = Arc::new(ServerConf::default());
    let (watch_tx, watch_rx) = tokio::sync::watch::channel(false);
    let workers = Arc::new(
        Workers::start("lb-worker", loaded.lb.workers).map_err(|source| LbError::Workers {
            count: loaded.lb.workers,
            source,
        })?,
    );

    let mut apps = Vec::new();
    let mut statuses = Vec::new();
    for (i, f) in loaded.lb.frontends.iter().enumerate() {
        let key = format!("lb.frontends[{i}]");
        let tls = match &f.tls {
            Some(t) => Some(tls::acceptor(t, f.protocol, &key)?),
            None => None,
        };
        let listener = TcpListener::bind(f.listen)
            .await
            .map_err(|source| LbError::Bind {
                key: format!("{key}.listen"),
                addr: f.listen,
                source,
            })?;
        let listen = listener.local_addr().map_err(|source| LbError::Bind {
            key: format!("{key}.listen"),
            addr: f.listen,
            source,
        })?;
        let frontend_metrics = metrics.frontend(&f.name);
        let counters = Arc::new(FrontendCounters::default());
        statuses.push((
            FrontendStatus {
                name: f.name.clone(),
                listen,
                protocol: f.protocol,
                tls: f.tls.is_some(),
            },
            counters.clone(),
        ));
        let tls = tls.map(Arc::new);
        let per_worker = (0..workers.count())
            .map(|_| {
                let proxy = pingora::proxy::http_proxy(
                    &server_conf,
                    LbProxy {
                        frontend: f.name.clone(),
                        routes: routes.clone(),
                        metrics: frontend_metrics.clone(),
                    },
                );
                Arc::new(FrontendApp {
                    name: f.name.clone(),
                    proxy: Arc::new(proxy),
                    relay: Relay::new(f.name.clone(), routes.clone(), frontend_metrics.clone()),
                    protocol: f.protocol,
                    tls: tls.clone(),
                    limits: f.limits.clone(),
                    metrics: frontend_metrics.clone(),
                    counters: counters.clone(),
                })
            })
            .collect();
        apps.push((
            Frontend {
                name: f.name.clone(),
                apps: per_worker,
                workers: workers.clone(),
            },
            listener,
        ));
    }
    let admin_listener =
        TcpListener::bind(loaded.lb.admin)
            .await
            .map_err(|source| LbError::Bind {
                key: "lb.admin".into(),
                addr: loaded.lb.admin,
                source,
            })?;
    let admin = admin_listener
        .local_addr()
        .map_err(|source| LbError::Bind {
            key: "lb.admin".into(),
            addr: loaded.lb.admin,
            source,
        })?;

    let lb = Arc::new(Lb {
        config: Mutex::new(loaded),
        source,
        routes,
        metrics,
        frontends: statuses,
        reload_lock: tokio::sync::Mutex::new(()),
        generation: AtomicU64::new(0),
    });
    for group in &lb.routes.load().groups {
        group.start_checks();
    }
    let mut tasks = JoinSet::new();
    for (frontend, listener) in apps {
        tasks.spawn(frontend.run(listener, watch_rx.clone(), shutdown.clone(), SHUTDOWN_GRACE));
    }
    tasks.spawn(tandem_nodes::health::serve_http1(
        admin_listener,
        admin::router(lb.clone()),
        shutdown.clone(),
    ));
    let stopping = lb.clone();
    tasks.spawn(async move {
        shutdown.cancelled().await;
        let _ = watch_tx.send(true);
        for group in &stopping.routes.load().groups {
            group.stop();
        }
    });
    Ok(Running {
        lb,
        admin,
        tasks,
        workers,
    })
}
