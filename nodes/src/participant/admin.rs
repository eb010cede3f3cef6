//! The participant's admin API (design.md §6): synchronizer connectivity (`manual_connect`) and
//! multi-hosted parties, as Canton's party replication does it: one participant proposes
//! hosting a party on several participants with a threshold, the others list the proposals
//! waiting for them and authorize them, and the topology manager accepts the transaction once
//! every new host and the party's owner signed.

use super::{error, Participant};
use crate::model::Party;
use crate::sequencer::now_us;
use crate::topology::{
    Mapping, Operation, PartyHosting, Permission, SignedTransaction, Transaction,
};
use std::time::Duration;
use tandem_proto::participant::v1 as pb;
use tandem_proto::topology::v1 as tpb;
use tandem_proto::topology::v1::topology_manager_service_client::TopologyManagerServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

/// How long an admin call waits for a topology change to reach this participant.
const TOPOLOGY_WAIT: Duration = Duration::from_secs(15);

pub struct ParticipantAdmin(pub Participant);

/// A client of the active topology manager replica.
async fn topology_manager(
    p: &Participant,
) -> Result<TopologyManagerServiceClient<tonic::transport::Channel>, Status> {
    let mut why = String::from("no topology manager configured");
    for endpoint in &p.settings().topology_manager_endpoints {
        match TopologyManagerServiceClient::connect(endpoint.clone()).await {
            Ok(mut c) => match c.get_identity(tpb::GetIdentityRequest {}).await {
                Ok(_) => return Ok(c),
                Err(s) => why = format!("{endpoint}: {}", s.message()),
            },
            Err(e) => why = format!("{endpoint}: {e}"),
        }
    }
    Err(Status::unavailable(format!(
        "no active topology manager: {why}"
    )))
}

/// Submits a signed topology transaction; with `wait`, returns once it is in effect.
pub async fn submit_topology(
    p: &Participant,
    signed: SignedTransaction,
    wait: bool,
) -> Result<tpb::SubmitResponse, Status> {
    let mut tm = topology_manager(p).await?;
    let r = tm
        .submit(tpb::SubmitRequest {
            transaction: Some((&signed).into()),
            wait_for_effective: wait,
        })
        .await?
        .into_inner();
    Ok(r)
}

/// Waits until this participant's own topology state hosts `party` here.
pub async fn await_hosting(p: &Participant, party: &str) -> Result<(), Status> {
    let deadline = tokio::time::Instant::now() + TOPOLOGY_WAIT;
    loop {
        let hosted = p.with_engine(|e| e.hosts(party, now_us())).await?;
        if hosted {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(error(
                Code::DeadlineExceeded,
                "TOPOLOGY_NOT_APPLIED",
                format!("{party} is not hosted here yet; is the participant connected?"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn permission_of(s: &str) -> Result<Permission, Status> {
    match s {
        "submission" => Ok(Permission::Submission),
        "confirmation" => Ok(Permission::Confirmation),
        "observation" => Ok(Permission::Observation),
        other => Err(Status::invalid_argument(format!(
            "permission: {other:?} is not submission, confirmation or observation"
        ))),
    }
}

fn hosts_of(h: &tpb::PartyToParticipant) -> Vec<pb::Host> {
    h.participants
        .iter()
        .map(|x| pb::Host {
            participant: x.participant.clone(),
            permission: crate::topology::convert_permission(x.permission)
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
        })
        .collect()
}

fn status_name(s: i32) -> String {
    match tpb::TransactionStatus::try_from(s) {
        Ok(tpb::TransactionStatus::Sequenced) => "sequenced",
        Ok(tpb::TransactionStatus::Accepted) => "accepted",
        _ => "proposed",
    }
    .into()
}

async fn require_active(p: &Participant) -> Result<(), Status> {
    if p.is_active() {
        Ok(())
    } else {
        Err(Status::unavailable("replica is passive"))
    }
}

#[tonic::async_trait]
impl pb::party_hosting_service_server::PartyHostingService for ParticipantAdmin {
    async fn propose_party_hosting(
        &self,
        request: Request<pb::ProposePartyHostingRequest>,
    ) -> Result<Response<pb::ProposePartyHostingResponse>, Status> {
        require_active(&self.0).await?;
        let r = request.into_inner();
        let party =
            Party::parse(&r.party).map_err(|e| Status::invalid_argument(format!("party: {e}")))?;
        let participants = r
            .participants
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let id = crate::identity::MemberId::parse(&h.participant).map_err(|e| {
                    Status::invalid_argument(format!("participants[{i}].participant: {e}"))
                })?;
                Ok((id, permission_of(&h.permission)?))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let serial = self
            .0
            .with_engine(|e| e.topology.serial(&format!("party:{party}")) + 1)
            .await?;
        let tx = Transaction {
            operation: Operation::Replace,
            serial,
            mapping: Mapping::Party(PartyHosting {
                party,
                threshold: r.threshold,
                participants,
            }),
        };
        let signed = SignedTransaction::unsigned(tx).sign(self.0.key());
        let out = submit_topology(&self.0, signed, false).await?;
        Ok(Response::new(pb::ProposePartyHostingResponse {
            hash: out.hash,
            status: status_name(out.status),
            missing_signers: out.missing_signers,
        }))
    }

    async fn list_hosting_proposals(
        &self,
        _: Request<pb::ListHostingProposalsRequest>,
    ) -> Result<Response<pb::ListHostingProposalsResponse>, Status> {
        require_active(&self.0).await?;
        let mut tm = topology_manager(&self.0).await?;
        let me = self.0.id().to_string();
        let fingerprint = self.0.id().fingerprint.clone();
        let all = tm
            .list_proposals(tpb::ListProposalsRequest { filter: me })
            .await?
            .into_inner()
            .proposals;
        let proposals = all
            .into_iter()
            .filter(|p| p.missing_signers.contains(&fingerprint))
            .filter_map(|p| {
                let mapping = p
                    .transaction
                    .as_ref()?
                    .transaction
                    .as_ref()?
                    .mapping
                    .as_ref()?;
                let tpb::topology_transaction::Mapping::PartyToParticipant(h) = mapping else {
                    return None;
                };
                Some(pb::HostingProposal {
                    hash: p.hash.clone(),
                    party: h.party.clone(),
                    threshold: h.threshold,
                    participants: hosts_of(h),
                    missing_signers: p.missing_signers.clone(),
                })
            })
            .collect();
        Ok(Response::new(pb::ListHostingProposalsResponse {
            proposals,
        }))
    }

    async fn authorize_hosting_proposal(
        &self,
        request: Request<pb::AuthorizeHostingProposalRequest>,
    ) -> Result<Response<pb::ProposePartyHostingResponse>, Status> {
        require_active(&self.0).await?;
        let hash = request.into_inner().hash;
        let mut tm = topology_manager(&self.0).await?;
        let proposal = tm
            .list_proposals(tpb::ListProposalsRequest {
                filter: self.0.id().to_string(),
            })
            .await?
            .into_inner()
            .proposals
            .into_iter()
            .find(|p| p.hash == hash)
            .ok_or_else(|| {
                error(
                    Code::NotFound,
                    "PROPOSAL_NOT_FOUND",
                    format!("hash: no proposal {hash:?} waits for this participant"),
                )
            })?;
        let tx = proposal
            .transaction
            .ok_or_else(|| Status::internal("proposal without transaction"))?;
        let signed = SignedTransaction::try_from(&tx).map_err(|e| e.to_status())?;
        let party = match &signed.transaction.mapping {
            Mapping::Party(h) => h.party.to_string(),
            Mapping::Member { .. } => {
                return Err(Status::failed_precondition("not a party hosting proposal"))
            }
        };
        let signed = SignedTransaction::unsigned(signed.transaction).sign(self.0.key());
        let out = submit_topology(&self.0, signed, true).await?;
        if out.status == tpb::TransactionStatus::Sequenced as i32 {
            await_hosting(&self.0, &party).await?;
        }
        Ok(Response::new(pb::ProposePartyHostingResponse {
            hash: out.hash,
            status: status_name(out.status),
            missing_signers: out.missing_signers,
        }))
    }

    async fn list_party_hosting(
        &self,
        _: Request<pb::ListPartyHostingRequest>,
    ) -> Result<Response<pb::ListPartyHostingResponse>, Status> {
        let now = now_us();
        let parties = self
            .0
            .with_engine(|e| {
                e.topology
                    .parties_at(now)
                    .into_iter()
                    .map(|h| pb::PartyHosting {
                        party: h.party.to_string(),
                        threshold: h.threshold,
                        participants: h
                            .participants
                            .iter()
                            .map(|(m, p)| pb::Host {
                                participant: m.to_string(),
                                permission: p.as_str().into(),
                            })
                            .collect(),
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(pb::ListPartyHostingResponse { parties }))
    }
}

#[tonic::async_trait]
impl pb::synchronizer_connectivity_service_server::SynchronizerConnectivityService
    for ParticipantAdmin
{
    async fn connect_synchronizer(
        &self,
        request: Request<pb::ConnectSynchronizerRequest>,
    ) -> Result<Response<pb::ConnectSynchronizerResponse>, Status> {
        require_active(&self.0).await?;
        let name = request.into_inner().synchronizer;
        if name != self.0.settings().synchronizer {
            return Err(error(
                Code::NotFound,
                "SYNCHRONIZER_NOT_FOUND",
                format!("synchronizer: {name:?} is not configured"),
            ));
        }
        let stop = CancellationToken::new();
        let connect = self.0.connect(&stop);
        match tokio::time::timeout(TOPOLOGY_WAIT, connect).await {
            Ok(result) => result?,
            Err(_) => {
                stop.cancel();
                return Err(error(
                    Code::DeadlineExceeded,
                    "NOT_ADMITTED",
                    "the synchronizer did not admit this participant in time",
                ));
            }
        }
        Ok(Response::new(pb::ConnectSynchronizerResponse {}))
    }

    async fn disconnect_synchronizer(
        &self,
        request: Request<pb::DisconnectSynchronizerRequest>,
    ) -> Result<Response<pb::DisconnectSynchronizerResponse>, Status> {
        require_active(&self.0).await?;
        let name = request.into_inner().synchronizer;
        if name != self.0.settings().synchronizer {
            return Err(error(
                Code::NotFound,
                "SYNCHRONIZER_NOT_FOUND",
                format!("synchronizer: {name:?} is not configured"),
            ));
        }
        self.0.disconnect().await;
        Ok(Response::new(pb::DisconnectSynchronizerResponse {}))
    }

    async fn list_connected_synchronizers(
        &self,
        _: Request<pb::ListConnectedSynchronizersRequest>,
    ) -> Result<Response<pb::ListConnectedSynchronizersResponse>, Status> {
        require_active(&self.0).await?;
        Ok(Response::new(pb::ListConnectedSynchronizersResponse {
            synchronizers: vec![pb::SynchronizerConnection {
                synchronizer: self.0.settings().synchronizer.clone(),
                connected: self.0.is_connected().await,
                manual_connect: self.0.settings().manual_connect,
            }],
        }))
    }
}
