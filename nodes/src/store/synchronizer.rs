//! What every synchronizer member keeps: its identity (the Ed25519 seed its replicas share), the
//! topology transactions it knows, and how far it processed its sequencer subscription. Also the
//! sequencer's trust root. Tables are keyed by node so several logical nodes may share a database.

use super::sql::{execute, execute_tx, fetch};
use super::{FencedTx, Store, StoreError};
use crate::identity::{KeyPair, MemberId, MemberKind};

/// A topology transaction as a node stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTopology {
    pub hash: String,
    /// The encoded `SignedTopologyTransaction`.
    pub signed: Vec<u8>,
    pub status: TopologyStatus,
    pub sequenced_us: Option<i64>,
    pub effective_us: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyStatus {
    Proposed,
    Accepted,
    Sequenced,
}

impl TopologyStatus {
    fn as_str(self) -> &'static str {
        match self {
            TopologyStatus::Proposed => "proposed",
            TopologyStatus::Accepted => "accepted",
            TopologyStatus::Sequenced => "sequenced",
        }
    }

    fn parse(s: &str) -> TopologyStatus {
        match s {
            "accepted" => TopologyStatus::Accepted,
            "sequenced" => TopologyStatus::Sequenced,
            _ => TopologyStatus::Proposed,
        }
    }
}

impl Store {
    /// The node's key pair, created on first use. Replicas racing to create it agree on the
    /// first one written.
    pub async fn node_identity(
        &self,
        node: &str,
        kind: MemberKind,
    ) -> Result<(MemberId, KeyPair), StoreError> {
        let load = || async {
            let row = fetch!(
                self,
                fetch_optional,
                (Vec<u8>,),
                "SELECT seed FROM node_identity WHERE node = $1",
                node
            );
            Ok::<_, StoreError>(row.and_then(|(seed,)| <[u8; 32]>::try_from(seed).ok()))
        };
        let seed = match load().await? {
            Some(seed) => seed,
            None => {
                let key = KeyPair::generate()
                    .map_err(|e| StoreError::Database(format!("identity of {node}: {e}")))?;
                let member = MemberId::new(kind, node, &key.public_key());
                execute!(
                    self,
                    "INSERT INTO node_identity (node, member, seed) VALUES ($1, $2, $3) \
                     ON CONFLICT (node) DO NOTHING",
                    node,
                    member.to_string(),
                    key.seed().to_vec()
                );
                load().await?.ok_or_else(|| {
                    StoreError::Database(format!("identity of {node} was not stored"))
                })?
            }
        };
        let key = KeyPair::from_seed(seed);
        Ok((MemberId::new(kind, node, &key.public_key()), key))
    }

    /// Every topology transaction `node` stored: sequenced ones in sequencing order, then the
    /// accepted ones in acceptance order, then proposals.
    pub async fn topology_transactions(
        &self,
        node: &str,
    ) -> Result<Vec<StoredTopology>, StoreError> {
        let rows = fetch!(
            self,
            fetch_all,
            (String, Vec<u8>, String, Option<i64>, Option<i64>),
            "SELECT hash, signed, status, sequenced_us, effective_us FROM topology_transactions \
             WHERE node = $1 \
             ORDER BY CASE status WHEN 'sequenced' THEN 0 WHEN 'accepted' THEN 1 ELSE 2 END, \
                      sequenced_us, accepted_order, hash",
            node
        );
        Ok(rows
            .into_iter()
            .map(
                |(hash, signed, status, sequenced_us, effective_us)| StoredTopology {
                    hash,
                    signed,
                    status: TopologyStatus::parse(&status),
                    sequenced_us,
                    effective_us,
                },
            )
            .collect())
    }

    /// The timestamp of the last sequenced event `node` processed (0: none).
    pub async fn member_cursor(&self, node: &str) -> Result<i64, StoreError> {
        let row = fetch!(
            self,
            fetch_optional,
            (i64,),
            "SELECT ts FROM member_cursors WHERE node = $1",
            node
        );
        Ok(row.map_or(0, |(ts,)| ts))
    }

    /// The topology manager that bootstrapped the sequencers, if any.
    pub async fn trust_root(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_optional,
            (String, Vec<u8>),
            "SELECT member, public_key FROM sequencer_trust_root WHERE id = 1"
        ))
    }

    /// Records the trust root unless one is set; returns the one in force.
    pub async fn set_trust_root(
        &self,
        member: &str,
        public_key: &[u8],
    ) -> Result<(String, Vec<u8>), StoreError> {
        execute!(
            self,
            "INSERT INTO sequencer_trust_root (id, member, public_key) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
            member,
            public_key.to_vec()
        );
        self.trust_root()
            .await?
            .ok_or_else(|| StoreError::Database("trust root was not stored".into()))
    }
}

impl FencedTx {
    /// Stores or updates a topology transaction of `node`.
    pub async fn save_topology(
        &mut self,
        node: &str,
        t: &StoredTopology,
        accepted_order: Option<i64>,
    ) -> Result<(), StoreError> {
        execute_tx!(
            self,
            "INSERT INTO topology_transactions \
               (node, hash, signed, status, accepted_order, sequenced_us, effective_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node, hash) DO UPDATE SET signed = excluded.signed, \
               status = excluded.status, \
               accepted_order = COALESCE(excluded.accepted_order, topology_transactions.accepted_order), \
               sequenced_us = excluded.sequenced_us, effective_us = excluded.effective_us",
            node,
            &t.hash,
            &t.signed,
            t.status.as_str(),
            accepted_order,
            t.sequenced_us,
            t.effective_us
        );
        Ok(())
    }

    /// Records that `node` processed its subscription up to `ts`.
    pub async fn set_member_cursor(&mut self, node: &str, ts: i64) -> Result<(), StoreError> {
        execute_tx!(
            self,
            "INSERT INTO member_cursors (node, ts) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET ts = excluded.ts",
            node,
            ts
        );
        Ok(())
    }
}
