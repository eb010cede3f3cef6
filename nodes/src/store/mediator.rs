//! The mediator's confirmation requests (design.md §5.2): each with its aggregation so far and,
//! once decided, its verdict. Pending requests are here so a newly active replica resumes them.

use super::fenced::column;
use super::sql::{execute_tx, fetch};
use super::{FencedTx, Store, StoreError};
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::{BTreeMap, BTreeSet};

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

/// The mediator's request writes of one fenced Postgres transaction, gathered (see
/// [`super::fenced::Gathered`]): the last row saved per request, and the requests marked sent
/// since their last save. The saves go first, so the result is that of the writes in order.
#[derive(Default)]
pub struct RequestWrites {
    saved: BTreeMap<i64, StoredRequest>,
    marked: BTreeSet<i64>,
}

impl RequestWrites {
    /// Sends the gathered writes for `node`, if any, on `tx`.
    pub(crate) async fn flush(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        node: &str,
    ) -> Result<(), sqlx::Error> {
        let conn: &mut PgConnection = tx;
        let rows: Vec<StoredRequest> = std::mem::take(&mut self.saved).into_values().collect();
        if !rows.is_empty() {
            sqlx::query(
                "INSERT INTO mediator_requests (node, request_ts, submitter, submission_id, \
                   deadline_us, state, aggregation, verdict, verdict_sent) \
                 SELECT $1::TEXT, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], \
                   $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::BYTEA[], $9::BOOLEAN[]) \
                 ON CONFLICT (node, request_ts) DO UPDATE SET state = excluded.state, \
                   aggregation = excluded.aggregation, verdict = excluded.verdict, \
                   verdict_sent = excluded.verdict_sent",
            )
            .bind(node)
            .bind(column(&rows, |r| r.request_ts))
            .bind(column(&rows, |r| r.submitter.as_str()))
            .bind(column(&rows, |r| r.submission_id.as_str()))
            .bind(column(&rows, |r| r.deadline_us))
            .bind(column(&rows, |r| r.state.as_str()))
            .bind(column(&rows, |r| r.aggregation.as_str()))
            .bind(column(&rows, |r| r.verdict.as_deref()))
            .bind(column(&rows, |r| r.verdict_sent))
            .execute(&mut *conn)
            .await?;
        }
        // One key at a time, so each is an index lookup whatever the planner thinks of `ANY`.
        for request_ts in std::mem::take(&mut self.marked) {
            sqlx::query(MARK_SENT)
                .bind(node)
                .bind(request_ts)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

const MARK_SENT: &str =
    "UPDATE mediator_requests SET verdict_sent = TRUE WHERE node = $1 AND request_ts = $2";

impl FencedTx {
    /// Postgres: the request writes gathered for `node`; see [`FencedTx::gathered`].
    async fn requests(&mut self, node: &str) -> Result<Option<&mut RequestWrites>, StoreError> {
        Ok(self.gathered(node).await?.map(|g| &mut g.requests))
    }

    /// Inserts or replaces a request's row.
    pub async fn save_mediator_request(
        &mut self,
        node: &str,
        r: &StoredRequest,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.requests(node).await? {
            // The row replaces whatever was marked before it. The upsert leaves the submitter,
            // submission id and deadline as the first write gave them.
            w.marked.remove(&r.request_ts);
            let mut row = r.clone();
            if let Some(first) = w.saved.remove(&r.request_ts) {
                row.submitter = first.submitter;
                row.submission_id = first.submission_id;
                row.deadline_us = first.deadline_us;
            }
            w.saved.insert(r.request_ts, row);
            return Ok(());
        }
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
        if let Some(w) = self.requests(node).await? {
            match w.saved.get_mut(&request_ts) {
                Some(row) => row.verdict_sent = true,
                None => {
                    w.marked.insert(request_ts);
                }
            }
            return Ok(());
        }
        execute_tx!(self, MARK_SENT, node, request_ts);
        Ok(())
    }
}
