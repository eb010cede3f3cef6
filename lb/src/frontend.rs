//! A frontend's connections, before pingora sees a request: accept, TLS handshake, protocol
//! choice (ALPN, or the HTTP/2 preface on an `auto` port), the HTTP/2 accept loop with
//! keepalive pings, and for HTTP/1 the reading of each request head under a deadline and a size
//! limit (slowloris gets 408, an oversized head 431). Each request then runs through pingora
//! inside a `StreamSlot`, so it can be ended when its server loses the active role.
//!
//! `Frontend::run` accepts on the caller's runtime and hands each connection to a worker
//! (`workers`); every worker has its own `FrontendApp`, whose pingora proxy keeps that worker's
//! upstream connection pool, so a connection never leaves its thread.

use crate::metrics::FrontendMetrics;
use crate::proxy::LbProxy;
use crate::relay::{Relay, Route};
use crate::stream::StreamSlot;
use crate::FrontendCounters;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::v2::server::HttpSession as H2Session;
use pingora::protocols::http::v2::server::{default_h2_options, handshake, H2Accept, H2Options};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Digest, Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tandem_nodes::config::{FrontendLimits, FrontendProtocol};
use tandem_nodes::workers::{self, Workers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One listener and, per worker, the app that serves its connections there.
pub struct Frontend {
    pub name: String,
    /// `apps[i]` runs on worker `i`.
    pub apps: Vec<Arc<FrontendApp>>,
    pub workers: Arc<Workers>,
}

pub struct FrontendApp {
    pub name: String,
    pub proxy: Arc<HttpProxy<LbProxy>>,
    /// HTTP/2 requests to cleartext HTTP/2 groups bypass pingora through this.
    pub relay: Relay,
    pub protocol: FrontendProtocol,
    pub tls: Option<Arc<Acceptor>>,
    pub limits: FrontendLimits,
    pub metrics: FrontendMetrics,
    pub counters: Arc<FrontendCounters>,
}

/// Counts one open client connection for as long as it lives.
struct Open(Arc<FrontendCounters>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Head {
    Complete,
    Closed,
    Idle,
    TimedOut,
    TooLarge,
}

impl Frontend {
    /// Accepts until `stop`, giving connections to the workers in turn; then tells open
    /// connections to finish (`shutdown`) and gives them `grace` before dropping them.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: ShutdownWatch,
        stop: CancellationToken,
        grace: Duration,
    ) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                (worker, tcp) = self.workers.accept(&listener, &self.name) => {
                    let app = self.apps[worker].clone();
                    let shutdown = shutdown.clone();
                    connections.spawn_on(
                        async move { app.connection(tcp, shutdown).await },
                        self.workers.handle(worker),
                    );
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let drained = timeout(grace, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
    }
}

impl FrontendApp {
    fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.header_timeout_ms)
    }

    /// One client connection, on this app's worker (`tcp` was accepted on another runtime).
    async fn connection(self: Arc<Self>, tcp: std::net::TcpStream, shutdown: ShutdownWatch) {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let _open = Open(self.counters.clone());
        let tcp = match workers::adopt(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(frontend = %self.name, error = %e, "cannot register a connection");
                return;
            }
        };
        let mut l4 = L4Stream::from(tcp);
        if let Some(acceptor) = &self.tls {
            let tls = match timeout(self.header_timeout(), acceptor.tls_handshake(l4)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    self.metrics.rejected_tls.inc();
                    tracing::info!(frontend = %self.name, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    self.metrics.rejected_tls.inc();
                    tracing::info!(frontend = %self.name, "TLS handshake timed out");
                    return;
                }
            };
            let stream: Stream = Box::new(tls);
            if stream.selected_alpn_proto() == Some(ALPN::H2) {
                self.serve_h2(stream, shutdown).await;
            } else if self.protocol != FrontendProtocol::H2c {
                self.serve_h1(stream, BytesMut::new(), shutdown).await;
            }
            return;
        }
        match self.protocol {
            FrontendProtocol::H2c => self.serve_h2(Box::new(l4), shutdown).await,
            FrontendProtocol::Http1 => self.serve_h1(Box::new(l4), BytesMut::new(), shutdown).await,
            FrontendProtocol::Auto => {
                let mut buf = BytesMut::with_capacity(4096);
                match self.sniff(&mut l4, &mut buf).await {
                    Some(true) => {
                        l4.rewind(&buf);
                        self.serve_h2(Box::new(l4), shutdown).await;
                    }
                    Some(false) => self.serve_h1(Box::new(l4), buf, shutdown).await,
                    None => {}
                }
            }
        }
    }

    /// Reads until the bytes are, or cannot be, the HTTP/2 preface. `None`: the client left
    /// (or sent nothing in time) before that was clear.
    async fn sniff(&self, l4: &mut L4Stream, buf: &mut BytesMut) -> Option<bool> {
        let deadline = Instant::now() + self.header_timeout();
        loop {
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            match timeout_at(deadline, l4.read_buf(buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                // A partial request line: answer it as the slow HTTP/1 request it is.
                Err(_) if !buf.is_empty() => return Some(false),
                Err(_) => return None,
            }
        }
    }

    fn h2_options(&self) -> H2Options {
        let mut options = default_h2_options();
        options.max_concurrent_streams(self.limits.max_h2_streams);
        options
            .max_header_list_size(u32::try_from(self.limits.max_header_bytes).unwrap_or(u32::MAX));
        options
    }

    /// One HTTP/2 connection: every stream is a request handled on its own task; a PING every
    /// `h2_ping_interval_ms` that is not answered within the next interval closes the connection.
    async fn serve_h2(self: &Arc<Self>, stream: Stream, mut shutdown: ShutdownWatch) {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let mut conn = match timeout(
            self.header_timeout(),
            handshake(stream, Some(self.h2_options())),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(frontend = %self.name, error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.rejected_timeout.inc();
                tracing::info!(frontend = %self.name, "HTTP/2 preface not received in time");
                return;
            }
        };
        let interval = Duration::from_millis(self.limits.h2_ping_interval_ms);
        let mut ping_pong = conn.ping_pong();
        let pinger = async move {
            match ping_pong.as_mut() {
                Some(pp) if !interval.is_zero() => loop {
                    tokio::time::sleep(interval).await;
                    match timeout(interval, pp.ping(h2::Ping::opaque())).await {
                        Ok(Ok(_)) => {}
                        _ => return,
                    }
                },
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(pinger);
        // The connection's path is chosen once: relayed if its group is cleartext HTTP/2 now.
        // Should a reload move the group to TLS or HTTP/1, the relayed connection refuses its
        // next stream (REFUSED_STREAM, safe to retry) and closes, so the client reconnects.
        let relayed = !matches!(self.relay.route(), Some(Route::Pingora));
        let mut draining = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed(), if !draining => {
                    conn.graceful_shutdown();
                    draining = true;
                }
                () = &mut pinger => {
                    tracing::info!(frontend = %self.name, "client missed an HTTP/2 ping; closing");
                    return;
                }
                accepted = next_stream(&mut conn, &digest, relayed) => match accepted {
                    Accepted::Relay(request, respond) => self.relay_stream(request, respond, &mut conn),
                    Accepted::Pingora(session) => {
                        let app = self.clone();
                        let shutdown = shutdown.clone();
                        tokio::spawn(async move {
                            app.request(ServerSession::new_http2(session), &shutdown).await;
                        });
                    }
                    Accepted::Rejected => {}
                    Accepted::Closed => return,
                },
            }
        }
    }

    /// One stream of a relayed connection, on its own task.
    fn relay_stream(
        self: &Arc<Self>,
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<bytes::Bytes>,
        conn: &mut H2Connection,
    ) {
        let group = match self.relay.route() {
            Some(Route::Relay(group)) => Some(group),
            None => None,
            Some(Route::Pingora) => {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
                conn.graceful_shutdown();
                return;
            }
        };
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let app = self.clone();
        // Only an `active` group's streams can be ended from outside (`stream`); the others
        // skip the slot.
        let endable = group.as_ref().is_some_and(|g| g.is_active_strategy());
        tokio::spawn(async move {
            // Boxed, the relay's state (kilobytes) is written once, not copied at every move
            // into the slot and the task.
            let relayed = Box::pin(app.relay.serve(group, request, respond));
            if endable {
                app.endable(relayed).await;
            } else {
                relayed.await;
            }
        });
    }

    /// HTTP/1.1 with keep-alive: each request head is read here first, under the header
    /// deadline and size limit, then handed to pingora as already-read bytes.
    async fn serve_h1(
        self: &Arc<Self>,
        mut stream: Stream,
        mut buf: BytesMut,
        shutdown: ShutdownWatch,
    ) {
        let keepalive = Duration::from_millis(self.limits.keepalive_timeout_ms);
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let idle = if first {
                self.header_timeout()
            } else {
                keepalive
            };
            match self.read_head(&mut stream, &mut buf, idle, first).await {
                Head::Complete => {}
                Head::Closed | Head::Idle => return,
                Head::TimedOut => {
                    self.metrics.rejected_timeout.inc();
                    tracing::info!(frontend = %self.name, "request head not received in time; 408");
                    return reject(stream, "408 Request Timeout").await;
                }
                Head::TooLarge => {
                    self.metrics.rejected_too_large.inc();
                    tracing::info!(frontend = %self.name, limit = self.limits.max_header_bytes, "request head too large; 431");
                    return reject(stream, "431 Request Header Fields Too Large").await;
                }
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => session.set_keepalive(Some(keepalive.as_secs().max(1))),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            session.set_pipelined_prefix(std::mem::take(&mut buf));
            match self.request(session, &shutdown).await {
                Some(reused) => {
                    let (s, st) = reused.consume();
                    stream = s;
                    settings = st;
                    first = false;
                }
                None => return,
            }
        }
    }

    async fn read_head(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        idle: Duration,
        first: bool,
    ) -> Head {
        let max = self.limits.max_header_bytes;
        if buf.is_empty() {
            buf.reserve(4096);
            match timeout(idle, stream.read_buf(buf)).await {
                Err(_) if first => return Head::TimedOut,
                Err(_) => return Head::Idle,
                Ok(Ok(0)) | Ok(Err(_)) => return Head::Closed,
                Ok(Ok(_)) => {}
            }
        }
        let deadline = Instant::now() + self.header_timeout();
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(3);
            if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                return if from + end + 4 > max {
                    Head::TooLarge
                } else {
                    Head::Complete
                };
            }
            searched = buf.len();
            if buf.len() > max {
                return Head::TooLarge;
            }
            buf.reserve(4096);
            match timeout_at(deadline, stream.read_buf(buf)).await {
                Err(_) => return Head::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return Head::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// One request through pingora, ended early if its server loses the active role.
    async fn request(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        // pingora's request future is large (kilobytes); boxed here, it is copied once rather
        // than again at every move into the slot, the select and the spawned task.
        let proxied = Box::pin(HttpServerApp::process_new_http(
            &self.proxy,
            session,
            shutdown,
        ));
        self.endable(proxied).await.flatten()
    }

    /// Runs a request in a stream slot (`stream`), so that it is dropped when its server loses
    /// the active role; `None` (and one log line) if it was.
    async fn endable<F: std::future::Future>(&self, request: F) -> Option<F::Output> {
        let out = StreamSlot::run(request).await;
        if out.is_none() {
            tracing::info!(frontend = %self.name, "ended a stream: its server lost the active role");
        }
        out
    }
}

type H2Connection = h2::server::Connection<Stream, bytes::Bytes>;

// Returned straight to the accept loop, never stored: a box would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Accepted {
    Relay(
        http::Request<h2::RecvStream>,
        h2::server::SendResponse<bytes::Bytes>,
    ),
    Pingora(H2Session),
    /// pingora answered or reset a malformed stream itself.
    Rejected,
    Closed,
}

/// The next stream of an HTTP/2 connection, raw for the relay or as pingora's session.
async fn next_stream(conn: &mut H2Connection, digest: &Arc<Digest>, relayed: bool) -> Accepted {
    if relayed {
        return match conn.accept().await {
            Some(Ok((request, respond))) => Accepted::Relay(request, respond),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "HTTP/2 connection failed");
                Accepted::Closed
            }
            None => Accepted::Closed,
        };
    }
    match H2Session::from_h2_conn(conn, digest.clone()).await {
        Ok(Some(H2Accept::Session(session))) => Accepted::Pingora(session),
        Ok(Some(H2Accept::Rejected)) => Accepted::Rejected,
        Ok(None) | Err(_) => Accepted::Closed,
    }
}

async fn reject(mut stream: Stream, status: &str) {
    let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    })
    .await;
}
