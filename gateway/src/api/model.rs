//! The JSON shapes of the API, named and nested as in the Canton JSON Ledger API v2
//! (camelCase fields; protobuf oneofs as `{"Variant": {...}}`, messages wrapped in
//! `{"value": ...}` where Canton wraps them), and their conversions from the Ledger API
//! messages. Requests refuse unknown fields. Values are `serde_json::Value`s in the Canton JSON
//! value encoding.

use crate::value::{micros_to_rfc3339, opt_value_to_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tandem_proto::ledger::v2 as pb;
use utoipa::ToSchema;

// ---------------------------------------------------------------- commands

/// Commands to submit, with the parties and ids they are submitted under.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsCommands {
    /// The commands, executed in order as one transaction.
    pub commands: Vec<JsCommand>,
    /// With `userId` and `actAs`, the change id commands are deduplicated by. Taken from the
    /// `Idempotency-Key` header when absent there; generated when absent in both.
    #[serde(default)]
    pub command_id: Option<String>,
    /// The parties acting; the caller needs `CanActAs` for each.
    pub act_as: Vec<String>,
    /// Further parties whose contracts the commands may read.
    #[serde(default)]
    pub read_as: Vec<String>,
    /// The user submitting; defaults to the caller's user (or the token's application id).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Identifies this attempt in completions; generated when absent.
    #[serde(default)]
    pub submission_id: Option<String>,
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// How long an accepted change is remembered; the participant's default when absent.
    #[serde(default)]
    pub deduplication_period: Option<DeduplicationPeriod>,
}

/// One command.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsCommand {
    CreateCommand(CreateCommand),
    ExerciseCommand(ExerciseCommand),
    CreateAndExerciseCommand(CreateAndExerciseCommand),
    ExerciseByKeyCommand(ExerciseByKeyCommand),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCommand {
    /// `#<package name>:<Module>:<Template>` or `<package id>:<Module>:<Template>`.
    pub template_id: String,
    /// The contract's fields, as a JSON object.
    pub create_arguments: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExerciseCommand {
    pub template_id: String,
    pub contract_id: String,
    pub choice: String,
    /// The choice's parameters, as a JSON object.
    pub choice_argument: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAndExerciseCommand {
    pub template_id: String,
    pub create_arguments: serde_json::Value,
    pub choice: String,
    pub choice_argument: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExerciseByKeyCommand {
    pub template_id: String,
    pub contract_key: serde_json::Value,
    pub choice: String,
    pub choice_argument: serde_json::Value,
}

/// How long an accepted change is remembered for deduplication.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum DeduplicationPeriod {
    DeduplicationDuration(DurationValue),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DurationValue {
    pub value: JsDuration,
}

/// A protobuf duration.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsDuration {
    pub seconds: i64,
    #[serde(default)]
    pub nanos: i32,
}

/// The outcome of `submit-and-wait`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitAndWaitResponse {
    pub update_id: String,
    /// The offset of the transaction; pass it to `POST /v2/query` to read your write.
    pub completion_offset: i64,
}

/// The outcome of `submit-and-wait-for-transaction`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitAndWaitForTransactionResponse {
    pub transaction: JsTransaction,
}

/// An accepted asynchronous submission; its outcome arrives on the completions.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    pub submission_id: String,
    /// The command id used (given, from `Idempotency-Key`, or generated).
    pub command_id: String,
}

// ---------------------------------------------------------------- events and updates

/// A transaction as the requesting parties see it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsTransaction {
    pub update_id: String,
    /// Only in the submitting user's own view.
    pub command_id: String,
    pub workflow_id: String,
    /// RFC 3339.
    pub effective_at: String,
    pub events: Vec<JsEvent>,
    pub offset: i64,
    pub synchronizer_id: String,
    /// RFC 3339: the sequencing time of the confirmation request.
    pub record_time: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsEvent {
    CreatedEvent(JsCreatedEvent),
    ArchivedEvent(JsArchivedEvent),
    ExercisedEvent(JsExercisedEvent),
}

/// A contract creation.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsCreatedEvent {
    pub offset: i64,
    pub node_id: i32,
    pub contract_id: String,
    pub template_id: String,
    /// Absent when the template has no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_key: Option<serde_json::Value>,
    /// The contract's fields.
    pub create_argument: serde_json::Value,
    pub signatories: Vec<String>,
    pub observers: Vec<String>,
    /// The requesting parties that see this contract.
    pub witness_parties: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsArchivedEvent {
    pub offset: i64,
    pub node_id: i32,
    pub contract_id: String,
    pub template_id: String,
    pub witness_parties: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsExercisedEvent {
    pub offset: i64,
    pub node_id: i32,
    pub contract_id: String,
    pub template_id: String,
    pub choice: String,
    pub choice_argument: serde_json::Value,
    pub acting_parties: Vec<String>,
    pub consuming: bool,
    pub witness_parties: Vec<String>,
    pub last_descendant_node_id: i32,
    pub exercise_result: serde_json::Value,
}

/// A point in the update stream every earlier update has been delivered up to.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsOffsetCheckpoint {
    pub offset: i64,
    /// RFC 3339.
    pub record_time: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct TransactionValue {
    pub value: JsTransaction,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CheckpointValue {
    pub value: JsOffsetCheckpoint,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsUpdate {
    Transaction(TransactionValue),
    OffsetCheckpoint(CheckpointValue),
}

/// One element of the update list or stream.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct JsGetUpdatesResponse {
    pub update: JsUpdate,
}

/// Which parties' view to read, and which templates of it (Canton's `TransactionFilter`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsTransactionFilter {
    /// Per party, the templates to include; an empty `cumulative` means all templates.
    pub filters_by_party: BTreeMap<String, JsFilters>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsFilters {
    #[serde(default)]
    pub cumulative: Vec<JsCumulativeFilter>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsCumulativeFilter {
    pub identifier_filter: JsIdentifierFilter,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsIdentifierFilter {
    WildcardFilter(WildcardFilterValue),
    TemplateFilter(TemplateFilterValue),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WildcardFilterValue {
    pub value: WildcardFilter,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WildcardFilter {
    /// Accepted for compatibility; Tandem has no created-event blobs.
    #[serde(default)]
    pub include_created_event_blob: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateFilterValue {
    pub value: TemplateFilter,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateFilter {
    pub template_id: String,
    #[serde(default)]
    pub include_created_event_blob: bool,
}

/// `POST /v2/updates` and the first message of the updates websocket.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetUpdatesRequest {
    /// Updates after this offset (0: from the beginning).
    #[serde(default)]
    pub begin_exclusive: i64,
    /// Up to this offset; the ledger end at the start of the request when absent (for the
    /// websocket: absent means keep streaming).
    #[serde(default)]
    pub end_inclusive: Option<i64>,
    pub filter: JsTransactionFilter,
    /// Accepted for compatibility; ignored.
    #[serde(default)]
    pub verbose: bool,
}

// ---------------------------------------------------------------- state

/// `POST /v2/state/active-contracts` and the first message of its websocket.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetActiveContractsRequest {
    pub filter: JsTransactionFilter,
    /// The offset of the snapshot; the ledger end when absent or 0.
    #[serde(default)]
    pub active_at_offset: i64,
    /// Accepted for compatibility; ignored.
    #[serde(default)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsActiveContract {
    pub created_event: JsCreatedEvent,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsContractEntry {
    JsActiveContract(JsActiveContract),
}

/// One active contract of a snapshot.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsGetActiveContractsResponse {
    /// The offset the snapshot is at.
    pub offset: i64,
    pub contract_entry: JsContractEntry,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct LedgerEndResponse {
    pub offset: i64,
}

// ---------------------------------------------------------------- completions

/// `POST /v2/commands/completions` and the first message of its websocket.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompletionStreamRequest {
    /// Whose completions; the caller's own user when absent.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Completions of commands acting as these parties.
    pub parties: Vec<String>,
    #[serde(default)]
    pub begin_exclusive: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct JsStatus {
    /// gRPC status code: 0 for success.
    pub code: i32,
    pub message: String,
}

/// The outcome of one submission.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsCompletion {
    pub command_id: String,
    pub status: JsStatus,
    /// The ledger error code of a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub update_id: String,
    pub user_id: String,
    pub act_as: Vec<String>,
    pub submission_id: String,
    pub offset: i64,
    /// RFC 3339.
    pub record_time: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CompletionValue {
    pub value: JsCompletion,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub enum JsCompletionResponse {
    Completion(CompletionValue),
    OffsetCheckpoint(CheckpointValue),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsCompletionStreamResponse {
    pub completion_response: JsCompletionResponse,
}

// ---------------------------------------------------------------- conversions

fn rfc3339(micros: i64) -> String {
    micros_to_rfc3339(micros)
}

impl From<&pb::CreatedEvent> for JsCreatedEvent {
    fn from(e: &pb::CreatedEvent) -> Self {
        Self {
            offset: e.offset,
            node_id: e.node_id,
            contract_id: e.contract_id.clone(),
            template_id: e.template_id.clone(),
            contract_key: e.contract_key.as_ref().map(|k| opt_value_to_json(Some(k))),
            create_argument: opt_value_to_json(e.create_arguments.as_ref()),
            signatories: e.signatories.clone(),
            observers: e.observers.clone(),
            witness_parties: e.witness_parties.clone(),
            created_at: rfc3339(e.created_at_us),
        }
    }
}

impl From<&pb::ArchivedEvent> for JsArchivedEvent {
    fn from(e: &pb::ArchivedEvent) -> Self {
        Self {
            offset: e.offset,
            node_id: e.node_id,
            contract_id: e.contract_id.clone(),
            template_id: e.template_id.clone(),
            witness_parties: e.witness_parties.clone(),
        }
    }
}

impl From<&pb::ExercisedEvent> for JsExercisedEvent {
    fn from(e: &pb::ExercisedEvent) -> Self {
        Self {
            offset: e.offset,
            node_id: e.node_id,
            contract_id: e.contract_id.clone(),
            template_id: e.template_id.clone(),
            choice: e.choice.clone(),
            choice_argument: opt_value_to_json(e.choice_argument.as_ref()),
            acting_parties: e.acting_parties.clone(),
            consuming: e.consuming,
            witness_parties: e.witness_parties.clone(),
            last_descendant_node_id: e.last_descendant_node_id,
            exercise_result: opt_value_to_json(e.exercise_result.as_ref()),
        }
    }
}

impl JsEvent {
    /// The event, or `None` for an empty oneof.
    pub fn from_pb(e: &pb::Event) -> Option<Self> {
        Some(match e.event.as_ref()? {
            pb::event::Event::Created(c) => JsEvent::CreatedEvent(c.into()),
            pb::event::Event::Archived(a) => JsEvent::ArchivedEvent(a.into()),
            pb::event::Event::Exercised(x) => JsEvent::ExercisedEvent(x.into()),
        })
    }

    pub fn template_id(&self) -> &str {
        match self {
            JsEvent::CreatedEvent(e) => &e.template_id,
            JsEvent::ArchivedEvent(e) => &e.template_id,
            JsEvent::ExercisedEvent(e) => &e.template_id,
        }
    }

    pub fn witness_parties(&self) -> &[String] {
        match self {
            JsEvent::CreatedEvent(e) => &e.witness_parties,
            JsEvent::ArchivedEvent(e) => &e.witness_parties,
            JsEvent::ExercisedEvent(e) => &e.witness_parties,
        }
    }
}

impl From<&pb::Transaction> for JsTransaction {
    fn from(t: &pb::Transaction) -> Self {
        Self {
            update_id: t.update_id.clone(),
            command_id: t.command_id.clone(),
            workflow_id: t.workflow_id.clone(),
            effective_at: rfc3339(t.effective_at_us),
            events: t.events.iter().filter_map(JsEvent::from_pb).collect(),
            offset: t.offset,
            synchronizer_id: t.synchronizer_id.clone(),
            record_time: rfc3339(t.record_time_us),
        }
    }
}

impl From<&pb::OffsetCheckpoint> for JsOffsetCheckpoint {
    fn from(c: &pb::OffsetCheckpoint) -> Self {
        Self {
            offset: c.offset,
            record_time: rfc3339(c.record_time_us),
        }
    }
}

impl From<&pb::Completion> for JsCompletion {
    fn from(c: &pb::Completion) -> Self {
        Self {
            command_id: c.command_id.clone(),
            status: JsStatus {
                code: c.status_code,
                message: c.message.clone(),
            },
            error_code: (!c.error_code.is_empty()).then(|| c.error_code.clone()),
            update_id: c.update_id.clone(),
            user_id: c.user_id.clone(),
            act_as: c.act_as.clone(),
            submission_id: c.submission_id.clone(),
            offset: c.offset,
            record_time: rfc3339(c.record_time_us),
        }
    }
}

impl JsCompletionStreamResponse {
    pub fn from_pb(r: &pb::CompletionStreamResponse) -> Option<Self> {
        let completion_response = match r.response.as_ref()? {
            pb::completion_stream_response::Response::Completion(c) => {
                JsCompletionResponse::Completion(CompletionValue { value: c.into() })
            }
            pb::completion_stream_response::Response::OffsetCheckpoint(c) => {
                JsCompletionResponse::OffsetCheckpoint(CheckpointValue { value: c.into() })
            }
        };
        Some(Self {
            completion_response,
        })
    }

    /// The offset this element is at.
    pub fn offset(&self) -> i64 {
        match &self.completion_response {
            JsCompletionResponse::Completion(c) => c.value.offset,
            JsCompletionResponse::OffsetCheckpoint(c) => c.value.offset,
        }
    }
}

impl JsGetUpdatesResponse {
    pub fn offset(&self) -> i64 {
        match &self.update {
            JsUpdate::Transaction(t) => t.value.offset,
            JsUpdate::OffsetCheckpoint(c) => c.value.offset,
        }
    }
}
