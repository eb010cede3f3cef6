//! `tandem ledger`: a participant's Ledger API for people: parties, packages, create, exercise,
//! the active contracts and the update stream, as tables or `--json`.

use crate::cli::{LedgerArgs, LedgerCommand, PackagesCommand, PartiesCommand};
use anyhow::{bail, Context};
use serde_json::{json, Value as Json};
use std::process::ExitCode;
use tandem_nodes::participant::client::LedgerClient;
use tandem_nodes::participant::codec::proto_to_json;
use tandem_proto::ledger::v2 as pb;

/// A Ledger API error as the CLI prints it: the gRPC code and the message with its error code.
fn failed(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Json> {
    serde_json::from_str(text).with_context(|| format!("{what}: not JSON"))
}

fn command_id(given: Option<String>) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok(format!("cli-{}-{nanos}", std::process::id()))
}

fn print_transaction(t: &pb::Transaction, as_json: bool) {
    let events: Vec<Json> = t
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::event::Event::Created(c)) => Some(json!({"created": {"contract_id": c.contract_id,
                "template_id": c.template_id, "arguments": c.create_arguments.as_ref().map(proto_to_json),
                "signatories": c.signatories, "observers": c.observers}})),
            Some(pb::event::Event::Exercised(x)) => Some(json!({"exercised": {"contract_id": x.contract_id,
                "template_id": x.template_id, "choice": x.choice, "consuming": x.consuming,
                "acting_parties": x.acting_parties}})),
            Some(pb::event::Event::Archived(a)) => Some(json!({"archived": {"contract_id": a.contract_id,
                "template_id": a.template_id}})),
            None => None,
        })
        .collect();
    if as_json {
        println!(
            "{}",
            json!({"offset": t.offset, "update_id": t.update_id, "record_time_us": t.record_time_us, "events": events})
        );
        return;
    }
    println!("offset {}  update {}", t.offset, t.update_id);
    for e in events {
        if let Some(c) = e.get("created") {
            println!(
                "  created   {}  {}  {}",
                c["contract_id"].as_str().unwrap_or_default(),
                c["template_id"].as_str().unwrap_or_default(),
                c["arguments"]
            );
        } else if let Some(x) = e.get("exercised") {
            println!(
                "  exercised {}  {} on {}",
                x["choice"].as_str().unwrap_or_default(),
                x["template_id"].as_str().unwrap_or_default(),
                x["contract_id"].as_str().unwrap_or_default()
            );
        } else if let Some(a) = e.get("archived") {
            println!(
                "  archived  {}",
                a["contract_id"].as_str().unwrap_or_default()
            );
        }
    }
}

pub async fn run(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => super::dev_token(args.config.as_deref(), &args.user, 3600)?,
    };
    let c =
        LedgerClient::connect_lazy(&args.url, &args.user, &token).map_err(anyhow::Error::msg)?;
    let as_json = args.json;
    match args.command {
        LedgerCommand::Parties(PartiesCommand::Allocate { hint }) => {
            let party = c.allocate_party(&hint, &args.user).await.map_err(failed)?;
            if as_json {
                println!("{}", json!({"party": party}));
            } else {
                println!("{party}");
            }
        }
        LedgerCommand::Parties(PartiesCommand::List) => {
            let r = c
                .parties_client()
                .list_known_parties(pb::ListKnownPartiesRequest::default())
                .await
                .map_err(failed)?
                .into_inner();
            for p in r.party_details {
                let hosts: Vec<String> = p
                    .hosting
                    .iter()
                    .map(|h| format!("{} ({})", h.participant, h.permission))
                    .collect();
                if as_json {
                    println!(
                        "{}",
                        json!({"party": p.party, "local": p.is_local, "threshold": p.threshold, "hosting": hosts})
                    );
                } else {
                    println!(
                        "{}  {}  threshold {}  {}",
                        p.party,
                        if p.is_local { "local " } else { "remote" },
                        p.threshold,
                        hosts.join(", ")
                    );
                }
            }
        }
        LedgerCommand::Packages(PackagesCommand::Upload { file }) => {
            let content =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let format = if file.extension().is_some_and(|e| e == "json") {
                "json"
            } else {
                "yaml"
            };
            let p = c.upload_package(content, format).await.map_err(failed)?;
            if as_json {
                println!(
                    "{}",
                    json!({"package_id": p.package_id, "name": p.name, "version": p.version})
                );
            } else {
                println!("{} {} {}", p.package_id, p.name, p.version);
            }
        }
        LedgerCommand::Packages(PackagesCommand::List) => {
            let r = c
                .packages_client()
                .list_packages(pb::ListPackagesRequest {})
                .await
                .map_err(failed)?
                .into_inner();
            for p in r.packages {
                if as_json {
                    println!(
                        "{}",
                        json!({"package_id": p.package_id, "name": p.name, "version": p.version})
                    );
                } else {
                    println!("{} {} {}", p.package_id, p.name, p.version);
                }
            }
        }
        LedgerCommand::Create {
            act_as,
            template,
            args: a,
            command_id: id,
        } => {
            if act_as.is_empty() {
                bail!("--act-as: name at least one party");
            }
            let arguments = parse_json("--args", &a)?;
            let commands = c.commands(
                &command_id(id)?,
                &act_as,
                vec![LedgerClient::create(&template, &arguments)],
            );
            let t = c
                .submit_and_wait_for_transaction(commands)
                .await
                .map_err(failed)?;
            print_transaction(&t, as_json);
        }
        LedgerCommand::Exercise {
            act_as,
            template,
            contract_id,
            choice,
            args: a,
            command_id: id,
        } => {
            if act_as.is_empty() {
                bail!("--act-as: name at least one party");
            }
            let argument = parse_json("--args", &a)?;
            let commands = c.commands(
                &command_id(id)?,
                &act_as,
                vec![LedgerClient::exercise(
                    &template,
                    &contract_id,
                    &choice,
                    &argument,
                )],
            );
            let t = c
                .submit_and_wait_for_transaction(commands)
                .await
                .map_err(failed)?;
            print_transaction(&t, as_json);
        }
        LedgerCommand::Acs { party } => {
            for a in c.active_contracts(&party).await.map_err(failed)? {
                if as_json {
                    println!(
                        "{}",
                        json!({"contract_id": a.contract_id, "template_id": a.template_id, "arguments": a.arguments, "signatories": a.signatories, "observers": a.observers, "offset": a.offset})
                    );
                } else {
                    println!("{}  {}  {}", a.contract_id, a.template_id, a.arguments);
                }
            }
        }
        LedgerCommand::Updates { party, from, to } => {
            let to = match to {
                Some(t) => t,
                None => c.ledger_end().await.map_err(failed)?,
            };
            if to > from {
                for t in c.updates(&party, from, to).await.map_err(failed)? {
                    print_transaction(&t, as_json);
                }
            }
        }
        LedgerCommand::End => {
            let end = c.ledger_end().await.map_err(failed)?;
            if as_json {
                println!("{}", json!({"offset": end}));
            } else {
                println!("{end}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
