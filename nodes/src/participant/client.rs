//! A Ledger API client for people and programs: the `tandem ledger` CLI, the benchmarks and the
//! tests. It sends a bearer JWT on every call and speaks JSON values.

use super::codec::{json_to_proto, proto_to_json};
use serde_json::Value as Json;
use std::time::Duration;
use tandem_proto::ledger::v2 as pb;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerInterceptor(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Svc = InterceptedService<Channel, BearerInterceptor>;

/// A connection to one participant's Ledger API (or the lb in front of its replicas).
#[derive(Clone)]
pub struct LedgerClient {
    /// The user commands are submitted as (`Commands.user_id`); the token must name it.
    pub user: String,
    channel: Channel,
    interceptor: BearerInterceptor,
}

/// A created contract as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveContract {
    pub contract_id: String,
    pub template_id: String,
    pub arguments: Json,
    pub signatories: Vec<String>,
    pub observers: Vec<String>,
    pub offset: i64,
}

impl From<&pb::CreatedEvent> for ActiveContract {
    fn from(e: &pb::CreatedEvent) -> Self {
        ActiveContract {
            contract_id: e.contract_id.clone(),
            template_id: e.template_id.clone(),
            arguments: e
                .create_arguments
                .as_ref()
                .map_or(Json::Null, proto_to_json),
            signatories: e.signatories.clone(),
            observers: e.observers.clone(),
            offset: e.offset,
        }
    }
}

impl LedgerClient {
    /// Connects to `endpoint` (`http://host:port`) as `user`, authenticated by the JWT `token`;
    /// the channel reconnects by itself.
    pub fn connect_lazy(endpoint: &str, user: &str, token: &str) -> Result<LedgerClient, String> {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            "the token is not valid metadata (a JWT is base64url and dots)".to_string()
        })?;
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("{endpoint}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(LedgerClient {
            user: user.to_string(),
            channel,
            interceptor: BearerInterceptor(value),
        })
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.interceptor.clone())
    }

    pub fn commands_client(&self) -> pb::command_service_client::CommandServiceClient<Svc> {
        pb::command_service_client::CommandServiceClient::new(self.svc())
    }

    pub fn submission_client(
        &self,
    ) -> pb::command_submission_service_client::CommandSubmissionServiceClient<Svc> {
        pb::command_submission_service_client::CommandSubmissionServiceClient::new(self.svc())
    }

    pub fn completions_client(
        &self,
    ) -> pb::command_completion_service_client::CommandCompletionServiceClient<Svc> {
        pb::command_completion_service_client::CommandCompletionServiceClient::new(self.svc())
    }

    pub fn updates_client(&self) -> pb::update_service_client::UpdateServiceClient<Svc> {
        pb::update_service_client::UpdateServiceClient::new(self.svc())
    }

    pub fn state_client(&self) -> pb::state_service_client::StateServiceClient<Svc> {
        pb::state_service_client::StateServiceClient::new(self.svc())
    }

    pub fn parties_client(
        &self,
    ) -> pb::party_management_service_client::PartyManagementServiceClient<Svc> {
        pb::party_management_service_client::PartyManagementServiceClient::new(self.svc())
    }

    pub fn users_client(
        &self,
    ) -> pb::user_management_service_client::UserManagementServiceClient<Svc> {
        pb::user_management_service_client::UserManagementServiceClient::new(self.svc())
    }

    pub fn packages_client(&self) -> pb::package_service_client::PackageServiceClient<Svc> {
        pb::package_service_client::PackageServiceClient::new(self.svc())
    }

    pub fn package_management_client(
        &self,
    ) -> pb::package_management_service_client::PackageManagementServiceClient<Svc> {
        pb::package_management_service_client::PackageManagementServiceClient::new(self.svc())
    }

    /// Uploads a package document; `format` is "yaml" or "json".
    pub async fn upload_package(
        &self,
        content: Vec<u8>,
        format: &str,
    ) -> Result<pb::PackageDetails, Status> {
        let r = self
            .package_management_client()
            .upload_package(pb::UploadPackageRequest {
                format: format.into(),
                content,
            })
            .await?;
        r.into_inner()
            .package
            .ok_or_else(|| Status::internal("no package in the answer"))
    }

    /// Allocates `hint::<participant fingerprint>` and lets `user` (if not empty) act as it.
    pub async fn allocate_party(&self, hint: &str, user: &str) -> Result<String, Status> {
        let r = self
            .parties_client()
            .allocate_party(pb::AllocatePartyRequest {
                party_id_hint: hint.into(),
                user_id: user.into(),
            })
            .await?;
        Ok(r.into_inner()
            .party_details
            .map(|d| d.party)
            .unwrap_or_default())
    }

    /// Commands of this client's user acting as `act_as`.
    pub fn commands(
        &self,
        command_id: &str,
        act_as: &[String],
        commands: Vec<pb::Command>,
    ) -> pb::Commands {
        pb::Commands {
            user_id: self.user.clone(),
            command_id: command_id.into(),
            act_as: act_as.to_vec(),
            commands,
            ..Default::default()
        }
    }

    pub fn create(template_id: &str, arguments: &Json) -> pb::Command {
        pb::Command {
            command: Some(pb::command::Command::Create(pb::CreateCommand {
                template_id: template_id.into(),
                create_arguments: Some(json_to_proto(arguments)),
            })),
        }
    }

    pub fn exercise(
        template_id: &str,
        contract_id: &str,
        choice: &str,
        argument: &Json,
    ) -> pb::Command {
        pb::Command {
            command: Some(pb::command::Command::Exercise(pb::ExerciseCommand {
                template_id: template_id.into(),
                contract_id: contract_id.into(),
                choice: choice.into(),
                choice_argument: Some(json_to_proto(argument)),
            })),
        }
    }

    /// Submits and waits for the transaction.
    pub async fn submit_and_wait_for_transaction(
        &self,
        commands: pb::Commands,
    ) -> Result<pb::Transaction, Status> {
        let r = self
            .commands_client()
            .submit_and_wait_for_transaction(pb::SubmitAndWaitRequest {
                commands: Some(commands),
            })
            .await?;
        r.into_inner()
            .transaction
            .ok_or_else(|| Status::internal("no transaction in the answer"))
    }

    /// Submits and waits: the update id and its offset.
    pub async fn submit_and_wait(&self, commands: pb::Commands) -> Result<(String, i64), Status> {
        let r = self
            .commands_client()
            .submit_and_wait(pb::SubmitAndWaitRequest {
                commands: Some(commands),
            })
            .await?
            .into_inner();
        Ok((r.update_id, r.completion_offset))
    }

    /// The contracts `parties` see, active at the ledger end.
    pub async fn active_contracts(
        &self,
        parties: &[String],
    ) -> Result<Vec<ActiveContract>, Status> {
        let filter = pb::TransactionFilter {
            parties: parties.to_vec(),
            template_ids: Vec::new(),
        };
        let mut stream = self
            .state_client()
            .get_active_contracts(pb::GetActiveContractsRequest {
                filter: Some(filter),
                active_at_offset: 0,
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await? {
            if let Some(e) = &r.created_event {
                out.push(ActiveContract::from(e));
            }
        }
        Ok(out)
    }

    pub async fn ledger_end(&self) -> Result<i64, Status> {
        Ok(self
            .state_client()
            .get_ledger_end(pb::GetLedgerEndRequest {})
            .await?
            .into_inner()
            .offset)
    }

    /// The transactions `parties` see with `after < offset <= up_to`.
    pub async fn updates(
        &self,
        parties: &[String],
        after: i64,
        up_to: i64,
    ) -> Result<Vec<pb::Transaction>, Status> {
        let filter = pb::TransactionFilter {
            parties: parties.to_vec(),
            template_ids: Vec::new(),
        };
        let mut stream = self
            .updates_client()
            .get_updates(pb::GetUpdatesRequest {
                begin_exclusive: after,
                end_inclusive: up_to,
                filter: Some(filter),
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await? {
            if let Some(pb::get_updates_response::Update::Transaction(t)) = r.update {
                out.push(t);
            }
        }
        Ok(out)
    }
}
