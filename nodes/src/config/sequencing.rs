//! `[synchronizer.sequencing]`: how the active-active sequencers share their database
//! (design.md §5.1). Defaults live here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequencingConfig {
    /// N: writer indexes partition microsecond timestamps (`ts % N` is the writer). Fixed for the
    /// life of the synchronizer; more than the sequencers running so a restarted one finds a free
    /// index at once. At most 31.
    pub total_node_count: u32,
    /// A writer whose watermark lags the clock by more than this is marked offline by its peers;
    /// readers stop waiting for it.
    pub offline_after_ms: u64,
    /// How often an idle writer raises its watermark to show it is alive.
    pub heartbeat_interval_ms: u64,
    /// Largest payload a member may send.
    pub max_payload_bytes: usize,
    /// Largest number of recipients of one message.
    pub max_recipients: usize,
}

impl Default for SequencingConfig {
    fn default() -> Self {
        Self {
            total_node_count: 8,
            offline_after_ms: 1_000,
            heartbeat_interval_ms: 100,
            max_payload_bytes: 1 << 20,
            max_recipients: 1_000,
        }
    }
}

/// Largest `total_node_count`.
pub const MAX_TOTAL_NODE_COUNT: u32 = 31;

pub(super) fn validate(s: &SequencingConfig, sequencers: usize) -> Result<(), (String, String)> {
    let key = |k: &str| format!("synchronizer.sequencing.{k}");
    if s.total_node_count == 0 || s.total_node_count > MAX_TOTAL_NODE_COUNT {
        return Err((
            key("total_node_count"),
            format!("must be between 1 and {MAX_TOTAL_NODE_COUNT}"),
        ));
    }
    if sequencers > s.total_node_count as usize {
        return Err((
            key("total_node_count"),
            format!(
                "{} is less than the {sequencers} sequencers configured",
                s.total_node_count
            ),
        ));
    }
    if s.heartbeat_interval_ms == 0
        || s.heartbeat_interval_ms.saturating_mul(3) > s.offline_after_ms
    {
        return Err((
            key("heartbeat_interval_ms"),
            "must be positive and at most a third of offline_after_ms".into(),
        ));
    }
    if s.max_payload_bytes == 0 || s.max_recipients == 0 {
        return Err((key("max_payload_bytes"), "limits must be positive".into()));
    }
    Ok(())
}
