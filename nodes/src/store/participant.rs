//! The participant's store (design.md §6): contracts with the offsets that created and archived
//! them, the dense update and completion logs, command deduplication, in-flight submissions,
//! pending confirmation requests, and what the Ledger API manages. Bodies are JSON the
//! participant module owns; this module only stores and selects them.

use super::fenced::{column, pg_fence_check};
use super::sql::{execute_tx, fetch};
use super::{Db, Fence, FencedTx, Store, StoreError};
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::BTreeMap;

/// A stored contract: `(contract id, template id, contract JSON, created offset, created at)`.
pub type ContractRow = (String, String, String, i64, i64);

impl Store {
    /// Contracts active now (`at` = None) or at ledger offset `at`.
    pub async fn participant_contracts(
        &self,
        node: &str,
        at: Option<i64>,
    ) -> Result<Vec<ContractRow>, StoreError> {
        Ok(match at {
            None => fetch!(
                self,
                fetch_all,
                ContractRow,
                "SELECT contract_id, template_id, contract, created_offset, created_at_us \
                 FROM participant_contracts WHERE node = $1 AND archived_offset IS NULL \
                 ORDER BY created_offset, contract_id",
                node
            ),
            Some(offset) => fetch!(
                self,
                fetch_all,
                ContractRow,
                "SELECT contract_id, template_id, contract, created_offset, created_at_us \
                 FROM participant_contracts WHERE node = $1 AND created_offset <= $2 \
                   AND (archived_offset IS NULL OR archived_offset > $2) \
                 ORDER BY created_offset, contract_id",
                node,
                offset
            ),
        })
    }

    /// The last update offset (0: none).
    pub async fn participant_ledger_end(&self, node: &str) -> Result<i64, StoreError> {
        let (end,) = fetch!(
            self,
            fetch_one,
            (Option<i64>,),
            "SELECT MAX(ledger_offset) FROM participant_updates WHERE node = $1",
            node
        );
        Ok(end.unwrap_or(0))
    }

    /// The last completion offset (0: none).
    pub async fn participant_completion_end(&self, node: &str) -> Result<i64, StoreError> {
        let (end,) = fetch!(
            self,
            fetch_one,
            (Option<i64>,),
            "SELECT MAX(completion_offset) FROM participant_completions WHERE node = $1",
            node
        );
        Ok(end.unwrap_or(0))
    }

    /// Updates with `after < offset <= up_to`: `(offset, update id, record time, body)`.
    pub async fn participant_updates(
        &self,
        node: &str,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, i64, String)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (i64, String, i64, String),
            "SELECT ledger_offset, update_id, record_time_us, body FROM participant_updates \
             WHERE node = $1 AND ledger_offset > $2 AND ledger_offset <= $3 \
             ORDER BY ledger_offset LIMIT $4",
            node,
            after,
            up_to,
            limit
        ))
    }

    /// Completions after `after`: `(offset, user id, body)`.
    pub async fn participant_completions(
        &self,
        node: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (i64, String, String),
            "SELECT completion_offset, user_id, body FROM participant_completions \
             WHERE node = $1 AND completion_offset > $2 ORDER BY completion_offset LIMIT $3",
            node,
            after,
            limit
        ))
    }

    /// Every deduplication entry: `(change id, update id, offset, expires at)`.
    pub async fn participant_dedup(
        &self,
        node: &str,
    ) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (String, String, i64, i64),
            "SELECT change_id, update_id, ledger_offset, expires_at_us FROM participant_dedup \
             WHERE node = $1",
            node
        ))
    }

    /// In-flight submissions: `(change id, body, request ts)`.
    pub async fn participant_in_flight(
        &self,
        node: &str,
    ) -> Result<Vec<(String, String, Option<i64>)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (String, String, Option<i64>),
            "SELECT change_id, body, request_ts FROM participant_in_flight WHERE node = $1",
            node
        ))
    }

    /// Pending confirmation requests: `(request ts, body)`.
    pub async fn participant_pending(&self, node: &str) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (i64, Vec<u8>),
            "SELECT request_ts, body FROM participant_pending WHERE node = $1 ORDER BY request_ts",
            node
        ))
    }

    pub async fn participant_parties(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let rows = fetch!(
            self,
            fetch_all,
            (String,),
            "SELECT party FROM participant_parties WHERE node = $1 ORDER BY party",
            node
        );
        Ok(rows.into_iter().map(|(p,)| p).collect())
    }

    /// Users: `(user id, primary party, rights JSON)`.
    pub async fn participant_users(
        &self,
        node: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (String, String, String),
            "SELECT user_id, primary_party, rights FROM participant_users WHERE node = $1 \
             ORDER BY user_id",
            node
        ))
    }

    /// Packages: `(package id, format, content, uploaded at)` in upload order.
    pub async fn participant_packages(
        &self,
        node: &str,
    ) -> Result<Vec<(String, String, Vec<u8>, i64)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (String, String, Vec<u8>, i64),
            "SELECT package_id, format, content, uploaded_us FROM participant_packages \
             WHERE node = $1 ORDER BY uploaded_us, package_id",
            node
        ))
    }

    /// Synchronizer connections: `(synchronizer, connected)`.
    pub async fn participant_connections(
        &self,
        node: &str,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        Ok(fetch!(
            self,
            fetch_all,
            (String, bool),
            "SELECT synchronizer, connected FROM participant_connections WHERE node = $1",
            node
        ))
    }

    /// Records an in-flight submission as the writer `fence` names, committed; false if the
    /// change is already in flight. On Postgres this is one statement: the fence check locks
    /// the leader row FOR KEY SHARE, as `begin_fenced` does, and the insert selects from it, so
    /// a submission costs one round trip instead of four (BEGIN, fence, INSERT, COMMIT).
    pub async fn persist_in_flight(
        &self,
        fence: &Fence,
        change_id: &str,
        body: &str,
    ) -> Result<bool, StoreError> {
        let Db::Postgres { pool, .. } = self.db() else {
            let mut db = self.begin_fenced(fence).await?;
            let inserted = db.insert_in_flight(&fence.node, change_id, body).await?;
            db.commit().await?;
            return Ok(inserted);
        };
        let (fenced_in, inserted): (bool, bool) = sqlx::query_as(concat!(
            "WITH fence AS (",
            pg_fence_check!(),
            "), inserted AS (INSERT INTO participant_in_flight (node, change_id, body) \
                 SELECT $1, $4, $5 FROM fence \
                 ON CONFLICT (node, change_id) DO NOTHING RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM fence), EXISTS (SELECT 1 FROM inserted)"
        ))
        .bind(&fence.node)
        .bind(i64::from(fence.replica))
        .bind(fence.epoch_param())
        .bind(change_id)
        .bind(body)
        .fetch_one(pool)
        .await?;
        if !fenced_in {
            return Err(fence.refused());
        }
        Ok(inserted)
    }
}

/// A contract row to insert.
struct NewContract {
    id: String,
    template: String,
    contract: String,
    stakeholders: String,
    created_offset: i64,
    created_at_us: i64,
}

/// The participant's ledger writes of one fenced Postgres transaction (contracts created and
/// archived, updates, completions, deduplication entries, pending requests, in-flight
/// submissions completed), gathered (see [`super::fenced::Gathered`]).
///
/// Within one table the statements run in a fixed order, which gives what the writes in their
/// own order would have: a pending request or deduplication entry keeps its last write, a
/// contract is inserted before it is archived and the first archive counts (an insert after an
/// archive of the same contract sends what was gathered first). SQLite runs each write at once,
/// as before.
#[derive(Default)]
pub struct LedgerWrites {
    contracts: Vec<NewContract>,
    /// (contract id, archived offset), the first per contract.
    archived: Vec<(String, i64)>,
    /// (offset, update id, record time, body).
    updates: Vec<(i64, String, i64, String)>,
    /// (offset, user id, body).
    completions: Vec<(i64, String, String)>,
    /// change id → (update id, offset, expires at), the last per change.
    dedup: BTreeMap<String, (String, i64, i64)>,
    /// request ts → its body, or `None` once deleted; the last per request.
    pending: BTreeMap<i64, Option<Vec<u8>>>,
    in_flight_deleted: Vec<String>,
}

impl LedgerWrites {
    /// Sends the gathered writes for `node`, if any, on `tx`.
    pub(crate) async fn flush(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        node: &str,
    ) -> Result<(), sqlx::Error> {
        let conn: &mut PgConnection = tx;
        let contracts = std::mem::take(&mut self.contracts);
        if !contracts.is_empty() {
            sqlx::query(
                "INSERT INTO participant_contracts (node, contract_id, template_id, contract, \
                   stakeholders, created_offset, created_at_us) \
                 SELECT $1::TEXT, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                   $6::BIGINT[], $7::BIGINT[]) \
                 ON CONFLICT (node, contract_id) DO NOTHING",
            )
            .bind(node)
            .bind(column(&contracts, |c| c.id.as_str()))
            .bind(column(&contracts, |c| c.template.as_str()))
            .bind(column(&contracts, |c| c.contract.as_str()))
            .bind(column(&contracts, |c| c.stakeholders.as_str()))
            .bind(column(&contracts, |c| c.created_offset))
            .bind(column(&contracts, |c| c.created_at_us))
            .execute(&mut *conn)
            .await?;
        }
        let archived = std::mem::take(&mut self.archived);
        if !archived.is_empty() {
            let (ids, offsets): (Vec<String>, Vec<i64>) = archived.into_iter().unzip();
            sqlx::query(
                "UPDATE participant_contracts AS c SET archived_offset = a.archived \
                 FROM UNNEST($2::TEXT[], $3::BIGINT[]) AS a (contract_id, archived) \
                 WHERE c.node = $1 AND c.contract_id = a.contract_id \
                   AND c.archived_offset IS NULL",
            )
            .bind(node)
            .bind(ids)
            .bind(offsets)
            .execute(&mut *conn)
            .await?;
        }
        let updates = std::mem::take(&mut self.updates);
        if !updates.is_empty() {
            sqlx::query(
                "INSERT INTO participant_updates (node, ledger_offset, update_id, record_time_us, body) \
                 SELECT $1::TEXT, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[])",
            )
            .bind(node)
            .bind(column(&updates, |u| u.0))
            .bind(column(&updates, |u| u.1.as_str()))
            .bind(column(&updates, |u| u.2))
            .bind(column(&updates, |u| u.3.as_str()))
            .execute(&mut *conn)
            .await?;
        }
        let completions = std::mem::take(&mut self.completions);
        if !completions.is_empty() {
            sqlx::query(
                "INSERT INTO participant_completions (node, completion_offset, user_id, body) \
                 SELECT $1::TEXT, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[])",
            )
            .bind(node)
            .bind(column(&completions, |c| c.0))
            .bind(column(&completions, |c| c.1.as_str()))
            .bind(column(&completions, |c| c.2.as_str()))
            .execute(&mut *conn)
            .await?;
        }
        let dedup: Vec<_> = std::mem::take(&mut self.dedup).into_iter().collect();
        if !dedup.is_empty() {
            sqlx::query(
                "INSERT INTO participant_dedup (node, change_id, update_id, ledger_offset, expires_at_us) \
                 SELECT $1::TEXT, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[]) \
                 ON CONFLICT (node, change_id) DO UPDATE SET update_id = excluded.update_id, \
                   ledger_offset = excluded.ledger_offset, expires_at_us = excluded.expires_at_us",
            )
            .bind(node)
            .bind(column(&dedup, |(change, _)| change.as_str()))
            .bind(column(&dedup, |(_, d)| d.0.as_str()))
            .bind(column(&dedup, |(_, d)| d.1))
            .bind(column(&dedup, |(_, d)| d.2))
            .execute(&mut *conn)
            .await?;
        }
        let pending = std::mem::take(&mut self.pending);
        let deleted: Vec<i64> = pending
            .iter()
            .filter(|(_, body)| body.is_none())
            .map(|(ts, _)| *ts)
            .collect();
        // Deletes go one key at a time: these small tables churn, and with `= ANY($2)` the
        // planner scans every (dead) index entry of the node instead of looking each key up.
        for ts in deleted {
            sqlx::query("DELETE FROM participant_pending WHERE node = $1 AND request_ts = $2")
                .bind(node)
                .bind(ts)
                .execute(&mut *conn)
                .await?;
        }
        let (put_ts, put_bodies): (Vec<i64>, Vec<Vec<u8>>) = pending
            .into_iter()
            .filter_map(|(ts, body)| Some((ts, body?)))
            .unzip();
        if !put_ts.is_empty() {
            sqlx::query(
                "INSERT INTO participant_pending (node, request_ts, body) \
                 SELECT $1::TEXT, * FROM UNNEST($2::BIGINT[], $3::BYTEA[]) \
                 ON CONFLICT (node, request_ts) DO UPDATE SET body = excluded.body",
            )
            .bind(node)
            .bind(put_ts)
            .bind(put_bodies)
            .execute(&mut *conn)
            .await?;
        }
        for change_id in std::mem::take(&mut self.in_flight_deleted) {
            sqlx::query("DELETE FROM participant_in_flight WHERE node = $1 AND change_id = $2")
                .bind(node)
                .bind(change_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

impl FencedTx {
    /// Postgres: the ledger writes gathered for `node`; see [`FencedTx::gathered`].
    async fn ledger(&mut self, node: &str) -> Result<Option<&mut LedgerWrites>, StoreError> {
        Ok(self.gathered(node).await?.map(|g| &mut g.ledger))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_contract(
        &mut self,
        node: &str,
        contract_id: &str,
        template_id: &str,
        contract: &str,
        stakeholders: &str,
        created_offset: i64,
        created_at_us: i64,
    ) -> Result<(), StoreError> {
        // Archived before it was inserted (a no-op then): the insert must come after.
        if self
            .ledger(node)
            .await?
            .is_some_and(|w| w.archived.iter().any(|(id, _)| id == contract_id))
        {
            self.flush().await?;
        }
        if let Some(w) = self.ledger(node).await? {
            w.contracts.push(NewContract {
                id: contract_id.to_string(),
                template: template_id.to_string(),
                contract: contract.to_string(),
                stakeholders: stakeholders.to_string(),
                created_offset,
                created_at_us,
            });
            return Ok(());
        }
        execute_tx!(
            self,
            "INSERT INTO participant_contracts \
               (node, contract_id, template_id, contract, stakeholders, created_offset, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (node, contract_id) DO NOTHING",
            node,
            contract_id,
            template_id,
            contract,
            stakeholders,
            created_offset,
            created_at_us
        );
        Ok(())
    }

    pub async fn archive_contract(
        &mut self,
        node: &str,
        contract_id: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            // The first archive of a contract is the one that counts, as in the UPDATE below.
            if !w.archived.iter().any(|(id, _)| id == contract_id) {
                w.archived.push((contract_id.to_string(), offset));
            }
            return Ok(());
        }
        execute_tx!(
            self,
            "UPDATE participant_contracts SET archived_offset = $3 \
             WHERE node = $1 AND contract_id = $2 AND archived_offset IS NULL",
            node,
            contract_id,
            offset
        );
        Ok(())
    }

    pub async fn insert_update(
        &mut self,
        node: &str,
        offset: i64,
        update_id: &str,
        record_time_us: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            w.updates.push((
                offset,
                update_id.to_string(),
                record_time_us,
                body.to_string(),
            ));
            return Ok(());
        }
        execute_tx!(
            self,
            "INSERT INTO participant_updates (node, ledger_offset, update_id, record_time_us, body) \
             VALUES ($1, $2, $3, $4, $5)",
            node,
            offset,
            update_id,
            record_time_us,
            body
        );
        Ok(())
    }

    pub async fn insert_completion(
        &mut self,
        node: &str,
        offset: i64,
        user_id: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            w.completions
                .push((offset, user_id.to_string(), body.to_string()));
            return Ok(());
        }
        execute_tx!(
            self,
            "INSERT INTO participant_completions (node, completion_offset, user_id, body) \
             VALUES ($1, $2, $3, $4)",
            node,
            offset,
            user_id,
            body
        );
        Ok(())
    }

    pub async fn put_dedup(
        &mut self,
        node: &str,
        change_id: &str,
        update_id: &str,
        offset: i64,
        expires_at_us: i64,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            w.dedup.insert(
                change_id.to_string(),
                (update_id.to_string(), offset, expires_at_us),
            );
            return Ok(());
        }
        execute_tx!(
            self,
            "INSERT INTO participant_dedup (node, change_id, update_id, ledger_offset, expires_at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node, change_id) DO UPDATE SET \
               update_id = excluded.update_id, ledger_offset = excluded.ledger_offset, \
               expires_at_us = excluded.expires_at_us",
            node,
            change_id,
            update_id,
            offset,
            expires_at_us
        );
        Ok(())
    }

    /// Records an in-flight submission; false if the change is already in flight.
    pub async fn insert_in_flight(
        &mut self,
        node: &str,
        change_id: &str,
        body: &str,
    ) -> Result<bool, StoreError> {
        let rows = execute_tx!(
            self,
            "INSERT INTO participant_in_flight (node, change_id, body) VALUES ($1, $2, $3) \
             ON CONFLICT (node, change_id) DO NOTHING",
            node,
            change_id,
            body
        );
        Ok(rows == 1)
    }

    pub async fn delete_in_flight(
        &mut self,
        node: &str,
        change_id: &str,
    ) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            w.in_flight_deleted.push(change_id.to_string());
            return Ok(());
        }
        execute_tx!(
            self,
            "DELETE FROM participant_in_flight WHERE node = $1 AND change_id = $2",
            node,
            change_id
        );
        Ok(())
    }

    pub async fn put_pending(
        &mut self,
        node: &str,
        request_ts: i64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            w.pending.insert(request_ts, Some(body.to_vec()));
            return Ok(());
        }
        execute_tx!(
            self,
            "INSERT INTO participant_pending (node, request_ts, body) VALUES ($1, $2, $3) \
             ON CONFLICT (node, request_ts) DO UPDATE SET body = excluded.body",
            node,
            request_ts,
            body
        );
        Ok(())
    }

    pub async fn delete_pending(&mut self, node: &str, request_ts: i64) -> Result<(), StoreError> {
        if let Some(w) = self.ledger(node).await? {
            w.pending.insert(request_ts, None);
            return Ok(());
        }
        execute_tx!(
            self,
            "DELETE FROM participant_pending WHERE node = $1 AND request_ts = $2",
            node,
            request_ts
        );
        Ok(())
    }

    /// Records a party hosted here; false if it already was.
    pub async fn insert_party(
        &mut self,
        node: &str,
        party: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let rows = execute_tx!(
            self,
            "INSERT INTO participant_parties (node, party, allocated_us) VALUES ($1, $2, $3) \
             ON CONFLICT (node, party) DO NOTHING",
            node,
            party,
            now_us
        );
        Ok(rows == 1)
    }

    /// Creates (`create`) or replaces a user; false if creating one that exists.
    pub async fn put_user(
        &mut self,
        node: &str,
        user_id: &str,
        primary_party: &str,
        rights: &str,
        create: bool,
    ) -> Result<bool, StoreError> {
        let rows = if create {
            execute_tx!(
                self,
                "INSERT INTO participant_users (node, user_id, primary_party, rights) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (node, user_id) DO NOTHING",
                node,
                user_id,
                primary_party,
                rights
            )
        } else {
            execute_tx!(
                self,
                "UPDATE participant_users SET primary_party = $3, rights = $4 \
                 WHERE node = $1 AND user_id = $2",
                node,
                user_id,
                primary_party,
                rights
            )
        };
        Ok(rows == 1)
    }

    /// Deletes a user; false if there was none.
    pub async fn delete_user(&mut self, node: &str, user_id: &str) -> Result<bool, StoreError> {
        let rows = execute_tx!(
            self,
            "DELETE FROM participant_users WHERE node = $1 AND user_id = $2",
            node,
            user_id
        );
        Ok(rows == 1)
    }

    /// Stores a package; false if it was stored already.
    pub async fn insert_package(
        &mut self,
        node: &str,
        package_id: &str,
        format: &str,
        content: &[u8],
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let rows = execute_tx!(
            self,
            "INSERT INTO participant_packages (node, package_id, format, content, uploaded_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (node, package_id) DO NOTHING",
            node,
            package_id,
            format,
            content,
            now_us
        );
        Ok(rows == 1)
    }

    pub async fn set_connection(
        &mut self,
        node: &str,
        synchronizer: &str,
        connected: bool,
    ) -> Result<(), StoreError> {
        execute_tx!(
            self,
            "INSERT INTO participant_connections (node, synchronizer, connected) VALUES ($1, $2, $3) \
             ON CONFLICT (node, synchronizer) DO UPDATE SET connected = excluded.connected",
            node,
            synchronizer,
            connected
        );
        Ok(())
    }
}
