//! `tandem bench sequencer`: N sequencer processes over one database; M members each send K
//! messages to themselves through their sequencer with several sends in flight, and read their
//! receipts from their subscription. Reports events per second and send-to-deliver latency
//! (from starting `Send` to the event arriving on the member's stream). The members sign their
//! requests before the clock starts: signing is the members' work, done on their own machines in
//! a deployment, and here it would take the sequencers' CPU.

use crate::cli::{BenchBackend, BenchSequencerArgs};
use crate::process::NodeProcess;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_nodes::config::TopologyConfig;
use tandem_nodes::identity::{KeyPair, MemberId, MemberKind};
use tandem_nodes::member::admit_within;
use tandem_nodes::sequencer::client::SequencerClient;
use tandem_nodes::sequencer::now_us;
use tandem_nodes::testing::{synchronizer_topology, PgCluster, PgDatabase};
use tandem_proto::sequencer::v1 as pb;
use tokio::sync::Semaphore;

/// How long the prepared requests stay valid: their max sequencing time.
const PREPARED_FOR: Duration = Duration::from_secs(3600);

pub async fn run(args: BenchSequencerArgs) -> anyhow::Result<ExitCode> {
    if args.sequencers == 0 || args.members == 0 || args.messages == 0 || args.in_flight == 0 {
        bail!("--sequencers, --members, --messages and --in-flight must be positive");
    }
    let dir = tempfile::Builder::new()
        .prefix("tandem-bench-seq-")
        .tempdir()?;
    let (storage, _pg): (String, Option<PgDatabase>) = match (args.backend, &args.postgres) {
        (BenchBackend::Sqlite, _) => (
            format!("sqlite://{}/sequencer.db", dir.path().display()),
            None,
        ),
        (BenchBackend::Postgres, Some(url)) => {
            let name = format!("tandem_bench_seq_{}", std::process::id());
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
        args.sequencers as usize,
        0,
        "topology_change_delay_ms = 50",
        "",
    ))?;
    let bin = std::env::current_exe()?;
    let mut processes = Vec::new();
    for replica in 0..args.sequencers {
        processes.push(
            NodeProcess::spawn_recorded(
                &bin,
                dir.path(),
                &mut topology,
                "sequencer",
                replica,
                Duration::from_secs(30),
            )
            .await?,
        );
    }
    // The topology manager bootstraps the sequencers and admits the members.
    let tm = NodeProcess::spawn_recorded(
        &bin,
        dir.path(),
        &mut topology,
        "topology-manager",
        0,
        Duration::from_secs(30),
    )
    .await;
    let steal = super::bench::StealMeter::start();
    let result = match tm {
        Ok(mut tm) => {
            let result = drive(&args, &processes, &topology.topology_manager_endpoints()).await;
            tm.stop(Duration::from_secs(10)).await;
            result
        }
        Err(e) => Err(e.into()),
    };
    let steal = steal.summary();
    for p in &mut processes {
        p.stop(Duration::from_secs(10)).await;
    }
    let (elapsed, mut latencies) = result?;
    let total = latencies.deliver.len();
    latencies.deliver.sort_by(f64::total_cmp);
    latencies.receipt.sort_by(f64::total_cmp);
    let pct = |p: f64| super::bench::percentile(&latencies.deliver, p);
    let backend = if args.backend == BenchBackend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    println!(
        "bench=sequencer backend={backend} sequencers={} members={} messages={total} in_flight={} events_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} receipt_p50_ms={:.2}{}",
        args.sequencers,
        args.members,
        args.in_flight,
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
        super::bench::percentile(&latencies.receipt, 0.50),
        steal,
    );
    Ok(ExitCode::SUCCESS)
}

/// Every message's latencies in ms, from starting its `Send`.
#[derive(Default)]
struct Latencies {
    /// To the event arriving on the member's stream.
    deliver: Vec<f64>,
    /// To the receipt (the `Send` answered).
    receipt: Vec<f64>,
}

/// Returns the wall time of the run and every message's latencies.
async fn drive(
    args: &BenchSequencerArgs,
    processes: &[NodeProcess],
    topology_manager: &[String],
) -> anyhow::Result<(Duration, Latencies)> {
    let endpoint = |i: usize| -> anyhow::Result<String> {
        let api = processes[i % processes.len()]
            .ready
            .api
            .context("sequencer without API")?;
        Ok(format!("http://{api}"))
    };
    let mut members = Vec::new();
    for i in 0..args.members {
        let key = Arc::new(KeyPair::generate()?);
        let member = MemberId::new(
            MemberKind::Participant,
            &format!("bench{i}"),
            &key.public_key(),
        );
        admit_within(topology_manager, &member, &key, Duration::from_secs(30)).await?;
        members.push((member, key));
    }
    let mut prepared = Vec::new();
    let max_sequencing_time = now_us() + PREPARED_FOR.as_micros() as i64;
    for (i, (member, key)) in members.into_iter().enumerate() {
        let client = SequencerClient::connect(&endpoint(i)?, member, key).await?;
        let me = vec![client.member.to_string()];
        let requests: Vec<pb::SubmissionRequest> = (0..args.messages)
            .map(|n| client.request(&format!("b{n}"), &me, vec![0u8; 256], max_sequencing_time))
            .collect();
        prepared.push((client, requests));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, requests) in prepared {
        tasks.push(tokio::spawn(member_run(
            client,
            requests,
            args.in_flight as usize,
            started,
        )));
    }
    let mut latencies = Latencies::default();
    let mut last = Duration::ZERO;
    for t in tasks {
        let (done, mut l) = t.await??;
        last = last.max(done);
        println!(
            "member done: {} messages, last delivery at {:.0} ms",
            l.deliver.len().max(args.messages as usize),
            done.as_secs_f64() * 1000.0
        );
        latencies.deliver.append(&mut l.deliver);
        latencies.receipt.append(&mut l.receipt);
    }
    Ok((last, latencies))
}

/// One member: subscribe, send `requests` (to itself) with `in_flight` concurrent sends, wait
/// for every receipt. Returns when the last arrived (since `started`) and the latencies.
async fn member_run(
    mut client: SequencerClient,
    requests: Vec<pb::SubmissionRequest>,
    in_flight: usize,
    started: Instant,
) -> anyhow::Result<(Duration, Latencies)> {
    let messages = requests.len();
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut stream = client.subscribe(0).await?;
    let permits = Arc::new(Semaphore::new(in_flight));
    let receipts: Arc<Mutex<Vec<f64>>> = Arc::default();
    let sender = {
        let (sent_at, permits, mut client, failed, receipts) = (
            sent_at.clone(),
            permits.clone(),
            client.clone(),
            failed.clone(),
            receipts.clone(),
        );
        tokio::spawn(async move {
            for request in requests {
                let permit = permits.clone().acquire_owned().await?;
                let at = Instant::now();
                sent_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(request.message_id.clone(), at);
                let mut c = client.clone();
                let (failed, receipts) = (failed.clone(), receipts.clone());
                tokio::spawn(async move {
                    match c.send(request).await {
                        Ok(_) => receipts
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(at.elapsed().as_secs_f64() * 1000.0),
                        Err(status) => {
                            eprintln!("send failed: {status}");
                            failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    drop(permit);
                });
                client = client.clone();
            }
            anyhow::Ok(())
        })
    };
    let mut latencies = Vec::with_capacity(messages);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while latencies.len() + failed.load(std::sync::atomic::Ordering::SeqCst) < messages {
        let event = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("deliveries stalled")??
            .context("stream ended")?;
        let now = Instant::now();
        if let Some(at) = sent_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&event.message_id)
        {
            latencies.push(now.duration_since(at).as_secs_f64() * 1000.0);
        }
    }
    sender.await??;
    // Every send has its answer once all permits are back.
    let _all = permits.acquire_many(in_flight as u32).await?;
    let failed = failed.load(std::sync::atomic::Ordering::SeqCst);
    if failed > 0 {
        bail!("{failed} of {messages} sends failed");
    }
    let receipt = std::mem::take(&mut *receipts.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((
        started.elapsed(),
        Latencies {
            deliver: latencies,
            receipt,
        },
    ))
}
