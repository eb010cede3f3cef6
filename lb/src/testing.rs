//! Backends for the lb's tests and `tandem bench lb`, compiled into the library because the
//! benchmark uses them too: a tonic echo server that names itself in every reply, with an
//! HTTP/1 `/health` endpoint whose answer (200 or 503) a test flips, and an HTTP/1 variant.
//! Everything binds 127.0.0.1:0 and stops on its own token.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub mod pb {
    tonic::include_proto!("tandem.lb.echo.v1");
}

use pb::echo_server::{Echo, EchoServer};
use pb::{EchoReply, EchoRequest, StreamRequest};

/// What a test backend does; shared between the test and the server.
#[derive(Default)]
pub struct Behaviour {
    healthy: AtomicBool,
    calls: AtomicU64,
    fail_with: Mutex<Option<tonic::Code>>,
}

/// The echo service of one backend.
#[derive(Clone)]
pub struct EchoService {
    name: String,
    behaviour: Arc<Behaviour>,
}

impl EchoService {
    pub fn new(name: &str, behaviour: Arc<Behaviour>) -> Self {
        Self {
            name: name.to_string(),
            behaviour,
        }
    }

    pub fn into_server(self) -> EchoServer<Self> {
        EchoServer::new(self)
    }

    fn reply(&self, message: String) -> EchoReply {
        EchoReply {
            server: self.name.clone(),
            message,
        }
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.behaviour.calls.fetch_add(1, Ordering::Relaxed);
        let fail = *self
            .behaviour
            .fail_with
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(code) = fail {
            return Err(Status::new(code, format!("{} fails on purpose", self.name)));
        }
        Ok(Response::new(self.reply(request.into_inner().message)))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.behaviour.calls.fetch_add(1, Ordering::Relaxed);
        let StreamRequest { count, interval_ms } = request.into_inner();
        let this = self.clone();
        let interval = Duration::from_millis(u64::from(interval_ms.max(1)));
        let stream = async_stream(move |tx| async move {
            let mut i = 0u32;
            while count == 0 || i < count {
                if tx.send(Ok(this.reply(i.to_string()))).await.is_err() {
                    return;
                }
                i += 1;
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(stream))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.behaviour.calls.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        let mut inbound = request.into_inner();
        let stream = async_stream(move |tx| async move {
            while let Some(Ok(message)) = inbound.next().await {
                if tx.send(Ok(this.reply(message.message))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A reply stream fed by a task; the task stops when the client goes away.
fn async_stream<F, Fut>(produce: F) -> ReplyStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<EchoReply, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A backend: gRPC (or HTTP/1) traffic on `address`, `/health` on `health`.
pub struct TestBackend {
    pub name: String,
    pub address: SocketAddr,
    pub health: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    stop: CancellationToken,
}

impl TestBackend {
    /// A tonic echo server (h2c) with its health endpoint.
    pub async fn grpc(name: &str, healthy: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let backend = Self::with_health(name, healthy, listener.local_addr()?).await?;
        let service = EchoService::new(name, backend.behaviour.clone()).into_server();
        let stop = backend.stop.clone();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled())
                .await;
        });
        Ok(backend)
    }

    /// An HTTP/1 server answering `GET /echo` with its name (and 503 when failing).
    pub async fn http1(name: &str, healthy: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let backend = Self::with_health(name, healthy, listener.local_addr()?).await?;
        let behaviour = backend.behaviour.clone();
        let server_name = name.to_string();
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::any(move || {
                let behaviour = behaviour.clone();
                let server_name = server_name.clone();
                async move {
                    behaviour.calls.fetch_add(1, Ordering::Relaxed);
                    let failing = behaviour
                        .fail_with
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some();
                    let status = if failing {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    (status, server_name)
                }
            }),
        );
        tokio::spawn(tandem_nodes::health::serve_http1(
            listener,
            app,
            backend.stop.clone(),
        ));
        Ok(backend)
    }

    async fn with_health(name: &str, healthy: bool, address: SocketAddr) -> std::io::Result<Self> {
        let behaviour = Arc::new(Behaviour::default());
        behaviour.healthy.store(healthy, Ordering::Relaxed);
        let health_listener = TcpListener::bind("127.0.0.1:0").await?;
        let health = health_listener.local_addr()?;
        let state = behaviour.clone();
        let app = axum::Router::new().route(
            "/health",
            axum::routing::get(move || {
                let state = state.clone();
                async move {
                    if state.healthy.load(Ordering::Relaxed) {
                        (axum::http::StatusCode::OK, "active")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "passive")
                    }
                }
            }),
        );
        let stop = CancellationToken::new();
        tokio::spawn(tandem_nodes::health::serve_http1(
            health_listener,
            app,
            stop.clone(),
        ));
        Ok(Self {
            name: name.to_string(),
            address,
            health,
            behaviour,
            stop,
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.behaviour.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.behaviour.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Makes every unary call (HTTP/1: every request) fail with `code` (503), or succeed again.
    pub fn fail_with(&self, code: Option<tonic::Code>) {
        *self
            .behaviour
            .fail_with
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = code;
    }

    pub fn calls(&self) -> u64 {
        self.behaviour.calls.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
