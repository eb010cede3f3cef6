//! Design.md §6 steps 1–2 for the submitter: commands from the Ledger API are validated and
//! decoded with the package store, interpreted against the active contracts, split into views
//! (one per root action with its consequences) and wrapped into a confirmation request for the
//! mediator and the participants hosting an informee.

use crate::model::ids::TemplateRef;
use crate::model::{Command, PackageStore, Party, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use tandem_proto::ledger::v2 as lapi;

/// What informee participants need to re-check a transaction: travels in
/// `ConfirmationRequest.transaction` as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxPayload {
    pub change_id: String,
    pub submission_id: String,
    pub command_id: String,
    pub workflow_id: String,
    pub act_as: Vec<String>,
    pub read_as: Vec<String>,
    /// The Ledger API `Commands.commands`, encoded (protobuf), hex.
    pub commands: String,
    /// The submission seed, hex.
    pub seed: String,
    /// The input contracts: (id, template id, stored JSON).
    pub inputs: Vec<(String, String, Json)>,
}

/// A command the Ledger API refused: (stable error code, message naming the field).
pub type CommandError = (&'static str, String);

fn json_of(v: Option<&tandem_proto::prost_types::Value>) -> Json {
    v.map_or(Json::Null, super::codec::proto_to_json)
}

fn template(field: &str, t: &str) -> Result<TemplateRef, CommandError> {
    TemplateRef::parse(t).map_err(|e| ("INVALID_ARGUMENT", format!("{field}.template_id: {e}")))
}

/// Decodes encoded Ledger API commands into model commands.
pub fn decode_commands(
    packages: &PackageStore,
    hex_commands: &str,
) -> Result<Vec<Command>, CommandError> {
    let bytes = hex::decode(hex_commands).map_err(|e| ("MALFORMED_REQUEST", e.to_string()))?;
    let wire: Vec<lapi::Command> = <CommandList as prost::Message>::decode(&bytes[..])
        .map_err(|e| ("MALFORMED_REQUEST", e.to_string()))?
        .commands;
    to_model(packages, &wire)
}

/// A list of commands on the wire (the same field as `Commands.commands`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommandList {
    #[prost(message, repeated, tag = "5")]
    pub commands: Vec<lapi::Command>,
}

/// Encodes commands for the payload.
pub fn encode_commands(commands: &[lapi::Command]) -> String {
    hex::encode(prost::Message::encode_to_vec(&CommandList {
        commands: commands.to_vec(),
    }))
}

/// Checks and decodes Ledger API commands; errors name the command and field.
pub fn to_model(
    packages: &PackageStore,
    commands: &[lapi::Command],
) -> Result<Vec<Command>, CommandError> {
    if commands.is_empty() {
        return Err(("INVALID_ARGUMENT", "commands: must not be empty".into()));
    }
    let decode_err =
        |field: String| move |e: crate::model::DecodeError| (e.code(), format!("{field}: {e}"));
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = format!("commands[{i}]");
            use lapi::command::Command as C;
            Ok(match &c.command {
                None => return Err(("INVALID_ARGUMENT", format!("{f}: no command"))),
                Some(C::Create(c)) => {
                    let t = template(&f, &c.template_id)?;
                    let argument = packages
                        .decode_create_argument(&t, &json_of(c.create_arguments.as_ref()))
                        .map_err(decode_err(format!("{f}.create_arguments")))?;
                    Command::Create {
                        template: t,
                        argument,
                    }
                }
                Some(C::Exercise(c)) => {
                    let t = template(&f, &c.template_id)?;
                    let contract_id = crate::model::ContractId::parse(&c.contract_id)
                        .map_err(|e| ("INVALID_ARGUMENT", format!("{f}.contract_id: {e}")))?;
                    let argument = packages
                        .decode_choice_argument(&t, &c.choice, &json_of(c.choice_argument.as_ref()))
                        .map_err(decode_err(format!("{f}.choice_argument")))?;
                    Command::Exercise {
                        template: t,
                        contract_id,
                        choice: c.choice.clone(),
                        argument,
                    }
                }
                Some(C::CreateAndExercise(c)) => {
                    let t = template(&f, &c.template_id)?;
                    let argument = packages
                        .decode_create_argument(&t, &json_of(c.create_arguments.as_ref()))
                        .map_err(decode_err(format!("{f}.create_arguments")))?;
                    let choice_argument = packages
                        .decode_choice_argument(&t, &c.choice, &json_of(c.choice_argument.as_ref()))
                        .map_err(decode_err(format!("{f}.choice_argument")))?;
                    Command::CreateAndExercise {
                        template: t,
                        argument,
                        choice: c.choice.clone(),
                        choice_argument,
                    }
                }
                Some(C::ExerciseByKey(c)) => {
                    let t = template(&f, &c.template_id)?;
                    let key = packages
                        .decode_key(&t, &json_of(c.contract_key.as_ref()))
                        .map_err(decode_err(format!("{f}.contract_key")))?;
                    let argument = packages
                        .decode_choice_argument(&t, &c.choice, &json_of(c.choice_argument.as_ref()))
                        .map_err(decode_err(format!("{f}.choice_argument")))?;
                    Command::ExerciseByKey {
                        template: t,
                        key,
                        choice: c.choice.clone(),
                        argument,
                    }
                }
            })
        })
        .collect()
}

/// The views of a transaction: per root action, the informees and the confirming parties of
/// it and its consequences, each sorted.
pub fn views_of(tx: &Transaction) -> Vec<(Vec<String>, Vec<String>)> {
    tx.roots
        .iter()
        .map(|root| {
            let mut informees = BTreeSet::new();
            let mut confirming = BTreeSet::new();
            let mut stack = vec![*root];
            while let Some(n) = stack.pop() {
                let node = &tx.nodes[n];
                informees.extend(node.informees.iter().map(Party::to_string));
                confirming.extend(node.confirming_parties.iter().map(Party::to_string));
                stack.extend(node.children.iter().copied());
            }
            (
                informees.into_iter().collect(),
                confirming.into_iter().collect(),
            )
        })
        .collect()
}

/// The change id commands are deduplicated by: user, act-as parties and command id.
pub fn change_id(user_id: &str, act_as: &[String], command_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut parties: Vec<&str> = act_as.iter().map(String::as_str).collect();
    parties.sort_unstable();
    parties.dedup();
    let mut fields: Vec<&[u8]> = vec![user_id.as_bytes(), command_id.as_bytes()];
    fields.extend(parties.iter().map(|p| p.as_bytes()));
    hex::encode(Sha256::digest(crate::identity::canonical(
        "tandem.change.v1",
        &fields,
    )))
}
