//! Who may use the sequencer: the members admitted by the topology state. The state is rebuilt
//! from the topology manager's broadcasts in the shared database (only up to the readers' head,
//! so nothing a crashed writer may still lose), each admission in effect from its sequencing
//! time plus `topology_change_delay`. The topology manager itself is known from the trust root
//! it set when it bootstrapped the sequencers.

use super::Head;
use crate::store::{Store, StoreError};
use crate::topology::{SignedTransaction, TopologyState};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use tandem_proto::synchronizer::v1 as msg;
use tokio::sync::{watch, Mutex};

/// Admissions are re-read at least this often, so removals take effect without a miss.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Known {
    trust_root: Option<(String, Vec<u8>)>,
    state: TopologyState,
    applied_to: i64,
    refreshed: Option<Instant>,
}

pub(crate) struct Members {
    store: Store,
    head: watch::Receiver<Head>,
    delay_us: i64,
    known: RwLock<Known>,
    /// Members' keys decompressed, by their raw bytes: decompressing is a good part of a
    /// signature check, and every send is checked.
    parsed: RwLock<HashMap<[u8; 32], VerifyingKey>>,
    refreshing: Mutex<()>,
}

impl Members {
    pub(super) fn new(store: Store, head: watch::Receiver<Head>, delay: Duration) -> Self {
        Self {
            store,
            head,
            delay_us: i64::try_from(delay.as_micros()).unwrap_or(i64::MAX),
            known: RwLock::new(Known::default()),
            parsed: RwLock::default(),
            refreshing: Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup(&self, member: &str, now_us: i64) -> (Option<VerifyingKey>, bool) {
        let known = self.read();
        let fresh = known.refreshed.is_some_and(|t| t.elapsed() < REFRESH_EVERY);
        let raw = match &known.trust_root {
            Some((root, key)) if root == member => Some(key.as_slice()),
            _ => known.state.key_of(member, now_us),
        };
        (raw.and_then(|raw| self.parsed(raw)), fresh)
    }

    /// `raw` decompressed, once per key. Keys are checked when they are admitted, so one that
    /// does not decompress cannot be in the state; it would name no member.
    fn parsed(&self, raw: &[u8]) -> Option<VerifyingKey> {
        let raw: [u8; 32] = raw.try_into().ok()?;
        if let Some(key) = self
            .parsed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&raw)
        {
            return Some(*key);
        }
        let key = VerifyingKey::from_bytes(&raw).ok()?;
        self.parsed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(raw, key);
        Some(key)
    }

    /// The key of `member` if it is a member now, re-reading the broadcasts on a miss.
    pub(super) async fn key_of(&self, member: &str) -> Result<Option<VerifyingKey>, StoreError> {
        let (key, fresh) = self.lookup(member, super::now_us());
        if key.is_some() && fresh {
            return Ok(key);
        }
        self.refresh().await?;
        Ok(self.lookup(member, super::now_us()).0)
    }

    /// The topology manager that bootstrapped the sequencers.
    pub(super) async fn trust_root(&self) -> Result<Option<String>, StoreError> {
        if let Some((root, _)) = &self.read().trust_root {
            return Ok(Some(root.clone()));
        }
        self.refresh().await?;
        Ok(self
            .read()
            .trust_root
            .as_ref()
            .map(|(root, _)| root.clone()))
    }

    /// Applies the broadcasts sequenced since the last refresh.
    pub(super) async fn refresh(&self) -> Result<(), StoreError> {
        let _one = self.refreshing.lock().await;
        let (root, after) = {
            let known = self.read();
            (known.trust_root.clone(), known.applied_to)
        };
        let root = match root {
            Some(root) => root,
            None => match self.store.trust_root().await? {
                Some(root) => root,
                None => return Ok(()),
            },
        };
        let up_to = self.head.borrow().safe_ts;
        let broadcasts = if up_to > after {
            self.store.broadcasts(&root.0, after, up_to).await?
        } else {
            Vec::new()
        };
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.trust_root = Some(root);
        for (ts, payload) in broadcasts {
            for tx in decode_broadcast(&payload) {
                if let Err(e) = known.state.apply(&tx, ts + self.delay_us) {
                    tracing::warn!(ts, error = %e, "ignoring a topology transaction");
                }
            }
        }
        known.applied_to = known.applied_to.max(up_to);
        known.refreshed = Some(Instant::now());
        Ok(())
    }

    /// Every member in effect now.
    pub(super) fn all(&self) -> Vec<String> {
        let known = self.read();
        let mut all: Vec<String> = known
            .state
            .members_at(super::now_us())
            .into_iter()
            .map(|(m, _)| m.to_string())
            .collect();
        if let Some((root, _)) = &known.trust_root {
            if !all.contains(root) {
                all.push(root.clone());
            }
        }
        all.sort();
        all
    }
}

/// The topology transactions of a broadcast payload; anything else yields none.
pub(crate) fn decode_broadcast(payload: &[u8]) -> Vec<SignedTransaction> {
    let Ok(message) = <msg::SynchronizerMessage as prost::Message>::decode(payload) else {
        return Vec::new();
    };
    let Some(msg::synchronizer_message::Message::Topology(broadcast)) = message.message else {
        return Vec::new();
    };
    broadcast
        .transactions
        .iter()
        .filter_map(|t| SignedTransaction::try_from(t).ok())
        .collect()
}
