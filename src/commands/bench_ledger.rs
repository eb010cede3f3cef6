//! `tandem bench ledger`: a whole topology as processes (two sequencers, two replicas each of
//! the topology manager, the mediator and every participant), then `--clients` clients each
//! issue an Iou and transfer it to a party on the next participant, through SubmitAndWait, for
//! `--duration` seconds. Prints committed transactions per second and latency percentiles. On
//! SQLite every node has a file of its own, as in `tandem up`; on Postgres they share one
//! database.

use crate::cli::{BenchBackend, BenchLedgerArgs};
use crate::process::NodeProcess;
use anyhow::{bail, Context};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_nodes::config::TopologyConfig;
use tandem_nodes::participant::client::LedgerClient;
use tandem_nodes::testing::{synchronizer_topology, PgCluster, PgDatabase};

const IOU: &str = "#iou:Iou:Iou";
const PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.yaml");

pub async fn run(args: BenchLedgerArgs) -> anyhow::Result<ExitCode> {
    if args.participants == 0 || args.clients == 0 || args.duration == 0 {
        bail!("--participants, --clients and --duration must be positive");
    }
    let dir = tempfile::Builder::new()
        .prefix("tandem-bench-ledger-")
        .tempdir()?;
    let (storage, _pg): (String, Option<PgDatabase>) = match (args.backend, &args.postgres) {
        // Only to write the topology: below, every node gets a file of its own.
        (BenchBackend::Sqlite, _) => (format!("sqlite://{}/ledger.db", dir.path().display()), None),
        (BenchBackend::Postgres, Some(url)) => {
            let name = format!("tandem_bench_ledger_{}", std::process::id());
            (
                tandem_nodes::store::ensure_postgres_database(url, &name).await?,
                None,
            )
        }
        (BenchBackend::Postgres, None) => {
            let cluster = Arc::new(PgCluster::start().map_err(anyhow::Error::msg)?);
            let db = cluster.database().map_err(anyhow::Error::msg)?;
            (db.url.clone(), Some(db))
        }
    };
    let mut topology = TopologyConfig::parse(&synchronizer_topology(
        &storage,
        2,
        args.participants as usize,
        "topology_change_delay_ms = 50",
        "",
    ))?;
    if args.backend == BenchBackend::Sqlite {
        // As `tandem up` lays them out: a file per node, shared by its replicas.
        for node in topology.node_configs_mut() {
            node.storage = format!("sqlite://{}/{}.db", dir.path().display(), node.name);
        }
    }
    let bin = std::env::current_exe()?;
    let mut order = vec![
        "sequencer".to_string(),
        "topology-manager".into(),
        "mediator".into(),
    ];
    order.extend((1..=args.participants).map(|i| format!("participant{i}")));
    let mut processes = Vec::new();
    let mut apis = Vec::new();
    let started = async {
        for node in &order {
            for replica in 0..2 {
                let p = NodeProcess::spawn_recorded(
                    &bin,
                    dir.path(),
                    &mut topology,
                    node,
                    replica,
                    Duration::from_secs(30),
                )
                .await?;
                if node.starts_with("participant") && replica == 0 {
                    apis.push(p.ready.api.context("participant without a Ledger API")?);
                }
                processes.push(p);
            }
        }
        anyhow::Ok(())
    };
    let started = started.await;
    let steal = super::bench::StealMeter::start();
    let result = match started {
        Ok(()) => drive(&args, &apis).await,
        Err(e) => Err(e),
    };
    let steal = steal.summary();
    let phases = phase_means(&processes).await;
    for p in processes.iter_mut().rev() {
        p.stop(Duration::from_secs(10)).await;
    }
    let (elapsed, mut latencies) = result?;
    let total = latencies.len();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| super::bench::percentile(&latencies, p);
    let backend = if args.backend == BenchBackend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    for (phase, ms) in &phases {
        println!("phase {phase:<32} mean {ms:.1} ms");
    }
    let phase_figures: String = phases
        .iter()
        .map(|(phase, ms)| format!(" {phase}_ms={ms:.1}"))
        .collect();
    println!(
        "bench=ledger backend={backend} participants={} clients={} duration_s={} transactions={total} tx_per_s={:.0} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}{phase_figures}{steal}",
        args.participants,
        args.clients,
        args.duration,
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(ExitCode::SUCCESS)
}

/// The mean time per phase of the submitted transactions, in ms, from the participants'
/// `tandem_participant_transaction_phase_seconds` (summed over every replica).
async fn phase_means(processes: &[NodeProcess]) -> Vec<(String, f64)> {
    let mut totals: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for p in processes {
        let Ok((200, text)) =
            tandem_nodes::health::probe(p.ready.health, "/metrics", Duration::from_secs(2)).await
        else {
            continue;
        };
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("tandem_participant_transaction_phase_seconds_")
            else {
                continue;
            };
            let Some((kind, rest)) = rest.split_once('{') else {
                continue;
            };
            let phase = rest
                .split("phase=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
                .unwrap_or_default();
            let value: f64 = rest
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let entry = totals.entry(phase.to_string()).or_default();
            match kind {
                "sum" => entry.0 += value,
                "count" => entry.1 += value,
                _ => {}
            }
        }
    }
    let order = [
        "submitted_to_request_sequenced",
        "request_to_verdict_sequenced",
        "verdict_to_committed",
    ];
    order
        .iter()
        .filter_map(|phase| {
            let (sum, count) = totals.get(*phase)?;
            (*count > 0.0).then(|| ((*phase).to_string(), sum / count * 1000.0))
        })
        .collect()
}

/// Retries `f` while the participant is still becoming active or connecting.
pub(crate) async fn ready<T, F: std::future::Future<Output = Result<T, tonic::Status>>>(
    mut f: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(t) => return Ok(t),
            Err(s)
                if Instant::now() < deadline
                    && matches!(
                        s.code(),
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => bail!("{:?}: {}", s.code(), s.message()),
        }
    }
}

async fn drive(
    args: &BenchLedgerArgs,
    apis: &[std::net::SocketAddr],
) -> anyhow::Result<(Duration, Vec<f64>)> {
    let clients: Vec<LedgerClient> = apis
        .iter()
        .map(|a| {
            tandem_nodes::testing::ledger_client(&format!("http://{a}"), "participant_admin")
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<_, _>>()?;
    for c in &clients {
        ready(|| c.upload_package(PACKAGE.to_vec(), "yaml")).await?;
    }
    let mut parties = Vec::new();
    for i in 0..args.clients as usize {
        let here = clients[i % clients.len()].clone();
        let there = clients[(i + 1) % clients.len()].clone();
        let (owner_hint, receiver_hint) = (format!("Owner{i}"), format!("Receiver{i}"));
        let owner = ready(|| here.allocate_party(&owner_hint, "participant_admin")).await?;
        let receiver = ready(|| there.allocate_party(&receiver_hint, "participant_admin")).await?;
        parties.push((here, owner, receiver));
    }
    let mut tasks = Vec::new();
    let until = Instant::now() + Duration::from_secs(args.duration);
    for (i, (here, owner, receiver)) in parties.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < until {
                let t0 = Instant::now();
                let args = json!({"issuer": owner, "owner": owner, "currency": "USD", "amount": "10.0", "viewers": []});
                let create = here.commands(&format!("c{i}-{n}"), std::slice::from_ref(&owner), vec![LedgerClient::create(IOU, &args)]);
                let tx = here.submit_and_wait_for_transaction(create).await?;
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                let Some(tandem_proto::ledger::v2::event::Event::Created(c)) = tx.events.first().and_then(|e| e.event.clone()) else {
                    anyhow::bail!("no created event");
                };
                let t1 = Instant::now();
                let transfer = here.commands(&format!("t{i}-{n}"), std::slice::from_ref(&owner), vec![LedgerClient::exercise(IOU, &c.contract_id, "Transfer", &json!({"new_owner": receiver}))]);
                here.submit_and_wait(transfer).await?;
                latencies.push(t1.elapsed().as_secs_f64() * 1000.0);
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let measuring = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((measuring.elapsed(), all))
}
