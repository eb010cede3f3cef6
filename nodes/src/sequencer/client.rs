//! What a synchronizer member uses to talk to a sequencer: signs its requests with the member's
//! key. Used by participants, mediators and the topology manager, and by tests and benchmarks.

use super::{acknowledge_signing_bytes, now_us, send_signing_bytes, subscribe_signing_bytes};
use crate::identity::{KeyPair, MemberId};
use std::sync::Arc;
use tandem_proto::sequencer::v1 as pb;
use tandem_proto::sequencer::v1::sequencer_service_client::SequencerServiceClient;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct SequencerClient {
    pub member: MemberId,
    key: Arc<KeyPair>,
    client: SequencerServiceClient<Channel>,
}

impl SequencerClient {
    pub async fn connect(
        endpoint: &str,
        member: MemberId,
        key: Arc<KeyPair>,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Self {
            member,
            key,
            client: SequencerServiceClient::new(channel),
        })
    }

    /// A client that dials `endpoint` on first use (and again after a failure).
    pub fn lazy(
        endpoint: &str,
        member: MemberId,
        key: Arc<KeyPair>,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .connect_timeout(std::time::Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(10))
            .keep_alive_timeout(std::time::Duration::from_secs(5))
            .connect_lazy();
        Ok(Self {
            member,
            key,
            client: SequencerServiceClient::new(channel),
        })
    }

    /// A signed submission request.
    pub fn request(
        &self,
        message_id: &str,
        recipients: &[String],
        payload: Vec<u8>,
        max_sequencing_time_us: i64,
    ) -> pb::SubmissionRequest {
        let sender = self.member.to_string();
        let signature = self.key.sign(&send_signing_bytes(
            &sender,
            message_id,
            recipients,
            &payload,
            max_sequencing_time_us,
        ));
        pb::SubmissionRequest {
            sender,
            message_id: message_id.to_string(),
            recipients: recipients.to_vec(),
            payload,
            max_sequencing_time_us,
            signature,
        }
    }

    pub async fn send(&mut self, request: pb::SubmissionRequest) -> Result<i64, tonic::Status> {
        Ok(self.client.send(request).await?.into_inner().timestamp_us)
    }

    pub async fn subscribe(
        &mut self,
        from_us: i64,
    ) -> Result<tonic::Streaming<pb::SequencedEvent>, tonic::Status> {
        let member = self.member.to_string();
        let request_time_us = now_us();
        let signature = self
            .key
            .sign(&subscribe_signing_bytes(&member, from_us, request_time_us));
        let request = pb::SubscriptionRequest {
            member,
            from_timestamp_us: from_us,
            request_time_us,
            signature,
        };
        Ok(self.client.subscribe(request).await?.into_inner())
    }

    pub async fn acknowledge(&mut self, ts: i64) -> Result<(), tonic::Status> {
        let member = self.member.to_string();
        let signature = self.key.sign(&acknowledge_signing_bytes(&member, ts));
        self.client
            .acknowledge(pb::AcknowledgeRequest {
                member,
                timestamp_us: ts,
                signature,
            })
            .await?;
        Ok(())
    }
}
