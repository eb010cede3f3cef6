//! `tandem up`: start every replica of a topology as a child process, show the table of nodes,
//! replicas, addresses and roles (read from each replica's `/health`), report role changes, restart
//! replicas that die, and stop everything cleanly on Ctrl-C or SIGTERM.

use crate::cli::UpArgs;
use crate::process::{GatewayProcess, LbProcess, NodeProcess, NodeSpec};
use anyhow::Context;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tandem_nodes::config::{NodeKind, TopologyConfig};
use tandem_nodes::health::probe;

/// The default topology, built in so `tandem up` works from any directory.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../examples/topology.toml");

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Like systemd's `RestartSec`: a replica that died is restarted after this, which also leaves the
/// standbys time to take over rather than racing the restarted process for the lease.
const RESTART_DELAY: Duration = Duration::from_secs(2);

/// A replica `tandem up` supervises.
struct Replica {
    spec: NodeSpec,
    kind: String,
    api: Option<std::net::SocketAddr>,
    process: Option<NodeProcess>,
    role: String,
    restarts: u32,
    /// Set when the replica died; it is restarted once this has passed.
    restart_at: Option<Instant>,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut termination = super::Termination::install()?;
    let bin = std::env::current_exe().context("locating the tandem binary")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let mut topology = match &args.config {
        Some(path) => super::load(path)?,
        // The built-in topology keeps its SQLite files in the data directory.
        None => TopologyConfig::parse(&DEFAULT_TOPOLOGY.replace(
            "sqlite://tandem-data/",
            &format!("sqlite://{}/", args.data_dir.display()),
        ))
        .context("the built-in topology")?,
    };
    if let Some(server) = &args.postgres {
        use_postgres(&mut topology, server).await?;
    }
    let config_path = args.data_dir.join("topology.toml");
    std::fs::write(&config_path, toml::to_string(&topology)?)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let mut replicas = plan(&topology, &bin, &config_path, &log_dir(&args.data_dir));
    println!(
        "Tandem: starting {} replicas of {} nodes (effective topology {}, logs in {})",
        replicas.len(),
        topology.nodes().len(),
        config_path.display(),
        log_dir(&args.data_dir).display()
    );
    let started = tokio::select! {
        result = start_all(&mut replicas, &mut topology, &config_path) => result.map(|()| true),
        () = termination.received() => Ok(false),
    };
    if !matches!(started, Ok(true)) {
        println!("\nstopping the replicas started so far ...");
        stop_all(&mut replicas).await;
        return started.map(|_| ExitCode::SUCCESS);
    }
    settle(&mut replicas).await;
    print_table(&replicas);
    let mut gateways = Vec::new();
    for g in &topology.gateways {
        let log = log_dir(&args.data_dir).join(format!("{}.log", g.name));
        match GatewayProcess::spawn_gateway(&bin, &config_path, &g.name, &log, READY_TIMEOUT).await
        {
            Ok(p) => {
                println!(
                    "gateway {} (pid {}): http://{} (advertised {})",
                    p.ready.name,
                    p.pid(),
                    p.ready.listen,
                    p.ready.advertised_url
                );
                gateways.push(p);
            }
            Err(e) => {
                for p in &mut gateways {
                    p.stop(STOP_GRACE).await;
                }
                stop_all(&mut replicas).await;
                return Err(e.into());
            }
        }
    }
    let lb_log = log_dir(&args.data_dir).join("lb.log");
    let mut lb = match &topology.lb {
        Some(_) => match LbProcess::spawn_lb(&bin, &config_path, &lb_log, READY_TIMEOUT).await {
            Ok(lb) => {
                print_lb(&lb);
                Some(lb)
            }
            Err(e) => {
                for p in &mut gateways {
                    p.stop(STOP_GRACE).await;
                }
                stop_all(&mut replicas).await;
                return Err(e.into());
            }
        },
        None => None,
    };
    println!(
        "\nTry: tandem admin status --config {} --node participant1   (Ctrl-C stops everything)",
        config_path.display()
    );
    supervise(
        &mut replicas,
        &mut lb,
        &bin,
        &config_path,
        &lb_log,
        &mut termination,
    )
    .await;
    println!("stopping {} replicas ...", replicas.len());
    if let Some(lb) = lb.as_mut() {
        lb.stop(STOP_GRACE).await;
    }
    for p in &mut gateways {
        p.stop(STOP_GRACE).await;
    }
    stop_all(&mut replicas).await;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Points every node at its own database on `server`, creating the databases.
async fn use_postgres(topology: &mut TopologyConfig, server: &str) -> anyhow::Result<()> {
    for node in topology.node_configs_mut() {
        let database = format!("tandem_{}", node.name.replace('-', "_"));
        node.storage = tandem_nodes::store::ensure_postgres_database(server, &database).await?;
    }
    Ok(())
}

/// Every replica, in the order they start: sequencers, topology manager, mediator (which asks
/// the topology manager for admission), participants.
fn plan(topology: &TopologyConfig, bin: &Path, config: &Path, logs: &Path) -> Vec<Replica> {
    let mut replicas = Vec::new();
    let mut nodes = topology.nodes();
    nodes.sort_by_key(|n| match n.kind {
        NodeKind::Sequencer => 0,
        NodeKind::TopologyManager => 1,
        NodeKind::Mediator => 2,
        NodeKind::Participant => 3,
    });
    for node in nodes {
        for (i, r) in node.config.replicas.iter().enumerate() {
            let replica = u32::try_from(i).unwrap_or(u32::MAX);
            replicas.push(Replica {
                spec: NodeSpec {
                    bin: bin.to_path_buf(),
                    config: config.to_path_buf(),
                    node: node.name.to_string(),
                    replica,
                    log: logs.join(format!("{}-{replica}.log", node.name)),
                },
                kind: node.kind.as_str().to_string(),
                api: r.api,
                process: None,
                role: "starting".into(),
                restarts: 0,
                restart_at: None,
            });
        }
    }
    replicas
}

/// Starts every replica in dependency order. A replica whose config said port 0 gets its bound
/// addresses written into the effective topology before the next one starts, so the nodes it
/// depends on are found (and a restart binds the same ports again).
async fn start_all(
    replicas: &mut [Replica],
    topology: &mut TopologyConfig,
    config_path: &Path,
) -> anyhow::Result<()> {
    for r in replicas.iter_mut() {
        print!("  starting {:<24}", r.spec.name());
        let _ = std::io::stdout().flush();
        let process = NodeProcess::spawn(&r.spec, READY_TIMEOUT).await?;
        let ready = &process.ready;
        topology.record_bound(
            &r.spec.node,
            r.spec.replica,
            ready.api,
            ready.admin,
            ready.health,
        );
        std::fs::write(config_path, toml::to_string(&*topology)?)
            .with_context(|| format!("writing {}", config_path.display()))?;
        r.api = ready.api;
        println!(
            " up   pid {:<7} health {}",
            process.pid(),
            process.ready.health
        );
        r.process = Some(process);
    }
    Ok(())
}

async fn role_of(process: &NodeProcess) -> String {
    match probe(process.ready.health, "/health", PROBE_TIMEOUT).await {
        Ok((200, _)) => "active".into(),
        Ok((_, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("status")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "unhealthy".into()),
        Err(_) => "unreachable".into(),
    }
}

async fn refresh_roles(replicas: &mut [Replica]) {
    for r in replicas.iter_mut() {
        r.role = match &r.process {
            Some(p) => role_of(p).await,
            None => "stopped".into(),
        };
    }
}

/// Waits (bounded) until every active-passive node shows exactly one active replica and every
/// sequencer is active, so the first table shows settled roles.
async fn settle(replicas: &mut [Replica]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        refresh_roles(replicas).await;
        let mut actives: HashMap<&str, (usize, bool)> = HashMap::new();
        for r in replicas.iter() {
            let entry = actives
                .entry(r.spec.node.as_str())
                .or_insert((0, r.kind == "sequencer"));
            entry.0 += usize::from(r.role == "active");
        }
        let sequencers_ok = replicas
            .iter()
            .filter(|r| r.kind == "sequencer")
            .all(|r| r.role == "active");
        let settled = sequencers_ok && actives.values().all(|(n, aa)| *aa || *n == 1);
        if settled || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_table(replicas: &[Replica]) {
    println!(
        "\n{:<18} {:<17} {:<8} {:<8} {:<8} {:<16} {:<16} API",
        "NODE", "KIND", "REPLICA", "ROLE", "PID", "HEALTH", "ADMIN"
    );
    for r in replicas {
        let (pid, health, admin) = match &r.process {
            Some(p) => (
                p.pid().to_string(),
                p.ready.health.to_string(),
                p.ready.admin.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let served = r.process.as_ref().and_then(|p| p.ready.api);
        let api = match (served, r.api) {
            (Some(api), _) => api.to_string(),
            (None, Some(planned)) => format!("{planned} (not served yet)"),
            (None, None) => "-".into(),
        };
        println!(
            "{:<18} {:<17} {:<8} {:<8} {:<8} {:<16} {:<16} {}",
            r.spec.node, r.kind, r.spec.replica, r.role, pid, health, admin, api
        );
    }
}

fn print_lb(lb: &LbProcess) {
    println!(
        "\nlb (pid {}): admin http://{}/status",
        lb.pid(),
        lb.ready.admin
    );
    for (name, addr) in &lb.ready.frontends {
        println!("  frontend {name:<28} {addr}");
    }
}

/// Until SIGINT/SIGTERM: report role changes and restart replicas (and the lb) that exited.
async fn supervise(
    replicas: &mut [Replica],
    lb: &mut Option<LbProcess>,
    bin: &Path,
    config: &Path,
    lb_log: &Path,
    termination: &mut super::Termination,
) {
    loop {
        tokio::select! {
            () = termination.received() => return,
            () = tokio::time::sleep(SUPERVISE_INTERVAL) => {}
        }
        if let Some(status) = lb.as_mut().and_then(LbProcess::try_exit) {
            println!("{} lb exited ({status}); restarting", clock());
            *lb = match LbProcess::spawn_lb(bin, config, lb_log, READY_TIMEOUT).await {
                Ok(new) => {
                    print_lb(&new);
                    Some(new)
                }
                Err(e) => {
                    println!("{} lb failed to restart: {e}", clock());
                    None
                }
            };
        }
        for r in replicas.iter_mut() {
            let exited = r.process.as_mut().and_then(NodeProcess::try_exit);
            if let Some(status) = exited {
                println!(
                    "{} {} exited ({status}); restarting in {} s",
                    clock(),
                    r.spec.name(),
                    RESTART_DELAY.as_secs()
                );
                r.process = None;
                r.role = "stopped".into();
                r.restart_at = Some(Instant::now() + RESTART_DELAY);
            }
            if r.restart_at.is_some_and(|at| Instant::now() >= at) {
                r.restart_at = None;
                r.restarts += 1;
                match NodeProcess::spawn(&r.spec, READY_TIMEOUT).await {
                    Ok(p) => {
                        println!(
                            "{} {} restarted (restart #{}), pid {}",
                            clock(),
                            r.spec.name(),
                            r.restarts,
                            p.pid()
                        );
                        r.process = Some(p);
                    }
                    Err(e) => {
                        println!("{} {} failed to restart: {e}", clock(), r.spec.name());
                        r.restart_at = Some(Instant::now() + RESTART_DELAY);
                    }
                }
            }
            let Some(process) = &r.process else { continue };
            let role = role_of(process).await;
            if role != r.role {
                println!("{} {:<22} {} -> {}", clock(), r.spec.name(), r.role, role);
                r.role = role;
            }
        }
    }
}

async fn stop_all(replicas: &mut [Replica]) {
    // SIGTERM everyone first so they step down in parallel, then wait for each.
    for r in replicas.iter() {
        if let Some(p) = &r.process {
            let _ = p.signal(nix::sys::signal::Signal::SIGTERM);
        }
    }
    for r in replicas.iter_mut() {
        if let Some(p) = r.process.as_mut() {
            p.stop(STOP_GRACE).await;
        }
    }
}

/// Wall-clock time of day (UTC) for supervision messages.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// Where `tandem up` keeps per-replica logs.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}
