//! The request path as pingora `ProxyHttp` phases, with `RequestCtx` as the typed per-request
//! context: `upstream_peer` picks a server per request (per gRPC call), `fail_to_connect` is
//! the only place a retry is allowed, the response and trailer filters feed passive health,
//! `fail_to_proxy` answers through `failure::respond`, and `logging` writes metrics and the
//! one log line of a failed request.

use crate::failure::{self, grpc_unavailable, Failure};
use crate::group::Group;
use crate::metrics::FrontendMetrics;
use crate::server::{FailureKind, InFlight};
use crate::stream::StreamSlot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What every frontend routes to; replaced as a whole by a reload.
pub struct Routes {
    pub groups: Vec<Arc<Group>>,
    pub by_frontend: HashMap<String, Arc<Group>>,
}

pub struct LbProxy {
    pub frontend: String,
    pub routes: Arc<ArcSwap<Routes>>,
    pub metrics: FrontendMetrics,
}

pub struct RequestCtx {
    /// Chosen at the first `upstream_peer` and kept for retries, even across a reload.
    group: Option<Arc<Group>>,
    /// The server of the current attempt.
    server: Option<usize>,
    /// Servers that failed to connect for this request.
    tried: Vec<usize>,
    in_flight: Option<InFlight>,
    /// Lets the frontend end this stream when its server loses the active role.
    stream: Option<Arc<StreamSlot>>,
    grpc: bool,
    /// A passive-health failure was already counted for the current attempt.
    failure_counted: bool,
    started: Instant,
}

impl LbProxy {
    fn count_failure(&self, ctx: &mut RequestCtx, kind: FailureKind) {
        if ctx.failure_counted {
            return;
        }
        let (Some(group), Some(index)) = (&ctx.group, ctx.server) else {
            return;
        };
        ctx.failure_counted = true;
        group.record_failure(index, kind);
    }
}

#[async_trait]
impl ProxyHttp for LbProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            group: None,
            server: None,
            tried: Vec::new(),
            in_flight: None,
            stream: StreamSlot::current(),
            grpc: false,
            failure_counted: false,
            started: Instant::now(),
        }
    }

    /// No compression or other downstream modules: the lb passes bytes through.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.group.is_none() {
            ctx.grpc = failure::is_grpc(
                session
                    .req_header()
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.as_bytes()),
            );
            ctx.group = self.routes.load().by_frontend.get(&self.frontend).cloned();
        }
        let Some(group) = ctx.group.clone() else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "frontend has no group",
            ));
        };
        if let Some(previous) = ctx.server.take() {
            ctx.tried.push(previous);
        }
        let Some(index) = group.select(&ctx.tried) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                format!("no healthy server in group {}", group.name),
            ));
        };
        let server = &group.servers[index];
        ctx.server = Some(index);
        ctx.failure_counted = false;
        ctx.in_flight = Some(server.start_request());
        if group.is_active_strategy() {
            if let Some(slot) = &ctx.stream {
                slot.watch(server.streams_token());
            }
        }
        Ok(Box::new(group.peer(index)))
    }

    /// Nothing was sent: count the failure and try another server if there is one.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.count_failure(ctx, FailureKind::Connect);
        if let (Some(group), Some(index)) = (&ctx.group, ctx.server) {
            let mut tried = ctx.tried.clone();
            tried.push(index);
            if group.select(&tried).is_some() {
                e.set_retry(true);
            }
        }
        e
    }

    /// Something may have reached the server, so the request is never sent again: a gRPC
    /// call may have run.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        _session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("server {}", peer.address()));
        if e.esource() == &ErrorSource::Upstream {
            self.count_failure(ctx, FailureKind::Upstream);
        }
        e.set_retry(false);
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if response.status.is_server_error() {
            self.count_failure(ctx, FailureKind::Status5xx);
        } else if grpc_unavailable(response.headers.get("grpc-status")) {
            // A trailers-only gRPC response carries its status in the head.
            self.count_failure(ctx, FailureKind::GrpcUnavailable);
        }
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if grpc_unavailable(trailers.get("grpc-status")) {
            self.count_failure(ctx, FailureKind::GrpcUnavailable);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let failure = Failure::classify(e);
        let code = failure::respond(session, failure, ctx.grpc).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// pingora's own error line is replaced by the one `logging` writes.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if status > 0 {
            self.metrics.response(status);
        }
        self.metrics
            .duration
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(e) = e {
            let server = match (&ctx.group, ctx.server) {
                (Some(g), Some(i)) => Some(g.servers[i].key.address),
                _ => None,
            };
            tracing::warn!(
                frontend = %self.frontend,
                group = ctx.group.as_ref().map(|g| g.name.as_str()),
                server = ?server,
                status,
                failure = ?Failure::classify(e),
                error = %e,
                "request failed"
            );
        }
        ctx.in_flight = None;
    }
}
