//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free loopback port,
//! a fresh database per test, and a stop by the postmaster's own pid when the last user drops it.
//! As root, the server runs as the `postgres` user (Postgres refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A running cluster. Stopped (fast shutdown, then SIGKILL) and deleted on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    server: Mutex<Option<Child>>,
    next_db: AtomicU32,
}

/// A database of its own on a shared cluster. Keeps the cluster alive.
pub struct PgDatabase {
    pub cluster: Arc<PgCluster>,
    pub url: String,
    pub name: String,
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());

/// Where `initdb` lives: PATH first, then the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.exists() {
                let real = std::fs::canonicalize(&initdb).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command run as the `postgres` user when we are root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(exe);
        cmd
    } else {
        Command::new(exe)
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl PgCluster {
    /// The cluster shared by every test of this process, started on first use. `None` (after a
    /// loud SKIP line) when no Postgres binaries are installed, unless `TANDEM_REQUIRE_POSTGRES=1`,
    /// which turns the skip into a panic.
    pub fn shared() -> Option<Arc<PgCluster>> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return Some(cluster);
        }
        let cluster = match Self::start() {
            Ok(cluster) => Arc::new(cluster),
            Err(e) => {
                let required = std::env::var("TANDEM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "TANDEM_REQUIRE_POSTGRES=1 but Postgres is unavailable: {e}"
                );
                eprintln!("SKIP: Postgres tests skipped: {e}");
                return None;
            }
        };
        *shared = Arc::downgrade(&cluster);
        Some(cluster)
    }

    /// Starts a new private cluster.
    pub fn start() -> Result<PgCluster, String> {
        let bin = find_bin_dir().ok_or("no initdb on PATH or in /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        if running_as_root() {
            let user = nix::unistd::User::from_name("postgres")
                .map_err(|e| e.to_string())?
                .ok_or("running as root and there is no postgres user")?;
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let out = pg_command(&bin, "initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let cluster = PgCluster {
            dir,
            bin,
            port,
            server: Mutex::new(None),
            next_db: AtomicU32::new(0),
        };
        cluster.start_server()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` maintenance database.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (or restarts) the server on the existing data directory and waits until it accepts
    /// connections.
    pub fn start_server(&self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let child = pg_command(&self.bin, "postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .args(["-c", "fsync=off", "-c", "max_connections=300"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = pg_command(&self.bin, "pg_isready")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                return Err(format!("postgres did not become ready: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server by its pid (fast shutdown: SIGINT), keeping the data. Used to simulate a
    /// database that disappears while nodes run.
    pub fn stop_server(&self) {
        let child = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let postmaster = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
            stop_child(&mut child, postmaster);
        }
    }

    /// Creates a fresh, empty database and returns it.
    pub fn database(self: &Arc<Self>) -> Result<PgDatabase, String> {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let out = pg_command(&self.bin, "createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ])
            .output()
            .map_err(|e| format!("createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "createdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(PgDatabase {
            cluster: Arc::clone(self),
            url: format!("postgres://postgres@127.0.0.1:{}/{name}", self.port),
            name,
        })
    }
}

impl PgDatabase {
    /// A fresh database on the shared cluster, or `None` when Postgres tests are skipped.
    pub fn fresh() -> Option<PgDatabase> {
        let cluster = PgCluster::shared()?;
        match cluster.database() {
            Ok(db) => Some(db),
            Err(e) => panic!("cannot create a test database: {e}"),
        }
    }
}

/// SIGINT (Postgres' fast shutdown) to the postmaster's pid, then SIGKILL if it has not exited
/// within 10 s. `child` is the process we spawned (`postgres` itself, or `runuser` around it).
fn stop_child(child: &mut Child, postmaster: Option<i32>) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let spawned = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let _ = kill(Pid::from_raw(postmaster.unwrap_or(spawned)), Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(pid) = postmaster {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_server();
    }
}
