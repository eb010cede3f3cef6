//! `tandem admin`: status and set-passive against replicas' admin APIs.

use crate::cli::{AdminCommand, AdminTarget};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::process::ExitCode;
use tandem_proto::admin::v1 as pb;
use tandem_proto::admin::v1::replication_service_client::ReplicationServiceClient;

pub async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::Status { target, json } => status(&target, json).await,
        AdminCommand::SetPassive { target, timeout_ms } => set_passive(&target, timeout_ms).await,
        AdminCommand::Topology {
            target,
            at_us,
            transactions,
            json,
        } => super::topology::show(&target, at_us, transactions, json).await,
        AdminCommand::Proposals { target } => super::topology::proposals(&target).await,
        AdminCommand::Authorize { target, hash } => super::topology::authorize(&target, hash).await,
        AdminCommand::HostParty {
            target,
            party,
            threshold,
            hosts,
        } => super::topology::host_party(target.addr, party, threshold, hosts).await,
        AdminCommand::HostingProposals { target } => {
            super::topology::hosting_proposals(target.addr).await
        }
        AdminCommand::AuthorizeHosting { target, hash } => {
            super::topology::authorize_hosting(target.addr, hash).await
        }
        AdminCommand::Connect {
            target,
            synchronizer,
        } => super::topology::connect(target.addr, synchronizer, true).await,
        AdminCommand::Disconnect {
            target,
            synchronizer,
        } => super::topology::connect(target.addr, synchronizer, false).await,
    }
}

/// The admin addresses the target names, labelled `node/replica`.
fn addresses(target: &AdminTarget) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    if let Some(addr) = target.addr {
        return Ok(vec![(addr.to_string(), addr)]);
    }
    let (Some(config), Some(node)) = (&target.config, &target.node) else {
        bail!(
            "name a replica with --addr HOST:PORT, or with --config FILE --node NAME [--replica N]"
        );
    };
    let topology = super::load(config)?;
    let node_ref = topology
        .node(node)
        .with_context(|| format!("no node named {node:?} in {}", config.display()))?;
    let all = node_ref.config.replicas.iter().enumerate();
    let picked: Vec<_> = all
        .filter(|(i, _)| {
            target
                .replica
                .is_none_or(|r| usize::try_from(r).is_ok_and(|r| r == *i))
        })
        .map(|(i, r)| (format!("{node}/{i}"), r.admin))
        .collect();
    if picked.is_empty() {
        bail!(
            "node {node} has no replica {}",
            target.replica.unwrap_or_default()
        );
    }
    Ok(picked)
}

pub async fn client(
    addr: SocketAddr,
) -> anyhow::Result<ReplicationServiceClient<tonic::transport::Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(2));
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the admin API at {addr}"))?;
    Ok(ReplicationServiceClient::new(channel))
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Active) => "active",
        Ok(pb::Role::Passive) => "passive",
        _ => "unknown",
    }
}

async fn status(target: &AdminTarget, json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for (label, addr) in addresses(target)? {
        let answer = match client(addr).await {
            Ok(mut c) => c
                .status(pb::StatusRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|e| e.message().to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        rows.push((label, addr, answer));
    }
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(label, addr, answer)| match answer {
                Ok(s) => serde_json::json!({
                    "replica": label, "admin": addr.to_string(), "role": role_name(s.role),
                    "epoch": s.epoch, "healthy": s.healthy, "detail": s.detail,
                    "leader": s.leader, "leader_epoch": s.leader_epoch, "kind": s.kind,
                    "replication": s.replication,
                }),
                Err(e) => {
                    serde_json::json!({"replica": label, "admin": addr.to_string(), "error": e})
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!(
            "{:<22} {:<8} {:<6} {:<8} {:<22} DETAIL",
            "REPLICA", "ROLE", "EPOCH", "HEALTHY", "ADMIN"
        );
        for (label, addr, answer) in &rows {
            match answer {
                Ok(s) => println!(
                    "{:<22} {:<8} {:<6} {:<8} {:<22} {}",
                    label,
                    role_name(s.role),
                    s.epoch,
                    if s.healthy { "yes" } else { "no" },
                    addr,
                    s.detail
                ),
                Err(e) => println!(
                    "{label:<22} {:<8} {:<6} {:<8} {addr:<22} {e}",
                    "down", "-", "no"
                ),
            }
        }
    }
    let all_answered = rows.iter().all(|(_, _, a)| a.is_ok());
    Ok(if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn set_passive(target: &AdminTarget, timeout_ms: Option<u32>) -> anyhow::Result<ExitCode> {
    let candidates = addresses(target)?;
    // With several replicas named, hand over from the one that is active.
    let mut chosen = None;
    for (label, addr) in &candidates {
        if candidates.len() == 1 {
            chosen = Some((label.clone(), *addr));
            break;
        }
        if let Ok(mut c) = client(*addr).await {
            if let Ok(s) = c.status(pb::StatusRequest {}).await {
                if s.into_inner().role == i32::from(pb::Role::Active) {
                    chosen = Some((label.clone(), *addr));
                    break;
                }
            }
        }
    }
    let Some((label, addr)) = chosen else {
        bail!(
            "no active replica among {}",
            candidates
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let request = pb::SetPassiveRequest {
        timeout_ms: timeout_ms.unwrap_or(0),
    };
    match client(addr).await?.set_passive(request).await {
        Ok(answer) => {
            let a = answer.into_inner();
            println!(
                "{label} is passive; replica {} is active with epoch {} (handover took {} ms)",
                a.new_leader, a.new_epoch, a.handover_ms
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            eprintln!(
                "error: set-passive on {label} refused ({:?}): {}",
                status.code(),
                status.message()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
