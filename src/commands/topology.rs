//! `tandem admin topology|proposals|authorize`: the synchronizer's topology through the active
//! topology manager's admin API; `host-party|hosting-proposals|authorize-hosting|connect|
//! disconnect`: a participant's admin API for multi-hosted parties and connectivity.

use crate::cli::TopologyTarget;
use anyhow::{bail, Context};
use std::process::ExitCode;
use tandem_proto::topology::v1 as pb;
use tandem_proto::topology::v1::topology_manager_service_client::TopologyManagerServiceClient;
use tonic::transport::Channel;

/// A client of the active topology manager replica: the first that answers a read.
async fn active(target: &TopologyTarget) -> anyhow::Result<TopologyManagerServiceClient<Channel>> {
    let endpoints = match (&target.addr, &target.config) {
        (Some(addr), _) => vec![format!("http://{addr}")],
        (None, Some(config)) => super::load(config)?.topology_manager_endpoints(),
        (None, None) => bail!("name the topology manager with --config FILE or --addr HOST:PORT"),
    };
    let mut why = Vec::new();
    for endpoint in endpoints {
        let connected = tonic::transport::Endpoint::from_shared(endpoint.clone())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .connect()
            .await;
        let mut client = match connected {
            Ok(channel) => TopologyManagerServiceClient::new(channel),
            Err(e) => {
                why.push(format!("{endpoint}: {e}"));
                continue;
            }
        };
        match client.get_identity(pb::GetIdentityRequest {}).await {
            Ok(_) => return Ok(client),
            Err(s) => why.push(format!("{endpoint}: {}", s.message())),
        }
    }
    bail!("no active topology manager: {}", why.join("; "))
}

fn permission(p: i32) -> &'static str {
    match pb::Permission::try_from(p) {
        Ok(pb::Permission::Submission) => "submission",
        Ok(pb::Permission::Confirmation) => "confirmation",
        Ok(pb::Permission::Observation) => "observation",
        _ => "?",
    }
}

fn hosts(participants: &[pb::HostingParticipant]) -> String {
    participants
        .iter()
        .map(|h| format!("{} ({})", h.participant, permission(h.permission)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn show(
    target: &TopologyTarget,
    at_us: Option<i64>,
    transactions: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = active(target).await?;
    if transactions {
        let txs = client
            .list_transactions(pb::ListTransactionsRequest {})
            .await
            .context("listing transactions")?
            .into_inner()
            .transactions;
        for t in &txs {
            let tx = t.transaction.as_ref().and_then(|s| s.transaction.as_ref());
            let what = match tx.and_then(|t| t.mapping.as_ref()) {
                Some(pb::topology_transaction::Mapping::MemberAdmission(m)) => {
                    format!("member {}", m.member)
                }
                Some(pb::topology_transaction::Mapping::PartyToParticipant(p)) => format!(
                    "party {} threshold {} on {}",
                    p.party,
                    p.threshold,
                    hosts(&p.participants)
                ),
                None => "?".into(),
            };
            let (op, serial) = tx.map_or((0, 0), |t| (t.operation, t.serial));
            let op = if op == pb::Operation::Remove as i32 {
                "remove"
            } else {
                "replace"
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"hash": t.hash, "operation": op, "serial": serial,
                        "mapping": what, "sequenced_at_us": t.sequenced_at_us,
                        "effective_at_us": t.effective_at_us})
                );
            } else {
                println!(
                    "{}  {op:<7} #{serial:<3} {what}  (effective {})",
                    &t.hash[..12.min(t.hash.len())],
                    t.effective_at_us
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let state = client
        .list_state(pb::ListStateRequest {
            at_us: at_us.unwrap_or(0),
        })
        .await
        .context("reading the topology state")?
        .into_inner();
    if json {
        let members: Vec<_> = state.members.iter().map(|m| m.member.clone()).collect();
        let parties: Vec<_> = state
            .parties
            .iter()
            .map(|p| {
                serde_json::json!({"party": p.party, "threshold": p.threshold,
                    "participants": p.participants.iter().map(|h| serde_json::json!({
                        "participant": h.participant, "permission": permission(h.permission)})).collect::<Vec<_>>()})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"at_us": state.at_us, "members": members, "parties": parties})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("members at {}:", state.at_us);
    for m in &state.members {
        println!("  {}", m.member);
    }
    println!("parties:");
    for p in &state.parties {
        println!(
            "  {}  threshold {}  {}",
            p.party,
            p.threshold,
            hosts(&p.participants)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn proposals(target: &TopologyTarget) -> anyhow::Result<ExitCode> {
    let mut client = active(target).await?;
    let proposals = client
        .list_proposals(pb::ListProposalsRequest::default())
        .await
        .context("listing proposals")?
        .into_inner()
        .proposals;
    if proposals.is_empty() {
        println!("no proposals");
    }
    for p in proposals {
        let what = match p
            .transaction
            .as_ref()
            .and_then(|s| s.transaction.as_ref())
            .and_then(|t| t.mapping.as_ref())
        {
            Some(pb::topology_transaction::Mapping::MemberAdmission(m)) => {
                format!("admit {}", m.member)
            }
            Some(pb::topology_transaction::Mapping::PartyToParticipant(h)) => {
                format!("host {} on {}", h.party, hosts(&h.participants))
            }
            None => "?".into(),
        };
        println!(
            "{}  {what}  missing: {}",
            p.hash,
            p.missing_signers.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn authorize(target: &TopologyTarget, hash: String) -> anyhow::Result<ExitCode> {
    let mut client = active(target).await?;
    let r = client
        .authorize(pb::AuthorizeRequest {
            hash,
            wait_for_effective: true,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if r.missing_signers.is_empty() {
        println!(
            "{} in effect from {} (sequenced at {})",
            r.hash, r.effective_at_us, r.sequenced_at_us
        );
    } else {
        println!("{} still needs: {}", r.hash, r.missing_signers.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("cannot reach the participant admin API at {addr}"))
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

use tandem_proto::participant::v1 as ppb;
use tandem_proto::participant::v1::party_hosting_service_client::PartyHostingServiceClient;
use tandem_proto::participant::v1::synchronizer_connectivity_service_client::SynchronizerConnectivityServiceClient;

pub async fn host_party(
    addr: std::net::SocketAddr,
    party: String,
    threshold: u32,
    hosts: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let participants = hosts
        .iter()
        .map(|h| {
            let (participant, permission) = h
                .rsplit_once('=')
                .with_context(|| format!("--host {h}: expected PARTICIPANT=PERMISSION"))?;
            Ok(ppb::Host {
                participant: participant.into(),
                permission: permission.into(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let r = PartyHostingServiceClient::new(channel(addr).await?)
        .propose_party_hosting(ppb::ProposePartyHostingRequest {
            party,
            threshold,
            participants,
        })
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "{}  {}  missing: {}",
        r.hash,
        r.status,
        r.missing_signers.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn hosting_proposals(addr: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    let r = PartyHostingServiceClient::new(channel(addr).await?)
        .list_hosting_proposals(ppb::ListHostingProposalsRequest {})
        .await
        .map_err(status)?
        .into_inner();
    if r.proposals.is_empty() {
        println!("no proposals");
    }
    for p in r.proposals {
        let hosts: Vec<String> = p
            .participants
            .iter()
            .map(|h| format!("{} ({})", h.participant, h.permission))
            .collect();
        println!(
            "{}  {} threshold {} on {}  missing: {}",
            p.hash,
            p.party,
            p.threshold,
            hosts.join(", "),
            p.missing_signers.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn authorize_hosting(
    addr: std::net::SocketAddr,
    hash: String,
) -> anyhow::Result<ExitCode> {
    let r = PartyHostingServiceClient::new(channel(addr).await?)
        .authorize_hosting_proposal(ppb::AuthorizeHostingProposalRequest { hash })
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "{}  {}  missing: {}",
        r.hash,
        r.status,
        r.missing_signers.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn connect(
    addr: std::net::SocketAddr,
    synchronizer: String,
    up: bool,
) -> anyhow::Result<ExitCode> {
    let mut c = SynchronizerConnectivityServiceClient::new(channel(addr).await?);
    if up {
        c.connect_synchronizer(ppb::ConnectSynchronizerRequest { synchronizer })
            .await
            .map_err(status)?;
        println!("connected");
    } else {
        c.disconnect_synchronizer(ppb::DisconnectSynchronizerRequest { synchronizer })
            .await
            .map_err(status)?;
        println!("disconnected");
    }
    Ok(ExitCode::SUCCESS)
}
