//! `tandem lb` as a real process: the ready line, traffic, SIGHUP reloads (a bad file is
//! refused and the old config keeps serving), SIGTERM, and a bad config refused at start.
//! Everything else about the lb is tested in-process in `lb/tests/lb.rs`.

#![allow(clippy::unwrap_used)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tandem_lb::testing::pb::echo_client::EchoClient;
use tandem_lb::testing::pb::EchoRequest;
use tandem_lb::testing::TestBackend;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn lb_file(servers: &[&TestBackend], extra: &str) -> String {
    let servers = servers
        .iter()
        .map(|b| {
            format!(
                "{{ address = \"{}\", health = \"{}\" }}",
                b.address, b.health
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[lb]\nadmin = \"127.0.0.1:0\"\n[[lb.frontends]]\nname = \"f\"\nlisten = \"127.0.0.1:0\"\n\
         protocol = \"h2c\"\nbackend = {{ group = \"g\" }}\n[[lb.backends]]\nname = \"g\"\n\
         strategy = \"round_robin\"\nprotocol = \"h2c\"\nservers = [{servers}]\n\
         health_check = {{ interval_ms = 50 }}\n{extra}"
    )
}

/// The body of `GET path` on the lb's admin port.
async fn admin_get(admin: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply.split("\r\n\r\n").nth(1).unwrap().to_string()
}

async fn status(admin: &str) -> serde_json::Value {
    serde_json::from_str(&admin_get(admin, "/status").await).unwrap()
}

/// How many reloads the lb refused, from its `/metrics`.
async fn refused_reloads(admin: &str) -> u64 {
    admin_get(admin, "/metrics")
        .await
        .lines()
        .find(|l| l.starts_with("tandem_lb_reloads_total{") && l.contains("\"refused\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_lb_serves_reloads_on_sighup_and_stops_on_sigterm() {
    let a = TestBackend::grpc("a", true).await.unwrap();
    let b = TestBackend::grpc("b", true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, lb_file(&[&a], "")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["lb", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(line.strip_prefix("TANDEM_READY ").unwrap()).unwrap();
    let admin = ready["admin"].as_str().unwrap().to_string();
    let frontend = ready["frontends"]["f"].as_str().unwrap().to_string();

    let client = EchoClient::connect(format!("http://{frontend}"))
        .await
        .unwrap();
    let call = move || {
        let mut client = client.clone();
        async move {
            client
                .unary(EchoRequest {
                    message: "hi".into(),
                })
                .await
                .map(|r| r.into_inner().server)
        }
    };
    wait_for("a to serve", || {
        let c = call();
        async move { c.await.ok().as_deref() == Some("a") }
    })
    .await;

    // A bad file is refused; the old config keeps serving.
    std::fs::write(&path, lb_file(&[&a, &b], "bogus = true")).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for("the bad reload to be refused", || {
        let admin = admin.clone();
        async move { refused_reloads(&admin).await == 1 }
    })
    .await;
    assert_eq!(status(&admin).await["generation"], 0);
    assert_eq!(call().await.unwrap(), "a");

    // A good one adds b.
    std::fs::write(&path, lb_file(&[&a, &b], "")).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for("the reload", || {
        let admin = admin.clone();
        async move { status(&admin).await["generation"] == 1 }
    })
    .await;
    wait_for("b to serve", || {
        let c = call();
        async move { c.await.ok().as_deref() == Some("b") }
    })
    .await;

    kill(pid, Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_lb_refuses_a_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let a = TestBackend::grpc("a", true).await.unwrap();
    std::fs::write(
        &path,
        lb_file(&[&a], "").replace("interval_ms = 50", "interval_ms = 0"),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["lb", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lb.backends[0].health_check.interval_ms: must be greater than 0"),
        "{stderr}"
    );
}
