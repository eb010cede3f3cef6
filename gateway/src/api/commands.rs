//! `/v2/commands/*`: submitting commands (and waiting for them), and reading completions.
//! Rights are checked first; the `Idempotency-Key` header becomes the command id, so a retry
//! through any instance is deduplicated by the participant.

use super::docs::BodyErrors;
use super::model::*;
use crate::auth::{policy, Caller};
use crate::error::ApiError;
use crate::json::{ApiJson, ApiQuery};
use crate::state::SharedState;
use crate::value::json_to_value;
use axum::extract::State;
use axum::Json;
use http::HeaderMap;
use serde::Deserialize;
use tandem_proto::ledger::v2 as pb;
use utoipa::IntoParams;

/// The header mapped onto the command id.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest command id accepted from a header.
const MAX_COMMAND_ID: usize = 255;

/// Submits commands and waits until they are committed or rejected.
#[utoipa::path(post, operation_id = "submit_and_wait", path = "/v2/commands/submit-and-wait", tag = "commands",
    request_body = JsCommands,
    params(("Idempotency-Key" = Option<String>, Header, description = "Used as the command id when the body has none; a retry with the same key is deduplicated")),
    responses(
        (status = 200, description = "Committed: the update id and its offset", body = SubmitAndWaitResponse),
        BodyErrors
    ),
    security(("bearer" = [])))]
pub async fn submit_and_wait(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<JsCommands>,
) -> Result<Json<SubmitAndWaitResponse>, ApiError> {
    let request = submit_and_wait_request(&state, &caller, &headers, body).await?;
    let r = state
        .ledger
        .commands()
        .submit_and_wait(request)
        .await?
        .into_inner();
    Ok(Json(SubmitAndWaitResponse {
        update_id: r.update_id,
        completion_offset: r.completion_offset,
    }))
}

/// Submits commands and waits for the transaction they committed.
#[utoipa::path(post, operation_id = "submit_and_wait_for_transaction", path = "/v2/commands/submit-and-wait-for-transaction", tag = "commands",
    request_body = JsCommands,
    params(("Idempotency-Key" = Option<String>, Header, description = "Used as the command id when the body has none")),
    responses(
        (status = 200, description = "Committed: the transaction as the acting parties see it", body = SubmitAndWaitForTransactionResponse),
        BodyErrors
    ),
    security(("bearer" = [])))]
pub async fn submit_and_wait_for_transaction(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<JsCommands>,
) -> Result<Json<SubmitAndWaitForTransactionResponse>, ApiError> {
    let request = submit_and_wait_request(&state, &caller, &headers, body).await?;
    let r = state
        .ledger
        .commands()
        .submit_and_wait_for_transaction(request)
        .await?
        .into_inner();
    let tx = r
        .transaction
        .ok_or_else(|| ApiError::Internal("the ledger answered without a transaction".into()))?;
    Ok(Json(SubmitAndWaitForTransactionResponse {
        transaction: (&tx).into(),
    }))
}

/// Submits commands without waiting; the outcome arrives on the completions.
#[utoipa::path(post, operation_id = "submit", path = "/v2/commands/async/submit", tag = "commands",
    request_body = JsCommands,
    params(("Idempotency-Key" = Option<String>, Header, description = "Used as the command id when the body has none")),
    responses(
        (status = 200, description = "Accepted for processing", body = SubmitResponse),
        BodyErrors
    ),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<SharedState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<JsCommands>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let commands = prepare(&state, &caller, &headers, body).await?;
    let command_id = commands.command_id.clone();
    let request = state.ledger.request(
        pb::SubmitRequest {
            commands: Some(commands),
        },
        &caller.ctx,
    );
    let r = state
        .ledger
        .submission()
        .submit(request)
        .await?
        .into_inner();
    Ok(Json(SubmitResponse {
        submission_id: r.submission_id,
        command_id,
    }))
}

/// The Ledger API request both submit-and-wait endpoints send.
async fn submit_and_wait_request(
    state: &SharedState,
    caller: &Caller,
    headers: &HeaderMap,
    body: JsCommands,
) -> Result<tonic::Request<pb::SubmitAndWaitRequest>, ApiError> {
    let commands = prepare(state, caller, headers, body).await?;
    Ok(state.ledger.request(
        pb::SubmitAndWaitRequest {
            commands: Some(commands),
        },
        &caller.ctx,
    ))
}

/// Checks rights and converts the request into Ledger API commands.
async fn prepare(
    state: &SharedState,
    caller: &Caller,
    headers: &HeaderMap,
    body: JsCommands,
) -> Result<pb::Commands, ApiError> {
    let rights = caller.rights(state).await?;
    let user_id = policy::check_act_as(
        &rights,
        &body.act_as,
        &body.read_as,
        body.user_id.as_deref(),
    )?;
    let command_id = command_id(headers, body.command_id.as_deref())?;
    if body.commands.is_empty() {
        return Err(ApiError::field(
            "commands",
            "at least one command is required",
        ));
    }
    let commands = body
        .commands
        .iter()
        .enumerate()
        .map(|(i, c)| command_to_pb(c, &format!("commands[{i}]")))
        .collect::<Result<_, _>>()?;
    let deduplication_duration_ms = match &body.deduplication_period {
        None => 0,
        Some(DeduplicationPeriod::DeduplicationDuration(d)) => {
            let ms = d
                .value
                .seconds
                .checked_mul(1000)
                .and_then(|ms| ms.checked_add(i64::from(d.value.nanos) / 1_000_000))
                .filter(|ms| *ms > 0 && d.value.nanos >= 0);
            ms.ok_or_else(|| {
                ApiError::field(
                    "deduplicationPeriod.DeduplicationDuration.value",
                    "must be a positive duration",
                )
            })?
        }
    };
    Ok(pb::Commands {
        user_id,
        command_id,
        act_as: body.act_as,
        read_as: body.read_as,
        commands,
        submission_id: body.submission_id.unwrap_or_default(),
        deduplication_duration_ms,
        workflow_id: body.workflow_id.unwrap_or_default(),
    })
}

/// The command id: the body's, else the `Idempotency-Key` header's (an RFC 8941 string may be
/// quoted), else a fresh UUID. Both given and different is an error.
pub fn command_id(headers: &HeaderMap, body: Option<&str>) -> Result<String, ApiError> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let raw = v.to_str().unwrap_or_default().trim();
            let key = raw
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .unwrap_or(raw);
            let valid = !key.is_empty()
                && key.len() <= MAX_COMMAND_ID
                && key.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
            if !valid {
                return Err(ApiError::field(
                    "Idempotency-Key",
                    format!(
                        "must be 1 to {MAX_COMMAND_ID} printable ASCII characters without spaces"
                    ),
                ));
            }
            Some(key.to_owned())
        }
    };
    match (body.filter(|b| !b.is_empty()), key) {
        (Some(b), Some(k)) if b != k => Err(ApiError::field(
            "Idempotency-Key",
            "differs from the body's commandId; send one or make them equal",
        )),
        (Some(b), _) => Ok(b.to_owned()),
        (None, Some(k)) => Ok(k),
        (None, None) => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

fn value(
    json: &serde_json::Value,
    path: String,
) -> Result<tandem_proto::prost_types::Value, ApiError> {
    json_to_value(json, &path).map_err(|e| ApiError::field(e.path, e.message))
}

fn command_to_pb(command: &JsCommand, at: &str) -> Result<pb::Command, ApiError> {
    use pb::command::Command as C;
    let c = match command {
        JsCommand::CreateCommand(c) => C::Create(pb::CreateCommand {
            template_id: c.template_id.clone(),
            create_arguments: Some(value(
                &c.create_arguments,
                format!("{at}.CreateCommand.createArguments"),
            )?),
        }),
        JsCommand::ExerciseCommand(c) => C::Exercise(pb::ExerciseCommand {
            template_id: c.template_id.clone(),
            contract_id: c.contract_id.clone(),
            choice: c.choice.clone(),
            choice_argument: Some(value(
                &c.choice_argument,
                format!("{at}.ExerciseCommand.choiceArgument"),
            )?),
        }),
        JsCommand::CreateAndExerciseCommand(c) => {
            C::CreateAndExercise(pb::CreateAndExerciseCommand {
                template_id: c.template_id.clone(),
                create_arguments: Some(value(
                    &c.create_arguments,
                    format!("{at}.CreateAndExerciseCommand.createArguments"),
                )?),
                choice: c.choice.clone(),
                choice_argument: Some(value(
                    &c.choice_argument,
                    format!("{at}.CreateAndExerciseCommand.choiceArgument"),
                )?),
            })
        }
        JsCommand::ExerciseByKeyCommand(c) => C::ExerciseByKey(pb::ExerciseByKeyCommand {
            template_id: c.template_id.clone(),
            contract_key: Some(value(
                &c.contract_key,
                format!("{at}.ExerciseByKeyCommand.contractKey"),
            )?),
            choice: c.choice.clone(),
            choice_argument: Some(value(
                &c.choice_argument,
                format!("{at}.ExerciseByKeyCommand.choiceArgument"),
            )?),
        }),
    };
    Ok(pb::Command { command: Some(c) })
}

/// `?limit=` of list endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Most elements to return (at most the gateway's max_list_items).
    pub limit: Option<u64>,
}

/// Completions of the caller's commands after an offset, up to the ledger end at the start
/// of the request (or `limit`, or a pause of the stream).
#[utoipa::path(post, operation_id = "list_completions", path = "/v2/commands/completions", tag = "commands",
    request_body = CompletionStreamRequest,
    params(ListParams),
    responses(
        (status = 200, description = "The completions and checkpoints, in offset order", body = Vec<JsCompletionStreamResponse>),
        BodyErrors
    ),
    security(("bearer" = [])))]
pub async fn completions(
    State(state): State<SharedState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiJson(body): ApiJson<CompletionStreamRequest>,
) -> Result<Json<Vec<JsCompletionStreamResponse>>, ApiError> {
    let request = completion_request(&state, &caller, &body).await?;
    let limit = super::limit(&state, params.limit)?;
    let end = state.ledger.ledger_end(&caller.ctx).await?;
    super::within_ledger_end("beginExclusive", body.begin_exclusive, end)?;
    let mut out = Vec::new();
    if body.begin_exclusive == end {
        return Ok(Json(out));
    }
    let mut stream = state
        .ledger
        .completions()
        .completion_stream(state.ledger.stream_request(request, &caller.ctx))
        .await?
        .into_inner();
    let idle = state.idle_timeout();
    while out.len() < limit {
        let Ok(next) = tokio::time::timeout(idle, stream.message()).await else {
            break;
        };
        let Some(item) = next? else { break };
        let Some(js) = JsCompletionStreamResponse::from_pb(&item) else {
            continue;
        };
        let offset = js.offset();
        if offset > end {
            break;
        }
        out.push(js);
        if offset == end {
            break;
        }
    }
    Ok(Json(out))
}

/// Checks a completion request's rights and builds the Ledger API request.
pub async fn completion_request(
    state: &SharedState,
    caller: &Caller,
    body: &CompletionStreamRequest,
) -> Result<pb::CompletionStreamRequest, ApiError> {
    if body.begin_exclusive < 0 {
        return Err(ApiError::field("beginExclusive", "must not be negative"));
    }
    let rights = caller.rights(state).await?;
    policy::check_read_as(&rights, &body.parties, "parties")?;
    let user_id = policy::submitting_user(&rights, body.user_id.as_deref())?;
    Ok(pb::CompletionStreamRequest {
        user_id,
        parties: body.parties.clone(),
        begin_exclusive: body.begin_exclusive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IDEMPOTENCY_KEY, key.parse().unwrap());
        h
    }

    #[test]
    fn idempotency_key_becomes_the_command_id() {
        assert_eq!(command_id(&headers("abc-1"), None).unwrap(), "abc-1");
        assert_eq!(command_id(&headers("\"abc-1\""), None).unwrap(), "abc-1");
        assert_eq!(
            command_id(&headers("abc-1"), Some("abc-1")).unwrap(),
            "abc-1"
        );
        assert_eq!(command_id(&HeaderMap::new(), Some("body")).unwrap(), "body");
        assert!(command_id(&headers("a"), Some("b")).is_err());
        assert!(command_id(&headers("has space"), None).is_err());
        assert!(command_id(&headers(&"x".repeat(300)), None).is_err());
        let generated = command_id(&HeaderMap::new(), None).unwrap();
        assert_eq!(generated.len(), 36);
    }

    #[test]
    fn commands_convert_with_paths() {
        let c: JsCommand = serde_json::from_value(serde_json::json!(
            {"CreateCommand": {"templateId": "#iou:Iou:Iou", "createArguments": {"amount": 12345678901234567890_u64}}}
        ))
        .unwrap();
        let err = command_to_pb(&c, "commands[2]").unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest { field: Some(f), .. } if f == "commands[2].CreateCommand.createArguments.amount")
        );
    }
}
