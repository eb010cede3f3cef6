//! `tandem bench`: benchmarks that measure the real system with real processes. Each prints one
//! line per sample and ends with a `key=value` summary line (design.md §10).
//!
//! - `failover`: SIGKILL the active replica of a replicated node; time until a standby's
//!   `/health` answers 200.
//! - `handover`: `set-passive` on the active replica; time until a standby's `/health` answers 200.

use crate::cli::{BenchArgs, BenchBackend, BenchCommand};
use crate::process::{NodeProcess, NodeSpec};
use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tandem_nodes::health::probe;
use tandem_nodes::testing::{PgCluster, PgDatabase};
use tandem_proto::admin::v1 as pb;

const NODE: &str = "bench";
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Failover,
    Handover,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Failover(args) => bench(args, Mode::Failover).await,
        BenchCommand::Handover(args) => bench(args, Mode::Handover).await,
        BenchCommand::Sequencer(args) => super::bench_sequencer::run(args).await,
        BenchCommand::Ledger(args) => super::bench_ledger::run(args).await,
        BenchCommand::Gateway(args) => super::bench_gateway::run(args).await,
    }
}

/// A replicated node started for the benchmark, with whatever keeps its database alive.
struct Bench {
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
    specs: Vec<NodeSpec>,
    processes: Vec<Option<NodeProcess>>,
}

/// A topology with one participant of `replicas` replicas on port 0; the synchronizer entries are
/// required by the schema and never started.
pub fn bench_topology(storage: &str, replicas: u32) -> String {
    let replica = "{ api = \"127.0.0.1:0\", admin = \"127.0.0.1:0\", health = \"127.0.0.1:0\" }";
    let list = vec![replica; usize::try_from(replicas).unwrap_or(1)].join(",\n  ");
    format!(
        "[synchronizer.sequencer]\nstorage = \"{storage}\"\nreplicas = [{replica}]\n\
         [synchronizer.mediator]\nstorage = \"{storage}\"\nreplicas = [{{ admin = \"127.0.0.1:0\", health = \"127.0.0.1:0\" }}]\n\
         [synchronizer.topology_manager]\nstorage = \"{storage}\"\nreplicas = [{{ admin = \"127.0.0.1:0\", health = \"127.0.0.1:0\" }}]\n\
         [[participants]]\nname = \"{NODE}\"\nstorage = \"{storage}\"\n{auth}\nreplicas = [\n  {list}\n]\n",
        auth = tandem_nodes::testing::participant_auth()
    )
}

async fn setup(args: &BenchArgs) -> anyhow::Result<Bench> {
    if args.replicas < 2 {
        bail!("--replicas must be at least 2: a failover needs a standby");
    }
    let dir = tempfile::Builder::new().prefix("tandem-bench-").tempdir()?;
    let (storage, pg) = match (args.backend, &args.postgres) {
        (BenchBackend::Sqlite, _) => (format!("sqlite://{}/bench.db", dir.path().display()), None),
        (BenchBackend::Postgres, Some(url)) => (
            tandem_nodes::store::ensure_postgres_database(url, "tandem_bench").await?,
            None,
        ),
        (BenchBackend::Postgres, None) => {
            let cluster = std::sync::Arc::new(PgCluster::start().map_err(anyhow::Error::msg)?);
            let db = cluster.database().map_err(anyhow::Error::msg)?;
            (db.url.clone(), Some(db))
        }
    };
    let config = dir.path().join("topology.toml");
    std::fs::write(&config, bench_topology(&storage, args.replicas))?;
    let bin = std::env::current_exe()?;
    let specs: Vec<NodeSpec> = (0..args.replicas)
        .map(|replica| NodeSpec {
            bin: bin.clone(),
            config: config.clone(),
            node: NODE.into(),
            replica,
            log: dir.path().join(format!("{NODE}-{replica}.log")),
        })
        .collect();
    let mut processes = Vec::new();
    for spec in &specs {
        processes.push(Some(
            NodeProcess::spawn(spec, Duration::from_secs(30)).await?,
        ));
    }
    Ok(Bench {
        _dir: dir,
        _pg: pg,
        specs,
        processes,
    })
}

impl Bench {
    /// The index of the replica whose /health answers 200, waiting up to `deadline`.
    async fn active(&self, except: Option<usize>, deadline: Duration) -> anyhow::Result<usize> {
        let until = Instant::now() + deadline;
        loop {
            for (i, p) in self.processes.iter().enumerate() {
                let Some(p) = p else { continue };
                if Some(i) == except {
                    continue;
                }
                if let Ok((200, _)) = probe(p.ready.health, "/health", PROBE_TIMEOUT).await {
                    return Ok(i);
                }
            }
            if Instant::now() > until {
                bail!(
                    "no replica became active within {} ms",
                    deadline.as_millis()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn stop(&mut self) {
        for p in self.processes.iter_mut().flatten() {
            p.stop(Duration::from_secs(5)).await;
        }
    }
}

async fn bench(args: BenchArgs, mode: Mode) -> anyhow::Result<ExitCode> {
    let mut bench = setup(&args).await?;
    let steal = StealMeter::start();
    let result = trials(&mut bench, &args, mode).await;
    bench.stop().await;
    let samples = result?;
    let name = if mode == Mode::Failover {
        "failover"
    } else {
        "handover"
    };
    let backend = if args.backend == BenchBackend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "bench={name} backend={backend} replicas={} trials={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} mean_ms={:.1}{}",
        args.replicas,
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
        samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        steal.summary(),
    );
    Ok(ExitCode::SUCCESS)
}

async fn trials(bench: &mut Bench, args: &BenchArgs, mode: Mode) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::new();
    for trial in 1..=args.trials {
        let from = bench
            .active(None, TAKEOVER_DEADLINE)
            .await
            .context("before the trial")?;
        let Some(process) = bench.processes[from].as_ref() else {
            bail!("replica {from} is not running")
        };
        let started = Instant::now();
        let mut reported = String::new();
        match mode {
            Mode::Failover => process.signal(Signal::SIGKILL)?,
            Mode::Handover => {
                let mut client = super::admin::client(process.ready.admin).await?;
                let answer = client
                    .set_passive(pb::SetPassiveRequest { timeout_ms: 0 })
                    .await?
                    .into_inner();
                reported = format!(" server_handover_ms={}", answer.handover_ms);
            }
        }
        let to = bench.active(Some(from), TAKEOVER_DEADLINE).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!("trial={trial} from={NODE}/{from} to={NODE}/{to} ms={ms:.1}{reported}");
        samples.push(ms);
        if mode == Mode::Failover {
            if let Some(mut killed) = bench.processes[from].take() {
                killed.wait().await?;
            }
            bench.processes[from] =
                Some(NodeProcess::spawn(&bench.specs[from], Duration::from_secs(30)).await?);
        }
    }
    Ok(samples)
}

/// Nearest-rank percentile of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How much of a run the hypervisor took away (steal), from the machine's CPU time counters in
/// `/proc/stat`. On a shared VM a run with more than a few percent of steal measured a busy
/// host as much as Tandem, and its figures are not comparable with a quiet run's.
pub struct StealMeter(Option<CpuTimes>);

struct CpuTimes {
    steal: u64,
    total: u64,
}

/// Steal above this share of a run's CPU time gets a warning next to the summary line.
const STEAL_WARN_PCT: f64 = 5.0;

impl StealMeter {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self(CpuTimes::read())
    }

    /// ` steal_pct=N.N` for a summary line: the share of the machine's CPU time the hypervisor
    /// took since the start, with a warning on stderr when it is high; empty where `/proc/stat`
    /// is unreadable (not Linux).
    pub fn summary(&self) -> String {
        let (Some(start), Some(now)) = (&self.0, CpuTimes::read()) else {
            return String::new();
        };
        let total = now.total.saturating_sub(start.total).max(1);
        let pct = 100.0 * now.steal.saturating_sub(start.steal) as f64 / total as f64;
        if pct > STEAL_WARN_PCT {
            eprintln!(
                "warning: the hypervisor took {pct:.1}% of this machine's CPU time during the run \
                 (steal); these figures measure a busy host and are not comparable with a quiet run's"
            );
        }
        format!(" steal_pct={pct:.1}")
    }
}

impl CpuTimes {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        Some(Self {
            steal: *fields.get(7)?,
            total: fields.iter().take(8).sum(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_read_from_proc_stat() {
        let meter = StealMeter::start();
        if cfg!(target_os = "linux") {
            assert!(meter.0.is_some(), "/proc/stat has the eight counters");
        }
        let field = meter.summary();
        if meter.0.is_some() {
            let pct: f64 = field
                .strip_prefix(" steal_pct=")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{field:?}"));
            assert!((0.0..=100.0).contains(&pct), "{pct}");
        }
    }
}
