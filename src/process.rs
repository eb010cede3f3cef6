//! Replica child processes: spawn `tandem node`, wait for its ready line, signal it by its own
//! pid. Shared by `tandem up`, `tandem bench` and the whole-topology tests.

use crate::commands::node::READY_PREFIX;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tandem_nodes::node::Ready;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} exited before it was ready ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        what: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("{what} did not report ready within {secs} s; see {log}")]
    Timeout {
        what: String,
        secs: u64,
        log: String,
    },
}

/// A running `tandem` child process that announced itself with a ready line of type `R`.
pub struct ChildProcess<R> {
    pub ready: R,
    pub log: PathBuf,
    child: Child,
    pid: u32,
}

/// A running `tandem node` child.
pub type NodeProcess = ChildProcess<Ready>;

/// A running `tandem lb` child: its ready line names the admin address and every frontend.
pub type LbProcess = ChildProcess<LbReady>;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct LbReady {
    pub admin: std::net::SocketAddr,
    pub frontends: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

/// What a started gateway announces.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GatewayReady {
    pub name: String,
    pub listen: std::net::SocketAddr,
    pub advertised_url: String,
}

/// A `tandem gateway` child.
pub type GatewayProcess = ChildProcess<GatewayReady>;

impl GatewayProcess {
    /// Starts gateway `name` of the topology and waits for its ready line.
    pub async fn spawn_gateway(
        bin: &Path,
        config: &Path,
        name: &str,
        log: &Path,
        timeout: Duration,
    ) -> Result<GatewayProcess, SpawnError> {
        let args = [
            "gateway".to_string(),
            "--config".into(),
            config.display().to_string(),
            "--name".into(),
            name.to_string(),
        ];
        spawn_child(bin, &args, name, log, timeout).await
    }
}

/// What to run: the `tandem` binary, the topology file and the replica.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub node: String,
    pub replica: u32,
    pub log: PathBuf,
}

impl NodeSpec {
    pub fn name(&self) -> String {
        format!("{}/{}", self.node, self.replica)
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl NodeProcess {
    /// Starts the replica and waits until it printed its ready line. Its stderr and the rest of
    /// its stdout go to `spec.log`.
    pub async fn spawn(spec: &NodeSpec, timeout: Duration) -> Result<NodeProcess, SpawnError> {
        let args = [
            "node".to_string(),
            "--config".into(),
            spec.config.display().to_string(),
            "--node".into(),
            spec.node.clone(),
            "--replica".into(),
            spec.replica.to_string(),
        ];
        spawn_child(&spec.bin, &args, &spec.name(), &spec.log, timeout).await
    }

    /// Starts replica `replica` of `node` from `topology` (written to a file in `dir`), then
    /// records the addresses it bound in `topology`, so nodes started after it find it: how
    /// port-0 topologies start in order (sequencers, topology manager, mediator, participants).
    pub async fn spawn_recorded(
        bin: &Path,
        dir: &Path,
        topology: &mut tandem_nodes::config::TopologyConfig,
        node: &str,
        replica: u32,
        timeout: Duration,
    ) -> Result<NodeProcess, SpawnError> {
        let config = dir.join(format!("topology-{node}-{replica}.toml"));
        let what = format!("{node}/{replica}");
        let text = toml::to_string(topology).map_err(|e| SpawnError::Io {
            what: what.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&config, text).map_err(|source| SpawnError::Io { what, source })?;
        let spec = NodeSpec {
            bin: bin.to_path_buf(),
            config,
            node: node.to_string(),
            replica,
            log: dir.join(format!("{node}-{replica}.log")),
        };
        let process = NodeProcess::spawn(&spec, timeout).await?;
        let r = &process.ready;
        topology.record_bound(node, replica, r.api, r.admin, r.health);
        Ok(process)
    }
}

impl LbProcess {
    /// Starts `tandem lb --config CONFIG` and waits for its ready line.
    pub async fn spawn_lb(
        bin: &Path,
        config: &Path,
        log: &Path,
        timeout: Duration,
    ) -> Result<LbProcess, SpawnError> {
        let args = [
            "lb".to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        spawn_child(bin, &args, "lb", log, timeout).await
    }
}

/// Runs `bin args`, waits up to `timeout` for its `TANDEM_READY {json}` line, and sends its stderr
/// and the rest of its stdout to `log`.
/// Set on every child this process starts: the supervisor's pid. See [`exit_with_parent`].
const PARENT_PID_ENV: &str = "TANDEM_PARENT_PID";

/// In a child of `tandem up` (or of a test or benchmark): asks the kernel for SIGTERM when the
/// parent dies, however it dies (SIGKILL included), so no replica outlives its supervisor as
/// an orphan holding ports and leases; SIGTERM is the usual graceful stop. Fails if the parent
/// is already gone. Does nothing in a process nobody started this way.
pub fn exit_with_parent() -> Result<(), String> {
    let Ok(parent) = std::env::var(PARENT_PID_ENV) else {
        return Ok(());
    };
    let parent: i32 = parent
        .parse()
        .map_err(|_| format!("{PARENT_PID_ENV}={parent:?} is not a pid"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| format!("cannot ask to be stopped with the parent: {e}"))?;
    if nix::unistd::getppid().as_raw() != parent {
        return Err(format!(
            "the parent (pid {parent}) exited before this process started"
        ));
    }
    Ok(())
}

async fn spawn_child<R: serde::de::DeserializeOwned>(
    bin: &Path,
    args: &[String],
    what: &str,
    log_path: &Path,
    timeout: Duration,
) -> Result<ChildProcess<R>, SpawnError> {
    let what = what.to_string();
    let io = |source| SpawnError::Io {
        what: what.clone(),
        source,
    };
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io)?;
    let mut child = Command::new(bin)
        .args(args)
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().map_err(io)?)
        .kill_on_drop(true)
        .spawn()
        .map_err(io)?;
    let pid = child.id().unwrap_or(0);
    let Some(stdout) = child.stdout.take() else {
        return Err(io(std::io::Error::other("no stdout pipe")));
    };
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(json) = line.strip_prefix(READY_PREFIX) {
                return serde_json::from_str::<R>(json).ok();
            }
        }
        None
    })
    .await;
    let ready = match ready {
        Ok(Some(ready)) => ready,
        Ok(None) => {
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            return Err(SpawnError::Exited {
                what,
                status,
                log: log_path.display().to_string(),
                tail: tail(log_path, 5),
            });
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(SpawnError::Timeout {
                what,
                secs: timeout.as_secs(),
                log: log_path.display().to_string(),
            });
        }
    };
    // Keep draining stdout into the log so the child never blocks on a full pipe.
    let mut log = tokio::fs::File::from_std(log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    Ok(ChildProcess {
        ready,
        log: log_path.to_path_buf(),
        child,
        pid,
    })
}

impl<R> ChildProcess<R> {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to this child by its pid.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        let pid = i32::try_from(self.pid).map_err(|_| nix::Error::EINVAL)?;
        kill(Pid::from_raw(pid), signal)
    }

    /// The exit status, if the child has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Some(status);
        }
        let _ = self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.signal(Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        }
    }
}
