//! `tandem bench lb`: tonic echo backends, then `tandem lb` and HAProxy (Debian's `haproxy`,
//! installed with apt-get if missing) with equivalent configs, driven by the same tonic load
//! client: unary calls/s and p50/p99 latency through each (round-robin over the backends),
//! then failover detection (health flip → first call answered by the new active server) with
//! each one's default and tuned check intervals. Prints one line per measurement and the
//! `bench=lb ...` summary line (design.md §10). Everything listens on 127.0.0.1.
//!
//! The machine is shared (client, backends and proxy on the same cores, often with other
//! work), so the load runs in `--rounds` alternating between the proxies (tandem first in even
//! rounds, HAProxy first in odd ones) and the summary takes each one's median round. Besides
//! calls/s it reports the proxy's own CPU time per call (from /proc), which does not depend on
//! how much of the machine the proxy got, and the latency of the same load sent straight to a
//! backend, from which the p99 each proxy adds is computed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_lb::testing::pb::echo_client::EchoClient;
use tandem_lb::testing::pb::EchoRequest;
use tandem_lb::testing::TestBackend;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct BenchLbArgs {
    /// Seconds of load through each proxy.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// HTTP/2 connections of the load client.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// Failover detection trials per proxy and setting.
    #[arg(long, default_value_t = 3)]
    pub trials: u32,
    /// Load rounds per proxy, alternating between them.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// The HAProxy binary.
    #[arg(long, default_value = "haproxy")]
    pub haproxy: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU time of the proxy process per call, when there is one.
    cpu_us_per_call: Option<f64>,
}

impl Load {
    fn print(&self, label: &str, round: u32) {
        let cpu = self
            .cpu_us_per_call
            .map_or(String::new(), |c| format!(" cpu_us_per_call={c:.0}"));
        println!(
            "load lb={label} round={round} calls_per_s={:.0} p50_ms={:.2} p99_ms={:.2} errors={}{cpu}",
            self.calls_per_s, self.p50_ms, self.p99_ms, self.errors
        );
    }
}

/// The round with the median throughput.
fn median(mut rounds: Vec<Load>) -> Load {
    rounds.sort_by(|a, b| a.calls_per_s.total_cmp(&b.calls_per_s));
    rounds.get(rounds.len() / 2).copied().unwrap_or_default()
}

/// User plus system CPU time of a process so far, from /proc (Linux reports it in USER_HZ,
/// fixed at 100 per second).
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn free_port() -> anyhow::Result<u16> {
    // Bench only: HAProxy needs fixed ports in its file; the race with other processes is
    // accepted here (tests never do this).
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn channel(addr: SocketAddr) -> anyhow::Result<EchoClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(EchoClient::new(channel))
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{addr} is not listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn ensure_haproxy(binary: &str) -> anyhow::Result<()> {
    let found = Command::new(binary).arg("-v").output().await;
    if found.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("haproxy not found; installing Debian's package");
    let status = Command::new("apt-get")
        .args(["install", "-y", "haproxy"])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "apt-get install haproxy failed");
    Ok(())
}

fn servers_toml(backends: &[&TestBackend]) -> String {
    backends
        .iter()
        .map(|b| {
            format!(
                "{{ address = \"{}\", health = \"{}\" }}",
                b.address, b.health
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn tandem_config(rr: &[&TestBackend], active: &[&TestBackend], tuned: &[&TestBackend]) -> String {
    let frontend = |name: &str| {
        format!(
            "[[lb.frontends]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"h2c\"\n\
             backend = {{ group = \"{name}\" }}\n"
        )
    };
    let group = |name: &str, strategy: &str, servers: &[&TestBackend], extra: &str| {
        format!(
            "[[lb.backends]]\nname = \"{name}\"\nstrategy = \"{strategy}\"\nprotocol = \"h2c\"\n\
             servers = [{}]\n{extra}\n",
            servers_toml(servers)
        )
    };
    format!(
        "[lb]\nadmin = \"127.0.0.1:0\"\n{}{}{}{}{}{}",
        frontend("rr"),
        frontend("active"),
        frontend("tuned"),
        group("rr", "round_robin", rr, ""),
        group("active", "active", active, ""),
        group(
            "tuned",
            "active",
            tuned,
            "health_check = { interval_ms = 50, timeout_ms = 200, rise = 1, fall = 1 }"
        ),
    )
}

fn haproxy_config(
    ports: (u16, u16, u16),
    rr: &[&TestBackend],
    active: &[&TestBackend],
    tuned: &[&TestBackend],
) -> String {
    let servers = |backends: &[&TestBackend], check: &str| {
        backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    "  server s{i} {} proto h2 check check-proto h1 port {}{check}\n",
                    b.address,
                    b.health.port()
                )
            })
            .collect::<String>()
    };
    let section = |name: &str, port: u16, backends: &[&TestBackend], check: &str| {
        format!(
            "frontend {name}\n  bind 127.0.0.1:{port} proto h2\n  default_backend {name}\n\
             backend {name}\n  balance roundrobin\n  option httpchk GET /health\n  \
             http-check expect status 200\n{}",
            servers(backends, check)
        )
    };
    format!(
        "global\n  maxconn 4096\n  nbthread 2\n\ndefaults\n  mode http\n  timeout connect 1s\n  \
         timeout client 60s\n  timeout server 60s\n\n{}\n{}\n{}",
        section("rr", ports.0, rr, ""),
        section("active", ports.1, active, ""),
        section(
            "tuned",
            ports.2,
            tuned,
            " inter 50 fastinter 50 downinter 50 rise 1 fall 1"
        ),
    )
}

async fn start_tandem(config: &Path) -> anyhow::Result<(Child, serde_json::Value)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["lb", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await??
        .ok_or_else(|| anyhow::anyhow!("tandem lb exited before it was ready"))?;
    let ready = line
        .strip_prefix(super::super::node::READY_PREFIX)
        .ok_or_else(|| anyhow::anyhow!("unexpected line from tandem lb: {line}"))?;
    Ok((child, serde_json::from_str(ready)?))
}

fn frontend(ready: &serde_json::Value, name: &str) -> anyhow::Result<SocketAddr> {
    Ok(ready["frontends"][name]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no frontend {name}"))?
        .parse()?)
}

/// `connections` × `streams` callers doing unary calls back to back for `seconds`, after a
/// one-second warm-up that is not measured; `pid` is the proxy whose CPU time is measured.
async fn load(addr: SocketAddr, args: &BenchLbArgs, pid: Option<u32>) -> anyhow::Result<Load> {
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(channel(addr).await?);
    }
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = warmup + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..args.streams {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    let ok = client
                        .unary(EchoRequest {
                            message: "bench".into(),
                        })
                        .await
                        .is_ok();
                    if started >= warmup {
                        if ok {
                            latencies.push(started.elapsed().as_micros() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (latencies, errors)
            }));
        }
    }
    tokio::time::sleep_until(warmup.into()).await;
    let cpu_before = cpu_time(pid);
    tokio::time::sleep_until(end.into()).await;
    let cpu_after = cpu_time(pid);
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let cpu_us_per_call = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if !all.is_empty() => {
            Some(b.saturating_sub(a).as_secs_f64() * 1e6 / all.len() as f64)
        }
        _ => None,
    };
    Ok(Load {
        calls_per_s: all.len() as f64 / args.seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
        cpu_us_per_call,
    })
}

/// Flips health between the two backends `trials` times; each sample is the time from the
/// flip to the first call answered by the newly healthy one.
async fn detection(
    addr: SocketAddr,
    pair: &[Arc<TestBackend>; 2],
    trials: u32,
    label: &str,
) -> anyhow::Result<f64> {
    let mut client = channel(addr).await?;
    let mut samples = Vec::new();
    for trial in 0..trials {
        let (from, to) = if pair[0].is_healthy() {
            (&pair[0], &pair[1])
        } else {
            (&pair[1], &pair[0])
        };
        // Settle: the proxy sees `to` down, so ten calls in a row reach `from`.
        let settle = Instant::now() + Duration::from_secs(60);
        let mut in_a_row = 0;
        while in_a_row < 10 {
            let reply = client
                .unary(EchoRequest {
                    message: "x".into(),
                })
                .await
                .map(|r| r.into_inner().server);
            if reply.as_deref().ok() == Some(from.name.as_str()) {
                in_a_row += 1;
            } else {
                in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::ensure!(
                Instant::now() < settle,
                "{label}: {} never became the only server",
                from.name
            );
        }
        from.set_healthy(false);
        to.set_healthy(true);
        let flipped = Instant::now();
        loop {
            let reply = client
                .unary(EchoRequest {
                    message: "x".into(),
                })
                .await
                .map(|r| r.into_inner().server);
            if reply.as_deref().ok() == Some(to.name.as_str()) {
                break;
            }
            anyhow::ensure!(
                flipped.elapsed() < Duration::from_secs(60),
                "{label}: traffic never moved to {}",
                to.name
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ms = flipped.elapsed().as_secs_f64() * 1000.0;
        println!("detection lb={label} trial={trial} ms={ms:.0}");
        samples.push(ms);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples.get(samples.len() / 2).copied().unwrap_or(0.0))
}

pub async fn bench(args: BenchLbArgs) -> anyhow::Result<ExitCode> {
    ensure_haproxy(&args.haproxy).await?;
    let mut rr = Vec::new();
    for i in 0..3 {
        rr.push(TestBackend::grpc(&format!("rr{i}"), true).await?);
    }
    let pair = |prefix: &'static str| async move {
        anyhow::Ok([
            Arc::new(TestBackend::grpc(&format!("{prefix}0"), true).await?),
            Arc::new(TestBackend::grpc(&format!("{prefix}1"), false).await?),
        ])
    };
    let active = pair("active").await?;
    let tuned = pair("tuned").await?;
    let rr_refs: Vec<&TestBackend> = rr.iter().collect();
    let active_refs: Vec<&TestBackend> = active.iter().map(|b| b.as_ref()).collect();
    let tuned_refs: Vec<&TestBackend> = tuned.iter().map(|b| b.as_ref()).collect();

    let dir = tempfile::tempdir()?;
    let tandem_file = dir.path().join("lb.toml");
    std::fs::write(
        &tandem_file,
        tandem_config(&rr_refs, &active_refs, &tuned_refs),
    )?;
    let ports = (free_port()?, free_port()?, free_port()?);
    let haproxy_file = dir.path().join("haproxy.cfg");
    let haproxy_log = dir.path().join("haproxy.log");
    std::fs::write(
        &haproxy_file,
        haproxy_config(ports, &rr_refs, &active_refs, &tuned_refs),
    )?;

    let (mut tandem, ready) = start_tandem(&tandem_file).await?;
    let mut haproxy = Command::new(&args.haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&haproxy_file)
        .stdout(Stdio::null())
        // Its server state changes ([WARNING] lines) would print over the results; they are
        // shown only if it does not start.
        .stderr(std::fs::File::create(&haproxy_log)?)
        .kill_on_drop(true)
        .spawn()?;
    let haproxy_addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = wait_listening(haproxy_addr(ports.0)).await {
        let log = std::fs::read_to_string(&haproxy_log).unwrap_or_default();
        anyhow::bail!("haproxy did not start: {e}\n{log}");
    }

    let steal = crate::commands::bench::StealMeter::start();
    let result = async {
        // Both proxies start their checks now; give every server time to come up.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let direct = load(rr[0].address, &args, None).await?;
        direct.print("direct", 0);
        let (tandem_rr, haproxy_rr) = (frontend(&ready, "rr")?, haproxy_addr(ports.0));
        let (mut tandem_rounds, mut haproxy_rounds) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            for tandem_turn in [round % 2 == 0, round % 2 == 1] {
                if tandem_turn {
                    let t = load(tandem_rr, &args, tandem.id()).await?;
                    t.print("tandem", round);
                    tandem_rounds.push(t);
                } else {
                    let h = load(haproxy_rr, &args, haproxy.id()).await?;
                    h.print("haproxy", round);
                    haproxy_rounds.push(h);
                }
            }
        }
        let (t, h) = (median(tandem_rounds), median(haproxy_rounds));
        let td = detection(frontend(&ready, "active")?, &active, args.trials, "tandem").await?;
        let tt = detection(frontend(&ready, "tuned")?, &tuned, args.trials, "tandem-tuned").await?;
        let hd = detection(haproxy_addr(ports.1), &active, args.trials, "haproxy").await?;
        let ht = detection(haproxy_addr(ports.2), &tuned, args.trials, "haproxy-tuned").await?;
        let cpu = |l: &Load| l.cpu_us_per_call.unwrap_or(0.0);
        println!(
            "bench=lb seconds={} connections={} streams={} rounds={} backends=3 \
             tandem_calls_per_s={:.0} haproxy_calls_per_s={:.0} ratio={:.2} \
             tandem_p50_ms={:.2} tandem_p99_ms={:.2} haproxy_p50_ms={:.2} haproxy_p99_ms={:.2} \
             direct_p50_ms={:.2} direct_p99_ms={:.2} tandem_added_p99_ms={:.2} haproxy_added_p99_ms={:.2} \
             tandem_cpu_us_per_call={:.0} haproxy_cpu_us_per_call={:.0} cpu_ratio={:.2} \
             tandem_errors={} haproxy_errors={} detection_ms={td:.0} tandem_tuned_detection_ms={tt:.0} \
             haproxy_detection_ms={hd:.0} haproxy_tuned_detection_ms={ht:.0}{}",
            args.seconds,
            args.connections,
            args.streams,
            args.rounds,
            t.calls_per_s,
            h.calls_per_s,
            t.calls_per_s / h.calls_per_s.max(1.0),
            t.p50_ms,
            t.p99_ms,
            h.p50_ms,
            h.p99_ms,
            direct.p50_ms,
            direct.p99_ms,
            t.p99_ms - direct.p99_ms,
            h.p99_ms - direct.p99_ms,
            cpu(&t),
            cpu(&h),
            cpu(&h) / cpu(&t).max(1.0),
            t.errors,
            h.errors,
            steal.summary(),
        );
        anyhow::Ok(())
    }
    .await;
    stop(&mut tandem).await;
    stop(&mut haproxy).await;
    result?;
    Ok(ExitCode::SUCCESS)
}
