//! `tandem bench gateway`: a synchronizer and one participant (in this process), a `tandem
//! gateway` child process in front of it, and `--contracts` Ious created through the Ledger API
//! in batches. Then two phases of `--duration` seconds each, with `--clients` HTTP/1.1
//! keep-alive connections: cached queries (`POST /v2/query` for one contract by a payload
//! field), driven by `wrk` (Debian's package, installed if missing; `--load builtin` uses this
//! process's own client), and creates (`POST /v2/commands/submit-and-wait`), driven by this
//! process with `--create-clients` (default `--clients`) connections. Prints requests per
//! second and latency percentiles for both, and the cache's memory.

use crate::cli::{BenchBackend, BenchGatewayArgs, QueryLoad};
use crate::process::GatewayProcess;
use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tandem_nodes::config::GatewayConfig;
use tandem_nodes::participant::client::LedgerClient;
use tandem_nodes::testing::{ledger_client, token, Synchronizer, TEST_JWT_SECRET};

const IOU: &str = "#iou:Iou:Iou";
const PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.yaml");
const ADMIN: &str = "participant_admin";
/// Creates per transaction while loading the contracts.
const BATCH: usize = 100;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub async fn run(args: BenchGatewayArgs) -> anyhow::Result<ExitCode> {
    if args.contracts == 0
        || args.clients == 0
        || args.create_clients == Some(0)
        || args.duration == 0
    {
        bail!("--contracts, --clients, --create-clients and --duration must be positive");
    }
    let postgres = args.backend == BenchBackend::Postgres;
    let sync = Synchronizer::start(postgres, 1, 1, 1, "topology_change_delay_ms = 50", "")
        .await
        .map_err(anyhow::Error::msg)?
        .context("--backend postgres needs the Postgres server binaries (initdb, pg_ctl)")?;
    let dir = tempfile::Builder::new()
        .prefix("tandem-bench-gateway-")
        .tempdir()?;
    let steal = super::bench::StealMeter::start();
    let result = measure(&args, &sync, dir.path()).await;
    let steal = steal.summary();
    sync.stop().await.map_err(anyhow::Error::msg)?;
    let r = result?;
    let backend = if postgres { "postgres" } else { "sqlite" };
    println!(
        "bench=gateway backend={backend} load={} contracts={} clients={} duration_s={} gateway_workers={} \
         query_per_s={:.0} query_p50_ms={:.2} query_p99_ms={:.2} \
         create_clients={} create_per_s={:.0} create_p50_ms={:.1} create_p99_ms={:.1} cache_mb={:.1} gateway_rss_mb={:.1}{steal}",
        r.load,
        args.contracts,
        args.clients,
        args.duration,
        if args.gateway_workers == 0 {
            "cpus".to_owned()
        } else {
            args.gateway_workers.to_string()
        },
        r.query.per_s,
        r.query.p50,
        r.query.p99,
        create_clients(&args),
        r.create.per_s,
        r.create.p50,
        r.create.p99,
        r.cache_bytes / 1e6,
        r.rss_bytes / 1e6,
    );
    Ok(ExitCode::SUCCESS)
}

struct Phase {
    per_s: f64,
    p50: f64,
    p99: f64,
}

struct Results {
    /// What drove the query phase.
    load: &'static str,
    query: Phase,
    create: Phase,
    cache_bytes: f64,
    rss_bytes: f64,
}

async fn measure(
    args: &BenchGatewayArgs,
    sync: &Synchronizer,
    dir: &std::path::Path,
) -> anyhow::Result<Results> {
    let api = sync.participants[0]
        .ready
        .api
        .context("participant without a Ledger API")?;
    let ledger = ledger_client(&format!("http://{api}"), ADMIN).map_err(anyhow::Error::msg)?;
    super::bench_ledger::ready(|| ledger.upload_package(PACKAGE.to_vec(), "yaml")).await?;
    let party = super::bench_ledger::ready(|| ledger.allocate_party("Holder", ADMIN)).await?;
    load_contracts(&ledger, &party, args.contracts).await?;

    // The gateway, as its own process, in front of the participant.
    let mut topology = sync.config.clone();
    topology.gateways = vec![GatewayConfig {
        workers: args.gateway_workers,
        ..GatewayConfig::new(
            "bench",
            "127.0.0.1:0".parse()?,
            &format!("http://{api}"),
            tandem_auth::AuthConfig {
                hs256_secret: Some(TEST_JWT_SECRET.into()),
                allow_unsafe: true,
                ..tandem_auth::AuthConfig::default()
            },
        )
    }];
    let config = dir.join("gateway.toml");
    std::fs::write(&config, toml::to_string(&topology)?)?;
    let bin = std::env::current_exe()?;
    let mut gateway = GatewayProcess::spawn_gateway(
        &bin,
        &config,
        "bench",
        &dir.join("gateway.log"),
        Duration::from_secs(30),
    )
    .await?;
    let result = phases(args, gateway.ready.listen, &party, gateway.pid()).await;
    gateway.stop(Duration::from_secs(10)).await;
    result
}

/// `contracts` Ious of `party`, `BATCH` per transaction, four transactions in flight; the
/// currency of Iou `k` is `C{k}`, so a query can name exactly one.
async fn load_contracts(ledger: &LedgerClient, party: &str, contracts: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    let batches: Vec<Vec<u32>> = (0..contracts)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[u32]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let mine: Vec<Vec<u32>> = batches.iter().skip(lane).step_by(4).cloned().collect();
        let (ledger, party) = (ledger.clone(), party.to_string());
        tasks.push(tokio::spawn(async move {
            for batch in mine {
                let creates = batch
                    .iter()
                    .map(|k| {
                        LedgerClient::create(
                            IOU,
                            &json!({"issuer": party, "owner": party, "currency": format!("C{k}"),
                                    "amount": "1.0", "viewers": []}),
                        )
                    })
                    .collect();
                let id = format!("load-{}", batch[0]);
                let commands = ledger.commands(&id, std::slice::from_ref(&party), creates);
                // Retried with the same command id while the participant is unavailable (a
                // failover under this load): deduplication makes a repeat harmless.
                let submitted = super::bench_ledger::ready(|| async {
                    match ledger.submit_and_wait(commands.clone()).await {
                        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok((String::new(), 0)),
                        other => other,
                    }
                })
                .await;
                submitted.map_err(|e| anyhow::anyhow!("loading contracts: {e}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "loaded {contracts} contracts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn phases(
    args: &BenchGatewayArgs,
    gateway: SocketAddr,
    party: &str,
    gateway_pid: u32,
) -> anyhow::Result<Results> {
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.clients as usize)
        .build_http();
    let bearer = format!("Bearer {}", token(ADMIN));
    let target = Target {
        http: http.clone(),
        gateway,
        bearer: bearer.clone(),
        party: party.to_string(),
    };
    // The first query fills the cache from the ledger (not measured).
    let warm = Instant::now();
    target.query(0).await.context("warm-up query")?;
    eprintln!(
        "cache filled with {} contracts in {:.1} s",
        args.contracts,
        warm.elapsed().as_secs_f64()
    );
    let (load, query) = if args.load == QueryLoad::Wrk && ensure_wrk().await {
        ("wrk", wrk_queries(args, gateway, &bearer, party).await?)
    } else {
        let (target, contracts) = (target.clone(), u64::from(args.contracts));
        let queries = run_clients(args, args.clients, move |client, n| {
            let target = target.clone();
            async move {
                let k = (u64::from(client) * 7919 + n * 104_729) % contracts;
                target.query(k).await
            }
        });
        ("builtin", queries.await?)
    };
    let cache_bytes = metric(&http, gateway, "tandem_gateway_cache_bytes").await?;
    let create = run_clients(args, create_clients(args), move |client, n| {
        let target = target.clone();
        async move { target.create(client, n).await }
    })
    .await?;
    Ok(Results {
        load,
        query,
        create,
        cache_bytes,
        rss_bytes: rss_bytes(gateway_pid),
    })
}

/// Where this process's own clients send, as whom.
#[derive(Clone)]
struct Target {
    http: HttpClient,
    gateway: SocketAddr,
    bearer: String,
    party: String,
}

impl Target {
    /// A cached query for Iou `C{k}`, which must find exactly it.
    async fn query(&self, k: u64) -> anyhow::Result<()> {
        let body = json!({"templateIds": [IOU], "parties": [self.party],
                          "filter": {"currency": format!("C{k}")}});
        let (status, answer) = self.post("/v2/query", &body, None).await?;
        if status != 200 || answer["contracts"].as_array().map(Vec::len) != Some(1) {
            bail!("query C{k}: {status} {answer}");
        }
        Ok(())
    }

    /// A submit-and-wait create of a fresh Iou, under its own idempotency key.
    async fn create(&self, client: u32, n: u64) -> anyhow::Result<()> {
        let party = &self.party;
        let body = json!({
            "commands": [{"CreateCommand": {"templateId": IOU, "createArguments": {
                "issuer": party, "owner": party, "currency": format!("N{client}-{n}"),
                "amount": "1.0", "viewers": []}}}],
            "actAs": [party],
        });
        let key = format!("bench-{client}-{n}");
        let path = "/v2/commands/submit-and-wait";
        let (status, answer) = self.post(path, &body, Some(&key)).await?;
        if status != 200 {
            bail!("create: {status} {answer}");
        }
        Ok(())
    }

    async fn post(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = hyper::Request::post(format!("http://{}{path}", self.gateway))
            .header("authorization", &self.bearer)
            .header("content-type", "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = self
            .http
            .request(request.body(Full::from(body.to_string()))?)
            .await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// Whether `wrk` runs, installing Debian's package if it is missing and apt-get is there.
async fn ensure_wrk() -> bool {
    let runs = || async {
        tokio::process::Command::new("wrk")
            .arg("--version")
            .output()
            .await
            .is_ok()
    };
    if runs().await {
        return true;
    }
    eprintln!("wrk not found; installing Debian's package");
    let installed = tokio::process::Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!("could not install wrk; using the built-in load client");
    }
    installed && runs().await
}

/// The query phase driven by `wrk` (one thread, `--clients` connections), each request for
/// another contract (a Lua script varies the filter). Fails on any non-2xx answer.
async fn wrk_queries(
    args: &BenchGatewayArgs,
    gateway: SocketAddr,
    bearer: &str,
    party: &str,
) -> anyhow::Result<Phase> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("query.lua");
    std::fs::write(
        &script,
        format!(
            r#"local n = 0
local headers = {{ ["Content-Type"] = "application/json", ["Authorization"] = "{bearer}" }}
request = function()
  n = n + 1
  local k = (n * 7919) % {contracts}
  local body = '{{"templateIds":["{IOU}"],"parties":["{party}"],"filter":{{"currency":"C' .. k .. '"}}}}'
  return wrk.format("POST", "/v2/query", headers, body)
end
"#,
            contracts = args.contracts
        ),
    )?;
    let out = tokio::process::Command::new("wrk")
        .args(["-t1", &format!("-c{}", args.clients)])
        .args([&format!("-d{}s", args.duration), "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://{gateway}"))
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let percentile = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|v| duration_ms(v.trim()))
            .with_context(|| format!("no {p} latency in wrk's output:\n{text}"))
    };
    let per_s = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    Ok(Phase {
        per_s,
        p50: percentile("50%")?,
        p99: percentile("99%")?,
    })
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.01s`) in ms.
fn duration_ms(v: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (v.strip_suffix('s')?, 1000.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// How many clients the create phase runs.
fn create_clients(args: &BenchGatewayArgs) -> u32 {
    args.create_clients.unwrap_or(args.clients)
}

/// `clients` loops calling `call(client, n)` for `--duration` seconds; latencies in ms.
async fn run_clients<F, Fut>(
    args: &BenchGatewayArgs,
    clients: u32,
    call: F,
) -> anyhow::Result<Phase>
where
    F: Fn(u32, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let call = std::sync::Arc::new(call);
    let until = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut handles = Vec::new();
    for client in 0..clients {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while Instant::now() < until {
                let t0 = Instant::now();
                call(client, n).await?;
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pct = |p: f64| super::bench::percentile(&all, p);
    Ok(Phase {
        per_s: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

/// A gauge from the gateway's Prometheus `/metrics`.
async fn metric(http: &HttpClient, addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let request = hyper::Request::get(format!("http://{addr}/metrics")).body(Full::default())?;
    let response = http.request(request).await?;
    let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .with_context(|| format!("no {name} in the gateway's /metrics"))
}

/// Resident memory of a process, from /proc (0 where there is none).
fn rss_bytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0)
}
