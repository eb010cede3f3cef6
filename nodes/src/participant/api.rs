//! The Ledger API (design.md §6) of the active replica. Every call goes through [`authorize`],
//! the one authorization point: it verifies the caller's JWT with the verifier the gateway uses
//! too (tandem-auth) and decides the caller's rights. Errors carry a stable error code at the
//! start of the message and in the `x-tandem-error-code` trailer.

use super::codec::json_to_proto;
use super::engine::{CompletionBody, Rights, UserRecord};
use super::{denied, error, Caller, Participant};
use crate::model::ids::{PackageRef, TemplateRef};
use crate::model::{Format, PackageStore, Party};
use crate::sequencer::now_us;
use crate::topology::{
    Mapping, Operation, PartyHosting, Permission, SignedTransaction, Transaction,
};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::time::Duration;
use tandem_proto::ledger::v2 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

/// How long SubmitAndWait waits for the completion.
const SUBMIT_AND_WAIT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_PAGE: u32 = 1000;
const STREAM_PAGE: i64 = 500;
pub struct LedgerApi(pub Participant);

/// The authorization point: verifies the caller's bearer JWT (`authorization` metadata) with
/// the participant's [`tandem_auth::Verifier`] and decides its rights. A user token (audience-
/// or scope-based) takes its rights from the user table, plus admin for `admin_users`; a
/// custom-claims token carries its rights. Passive replicas answer UNAVAILABLE.
pub async fn authorize<T>(p: &Participant, request: &Request<T>) -> Result<Caller, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let verified = match tandem_auth::bearer_token(header) {
        Ok(token) => p.settings().verifier.verify(token).await,
        Err(e) => Err(e),
    };
    let claims = verified.map_err(|e| {
        let mut status = error(
            Code::Unauthenticated,
            "UNAUTHENTICATED",
            format!("{}: {}", e.reason().as_str(), e.message()),
        );
        if let Ok(v) = e.reason().as_str().parse() {
            status.metadata_mut().insert("x-tandem-auth-reason", v);
        }
        status
    })?;
    let refused_after = p.settings().verifier.refused_after(&claims);
    match claims.grant {
        tandem_auth::Grant::User { user_id } => user_caller(p, user_id, refused_after).await,
        tandem_auth::Grant::Rights(r) => {
            // Custom claims: the rights are in the token; the user is its application id.
            let user_id = r
                .application_id
                .clone()
                .or(claims.subject)
                .unwrap_or_default();
            // Require a loaded engine, as for user tokens: a passive replica serves nobody.
            p.with_engine(|_| ()).await?;
            Ok(Caller {
                user_id,
                rights: Rights {
                    admin: r.admin,
                    act_as: r.act_as.into_iter().collect(),
                    read_as: r.read_as.into_iter().collect(),
                },
                refused_after,
            })
        }
    }
}

/// The caller of a user token: rights from the user table; `admin_users` are admins anyway.
async fn user_caller(
    p: &Participant,
    user: String,
    refused_after: Option<u64>,
) -> Result<Caller, Status> {
    let admin = p.settings().admin_users.contains(&user);
    let row = p
        .with_engine(|e| e.users.get(&user).map(|u| u.rights.clone()))
        .await?;
    let rights = match (row, admin) {
        (Some(mut rights), admin) => {
            rights.admin |= admin;
            rights
        }
        (None, true) => Rights {
            admin: true,
            ..Rights::default()
        },
        (None, false) => {
            return Err(error(
                Code::PermissionDenied,
                "USER_NOT_FOUND",
                format!("user {user} does not exist"),
            ))
        }
    };
    Ok(Caller {
        user_id: user,
        rights,
        refused_after,
    })
}

fn require_admin(caller: &Caller) -> Result<(), Status> {
    if caller.rights.admin {
        Ok(())
    } else {
        Err(denied(format!(
            "user {} is not a participant admin",
            caller.user_id
        )))
    }
}

fn invalid(m: impl std::fmt::Display) -> Status {
    error(Code::InvalidArgument, "INVALID_ARGUMENT", m)
}

/// An offset bound and how an error names it.
#[derive(Clone, Copy)]
struct Bound(i64, &'static str);

/// OUT_OF_RANGE with `code` unless `low <= value <= high`; the message names the field.
fn within(code: &str, field: &str, value: i64, (low, high): (Bound, Bound)) -> Result<(), Status> {
    if (low.0..=high.0).contains(&value) {
        return Ok(());
    }
    let (l, h) = (low.1, high.1);
    Err(error(
        Code::OutOfRange,
        code,
        format!("{field}: {value} is not between {l} and {h} {}", high.0),
    ))
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("participant database unavailable: {e}"))
}

/// The parties of a filter, each of which the caller may read as.
fn filter_parties(
    caller: &Caller,
    filter: Option<&pb::TransactionFilter>,
) -> Result<(BTreeSet<String>, TemplateFilter), Status> {
    let filter = filter.ok_or_else(|| invalid("filter: missing"))?;
    if filter.parties.is_empty() {
        return Err(invalid("filter.parties: names no party"));
    }
    for p in &filter.parties {
        Party::parse(p).map_err(|e| invalid(format!("filter.parties: {e}")))?;
        caller.check_read_as(p)?;
    }
    Ok((
        filter.parties.iter().cloned().collect(),
        TemplateFilter::parse(&filter.template_ids)?,
    ))
}

/// A filter's `template_ids`, parsed once per request: exact `pkg:M:E` ids, and `#name:M:E`
/// entries that match every version of the package.
#[derive(Default)]
struct TemplateFilter {
    ids: BTreeSet<String>,
    names: BTreeSet<(String, String, String)>,
}

impl TemplateFilter {
    fn parse(wanted: &[String]) -> Result<TemplateFilter, Status> {
        let mut filter = TemplateFilter::default();
        for t in wanted {
            let r =
                TemplateRef::parse(t).map_err(|e| invalid(format!("filter.template_ids: {e}")))?;
            match r.package {
                PackageRef::Name(name) => {
                    filter.names.insert((name, r.module, r.entity));
                }
                PackageRef::Id(_) => {
                    filter.ids.insert(t.clone());
                }
            }
        }
        Ok(filter)
    }

    /// Whether stored template id `t` (`pkg:M:E`) passes the filter.
    fn matches(&self, packages: &PackageStore, t: &str) -> bool {
        if (self.ids.is_empty() && self.names.is_empty()) || self.ids.contains(t) {
            return true;
        }
        let Ok(r) = TemplateRef::parse(t) else {
            return false;
        };
        packages.resolve(&r.package).is_some_and(|p| {
            self.names
                .contains(&(p.name.to_string(), r.module.clone(), r.entity.clone()))
        })
    }
}

fn strings(j: &Json, field: &str) -> Vec<String> {
    j.get(field)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn created_event(
    offset: i64,
    node_id: i64,
    contract_id: &str,
    template_id: &str,
    contract: &Json,
    witnesses: Vec<String>,
    created_at: i64,
) -> pb::CreatedEvent {
    pb::CreatedEvent {
        offset,
        node_id: i32::try_from(node_id).unwrap_or(0),
        contract_id: contract_id.to_string(),
        template_id: template_id.to_string(),
        create_arguments: contract.get("argument").map(json_to_proto),
        signatories: strings(contract, "signatories"),
        observers: strings(contract, "observers"),
        contract_key: contract
            .get("key")
            .filter(|k| !k.is_null())
            .map(json_to_proto),
        witness_parties: witnesses,
        created_at_us: created_at,
    }
}

/// A stored update as `parties` see it; `None` when they see none of it.
fn transaction(
    packages: &PackageStore,
    offset: i64,
    update_id: &str,
    record_time: i64,
    body: &str,
    parties: &BTreeSet<String>,
    templates: &TemplateFilter,
) -> Option<pb::Transaction> {
    let body: Json = serde_json::from_str(body).ok()?;
    let mut events = Vec::new();
    for e in body
        .get("events")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let witnesses: Vec<String> = strings(e, "witnesses")
            .into_iter()
            .filter(|w| parties.contains(w))
            .collect();
        let template_id = e
            .get("template_id")
            .and_then(Json::as_str)
            .unwrap_or_default();
        if witnesses.is_empty() || !templates.matches(packages, template_id) {
            continue;
        }
        let node_id = e.get("node_id").and_then(Json::as_i64).unwrap_or(0);
        let contract_id = e
            .get("contract_id")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let event = match e.get("kind").and_then(Json::as_str) {
            Some("created") => pb::event::Event::Created(created_event(
                offset,
                node_id,
                contract_id,
                template_id,
                e.get("contract").unwrap_or(&Json::Null),
                witnesses,
                record_time,
            )),
            Some("archived") => pb::event::Event::Archived(pb::ArchivedEvent {
                offset,
                node_id: i32::try_from(node_id).unwrap_or(0),
                contract_id: contract_id.to_string(),
                template_id: template_id.to_string(),
                witness_parties: witnesses,
            }),
            Some("exercised") => pb::event::Event::Exercised(pb::ExercisedEvent {
                offset,
                node_id: i32::try_from(node_id).unwrap_or(0),
                contract_id: contract_id.to_string(),
                template_id: template_id.to_string(),
                choice: e
                    .get("choice")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                choice_argument: e.get("choice_argument").map(json_to_proto),
                acting_parties: strings(e, "acting_parties"),
                consuming: e.get("consuming").and_then(Json::as_bool).unwrap_or(false),
                witness_parties: witnesses,
                last_descendant_node_id: i32::try_from(
                    e.get("last_descendant_node_id")
                        .and_then(Json::as_i64)
                        .unwrap_or(0),
                )
                .unwrap_or(0),
                exercise_result: None,
            }),
            _ => continue,
        };
        events.push(pb::Event { event: Some(event) });
    }
    if events.is_empty() {
        return None;
    }
    Some(pb::Transaction {
        update_id: update_id.to_string(),
        command_id: String::new(),
        workflow_id: body
            .get("workflow_id")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        effective_at_us: record_time,
        events,
        offset,
        synchronizer_id: body
            .get("synchronizer_id")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        record_time_us: record_time,
    })
}

fn completion_to_proto(c: &CompletionBody) -> pb::Completion {
    pb::Completion {
        command_id: c.command_id.clone(),
        status_code: c.status_code,
        error_code: c.error_code.clone(),
        message: c.message.clone(),
        update_id: c.update_id.clone(),
        user_id: c.user_id.clone(),
        act_as: c.act_as.clone(),
        submission_id: c.submission_id.clone(),
        offset: c.offset,
        record_time_us: c.record_time_us,
    }
}

impl LedgerApi {
    /// Submits and waits for the completion; a rejection is the error.
    async fn submit_and_wait_inner(
        &self,
        request: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<(Caller, pb::Commands, CompletionBody), Status> {
        let caller = authorize(&self.0, &request).await?;
        let commands = request
            .into_inner()
            .commands
            .ok_or_else(|| invalid("commands: missing"))?;
        let (_, done) = self.0.submit(&caller, &commands).await?;
        let completion = tokio::time::timeout(SUBMIT_AND_WAIT_TIMEOUT, done)
            .await
            .map_err(|_| error(Code::DeadlineExceeded, "REQUEST_TIME_OUT", "no completion in time; the completion stream will report the outcome"))?
            .map_err(|_| error(Code::Unavailable, "REPLICA_NOT_ACTIVE", "this replica stopped being active; the next active replica completes the command (retry with the same command id)"))?;
        if completion.status_code != 0 {
            return Err(error(
                Code::from_i32(completion.status_code),
                &completion.error_code,
                &completion.message,
            ));
        }
        Ok((caller, commands, completion))
    }
}

#[tonic::async_trait]
impl pb::command_service_server::CommandService for LedgerApi {
    async fn submit_and_wait(
        &self,
        request: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<Response<pb::SubmitAndWaitResponse>, Status> {
        let (_, _, c) = self.submit_and_wait_inner(request).await?;
        Ok(Response::new(pb::SubmitAndWaitResponse {
            update_id: c.update_id,
            completion_offset: c.ledger_offset,
        }))
    }

    async fn submit_and_wait_for_transaction(
        &self,
        request: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<Response<pb::SubmitAndWaitForTransactionResponse>, Status> {
        let (_, commands, c) = self.submit_and_wait_inner(request).await?;
        let rows = self
            .0
            .store()
            .participant_updates(self.0.node(), c.ledger_offset - 1, c.ledger_offset, 1)
            .await
            .map_err(unavailable)?;
        let parties: BTreeSet<String> = commands
            .act_as
            .iter()
            .chain(commands.read_as.iter())
            .cloned()
            .collect();
        let mut tx = rows
            .first()
            .and_then(|(offset, id, rt, body)| {
                let all = TemplateFilter::default();
                transaction(&self.0.packages(), *offset, id, *rt, body, &parties, &all)
            })
            .ok_or_else(|| Status::internal("the committed transaction was not found"))?;
        tx.command_id = commands.command_id;
        Ok(Response::new(pb::SubmitAndWaitForTransactionResponse {
            transaction: Some(tx),
        }))
    }
}

#[tonic::async_trait]
impl pb::command_submission_service_server::CommandSubmissionService for LedgerApi {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let commands = request
            .into_inner()
            .commands
            .ok_or_else(|| invalid("commands: missing"))?;
        let (submission_id, _) = self.0.submit(&caller, &commands).await?;
        Ok(Response::new(pb::SubmitResponse { submission_id }))
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

/// Runs a stream's producer (which sends on a clone of `tx`) until it ends, or until the token
/// the stream was opened with expires: then the client gets UNAUTHENTICATED `expired` after
/// what was already sent, and the stream ends, as Canton ends the streams of expired tokens.
fn spawn_stream<T: Send + 'static>(
    caller: &Caller,
    tx: mpsc::Sender<Result<T, Status>>,
    producer: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let expired = token_expiry(caller);
    tokio::spawn(async move {
        tokio::select! {
            () = producer => {}
            () = expired => {
                let _ = tx.send(Err(expired_status())).await;
            }
        }
    });
}

/// Completes when the caller's token is refused; never for a token valid for more than a year
/// (or with an absurd `exp`).
fn token_expiry(caller: &Caller) -> impl std::future::Future<Output = ()> + Send + 'static {
    let expiry = caller
        .refused_after
        .map(tandem_auth::until_unix_second)
        .filter(|left| *left <= Duration::from_secs(365 * 24 * 3600))
        .map(|left| tokio::time::Instant::now() + left);
    async move {
        match expiry {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// What a stream's last message is when its token expired.
fn expired_status() -> Status {
    error(
        Code::Unauthenticated,
        "UNAUTHENTICATED",
        "expired: the token this stream was opened with has expired",
    )
}

#[tonic::async_trait]
impl pb::command_completion_service_server::CommandCompletionService for LedgerApi {
    type CompletionStreamStream = Stream<pb::CompletionStreamResponse>;

    async fn completion_stream(
        &self,
        request: Request<pb::CompletionStreamRequest>,
    ) -> Result<Response<Self::CompletionStreamStream>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let r = request.into_inner();
        let user = if r.user_id.is_empty() {
            caller.user_id.clone()
        } else {
            r.user_id.clone()
        };
        if user != caller.user_id && !caller.rights.admin {
            return Err(denied(format!(
                "user {} may not read {user}'s completions",
                caller.user_id
            )));
        }
        for p in &r.parties {
            caller.check_read_as(p)?;
        }
        let end = *self.0.completion_end_watch().borrow();
        let completion_end = Bound(end, "the completion end");
        let range = (Bound(0, "0"), completion_end);
        within(
            "OFFSET_OUT_OF_RANGE",
            "begin_exclusive",
            r.begin_exclusive,
            range,
        )?;
        let (tx, rx) = mpsc::channel(256);
        let (p, parties) = (self.0.clone(), r.parties.clone());
        spawn_stream(&caller, tx.clone(), async move {
            let mut watch = p.completion_end_watch();
            let mut last = r.begin_exclusive;
            loop {
                let rows = match p
                    .store()
                    .participant_completions(p.node(), last, STREAM_PAGE)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.send(Err(unavailable(e))).await;
                        return;
                    }
                };
                let full = rows.len() as i64 == STREAM_PAGE;
                for (offset, row_user, body) in rows {
                    last = offset;
                    let Ok(c) = serde_json::from_str::<CompletionBody>(&body) else {
                        continue;
                    };
                    if row_user != user
                        || (!parties.is_empty() && !c.act_as.iter().any(|a| parties.contains(a)))
                    {
                        continue;
                    }
                    let item = pb::CompletionStreamResponse {
                        response: Some(pb::completion_stream_response::Response::Completion(
                            completion_to_proto(&c),
                        )),
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    () = tx.closed() => return,
                    changed = watch.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl pb::update_service_server::UpdateService for LedgerApi {
    type GetUpdatesStream = Stream<pb::GetUpdatesResponse>;

    async fn get_updates(
        &self,
        request: Request<pb::GetUpdatesRequest>,
    ) -> Result<Response<Self::GetUpdatesStream>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let r = request.into_inner();
        let (parties, templates) = filter_parties(&caller, r.filter.as_ref())?;
        let end = *self.0.ledger_end_watch().borrow();
        let ledger_end = Bound(end, "the ledger end");
        let code = "OFFSET_AFTER_LEDGER_END";
        within(
            code,
            "begin_exclusive",
            r.begin_exclusive,
            (Bound(0, "0"), ledger_end),
        )?;
        if r.end_inclusive != 0 {
            let begin = Bound(r.begin_exclusive, "begin_exclusive");
            within(code, "end_inclusive", r.end_inclusive, (begin, ledger_end))?;
        }
        let (tx, rx) = mpsc::channel(256);
        let p = self.0.clone();
        spawn_stream(&caller, tx.clone(), async move {
            let mut watch = p.ledger_end_watch();
            let mut last = r.begin_exclusive;
            loop {
                let up_to = if r.end_inclusive == 0 {
                    *watch.borrow_and_update()
                } else {
                    r.end_inclusive
                };
                while last < up_to {
                    let rows = match p
                        .store()
                        .participant_updates(p.node(), last, up_to, STREAM_PAGE)
                        .await
                    {
                        Ok(rows) => rows,
                        Err(e) => {
                            let _ = tx.send(Err(unavailable(e))).await;
                            return;
                        }
                    };
                    if rows.is_empty() {
                        break;
                    }
                    let packages = p.packages();
                    for (offset, update_id, record_time, body) in rows {
                        last = offset;
                        if let Some(t) = transaction(
                            &packages,
                            offset,
                            &update_id,
                            record_time,
                            &body,
                            &parties,
                            &templates,
                        ) {
                            let item = pb::GetUpdatesResponse {
                                update: Some(pb::get_updates_response::Update::Transaction(t)),
                            };
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                if r.end_inclusive != 0 && last >= r.end_inclusive {
                    return;
                }
                tokio::select! {
                    () = tx.closed() => return,
                    changed = watch.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl pb::state_service_server::StateService for LedgerApi {
    type GetActiveContractsStream = Stream<pb::GetActiveContractsResponse>;

    async fn get_active_contracts(
        &self,
        request: Request<pb::GetActiveContractsRequest>,
    ) -> Result<Response<Self::GetActiveContractsStream>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let r = request.into_inner();
        let (parties, templates) = filter_parties(&caller, r.filter.as_ref())?;
        let end = *self.0.ledger_end_watch().borrow();
        let range = (Bound(0, "0"), Bound(end, "the ledger end"));
        within(
            "OFFSET_AFTER_LEDGER_END",
            "active_at_offset",
            r.active_at_offset,
            range,
        )?;
        let at = if r.active_at_offset == 0 {
            end
        } else {
            r.active_at_offset
        };
        let rows = self
            .0
            .store()
            .participant_contracts(self.0.node(), Some(at))
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(256);
        let p = self.0.clone();
        spawn_stream(&caller, tx.clone(), async move {
            let packages = p.packages();
            for (id, template, body, created_offset, created_at) in rows {
                let Ok(contract) = serde_json::from_str::<Json>(&body) else {
                    continue;
                };
                let witnesses: Vec<String> = strings(&contract, "signatories")
                    .into_iter()
                    .chain(strings(&contract, "observers"))
                    .filter(|s| parties.contains(s))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if witnesses.is_empty() || !templates.matches(&packages, &template) {
                    continue;
                }
                let item = pb::GetActiveContractsResponse {
                    offset: at,
                    created_event: Some(created_event(
                        created_offset,
                        0,
                        &id,
                        &template,
                        &contract,
                        witnesses,
                        created_at,
                    )),
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_ledger_end(
        &self,
        request: Request<pb::GetLedgerEndRequest>,
    ) -> Result<Response<pb::GetLedgerEndResponse>, Status> {
        authorize(&self.0, &request).await?;
        let offset = self.0.with_engine(|e| e.ledger_end).await?;
        Ok(Response::new(pb::GetLedgerEndResponse { offset }))
    }

    type ObserveLedgerEndStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::GetLedgerEndResponse, Status>> + Send>,
    >;

    /// Answers each ask as the connection polls for the next answer, with no task in between
    /// (the gateway asks thousands of times a second), until the client ends the stream, it
    /// breaks, or the token expires.
    async fn observe_ledger_end(
        &self,
        request: Request<Streaming<pb::GetLedgerEndRequest>>,
    ) -> Result<Response<Self::ObserveLedgerEndStream>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let open = (
            request.into_inner(),
            self.0.clone(),
            Box::pin(token_expiry(&caller)),
        );
        let answers = futures_util::stream::unfold(Some(open), |open| async move {
            let (mut asks, p, mut expired) = open?;
            tokio::select! {
                () = &mut expired => Some((Err(expired_status()), None)),
                ask = asks.message() => match ask {
                    Ok(Some(_)) => match p.with_engine(|e| e.ledger_end).await {
                        Ok(offset) => Some((
                            Ok(pb::GetLedgerEndResponse { offset }),
                            Some((asks, p, expired)),
                        )),
                        Err(status) => Some((Err(status), None)),
                    },
                    Ok(None) | Err(_) => None,
                },
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

fn details(p: &Participant, h: Option<&PartyHosting>, party: &str) -> pb::PartyDetails {
    pb::PartyDetails {
        party: party.to_string(),
        is_local: h.is_some_and(|h| h.permission_of(p.id()).is_some()),
        threshold: h.map_or(0, |h| h.threshold),
        hosting: h
            .map(|h| {
                h.participants
                    .iter()
                    .map(|(m, perm)| pb::HostingParticipant {
                        participant: m.to_string(),
                        permission: perm.as_str().into(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// One page of a listing ordered by key. Page tokens are the hex of the last key of the
/// previous page.
struct Page {
    size: usize,
    after: Option<String>,
}

impl Page {
    fn parse(page_size: u32, token: &str) -> Result<Page, Status> {
        let size = match page_size {
            0 => MAX_PAGE,
            n if n > MAX_PAGE => return Err(invalid(format!("page_size: at most {MAX_PAGE}"))),
            n => n,
        } as usize;
        let after = if token.is_empty() {
            None
        } else {
            Some(
                hex::decode(token)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| invalid("page_token: not a token this participant issued"))?,
            )
        };
        Ok(Page { size, after })
    }

    /// The items of this page from `(key, item)` pairs in key order, and the next page's token
    /// (empty after the last page).
    fn of<'k, T>(&self, items: impl Iterator<Item = (&'k str, T)>) -> (Vec<T>, String) {
        let mut page: Vec<(&str, T)> = items
            .filter(|(key, _)| self.after.as_deref().is_none_or(|a| *key > a))
            .take(self.size + 1)
            .collect();
        let more = page.len() > self.size;
        page.truncate(self.size);
        let next = match page.last() {
            Some((key, _)) if more => hex::encode(key),
            _ => String::new(),
        };
        (page.into_iter().map(|(_, item)| item).collect(), next)
    }
}

#[tonic::async_trait]
impl pb::party_management_service_server::PartyManagementService for LedgerApi {
    async fn get_participant_id(
        &self,
        request: Request<pb::GetParticipantIdRequest>,
    ) -> Result<Response<pb::GetParticipantIdResponse>, Status> {
        authorize(&self.0, &request).await?;
        Ok(Response::new(pb::GetParticipantIdResponse {
            participant_id: self.0.id().to_string(),
        }))
    }

    async fn allocate_party(
        &self,
        request: Request<pb::AllocatePartyRequest>,
    ) -> Result<Response<pb::AllocatePartyResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let r = request.into_inner();
        let party = Party::parse(&format!("{}::{}", r.party_id_hint, self.0.id().fingerprint))
            .map_err(|_| invalid("party_id_hint: 1 to 185 letters, digits, '-', '_' or '.'"))?;
        let me = self.0.id().to_string();
        let (hosting, known, admitted) = self
            .0
            .with_engine(|e| {
                (
                    e.topology.latest_hosting(party.as_str()).cloned(),
                    e.parties.contains(party.as_str()),
                    e.topology.is_admitted(&me),
                )
            })
            .await?;
        // A party can only be hosted by an admitted participant: until this one has seen its
        // own admission sequenced, the topology manager would refuse the hosting outright.
        if !admitted {
            return Err(error(
                Code::Unavailable,
                "NOT_ADMITTED",
                "the synchronizer has not admitted this participant yet; retry",
            ));
        }
        // What allocation submits: the party hosted here alone. Finding exactly that, with the
        // party not recorded here yet, means an earlier attempt timed out after submitting it:
        // finish that allocation rather than refuse the retry.
        let ours = PartyHosting {
            party: party.clone(),
            threshold: 1,
            participants: vec![(self.0.id().clone(), Permission::Submission)],
        };
        match hosting {
            Some(h) if known || h != ours => {
                return Err(error(
                    Code::AlreadyExists,
                    "PARTY_ALREADY_EXISTS",
                    format!("{party} is already allocated"),
                ));
            }
            Some(_) => {}
            None => {
                let tx = Transaction {
                    operation: Operation::Replace,
                    serial: 1,
                    mapping: Mapping::Party(ours),
                };
                super::admin::submit_topology(
                    &self.0,
                    SignedTransaction::unsigned(tx).sign(self.0.key()),
                    true,
                )
                .await?;
            }
        }
        super::admin::await_hosting(&self.0, party.as_str()).await?;
        // The party and its user's right to act as it are recorded in one transaction: a
        // failure leaves neither, so the client's retry finishes the allocation instead of
        // finding the party allocated without the right.
        let user = if r.user_id.is_empty() {
            None
        } else {
            let act_as = Rights {
                act_as: [party.to_string()].into(),
                ..Rights::default()
            };
            Some(UserUpdate::new(&self.0, &r.user_id, &act_as, true).await?)
        };
        let fence = self.0.with_engine(|e| e.fence.clone()).await?;
        let mut db = self
            .0
            .store()
            .begin_fenced(&fence)
            .await
            .map_err(unavailable)?;
        db.insert_party(self.0.node(), party.as_str(), now_us())
            .await
            .map_err(unavailable)?;
        if let Some(user) = &user {
            user.write(&self.0, &mut db).await?;
        }
        db.commit().await.map_err(unavailable)?;
        self.0
            .with_engine(|e| e.parties.insert(party.to_string()))
            .await?;
        if let Some(user) = user {
            user.apply(&self.0).await?;
        }
        let h = self
            .0
            .with_engine(|e| e.topology.latest_hosting(party.as_str()).cloned())
            .await?;
        Ok(Response::new(pb::AllocatePartyResponse {
            party_details: Some(details(&self.0, h.as_ref(), party.as_str())),
        }))
    }

    async fn list_known_parties(
        &self,
        request: Request<pb::ListKnownPartiesRequest>,
    ) -> Result<Response<pb::ListKnownPartiesResponse>, Status> {
        authorize(&self.0, &request).await?;
        let r = request.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let now = now_us();
        let (party_details, next_page_token) = self
            .0
            .with_engine(|e| {
                let parties = e.topology.parties_at(now);
                page.of(parties.into_iter().map(|h| {
                    (
                        h.party.as_str(),
                        details(&self.0, Some(h), h.party.as_str()),
                    )
                }))
            })
            .await?;
        Ok(Response::new(pb::ListKnownPartiesResponse {
            party_details,
            next_page_token,
        }))
    }

    async fn get_parties(
        &self,
        request: Request<pb::GetPartiesRequest>,
    ) -> Result<Response<pb::GetPartiesResponse>, Status> {
        authorize(&self.0, &request).await?;
        let r = request.into_inner();
        for p in &r.parties {
            Party::parse(p).map_err(|e| invalid(format!("parties: {e}")))?;
        }
        let now = now_us();
        let party_details = self
            .0
            .with_engine(|e| {
                r.parties
                    .iter()
                    .filter_map(|p| {
                        e.topology
                            .hosting_at(p, now)
                            .map(|h| details(&self.0, Some(h), p))
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(pb::GetPartiesResponse { party_details }))
    }
}

fn check_user_id(id: &str) -> Result<(), Status> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@^$.!`-#+'~_|:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "user_id: {id:?} must be 1 to 128 of a-z, A-Z, 0-9 and @^$.!`-#+'~_|:"
        )))
    }
}

fn rights_of(rights: &[pb::Right]) -> Result<Rights, Status> {
    let mut out = Rights::default();
    for (i, r) in rights.iter().enumerate() {
        match &r.kind {
            Some(pb::right::Kind::ParticipantAdmin(_)) => out.admin = true,
            Some(pb::right::Kind::CanActAs(a)) => {
                Party::parse(&a.party)
                    .map_err(|e| invalid(format!("rights[{i}].can_act_as.party: {e}")))?;
                out.act_as.insert(a.party.clone());
            }
            Some(pb::right::Kind::CanReadAs(a)) => {
                Party::parse(&a.party)
                    .map_err(|e| invalid(format!("rights[{i}].can_read_as.party: {e}")))?;
                out.read_as.insert(a.party.clone());
            }
            None => return Err(invalid(format!("rights[{i}]: no kind"))),
        }
    }
    Ok(out)
}

fn rights_to(r: &Rights) -> Vec<pb::Right> {
    let mut out = Vec::new();
    if r.admin {
        out.push(pb::Right {
            kind: Some(pb::right::Kind::ParticipantAdmin(
                pb::right::ParticipantAdmin {},
            )),
        });
    }
    out.extend(r.act_as.iter().map(|p| pb::Right {
        kind: Some(pb::right::Kind::CanActAs(pb::right::CanActAs {
            party: p.clone(),
        })),
    }));
    out.extend(r.read_as.iter().map(|p| pb::Right {
        kind: Some(pb::right::Kind::CanReadAs(pb::right::CanReadAs {
            party: p.clone(),
        })),
    }));
    out
}

/// Adds (`add`) or removes rights of `user`, creating the row of a configured admin user;
/// returns the rights that changed.
async fn grant(p: &Participant, user: &str, change: &Rights, add: bool) -> Result<Rights, Status> {
    let update = UserUpdate::new(p, user, change, add).await?;
    let fence = p.with_engine(|e| e.fence.clone()).await?;
    let mut db = p.store().begin_fenced(&fence).await.map_err(unavailable)?;
    update.write(p, &mut db).await?;
    db.commit().await.map_err(unavailable)?;
    update.apply(p).await
}

/// A change of one user's rights: computed from what the engine holds, written inside the
/// caller's fenced transaction, then applied to the engine once that has committed.
struct UserUpdate {
    user: String,
    exists: bool,
    record: UserRecord,
    changed: Rights,
}

impl UserUpdate {
    /// Adds (`add`) or removes `change`; a configured admin user without a row gets one.
    async fn new(p: &Participant, user: &str, change: &Rights, add: bool) -> Result<Self, Status> {
        let configured_admin = p.settings().admin_users.iter().any(|u| u == user);
        let current = p.with_engine(|e| e.users.get(user).cloned()).await?;
        let (exists, mut record) = match current {
            Some(r) => (true, r),
            None if configured_admin => (
                false,
                UserRecord {
                    primary_party: String::new(),
                    rights: Rights::default(),
                },
            ),
            None => {
                return Err(error(
                    Code::NotFound,
                    "USER_NOT_FOUND",
                    format!("user {user} does not exist"),
                ))
            }
        };
        let rights = &mut record.rights;
        let changed = Rights {
            admin: change.admin && rights.admin != add,
            act_as: change_parties(&mut rights.act_as, &change.act_as, add),
            read_as: change_parties(&mut rights.read_as, &change.read_as, add),
        };
        if change.admin {
            rights.admin = add;
        }
        Ok(UserUpdate {
            user: user.to_string(),
            exists,
            record,
            changed,
        })
    }

    async fn write(&self, p: &Participant, db: &mut crate::store::FencedTx) -> Result<(), Status> {
        let rights = serde_json::to_string(&self.record.rights).unwrap_or_default();
        db.put_user(
            p.node(),
            &self.user,
            &self.record.primary_party,
            &rights,
            !self.exists,
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// After the commit; returns the rights that changed.
    async fn apply(self, p: &Participant) -> Result<Rights, Status> {
        let UserUpdate {
            user,
            record,
            changed,
            ..
        } = self;
        p.with_engine(|e| e.users.insert(user, record)).await?;
        Ok(changed)
    }
}

/// Adds (`add`) or removes `change` in `current`; returns the parties that changed.
fn change_parties(
    current: &mut BTreeSet<String>,
    change: &BTreeSet<String>,
    add: bool,
) -> BTreeSet<String> {
    let changed: BTreeSet<String> = if add {
        change.difference(current).cloned().collect()
    } else {
        change.intersection(current).cloned().collect()
    };
    if add {
        current.extend(changed.iter().cloned());
    } else {
        current.retain(|p| !changed.contains(p));
    }
    changed
}

fn user_to(id: &str, r: &UserRecord) -> pb::User {
    pb::User {
        id: id.to_string(),
        primary_party: r.primary_party.clone(),
        is_deactivated: false,
    }
}

#[tonic::async_trait]
impl pb::user_management_service_server::UserManagementService for LedgerApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let r = request.into_inner();
        let user = r.user.ok_or_else(|| invalid("user: missing"))?;
        check_user_id(&user.id)?;
        if !user.primary_party.is_empty() {
            Party::parse(&user.primary_party)
                .map_err(|e| invalid(format!("user.primary_party: {e}")))?;
        }
        let record = UserRecord {
            primary_party: user.primary_party.clone(),
            rights: rights_of(&r.rights)?,
        };
        let fence = self.0.with_engine(|e| e.fence.clone()).await?;
        let mut db = self
            .0
            .store()
            .begin_fenced(&fence)
            .await
            .map_err(unavailable)?;
        let rights = serde_json::to_string(&record.rights).unwrap_or_default();
        if !db
            .put_user(self.0.node(), &user.id, &user.primary_party, &rights, true)
            .await
            .map_err(unavailable)?
        {
            return Err(error(
                Code::AlreadyExists,
                "USER_ALREADY_EXISTS",
                format!("user {} exists", user.id),
            ));
        }
        db.commit().await.map_err(unavailable)?;
        let out = user_to(&user.id, &record);
        self.0
            .with_engine(|e| e.users.insert(user.id.clone(), record))
            .await?;
        Ok(Response::new(pb::CreateUserResponse { user: Some(out) }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let id = request.into_inner().user_id;
        let id = if id.is_empty() {
            caller.user_id.clone()
        } else {
            id
        };
        if id != caller.user_id {
            require_admin(&caller)?;
        }
        let user = self
            .0
            .with_engine(|e| e.users.get(&id).map(|r| user_to(&id, r)))
            .await?;
        let user = match user {
            Some(u) => u,
            None if self.0.settings().admin_users.contains(&id) => pb::User {
                id,
                ..Default::default()
            },
            None => {
                return Err(error(
                    Code::NotFound,
                    "USER_NOT_FOUND",
                    format!("user {id} does not exist"),
                ))
            }
        };
        Ok(Response::new(pb::GetUserResponse { user: Some(user) }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let id = request.into_inner().user_id;
        check_user_id(&id)?;
        let fence = self.0.with_engine(|e| e.fence.clone()).await?;
        let mut db = self
            .0
            .store()
            .begin_fenced(&fence)
            .await
            .map_err(unavailable)?;
        if !db
            .delete_user(self.0.node(), &id)
            .await
            .map_err(unavailable)?
        {
            return Err(error(
                Code::NotFound,
                "USER_NOT_FOUND",
                format!("user {id} does not exist"),
            ));
        }
        db.commit().await.map_err(unavailable)?;
        self.0.with_engine(|e| e.users.remove(&id)).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let r = request.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (users, next_page_token) = self
            .0
            .with_engine(|e| page.of(e.users.iter().map(|(id, r)| (id.as_str(), user_to(id, r)))))
            .await?;
        Ok(Response::new(pb::ListUsersResponse {
            users,
            next_page_token,
        }))
    }

    async fn grant_user_rights(
        &self,
        request: Request<pb::GrantUserRightsRequest>,
    ) -> Result<Response<pb::GrantUserRightsResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let r = request.into_inner();
        check_user_id(&r.user_id)?;
        let changed = grant(&self.0, &r.user_id, &rights_of(&r.rights)?, true).await?;
        Ok(Response::new(pb::GrantUserRightsResponse {
            newly_granted_rights: rights_to(&changed),
        }))
    }

    async fn revoke_user_rights(
        &self,
        request: Request<pb::RevokeUserRightsRequest>,
    ) -> Result<Response<pb::RevokeUserRightsResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let r = request.into_inner();
        check_user_id(&r.user_id)?;
        let changed = grant(&self.0, &r.user_id, &rights_of(&r.rights)?, false).await?;
        Ok(Response::new(pb::RevokeUserRightsResponse {
            newly_revoked_rights: rights_to(&changed),
        }))
    }

    async fn list_user_rights(
        &self,
        request: Request<pb::ListUserRightsRequest>,
    ) -> Result<Response<pb::ListUserRightsResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        let id = request.into_inner().user_id;
        let id = if id.is_empty() {
            caller.user_id.clone()
        } else {
            id
        };
        if id != caller.user_id {
            require_admin(&caller)?;
        }
        let rights = self
            .0
            .with_engine(|e| e.users.get(&id).map(|r| r.rights.clone()))
            .await?;
        let rights = match rights {
            Some(mut r) => {
                r.admin |= self.0.settings().admin_users.contains(&id);
                r
            }
            None if self.0.settings().admin_users.contains(&id) => Rights {
                admin: true,
                ..Rights::default()
            },
            None => {
                return Err(error(
                    Code::NotFound,
                    "USER_NOT_FOUND",
                    format!("user {id} does not exist"),
                ))
            }
        };
        Ok(Response::new(pb::ListUserRightsResponse {
            rights: rights_to(&rights),
        }))
    }
}

#[tonic::async_trait]
impl pb::package_service_server::PackageService for LedgerApi {
    async fn list_packages(
        &self,
        request: Request<pb::ListPackagesRequest>,
    ) -> Result<Response<pb::ListPackagesResponse>, Status> {
        authorize(&self.0, &request).await?;
        let rows = self
            .0
            .store()
            .participant_packages(self.0.node())
            .await
            .map_err(unavailable)?;
        let packages = self.0.packages();
        let list = rows
            .into_iter()
            .map(|(id, _, _, at)| {
                let p =
                    crate::model::PackageId::parse(&id).and_then(|pid| packages.get(&pid).cloned());
                pb::PackageDetails {
                    package_id: id,
                    name: p.as_ref().map(|p| p.name.to_string()).unwrap_or_default(),
                    version: p.map(|p| p.version.to_string()).unwrap_or_default(),
                    uploaded_at_us: at,
                }
            })
            .collect();
        Ok(Response::new(pb::ListPackagesResponse { packages: list }))
    }
}

#[tonic::async_trait]
impl pb::package_management_service_server::PackageManagementService for LedgerApi {
    async fn upload_package(
        &self,
        request: Request<pb::UploadPackageRequest>,
    ) -> Result<Response<pb::UploadPackageResponse>, Status> {
        let caller = authorize(&self.0, &request).await?;
        require_admin(&caller)?;
        let r = request.into_inner();
        let format = match r.format.as_str() {
            "yaml" | "" => Format::Yaml,
            "json" => Format::Json,
            other => return Err(invalid(format!("format: {other:?} is not yaml or json"))),
        };
        let mut packages = (*self.0.packages()).clone();
        let id = packages
            .upload(&r.content, format)
            .map_err(|e| error(Code::InvalidArgument, e.code(), &e))?;
        let fence = self.0.with_engine(|e| e.fence.clone()).await?;
        let now = now_us();
        let mut db = self
            .0
            .store()
            .begin_fenced(&fence)
            .await
            .map_err(unavailable)?;
        let format = if format == Format::Json {
            "json"
        } else {
            "yaml"
        };
        db.insert_package(self.0.node(), id.as_str(), format, &r.content, now)
            .await
            .map_err(unavailable)?;
        db.commit().await.map_err(unavailable)?;
        let p = packages.get(&id).cloned();
        self.0.set_packages(packages);
        Ok(Response::new(pb::UploadPackageResponse {
            package: Some(pb::PackageDetails {
                package_id: id.to_string(),
                name: p.as_ref().map(|p| p.name.to_string()).unwrap_or_default(),
                version: p.map(|p| p.version.to_string()).unwrap_or_default(),
                uploaded_at_us: now,
            }),
        }))
    }
}

#[tonic::async_trait]
impl pb::version_service_server::VersionService for LedgerApi {
    async fn get_ledger_api_version(
        &self,
        _: Request<pb::GetLedgerApiVersionRequest>,
    ) -> Result<Response<pb::GetLedgerApiVersionResponse>, Status> {
        Ok(Response::new(pb::GetLedgerApiVersionResponse {
            version: format!("2.0.0-tandem.{}", env!("CARGO_PKG_VERSION")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(parties: &[&str]) -> BTreeSet<String> {
        parties.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_change_of_parties_returns_only_what_changed() {
        let mut current = set(&["a", "b"]);
        assert_eq!(
            change_parties(&mut current, &set(&["b", "c"]), true),
            set(&["c"])
        );
        assert_eq!(current, set(&["a", "b", "c"]));
        assert_eq!(
            change_parties(&mut current, &set(&["a", "d"]), false),
            set(&["a"])
        );
        assert_eq!(current, set(&["b", "c"]));
    }
}
