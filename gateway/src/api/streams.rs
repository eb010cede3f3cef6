//! Websocket streams (GET with an upgrade) on `/v2/updates`, `/v2/commands/completions` and
//! `/v2/state/active-contracts`, as Canton's JSON API serves them: the token travels as the
//! subprotocol `jwt.token.<JWT>` (or in `Authorization`), the request is the first text
//! message, then the server sends one JSON element per message. Updates and completions resume
//! from `beginExclusive` (the last offset a client saw) with no gap and no duplicate, and run
//! until the client closes, `endInclusive` is reached, the token expires or the gateway stops.
//! Every `ws_heartbeat_ms` the server pings, and on the update and completion streams sends an
//! `OffsetCheckpoint` element at the last offset delivered. Errors arrive as a problem
//! document, then a close frame (1008 for auth, 1011 otherwise).

use super::docs::StreamErrors;
use super::model::*;
use super::{commands, state as st};
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::state::SharedState;
use crate::value::micros_to_rfc3339;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tandem_auth::{AuthError, Reason, WEBSOCKET_TOKEN_PREFIX};
use tandem_proto::ledger::v2 as pb;

/// The subprotocol clients offer next to the token; chosen when offered.
const DAML_WS_AUTH: &str = "daml.ws.auth";
/// Close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_ERROR: u16 = 1011;
/// Longest wait for the client's request message.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A websocket caller: authenticated from the subprotocol or the Authorization header.
pub struct WsCaller {
    caller: Caller,
    protocols: Vec<String>,
}

impl FromRequestParts<SharedState> for WsCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let offered = offered_protocols(&parts.headers);
        let joined = offered.join(",");
        let token = match tandem_auth::websocket_token(Some(&joined)) {
            Ok(t) => Ok(t.to_owned()),
            Err(_) => match parts.headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
                Some(Ok(v)) => tandem_auth::bearer_token(Some(v)).map(str::to_owned),
                Some(Err(_)) => Err(AuthError::new(
                    Reason::Malformed,
                    "the Authorization header is not ASCII",
                )),
                None => Err(AuthError::new(
                    Reason::Missing,
                    "no access token was given (subprotocol jwt.token.<token> or Authorization)",
                )),
            },
        };
        let caller = Caller::verify(
            state,
            token.as_deref().map_err(Clone::clone),
            &parts.headers,
        )
        .await?;
        // Answer with a subprotocol the client offered (browsers insist), never echoing the token
        // when daml.ws.auth is there.
        let protocols = if offered.iter().any(|p| p == DAML_WS_AUTH) {
            vec![DAML_WS_AUTH.to_owned()]
        } else {
            offered
                .into_iter()
                .filter(|p| p.starts_with(WEBSOCKET_TOKEN_PREFIX))
                .take(1)
                .collect()
        };
        Ok(Self { caller, protocols })
    }
}

fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The upgrade, or a 400 problem for a plain GET.
fn upgrade(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    protocols: &[String],
) -> Result<WebSocketUpgrade, ApiError> {
    let ws = ws.map_err(|e| ApiError::BadRequest {
        field: None,
        detail: format!("this endpoint is a websocket stream: {}", e.body_text()),
    })?;
    Ok(ws.protocols(protocols.to_vec()))
}

/// Stream of transactions from an offset; resumable.
#[utoipa::path(get, operation_id = "stream_updates", path = "/v2/updates", tag = "updates",
    responses((status = 101, description = "Switching to the websocket stream: first send a GetUpdatesRequest, then receive JsGetUpdatesResponse messages"), StreamErrors),
    security(("bearer" = [])))]
pub async fn updates(
    State(state): State<SharedState>,
    caller: WsCaller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    stream(state, caller, ws, Kind::Updates)
}

/// Stream of completions from an offset; resumable.
#[utoipa::path(get, operation_id = "stream_completions", path = "/v2/commands/completions", tag = "commands",
    responses((status = 101, description = "Switching to the websocket stream: first send a CompletionStreamRequest, then receive JsCompletionStreamResponse messages"), StreamErrors),
    security(("bearer" = [])))]
pub async fn completions(
    State(state): State<SharedState>,
    caller: WsCaller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    stream(state, caller, ws, Kind::Completions)
}

/// The active contracts at an offset, as a stream that ends after the last one.
#[utoipa::path(get, operation_id = "stream_active_contracts", path = "/v2/state/active-contracts", tag = "state",
    responses((status = 101, description = "Switching to the websocket stream: first send a GetActiveContractsRequest, then receive JsGetActiveContractsResponse messages until the server closes"), StreamErrors),
    security(("bearer" = [])))]
pub async fn active_contracts(
    State(state): State<SharedState>,
    caller: WsCaller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    stream(state, caller, ws, Kind::ActiveContracts)
}

/// Upgrades to the websocket and runs the stream of `kind` on it.
fn stream(
    state: SharedState,
    caller: WsCaller,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let ws = upgrade(ws, &caller.protocols)?;
    let caller = caller.caller;
    // Held until the stream ends (or the upgrade fails), so shutdown waits for its close frame.
    let open = state.streams.token();
    Ok(ws
        .on_upgrade(move |socket| async move {
            run(state, caller, socket, kind).await;
            drop(open);
        })
        .into_response())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Updates,
    Completions,
    ActiveContracts,
}

/// Why a stream ended.
enum End {
    Done,
    ClientGone,
    ShuttingDown,
    Failed(ApiError),
}

async fn run(state: SharedState, caller: Caller, mut socket: WebSocket, kind: Kind) {
    state.metrics.ws_streams.inc();
    let end = match kind {
        Kind::Updates => stream_updates(&state, &caller, &mut socket).await,
        Kind::Completions => stream_completions(&state, &caller, &mut socket).await,
        Kind::ActiveContracts => stream_acs(&state, &caller, &mut socket).await,
    };
    state.metrics.ws_streams.dec();
    let (code, reason) = match end {
        End::Done => (CLOSE_NORMAL, "end of stream".to_owned()),
        End::ClientGone => return,
        End::ShuttingDown => (CLOSE_GOING_AWAY, "the gateway is shutting down".to_owned()),
        End::Failed(error) => {
            let problem: Problem = error.problem();
            let _ = send_json(&mut socket, &problem).await;
            let code = if matches!(problem.status, 401 | 403) {
                CLOSE_POLICY
            } else {
                CLOSE_ERROR
            };
            (code, problem.code)
        }
    };
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn send_json<T: Serialize>(socket: &mut WebSocket, value: &T) -> Result<(), End> {
    let text =
        serde_json::to_string(value).map_err(|e| End::Failed(ApiError::Internal(e.to_string())))?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| End::ClientGone)
}

/// Reads the client's request (the first text message).
async fn first_request<T: DeserializeOwned>(socket: &mut WebSocket) -> Result<T, End> {
    let deadline = tokio::time::sleep(FIRST_MESSAGE_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return Err(End::Failed(ApiError::BadRequest {
                field: None, detail: "no request message arrived".into() })),
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    return crate::json::decode(text.as_bytes()).map_err(End::Failed);
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return crate::json::decode(&bytes).map_err(End::Failed);
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(End::ClientGone),
            }
        }
    }
}

/// How long until the token is refused (its `exp` plus the leeway, as the participant ends its
/// streams), if it ever is.
fn until_expiry(state: &SharedState, caller: &Caller) -> Duration {
    state.verifier.refused_after(&caller.claims).map_or(
        Duration::from_secs(365 * 24 * 3600),
        tandem_auth::until_unix_second,
    )
}

fn expired() -> End {
    End::Failed(ApiError::Unauthenticated(AuthError::new(
        Reason::Expired,
        "the access token expired; reconnect with a fresh one from the last offset you saw",
    )))
}

fn checkpoint(offset: i64) -> JsOffsetCheckpoint {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    JsOffsetCheckpoint {
        offset,
        record_time: micros_to_rfc3339(now),
    }
}

/// The select loop shared by every stream: forwards ledger items, heartbeats, watches the
/// client, the token and the shutdown.
async fn pump<T, F>(
    state: &SharedState,
    caller: &Caller,
    socket: &mut WebSocket,
    mut stream: tonic::Streaming<T>,
    mut forward: F,
    heartbeat: Option<&(dyn Fn(i64) -> serde_json::Value + Sync)>,
    begin: i64,
) -> End
where
    F: FnMut(&T) -> Option<(i64, serde_json::Value)>,
{
    let mut ticker = tokio::time::interval(state.heartbeat());
    ticker.tick().await;
    let expiry = tokio::time::sleep(until_expiry(state, caller));
    tokio::pin!(expiry);
    let mut last = begin;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return End::ShuttingDown,
            () = &mut expiry => return expired(),
            _ = ticker.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return End::ClientGone;
                }
                if let Some(make) = heartbeat {
                    if let Err(end) = send_json(socket, &make(last)).await {
                        return end;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::ClientGone,
                Some(Ok(_)) => {}
            },
            item = stream.message() => match item {
                Ok(Some(item)) => {
                    if let Some((offset, json)) = forward(&item) {
                        last = last.max(offset);
                        if let Err(end) = send_json(socket, &json).await {
                            return end;
                        }
                    }
                }
                Ok(None) => return End::Done,
                Err(status) => return End::Failed(ApiError::Ledger(status)),
            },
        }
    }
}

async fn stream_updates(state: &SharedState, caller: &Caller, socket: &mut WebSocket) -> End {
    let body: GetUpdatesRequest = match first_request(socket).await {
        Ok(b) => b,
        Err(end) => return end,
    };
    let filter = match st::updates_filter(state, caller, &body).await {
        Ok(f) => f,
        Err(e) => return End::Failed(e),
    };
    let request = pb::GetUpdatesRequest {
        begin_exclusive: body.begin_exclusive,
        end_inclusive: body.end_inclusive.unwrap_or(0),
        filter: Some(filter.to_pb()),
    };
    let stream = match state
        .ledger
        .updates()
        .get_updates(state.ledger.stream_request(request, &caller.ctx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => return End::Failed(ApiError::Ledger(status)),
    };
    let names = state.names_for(filter.templates(), &caller.ctx).await;
    let heartbeat = |offset: i64| {
        serde_json::to_value(JsGetUpdatesResponse {
            update: JsUpdate::OffsetCheckpoint(CheckpointValue {
                value: checkpoint(offset),
            }),
        })
        .unwrap_or_default()
    };
    pump(
        state,
        caller,
        socket,
        stream,
        |item: &pb::GetUpdatesResponse| {
            let offset = match &item.update {
                Some(pb::get_updates_response::Update::Transaction(t)) => t.offset,
                Some(pb::get_updates_response::Update::OffsetCheckpoint(c)) => c.offset,
                None => return None,
            };
            // A transaction narrowed to nothing still advances the offset: send a checkpoint.
            let js =
                st::update_item(item, &filter, &names).unwrap_or_else(|| JsGetUpdatesResponse {
                    update: JsUpdate::OffsetCheckpoint(CheckpointValue {
                        value: checkpoint(offset),
                    }),
                });
            serde_json::to_value(js).ok().map(|v| (offset, v))
        },
        Some(&heartbeat),
        body.begin_exclusive,
    )
    .await
}

async fn stream_completions(state: &SharedState, caller: &Caller, socket: &mut WebSocket) -> End {
    let body: CompletionStreamRequest = match first_request(socket).await {
        Ok(b) => b,
        Err(end) => return end,
    };
    let request = match commands::completion_request(state, caller, &body).await {
        Ok(r) => r,
        Err(e) => return End::Failed(e),
    };
    let stream = match state
        .ledger
        .completions()
        .completion_stream(state.ledger.stream_request(request, &caller.ctx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => return End::Failed(ApiError::Ledger(status)),
    };
    let heartbeat = |offset: i64| {
        serde_json::to_value(JsCompletionStreamResponse {
            completion_response: JsCompletionResponse::OffsetCheckpoint(CheckpointValue {
                value: checkpoint(offset),
            }),
        })
        .unwrap_or_default()
    };
    pump(
        state,
        caller,
        socket,
        stream,
        |item: &pb::CompletionStreamResponse| {
            let js = JsCompletionStreamResponse::from_pb(item)?;
            let offset = js.offset();
            serde_json::to_value(js).ok().map(|v| (offset, v))
        },
        Some(&heartbeat),
        body.begin_exclusive,
    )
    .await
}

async fn stream_acs(state: &SharedState, caller: &Caller, socket: &mut WebSocket) -> End {
    let body: GetActiveContractsRequest = match first_request(socket).await {
        Ok(b) => b,
        Err(end) => return end,
    };
    let (request, filter) = match st::acs_request(state, caller, &body).await {
        Ok(r) => r,
        Err(e) => return End::Failed(e),
    };
    let stream = match state
        .ledger
        .state()
        .get_active_contracts(state.ledger.stream_request(request, &caller.ctx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => return End::Failed(ApiError::Ledger(status)),
    };
    let names = state.names_for(filter.templates(), &caller.ctx).await;
    pump(
        state,
        caller,
        socket,
        stream,
        |item: &pb::GetActiveContractsResponse| {
            let js = st::acs_item(item, &filter, &names)?;
            serde_json::to_value(js).ok().map(|v| (item.offset, v))
        },
        None,
        body.active_at_offset,
    )
    .await
}
