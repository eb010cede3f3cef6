//! Fenced write transactions (design.md §4): every write of an active replica checks, inside its
//! own transaction, that the replica's leadership epoch is still the current one. A replica that
//! was stopped, partitioned or simply slow while another took over can therefore never write.

use super::mediator::RequestWrites;
use super::participant::LedgerWrites;
use super::{Db, StoreError};
use sqlx::{Postgres, Sqlite, Transaction};
use tokio::sync::OwnedMutexGuard;

/// The identity a write is fenced by: which replica, holding which epoch, of which node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node: String,
    pub replica: u32,
    pub epoch: u64,
}

impl Fence {
    /// The error of a write this fence no longer admits.
    pub(crate) fn refused(&self) -> StoreError {
        StoreError::Fenced {
            node: self.node.clone(),
            replica: self.replica,
            epoch: self.epoch,
        }
    }

    /// The epoch as bound to a `BIGINT` parameter.
    pub(crate) fn epoch_param(&self) -> i64 {
        i64::try_from(self.epoch).unwrap_or(i64::MAX)
    }
}

/// The Postgres fence check (`$1` node, `$2` replica, `$3` epoch): a row only while the writer
/// holds the epoch, locked `FOR KEY SHARE` so a takeover (which raises the epoch, a key column)
/// waits for the writer's commit while a lease renewal does not. A macro so statements can
/// embed it with `concat!`.
macro_rules! pg_fence_check {
    () => {
        "SELECT epoch FROM replica_leader \
         WHERE node = $1 AND holder = $2 AND epoch = $3 FOR KEY SHARE"
    };
}
pub(crate) use pg_fence_check;

/// An open write transaction whose fence was checked. Store modules run their statements on it
/// and commit; dropping it rolls back.
pub enum FencedTx {
    /// With this process's turn to write the file, held until the transaction ends.
    Sqlite(Transaction<'static, Sqlite>, Option<OwnedMutexGuard<()>>),
    /// With the writes gathered since the last statement.
    Postgres(Transaction<'static, Postgres>, Box<Gathered>),
}

/// Writes of a fenced Postgres transaction that are gathered and sent as one statement per
/// table and kind (see [`LedgerWrites`] and [`RequestWrites`]): a batch of sequenced events then
/// costs a handful of round trips instead of several per event. They are sent before any other
/// statement of the transaction and before its commit, so every statement sees them.
#[derive(Default)]
pub struct Gathered {
    /// The node the writes are for.
    node: String,
    pub(crate) ledger: LedgerWrites,
    pub(crate) requests: RequestWrites,
}

impl Gathered {
    pub(crate) async fn flush(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
    ) -> Result<(), sqlx::Error> {
        self.ledger.flush(tx, &self.node).await?;
        self.requests.flush(tx, &self.node).await
    }
}

/// A column of `rows` as an array to bind to an `UNNEST` parameter.
pub(crate) fn column<'a, T, U>(rows: &'a [T], field: impl FnMut(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

impl FencedTx {
    /// Sends the writes gathered so far (Postgres), as the next statement would: for a caller
    /// that must have them in the database, holding their row locks, before it acts outside
    /// the transaction.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if let FencedTx::Postgres(tx, writes) = self {
            writes.flush(tx).await?;
        }
        Ok(())
    }

    /// Postgres: the writes gathered for `node`, those for another node sent first. SQLite:
    /// `None`, and the caller runs its statement at once.
    pub(crate) async fn gathered(
        &mut self,
        node: &str,
    ) -> Result<Option<&mut Gathered>, StoreError> {
        let FencedTx::Postgres(tx, gathered) = self else {
            return Ok(None);
        };
        if gathered.node != node {
            gathered.flush(tx).await?;
            gathered.node = node.to_string();
        }
        Ok(Some(gathered))
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            FencedTx::Sqlite(tx, _turn) => tx.commit().await?,
            FencedTx::Postgres(mut tx, mut writes) => {
                writes.flush(&mut tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

impl super::Store {
    /// Opens a write transaction and checks the fence inside it.
    ///
    /// SQLite: a no-op UPDATE of the leader row takes the database's write lock first, so no
    /// takeover can commit between the check and this transaction's commit. Postgres: `FOR KEY
    /// SHARE` on the leader row makes a takeover (which raises `epoch`, a key column through the
    /// unique index on `(node, epoch)`) wait until this commits, and every later transaction sees
    /// the new epoch; a lease renewal changes no key column and does not wait.
    pub async fn begin_fenced(&self, fence: &Fence) -> Result<FencedTx, StoreError> {
        let epoch = fence.epoch_param();
        match self.db() {
            Db::Sqlite(pool) => {
                let turn = self.write_turn().await;
                let mut tx = pool.begin().await?;
                let rows = sqlx::query(
                    "UPDATE replica_leader SET epoch = epoch \
                     WHERE node = ?1 AND holder = ?2 AND epoch = ?3",
                )
                .bind(&fence.node)
                .bind(i64::from(fence.replica))
                .bind(epoch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if rows != 1 {
                    return Err(fence.refused());
                }
                Ok(FencedTx::Sqlite(tx, turn))
            }
            Db::Postgres { pool, .. } => {
                let mut tx = pool.begin().await?;
                let row: Option<i64> = sqlx::query_scalar(pg_fence_check!())
                    .bind(&fence.node)
                    .bind(i64::from(fence.replica))
                    .bind(epoch)
                    .fetch_optional(&mut *tx)
                    .await?;
                if row.is_none() {
                    return Err(fence.refused());
                }
                Ok(FencedTx::Postgres(tx, Box::default()))
            }
        }
    }
}
