//! The mediator's confirmation requests (design.md §5.2): each with its aggregation so far and,
//! once decided, its verdict. Pending requests are here so a newly active replica resumes them.

use super::sql::{execute_tx, fetch};
use super::{FencedTx, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub request_ts: i64,
    pub submitter: String,
    pub submission_id: String,
    pub deadline_us: i64,
    /// pending | approved | rejected
    pub state: String,
    /// JSON of the aggregation.
    pub aggregation: String,
    /// The encoded verdict once decided.
    pub verdict: Option<Vec<u8>>,
    pub verdict_sent: bool,
}

type Row = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    Option<Vec<u8>>,
    bool,
);

fn from_row(r: Row) -> StoredRequest {
    StoredRequest {
        request_ts: r.0,
        submitter: r.1,
        submission_id: r.2,
        deadline_us: r.3,
        state: r.4,
        aggregation: r.5,
        verdict: r.6,
        verdict_sent: r.7,
    }
}

const COLUMNS: &str =
    "request_ts, submitter, submission_id, deadline_us, state, aggregation, verdict, verdict_sent";

impl Store {
    /// Requests still pending, or decided but whose verdict the sequencer does not have yet.
    pub async fn mediator_open_requests(
        &self,
        node: &str,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM mediator_requests \
             WHERE node = $1 AND (state = 'pending' OR NOT verdict_sent) ORDER BY request_ts"
        );
        let rows = fetch!(self, fetch_all, Row, &sql, node);
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The newest `limit` requests.
    pub async fn mediator_requests(
        &self,
        node: &str,
        limit: i64,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM mediator_requests WHERE node = $1 \
             ORDER BY request_ts DESC LIMIT $2"
        );
        let rows = fetch!(self, fetch_all, Row, &sql, node, limit);
        Ok(rows.into_iter().map(from_row).collect())
    }
}

impl FencedTx {
    /// Inserts or replaces a request's row.
    pub async fn save_mediator_request(
        &mut self,
        node: &str,
        r: &StoredRequest,
    ) -> Result<(), StoreError> {
        execute_tx!(
            self,
            "INSERT INTO mediator_requests \
               (node, request_ts, submitter, submission_id, deadline_us, state, aggregation, verdict, verdict_sent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (node, request_ts) DO UPDATE SET state = excluded.state, \
               aggregation = excluded.aggregation, verdict = excluded.verdict, \
               verdict_sent = excluded.verdict_sent",
            node,
            r.request_ts,
            &r.submitter,
            &r.submission_id,
            r.deadline_us,
            &r.state,
            &r.aggregation,
            &r.verdict,
            r.verdict_sent
        );
        Ok(())
    }

    pub async fn mark_verdict_sent(
        &mut self,
        node: &str,
        request_ts: i64,
    ) -> Result<(), StoreError> {
        execute_tx!(
            self,
            "UPDATE mediator_requests SET verdict_sent = TRUE WHERE node = $1 AND request_ts = $2",
            node,
            request_ts
        );
        Ok(())
    }
}
