//! The topology manager's admin gRPC service. Every call is answered by the active replica; a
//! passive one says UNAVAILABLE so clients move to the next replica.

use super::{TopologyManager, TopologyStatus};
use crate::sequencer::now_us;
use crate::topology::SignedTransaction;
use tandem_proto::topology::v1 as pb;
use tandem_proto::topology::v1::topology_manager_service_server::TopologyManagerService;
use tonic::{Request, Response, Status};

pub struct TopologyManagerAdmin(pub TopologyManager);

#[tonic::async_trait]
impl TopologyManagerService for TopologyManagerAdmin {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let r = request.into_inner();
        let signed = r
            .transaction
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("transaction: missing"))?;
        let signed = SignedTransaction::try_from(signed).map_err(|e| e.to_status())?;
        let response = self.0.submit(signed, false).await?;
        let response = if r.wait_for_effective {
            self.0.wait_effective(response).await?
        } else {
            response
        };
        Ok(Response::new(response))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let r = request.into_inner();
        let signed = self
            .0
            .with_active(|a| a.records.get(&r.hash).map(|rec| rec.signed.clone()))
            .await?
            .ok_or_else(|| Status::not_found(format!("hash: no transaction {:?}", r.hash)))?;
        let response = self.0.submit(signed, true).await?;
        let response = if r.wait_for_effective {
            self.0.wait_effective(response).await?
        } else {
            response
        };
        Ok(Response::new(response))
    }

    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        let filter = request.into_inner().filter;
        let proposals = self
            .0
            .with_active(|a| {
                a.records
                    .iter()
                    .filter(|(_, r)| r.status == TopologyStatus::Proposed)
                    .filter(|(_, r)| {
                        filter.is_empty()
                            || r.signed.transaction.mapping.key().ends_with(&filter)
                            || mentions(&r.signed, &filter)
                    })
                    .filter_map(|(hash, r)| {
                        // A proposal a later transaction made stale (its serial is taken) is
                        // not listed.
                        let check = a.projected.check(&r.signed).ok()?;
                        Some(pb::Proposal {
                            hash: hash.clone(),
                            transaction: Some((&r.signed).into()),
                            missing_signers: check.missing,
                        })
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(pb::ListProposalsResponse { proposals }))
    }

    async fn list_state(
        &self,
        request: Request<pb::ListStateRequest>,
    ) -> Result<Response<pb::ListStateResponse>, Status> {
        let at_us = match request.into_inner().at_us {
            0 => now_us(),
            t if t < 0 => return Err(Status::invalid_argument("at_us: must not be negative")),
            t => t,
        };
        let response = self
            .0
            .with_active(|a| pb::ListStateResponse {
                at_us,
                members: a
                    .sequenced
                    .members_at(at_us)
                    .into_iter()
                    .map(|(m, key)| pb::MemberAdmission {
                        member: m.to_string(),
                        public_key: key,
                    })
                    .collect(),
                parties: a
                    .sequenced
                    .parties_at(at_us)
                    .into_iter()
                    .map(|h| {
                        let p = crate::topology::hosting_to(h);
                        pb::PartyHosting {
                            party: p.party,
                            threshold: p.threshold,
                            participants: p.participants,
                        }
                    })
                    .collect(),
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn list_transactions(
        &self,
        _: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let mut transactions: Vec<pb::SequencedTransaction> = self
            .0
            .with_active(|a| {
                a.records
                    .iter()
                    .filter(|(_, r)| r.status == TopologyStatus::Sequenced)
                    .map(|(hash, r)| pb::SequencedTransaction {
                        hash: hash.clone(),
                        transaction: Some((&r.signed).into()),
                        sequenced_at_us: r.sequenced_us.unwrap_or(0),
                        effective_at_us: r.effective_us.unwrap_or(0),
                    })
                    .collect()
            })
            .await?;
        transactions.sort_by_key(|t| t.sequenced_at_us);
        Ok(Response::new(pb::ListTransactionsResponse { transactions }))
    }

    async fn get_identity(
        &self,
        _: Request<pb::GetIdentityRequest>,
    ) -> Result<Response<pb::GetIdentityResponse>, Status> {
        Ok(Response::new(pb::GetIdentityResponse {
            member: self.0.id().to_string(),
            public_key: self.0.public_key().to_vec(),
        }))
    }
}

/// Whether a proposal names `who` (a party or participant) anywhere.
fn mentions(signed: &SignedTransaction, who: &str) -> bool {
    match &signed.transaction.mapping {
        crate::topology::Mapping::Member { member, .. } => member.to_string() == who,
        crate::topology::Mapping::Party(h) => {
            h.party.as_str() == who || h.participants.iter().any(|(p, _)| p.to_string() == who)
        }
    }
}
