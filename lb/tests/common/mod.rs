//! Fixtures of the lb tests: config text builders, an lb started in-process on 127.0.0.1:0
//! from a file in a temp dir (so reloads re-read it), tonic clients, condition waits with
//! deadlines, and raw HTTP/1 exchanges.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tandem_lb::testing::pb::echo_client::EchoClient;
use tandem_lb::testing::pb::EchoRequest;
use tandem_lb::testing::TestBackend;
use tandem_lb::Running;
use tandem_nodes::config::LoadedLb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub struct Lb {
    pub running: Running,
    pub shutdown: CancellationToken,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Lb {
    pub async fn start(text: &str) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = LoadedLb::load(&path).unwrap();
        let shutdown = CancellationToken::new();
        let running = tandem_lb::serve(loaded, Some(path.clone()), shutdown.clone())
            .await
            .unwrap();
        Lb {
            running,
            shutdown,
            path,
            _dir: dir,
        }
    }

    pub fn addr(&self, frontend: &str) -> SocketAddr {
        self.running.frontend(frontend).unwrap()
    }

    pub async fn client(&self, frontend: &str) -> EchoClient<Channel> {
        client(self.addr(frontend)).await
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.running.lb().status()).unwrap()
    }

    /// Waits until every server of `group` is in `state`.
    pub async fn wait_servers(&self, group: &str, state: &str) {
        wait_until(Duration::from_secs(5), || async {
            let status = self.status();
            let g = status["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == group)
                .cloned()
                .unwrap();
            g["servers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["state"] == state)
        })
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.stopped())
            .await
            .unwrap();
    }
}

pub async fn client(addr: SocketAddr) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    EchoClient::new(channel)
}

/// One unary call; the name of the server that answered, or the status.
pub async fn call(client: &mut EchoClient<Channel>) -> Result<String, tonic::Status> {
    let request = tonic::Request::new(EchoRequest {
        message: "hi".into(),
    });
    client.unary(request).await.map(|r| r.into_inner().server)
}

/// Polls `condition` until it holds; panics after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One entry of a group's `servers`: traffic to `address`, health checks to `health`.
pub fn server(address: SocketAddr, health: SocketAddr) -> String {
    format!("{{ address = \"{address}\", health = \"{health}\" }}")
}

pub fn servers(backends: &[&TestBackend]) -> String {
    backends
        .iter()
        .map(|b| server(b.address, b.health))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `[lb]` section with one frontend `f` (`protocol`) routed to group `g`.
pub fn config(protocol: &str, group: &str) -> String {
    format!(
        "[lb]\nadmin = \"127.0.0.1:0\"\n\n[[lb.frontends]]\nname = \"f\"\nlisten = \"127.0.0.1:0\"\n\
         protocol = \"{protocol}\"\nbackend = {{ group = \"g\" }}\n\n{group}"
    )
}

/// Group `g` with fast health checks; `extra` adds keys to the group table.
pub fn group(strategy: &str, protocol: &str, servers: &str, extra: &str) -> String {
    let health = "{ interval_ms = 50, timeout_ms = 200, rise = 1, fall = 1 }";
    group_with_health(strategy, protocol, servers, health, extra)
}

/// Group `g` with the given `health_check` table.
pub fn group_with_health(
    strategy: &str,
    protocol: &str,
    servers: &str,
    health: &str,
    extra: &str,
) -> String {
    format!(
        "[[lb.backends]]\nname = \"g\"\nstrategy = \"{strategy}\"\nprotocol = \"{protocol}\"\n\
         servers = [{servers}]\nhealth_check = {health}\n{extra}\n"
    )
}

/// Sends raw bytes to `addr` and returns everything read until the server closes or 5 s pass.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_all(&mut stream).await
}

pub async fn read_all(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
