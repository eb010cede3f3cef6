//! The admin gRPC server of a replica: the replication service (status, set-passive), which
//! answers on active and passive replicas alike, and `grpc.health.v1`, which reports SERVING only
//! while the replica is active and healthy.

use crate::replica::{HandoverError, ReplicaHandle, Role};
use crate::store::Store;
use std::time::{Duration, Instant};
use tandem_proto::admin::v1 as pb;
use tandem_proto::admin::v1::replication_service_server::{
    ReplicationService, ReplicationServiceServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

pub struct ReplicationAdmin {
    replica: ReplicaHandle,
    store: Store,
}

fn role(role: Role) -> pb::Role {
    match role {
        Role::Active => pb::Role::Active,
        Role::Passive => pb::Role::Passive,
    }
}

fn role_from_str(role: &str) -> pb::Role {
    match role {
        "active" => pb::Role::Active,
        "passive" => pb::Role::Passive,
        _ => pb::Role::Unspecified,
    }
}

#[tonic::async_trait]
impl ReplicationService for ReplicationAdmin {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let state = self.replica.state();
        let id = self.replica.identity();
        // A replica whose database is gone still answers, with what it knows.
        let members = self.store.members(&id.node).await.unwrap_or_default();
        let leader = state.leader.clone();
        Ok(Response::new(pb::StatusResponse {
            node: id.node.clone(),
            replica: id.replica,
            kind: id.kind.as_str().into(),
            replication: if id.kind.is_active_active() {
                "active-active"
            } else {
                "active-passive"
            }
            .into(),
            role: role(state.role).into(),
            epoch: state.epoch,
            healthy: state.health(Instant::now()).is_ok(),
            detail: state.detail.clone(),
            leader: leader
                .as_ref()
                .map(|l| format!("{}/{}", id.node, l.replica))
                .unwrap_or_default(),
            leader_epoch: leader.map(|l| l.epoch).unwrap_or_default(),
            members: members
                .into_iter()
                .map(|m| pb::Member {
                    replica: m.replica,
                    role: role_from_str(&m.role).into(),
                    last_seen_ms_ago: m.last_seen_ms_ago,
                    health_address: m.health_address,
                    admin_address: m.admin_address,
                    pid: m.pid,
                })
                .collect(),
        }))
    }

    async fn set_passive(
        &self,
        request: Request<pb::SetPassiveRequest>,
    ) -> Result<Response<pb::SetPassiveResponse>, Status> {
        let timeout_ms = request.into_inner().timeout_ms;
        if timeout_ms > 60_000 {
            return Err(Status::invalid_argument("timeout_ms: at most 60000"));
        }
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(u64::from(timeout_ms)));
        match self.replica.set_passive(timeout).await {
            Ok(h) => Ok(Response::new(pb::SetPassiveResponse {
                new_leader: h.new_leader,
                new_epoch: h.new_epoch,
                handover_ms: h.handover_ms,
            })),
            Err(
                e @ (HandoverError::NotActive(_)
                | HandoverError::ActiveActive
                | HandoverError::NoStandby
                | HandoverError::NotTakenOver { .. }),
            ) => Err(Status::failed_precondition(e.to_string())),
            Err(e @ (HandoverError::Store(_) | HandoverError::ShuttingDown)) => {
                Err(Status::unavailable(e.to_string()))
            }
        }
    }
}

/// Serves the admin API on `listener` until `shutdown`, with the node kind's own admin services
/// in `routes` beside the replication and health services.
pub async fn serve(
    listener: TcpListener,
    replica: ReplicaHandle,
    store: Store,
    mut routes: tonic::service::RoutesBuilder,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let mut states = replica.subscribe();
    let follow = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let healthy = states.borrow_and_update().health(Instant::now()).is_ok();
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            tokio::select! {
                () = follow.cancelled() => break,
                changed = states.changed() => if changed.is_err() { break },
            }
        }
    });
    let admin = ReplicationAdmin { replica, store };
    routes
        .add_service(health_service)
        .add_service(ReplicationServiceServer::new(admin));
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            crate::net::incoming_nodelay(listener),
            shutdown.cancelled_owned(),
        )
        .await
}
