//! The HTTP/2 relay: a request from an HTTP/2 client to a group of cleartext HTTP/2 servers
//! (every gRPC call in the default topology) goes frame by frame from one h2 stream to the
//! other, without pingora's per-request work (header conversion, the task channel between its
//! two halves, retry buffering, cache and module hooks). HTTP/1 on either side and TLS to the
//! servers go through pingora (`proxy`). Both paths share selection, the one connect-failure
//! retry, passive health, failure answers (`failure`), metrics and stream ending (`stream`).
//!
//! A `Relay` belongs to one frontend on one worker, so its pool of upstream connections is
//! only ever used from that worker's thread, as pingora's is.

use crate::failure::{self, grpc_unavailable, Failure};
use crate::group::nonzero_ms;
use crate::group::Group;
use crate::metrics::FrontendMetrics;
use crate::proxy::Routes;
use crate::server::{lock, FailureKind};
use crate::stream::StreamSlot;
use arc_swap::ArcSwap;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tandem_nodes::config::BackendConfig;
use tokio::net::TcpStream;

/// An upstream connection with no stream for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(60);
/// Window sizes offered to servers (as pingora's connector): large enough that a response is
/// not held back by flow control on a fast link.
const STREAM_WINDOW: u32 = 1 << 23;
const CONNECTION_WINDOW: u32 = 1 << 23;

/// How a frontend's HTTP/2 requests are carried right now.
pub enum Route {
    /// Through the relay, to this group.
    Relay(Arc<Group>),
    /// Through pingora (HTTP/1 or TLS servers).
    Pingora,
}

pub struct Relay {
    frontend: String,
    routes: Arc<ArcSwap<Routes>>,
    metrics: FrontendMetrics,
    pool: Pool,
}

/// Why a relayed request failed: the answer it gets and what to log.
struct Failed {
    failure: Failure,
    error: String,
}

impl Failed {
    fn new(failure: Failure, error: impl std::fmt::Display) -> Self {
        Self {
            failure,
            error: error.to_string(),
        }
    }
}

/// The client's side of one stream: the response head goes through `respond`, after which
/// the body and trailers go through `body`.
struct Downstream {
    respond: h2::server::SendResponse<Bytes>,
    body: Option<SendStream<Bytes>>,
    status: u16,
}

impl Relay {
    pub fn new(frontend: String, routes: Arc<ArcSwap<Routes>>, metrics: FrontendMetrics) -> Self {
        Self {
            frontend,
            routes,
            metrics,
            pool: Pool::default(),
        }
    }

    /// Where this frontend's next HTTP/2 request goes. A frontend without a group is relayed,
    /// so that the relay answers it (503).
    pub fn route(&self) -> Option<Route> {
        let routes = self.routes.load();
        let group = routes.by_frontend.get(&self.frontend)?;
        Some(if group.relayable() {
            Route::Relay(group.clone())
        } else {
            Route::Pingora
        })
    }

    /// Relays one request to `group` and answers the client, whatever happens.
    pub async fn serve(
        &self,
        group: Option<Arc<Group>>,
        request: http::Request<RecvStream>,
        respond: h2::server::SendResponse<Bytes>,
    ) {
        let started = Instant::now();
        let grpc = failure::is_grpc(
            request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        );
        let mut down = Downstream {
            respond,
            body: None,
            status: 0,
        };
        let mut server = None;
        let result = match &group {
            Some(group) => self.relay(group, request, &mut down, &mut server).await,
            None => Err(Failed::new(Failure::NoServer, "frontend has no group")),
        };
        if let Err(failed) = &result {
            let status = answer(&mut down, failed.failure, grpc);
            if status > 0 {
                down.status = status;
            }
        }
        if down.status > 0 {
            self.metrics.response(down.status);
        }
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        if let Err(failed) = result {
            tracing::warn!(
                frontend = %self.frontend,
                group = group.as_ref().map(|g| g.name.as_str()),
                server = ?server.and_then(|i| group.as_ref().map(|g| g.servers[i].key.address)),
                status = down.status,
                failure = ?failed.failure,
                error = %failed.error,
                "request failed"
            );
        }
    }

    async fn relay(
        &self,
        group: &Arc<Group>,
        request: http::Request<RecvStream>,
        down: &mut Downstream,
        chosen: &mut Option<usize>,
    ) -> Result<(), Failed> {
        let (head, body) = request.into_parts();
        let end_of_request = body.is_end_stream();
        let mut tried = Vec::new();
        let slot = StreamSlot::current();
        // Only a failure to connect (nothing sent yet) moves the request to another server.
        let (index, _in_flight, lease, response, upstream_body) = loop {
            let Some(index) = group.select(&tried) else {
                return Err(Failed::new(
                    Failure::NoServer,
                    format!("no healthy server in group {}", group.name),
                ));
            };
            *chosen = Some(index);
            let server = &group.servers[index];
            let in_flight = server.start_request();
            if group.is_active_strategy() {
                if let Some(slot) = &slot {
                    slot.watch(server.streams_token());
                }
            }
            let head = || upstream_head(&head, server.key.address);
            let sent = self
                .pool
                .open_stream(server.key.address, &group.config, head, end_of_request)
                .await;
            match sent {
                Ok((lease, response, upstream_body)) => {
                    break (index, in_flight, lease, response, upstream_body)
                }
                Err(failed) => {
                    group.record_failure(index, FailureKind::Connect);
                    tried.push(index);
                    if group.select(&tried).is_none() {
                        return Err(failed);
                    }
                }
            }
        };
        let result = self
            .exchange(group, index, response, body, upstream_body, down)
            .await;
        if result
            .as_ref()
            .is_err_and(|f| f.failure == Failure::UpstreamTimeout)
        {
            // A stream on this connection timed out: it may be hung, so it takes no new ones.
            self.pool.retire(&lease);
        }
        result
    }

    /// The exchange with server `index` once its stream is open: the request body goes up
    /// while the response comes down (bidirectional streams).
    async fn exchange(
        &self,
        group: &Group,
        index: usize,
        response: h2::client::ResponseFuture,
        body: RecvStream,
        upstream_body: SendStream<Bytes>,
        down: &mut Downstream,
    ) -> Result<(), Failed> {
        let timeouts = &group.config.timeouts;
        let read = nonzero_ms(timeouts.read_ms);
        // Passive health counts one failure per request at most (a 5xx head and then an
        // UNAVAILABLE trailer are one failure).
        let counted = AtomicBool::new(false);
        let fail = |kind: FailureKind| {
            if !counted.swap(true, Ordering::Relaxed) {
                group.record_failure(index, kind);
            }
        };
        let mut request_done = body.is_end_stream();
        let request_side = pump_request(body, upstream_body, nonzero_ms(timeouts.write_ms), &fail);
        tokio::pin!(request_side);
        let response = from_server(read, response, "response head", &fail);
        tokio::pin!(response);
        let response = loop {
            tokio::select! {
                biased;
                sent = &mut request_side, if !request_done => {
                    request_done = true;
                    sent?;
                }
                response = &mut response => break response?,
                // A client that cancels (or leaves) while the server is silent ends the call
                // here; dropping the server's stream resets it.
                reset = std::future::poll_fn(|cx| down.respond.poll_reset(cx)) => {
                    return Err(client_reset(reset));
                }
            }
        };
        let (parts, upstream_recv) = response.into_parts();
        if parts.status.is_server_error() {
            fail(FailureKind::Status5xx);
        } else if grpc_unavailable(parts.headers.get("grpc-status")) {
            fail(FailureKind::GrpcUnavailable);
        }
        let end_of_response = upstream_recv.is_end_stream();
        let status = parts.status.as_u16();
        let body = down
            .respond
            .send_response(http::Response::from_parts(parts, ()), end_of_response)
            .map_err(|e| Failed::new(Failure::ClientGone, e))?;
        down.status = status;
        if end_of_response {
            return Ok(());
        }
        let down_body = down.body.insert(body);
        let response_side = pump_response(upstream_recv, down_body, read, &fail);
        tokio::pin!(response_side);
        loop {
            tokio::select! {
                biased;
                sent = &mut request_side, if !request_done => {
                    request_done = true;
                    sent?;
                }
                done = &mut response_side => return done,
            }
        }
    }
}

/// One read from the server (`what`), within `read_ms` when set. A timeout or a broken
/// stream counts against the server.
async fn from_server<T>(
    read: Option<Duration>,
    future: impl Future<Output = Result<T, h2::Error>>,
    what: &str,
    fail: &impl Fn(FailureKind),
) -> Result<T, Failed> {
    match within(read, future).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => {
            fail(FailureKind::Upstream);
            Err(Failed::new(Failure::BadUpstream, e))
        }
        None => {
            fail(FailureKind::Upstream);
            Err(Failed::new(
                Failure::UpstreamTimeout,
                format!("{what} not received within read_ms"),
            ))
        }
    }
}

/// The client reset its stream, or its connection ended.
fn client_reset(reset: Result<h2::Reason, h2::Error>) -> Failed {
    match reset {
        Ok(reason) => Failed::new(
            Failure::ClientGone,
            format!("client reset the stream ({reason})"),
        ),
        Err(e) => Failed::new(Failure::ClientGone, e),
    }
}

/// `future` within `limit` (`None` when it ran out); no limit when `limit` is `None`.
async fn within<F: Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// The request head as it goes to `server`: the client's, with scheme `http` (the hop to the
/// server is cleartext) and the server's address as authority when the client sent none.
fn upstream_head(head: &http::request::Parts, server: SocketAddr) -> http::Request<()> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = head.uri.authority().cloned().or_else(|| {
        head.headers
            .get(http::header::HOST)
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
    });
    if uri.authority.is_none() {
        uri.authority = http::uri::Authority::try_from(server.to_string()).ok();
    }
    uri.path_and_query = head.uri.path_and_query().cloned();
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = http::Uri::from_parts(uri).unwrap_or_else(|_| head.uri.clone());
    *request.headers_mut() = head.headers.clone();
    request
}

/// Opens the stream on the server. An error here means nothing was sent, so the caller may
/// try another server.
async fn send_head(
    send: SendRequest<Bytes>,
    head: http::Request<()>,
    end_of_stream: bool,
) -> Result<(h2::client::ResponseFuture, SendStream<Bytes>), Failed> {
    let mut send = send
        .ready()
        .await
        .map_err(|e| Failed::new(Failure::ConnectFailed, e))?;
    send.send_request(head, end_of_stream)
        .map_err(|e| Failed::new(Failure::ConnectFailed, e))
}

/// Sends `data` as the flow-control windows allow, waiting at most `limit` for each window.
async fn send_data(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    limit: Option<Duration>,
) -> Result<(), SendError> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = within(limit, std::future::poll_fn(|cx| stream.poll_capacity(cx)))
            .await
            .ok_or(SendError::TimedOut)?;
        match granted {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => {
                let piece = data.split_to(n.min(data.len()));
                stream.send_data(piece, false).map_err(SendError::H2)?;
            }
            Some(Err(e)) => return Err(SendError::H2(e)),
            None => return Err(SendError::Closed),
        }
    }
    Ok(())
}

enum SendError {
    TimedOut,
    Closed,
    H2(h2::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TimedOut => f.write_str("flow-control window not opened within write_ms"),
            SendError::Closed => f.write_str("stream closed"),
            SendError::H2(e) => e.fmt(f),
        }
    }
}

/// Client → server: the request body and trailers. A client that resets or leaves fails the
/// request (ClientGone, which cancels the server's stream as it is dropped); a write the server
/// holds back beyond `write_ms` counts against it. A server that stops reading (it answered
/// early, or reset) ends only this half: the response decides.
async fn pump_request(
    mut down: RecvStream,
    mut up: SendStream<Bytes>,
    write: Option<Duration>,
    fail: &impl Fn(FailureKind),
) -> Result<(), Failed> {
    while let Some(chunk) = down.data().await {
        let chunk = chunk.map_err(|e| Failed::new(Failure::ClientGone, e))?;
        let len = chunk.len();
        match send_data(&mut up, chunk, write).await {
            Ok(()) => {}
            Err(SendError::TimedOut) => {
                fail(FailureKind::Upstream);
                return Err(Failed::new(Failure::UpstreamTimeout, SendError::TimedOut));
            }
            Err(_) => return std::future::pending().await,
        }
        let _ = down.flow_control().release_capacity(len);
    }
    let sent = match down.trailers().await {
        Ok(Some(trailers)) => up.send_trailers(trailers),
        Ok(None) => up.send_data(Bytes::new(), true),
        Err(e) => return Err(Failed::new(Failure::ClientGone, e)),
    };
    if sent.is_err() {
        // The server no longer reads; its response decides the outcome.
        return std::future::pending().await;
    }
    Ok(())
}

/// Server → client: the response body and trailers, feeding passive health with a gRPC
/// `UNAVAILABLE` in the trailers. A client that reads slowly holds the server back through
/// flow control, without a time limit (`write_ms` is about the server); one that resets or
/// leaves ends the call even while the server is silent.
async fn pump_response(
    mut up: RecvStream,
    down: &mut SendStream<Bytes>,
    read: Option<Duration>,
    fail: &impl Fn(FailureKind),
) -> Result<(), Failed> {
    loop {
        // `data()` as a Result: `Ok(None)` is the end of the body.
        let data = async { up.data().await.transpose() };
        let chunk = tokio::select! {
            biased;
            chunk = from_server(read, data, "response body", fail) => chunk?,
            reset = std::future::poll_fn(|cx| down.poll_reset(cx)) => return Err(client_reset(reset)),
        };
        let Some(chunk) = chunk else { break };
        let len = chunk.len();
        send_data(down, chunk, None)
            .await
            .map_err(|e| Failed::new(Failure::ClientGone, e))?;
        let _ = up.flow_control().release_capacity(len);
    }
    let trailers = tokio::select! {
        biased;
        trailers = from_server(read, up.trailers(), "response trailers", fail) => trailers?,
        reset = std::future::poll_fn(|cx| down.poll_reset(cx)) => return Err(client_reset(reset)),
    };
    let sent = match trailers {
        Some(trailers) => {
            if grpc_unavailable(trailers.get("grpc-status")) {
                fail(FailureKind::GrpcUnavailable);
            }
            down.send_trailers(trailers)
        }
        None => down.send_data(Bytes::new(), true),
    };
    sent.map_err(|e| Failed::new(Failure::ClientGone, e))
}

/// Answers the client of a failed request, as `failure::respond` does for pingora's path:
/// before the response head, an error response (gRPC trailers-only, or a problem document);
/// after it, a gRPC call gets its status in the trailers and anything else a stream reset.
/// Returns the status sent, 0 if none.
fn answer(down: &mut Downstream, failure: Failure, grpc: bool) -> u16 {
    let status = failure.status();
    if status == 0 {
        return 0;
    }
    if let Some(body) = &mut down.body {
        if grpc && body.send_trailers(failure.grpc_headers()).is_ok() {
            return 200;
        }
        body.send_reset(h2::Reason::INTERNAL_ERROR);
        return 0;
    }
    let sent = if grpc {
        let mut response = http::Response::new(());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response.headers_mut().extend(failure.grpc_headers());
        down.respond.send_response(response, true).map(|_| 200)
    } else {
        let problem = failure.problem();
        let mut response = http::Response::new(());
        *response.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/problem+json"),
        );
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, problem.len().into());
        down.respond
            .send_response(response, false)
            .and_then(|mut body| body.send_data(problem.into(), true))
            .map(|()| status)
    };
    sent.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "could not send the error response");
        0
    })
}

/// This worker's HTTP/2 connections to servers, by address, each carrying up to the group's
/// `h2.max_streams` streams before another is opened.
#[derive(Default)]
struct Pool {
    connections: Mutex<HashMap<SocketAddr, Vec<Upstream>>>,
}

#[derive(Clone)]
struct Upstream {
    send: SendRequest<Bytes>,
    shared: Arc<Shared>,
}

/// What a connection's streams and its driver task both see.
#[derive(Default)]
struct Shared {
    streams: AtomicUsize,
    /// Given no new streams: closed, or retired after a stream timed out on it.
    retired: AtomicBool,
    /// A stream started since the driver last looked.
    used: AtomicBool,
}

/// One stream's share of an upstream connection.
struct Lease(Arc<Shared>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// Opens a stream to `address` for the request `head` builds: on an open connection with
    /// room, else on a new one. An error means nothing reached the server.
    async fn open_stream(
        &self,
        address: SocketAddr,
        config: &BackendConfig,
        head: impl Fn() -> http::Request<()>,
        end_of_stream: bool,
    ) -> Result<(Lease, h2::client::ResponseFuture, SendStream<Bytes>), Failed> {
        if let Some((send, lease)) = self.reuse(address, config.h2.max_streams.max(1)) {
            match send_head(send, head(), end_of_stream).await {
                Ok((response, body)) => return Ok((lease, response, body)),
                // The connection closed or is going away (GOAWAY): not the server's failure.
                Err(_) => self.retire(&lease),
            }
        }
        let upstream = connect(address, config).await?;
        let (send, lease) = upstream.take();
        {
            let mut connections = lock(&self.connections);
            // A new connection is rare: the moment to forget closed ones, and servers a
            // reload removed.
            connections.retain(|_, list| {
                list.retain(|u| !u.shared.retired.load(Ordering::Relaxed));
                !list.is_empty()
            });
            connections.entry(address).or_default().push(upstream);
        }
        let (response, body) = send_head(send, head(), end_of_stream).await?;
        Ok((lease, response, body))
    }

    fn reuse(&self, address: SocketAddr, max: usize) -> Option<(SendRequest<Bytes>, Lease)> {
        let mut connections = lock(&self.connections);
        let list = connections.get_mut(&address)?;
        list.retain(|u| !u.shared.retired.load(Ordering::Relaxed));
        // Within our limit and the server's (SETTINGS_MAX_CONCURRENT_STREAMS): h2 would queue
        // a stream beyond the server's, where it could wait behind long-lived ones.
        list.iter()
            .find(|u| {
                let open = u.shared.streams.load(Ordering::Relaxed);
                open < max && open < u.send.current_max_send_streams()
            })
            .map(Upstream::take)
    }

    /// No new streams go to the lease's connection (it is closing, or a stream on it timed
    /// out and it may be hung); it closes once its streams are done.
    fn retire(&self, lease: &Lease) {
        lease.0.retired.store(true, Ordering::Relaxed);
    }
}

impl Upstream {
    fn take(&self) -> (SendRequest<Bytes>, Lease) {
        self.shared.streams.fetch_add(1, Ordering::Relaxed);
        self.shared.used.store(true, Ordering::Relaxed);
        (self.send.clone(), Lease(self.shared.clone()))
    }
}

/// Connects and hands the connection to a driver task on this worker, which also sends the
/// keepalive pings and closes it when idle or dead.
async fn connect(address: SocketAddr, config: &BackendConfig) -> Result<Upstream, Failed> {
    // One deadline for the TCP connect and the HTTP/2 handshake together.
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(config.timeouts.connect_ms.max(1));
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(Failed::new(
                Failure::ConnectFailed,
                format!("{address}: {e}"),
            ))
        }
        Err(_) => {
            return Err(Failed::new(
                Failure::UpstreamTimeout,
                format!("{address}: connect timed out"),
            ))
        }
    };
    let _ = tcp.set_nodelay(true);
    let handshake = h2::client::Builder::new()
        .enable_push(false)
        .initial_max_send_streams(config.h2.max_streams.max(1))
        .max_frame_size(64 * 1024)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(tcp);
    let (send, connection) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            return Err(Failed::new(
                Failure::ConnectFailed,
                format!("{address}: {e}"),
            ))
        }
        Err(_) => {
            return Err(Failed::new(
                Failure::UpstreamTimeout,
                format!("{address}: HTTP/2 handshake timed out"),
            ))
        }
    };
    let shared = Arc::new(Shared::default());
    let ping = nonzero_ms(config.h2.ping_interval_ms);
    tokio::spawn(drive(connection, shared.clone(), ping, address));
    Ok(Upstream { send, shared })
}

/// Runs one upstream connection until it fails, misses a ping, or has been idle (or retired
/// and empty) for `IDLE_CLOSE`. Dropping it fails whatever streams it still carries.
async fn drive(
    mut connection: h2::client::Connection<TcpStream, Bytes>,
    shared: Arc<Shared>,
    ping: Option<Duration>,
    address: SocketAddr,
) {
    let mut ping_pong = connection.ping_pong();
    let pinger = async {
        match (ping, ping_pong.as_mut()) {
            (Some(interval), Some(pp)) => loop {
                tokio::time::sleep(interval).await;
                if !matches!(
                    tokio::time::timeout(interval, pp.ping(h2::Ping::opaque())).await,
                    Ok(Ok(_))
                ) {
                    return;
                }
            },
            _ => std::future::pending().await,
        }
    };
    let idle = async {
        let mut tick = tokio::time::interval(IDLE_CLOSE);
        tick.tick().await;
        loop {
            tick.tick().await;
            let used = shared.used.swap(false, Ordering::Relaxed);
            let retired = shared.retired.load(Ordering::Relaxed);
            if shared.streams.load(Ordering::Relaxed) == 0 && (retired || !used) {
                return;
            }
        }
    };
    tokio::select! {
        ended = &mut connection => {
            if let Err(e) = ended {
                tracing::debug!(server = %address, error = %e, "upstream HTTP/2 connection failed");
            }
        }
        () = pinger => {
            tracing::warn!(server = %address, "server missed an HTTP/2 ping; closing the connection");
        }
        () = idle => {}
    }
    shared.retired.store(true, Ordering::Relaxed);
}
