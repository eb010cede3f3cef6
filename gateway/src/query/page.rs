//! Opaque page tokens of `POST /v2/query` (AIP-158): where the last page ended (the sort key
//! of its last contract), the offset it was read at (the next page waits for at least that
//! offset, on any instance) and a hash of the query, so a token cannot be reused with other
//! arguments. Base64url JSON; not secret, and tampering only moves the position.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// Format version.
    pub v: u8,
    /// The sort key of the last contract returned: its creation offset and contract id.
    pub offset: i64,
    pub contract_id: String,
    /// The cache offset the previous page was read at.
    pub read_at: i64,
    /// [`query_hash`] of the query the token belongs to.
    pub query: String,
}

/// The current token format.
const VERSION: u8 = 1;
/// Longest token accepted.
const MAX_TOKEN_LEN: usize = 4096;

impl PageToken {
    pub fn new(offset: i64, contract_id: &str, read_at: i64, query: &str) -> Self {
        Self {
            v: VERSION,
            offset,
            contract_id: contract_id.to_owned(),
            read_at,
            query: query.to_owned(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a token given with the query whose hash is `query`.
    pub fn decode(token: &str, query: &str) -> Result<Self, String> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("the page token is too long".into());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| "the page token is not one this API issued".to_owned())?;
        let parsed: PageToken = serde_json::from_slice(&bytes)
            .map_err(|_| "the page token is not one this API issued".to_owned())?;
        if parsed.v != VERSION {
            return Err("the page token is from another version of the API".into());
        }
        if parsed.query != query {
            return Err(
                "the page token belongs to a different query; keep every other field the same between pages"
                    .into(),
            );
        }
        if parsed.offset < 0 || parsed.read_at < 0 {
            return Err("the page token is not one this API issued".into());
        }
        Ok(parsed)
    }
}

/// A short hash of the parts of a query that must stay the same between pages.
pub fn query_hash(parts: &serde_json::Value) -> String {
    let digest = Sha256::digest(parts.to_string().as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_trip_and_bind_to_their_query() {
        let q = query_hash(&json!({"templateIds": ["#iou:Iou:Iou"]}));
        let other = query_hash(&json!({"templateIds": ["#iou:Iou:Other"]}));
        assert_ne!(q, other);
        let token = PageToken::new(17, "00abc", 20, &q);
        let encoded = token.encode();
        assert_eq!(PageToken::decode(&encoded, &q).unwrap(), token);
        assert!(PageToken::decode(&encoded, &other)
            .unwrap_err()
            .contains("different query"));
    }

    #[test]
    fn garbage_is_refused() {
        let q = query_hash(&json!({}));
        for bad in ["", "!!!", "bm90IGpzb24", &"A".repeat(5000)] {
            assert!(PageToken::decode(bad, &q).is_err(), "{bad}");
        }
        let negative = PageToken::new(-1, "x", 0, &q).encode();
        assert!(PageToken::decode(&negative, &q).is_err());
        let mut future = PageToken::new(1, "x", 0, &q);
        future.v = 9;
        assert!(PageToken::decode(&future.encode(), &q).is_err());
    }
}
