//! The participant's gRPC Ledger API as the gateway calls it: one lazily connected channel
//! (the gateway starts, and answers `/readyz` 503, while no participant is reachable), and
//! requests that carry the caller's token and request id as metadata. No policy lives here.

use std::time::Duration;
use tandem_proto::health::pb::health_check_response::ServingStatus;
use tandem_proto::health::pb::health_client::HealthClient;
use tandem_proto::health::pb::HealthCheckRequest;
use tandem_proto::ledger::v2 as pb;
use tonic::transport::{Channel, Endpoint};

/// Who a ledger call is made for: the caller's bearer token (forwarded unchanged, so the
/// participant authorizes again) and the HTTP request id.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The JWT, without `Bearer `; `None` for calls the gateway makes on nobody's behalf.
    pub token: Option<String>,
    /// The `x-request-id` of the HTTP request, forwarded as gRPC metadata.
    pub request_id: Option<String>,
}

/// A handle on the Ledger API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LedgerClient {
    channel: Channel,
    endpoint: Endpoint,
    call_timeout: Duration,
}

/// Why the Ledger API endpoint is unusable.
#[derive(Debug, thiserror::Error)]
#[error("ledger_api: {0}")]
pub struct EndpointError(String);

impl LedgerClient {
    /// A client for `endpoint` (`http://host:port`). Connects on first use and reconnects
    /// after failures.
    pub fn new(
        endpoint: &str,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, EndpointError> {
        let endpoint = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| EndpointError(e.to_string()))?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        Ok(Self {
            channel: endpoint.connect_lazy(),
            endpoint,
            call_timeout,
        })
    }

    /// A client of the same endpoint over a connection of its own, whose tasks run on the
    /// runtime this is called in.
    pub fn another_connection(&self) -> Self {
        Self {
            channel: self.endpoint.connect_lazy(),
            endpoint: self.endpoint.clone(),
            call_timeout: self.call_timeout,
        }
    }

    /// How long a unary call may take.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// A request carrying the context's metadata and the call timeout.
    pub fn request<T>(&self, message: T, ctx: &CallContext) -> tonic::Request<T> {
        self.request_with(message, ctx, Some(self.call_timeout))
    }

    /// A request for a stream, which has no deadline of its own.
    pub fn stream_request<T>(&self, message: T, ctx: &CallContext) -> tonic::Request<T> {
        self.request_with(message, ctx, None)
    }

    fn request_with<T>(
        &self,
        message: T,
        ctx: &CallContext,
        timeout: Option<Duration>,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let metadata = request.metadata_mut();
        if let Some(token) = &ctx.token {
            if let Ok(v) = format!("Bearer {token}").parse() {
                metadata.insert("authorization", v);
            }
        }
        if let Some(id) = &ctx.request_id {
            if let Ok(v) = id.parse() {
                metadata.insert("x-request-id", v);
            }
        }
        request
    }

    pub fn commands(&self) -> pb::command_service_client::CommandServiceClient<Channel> {
        pb::command_service_client::CommandServiceClient::new(self.channel.clone())
    }

    pub fn submission(
        &self,
    ) -> pb::command_submission_service_client::CommandSubmissionServiceClient<Channel> {
        pb::command_submission_service_client::CommandSubmissionServiceClient::new(
            self.channel.clone(),
        )
    }

    pub fn completions(
        &self,
    ) -> pb::command_completion_service_client::CommandCompletionServiceClient<Channel> {
        pb::command_completion_service_client::CommandCompletionServiceClient::new(
            self.channel.clone(),
        )
    }

    pub fn updates(&self) -> pb::update_service_client::UpdateServiceClient<Channel> {
        pb::update_service_client::UpdateServiceClient::new(self.channel.clone())
    }

    pub fn state(&self) -> pb::state_service_client::StateServiceClient<Channel> {
        pb::state_service_client::StateServiceClient::new(self.channel.clone())
    }

    pub fn parties(
        &self,
    ) -> pb::party_management_service_client::PartyManagementServiceClient<Channel> {
        pb::party_management_service_client::PartyManagementServiceClient::new(self.channel.clone())
    }

    pub fn users(
        &self,
    ) -> pb::user_management_service_client::UserManagementServiceClient<Channel> {
        pb::user_management_service_client::UserManagementServiceClient::new(self.channel.clone())
    }

    pub fn packages(&self) -> pb::package_service_client::PackageServiceClient<Channel> {
        pb::package_service_client::PackageServiceClient::new(self.channel.clone())
    }

    pub fn package_management(
        &self,
    ) -> pb::package_management_service_client::PackageManagementServiceClient<Channel> {
        pb::package_management_service_client::PackageManagementServiceClient::new(
            self.channel.clone(),
        )
    }

    pub fn version(&self) -> pb::version_service_client::VersionServiceClient<Channel> {
        pb::version_service_client::VersionServiceClient::new(self.channel.clone())
    }

    /// The ledger end, as the caller sees it.
    pub async fn ledger_end(&self, ctx: &CallContext) -> Result<i64, tonic::Status> {
        let response = self
            .state()
            .get_ledger_end(self.request(pb::GetLedgerEndRequest {}, ctx))
            .await?;
        Ok(response.into_inner().offset)
    }

    /// Whether the participant answers the standard gRPC health check as serving.
    pub async fn is_serving(&self, timeout: Duration) -> bool {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(timeout);
        let mut client = HealthClient::new(self.channel.clone());
        let check = client.check(request);
        matches!(
            tokio::time::timeout(timeout, check).await,
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
        )
    }
}
