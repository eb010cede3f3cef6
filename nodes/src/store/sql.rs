//! Statement helpers for store modules whose SQL is the same on both backends (`$N`
//! placeholders, which SQLite accepts too): one statement, run on the pool or inside a fenced
//! transaction, without writing every call twice.

/// Executes a statement on the store's pool (on SQLite in this process's write turn); evaluates
/// to the rows affected.
macro_rules! execute {
    ($store:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $store.db() {
            $crate::store::Db::Sqlite(p) => {
                let _turn = $store.write_turn().await;
                sqlx::query($sql)$(.bind($arg))*.execute(p).await?.rows_affected()
            }
            $crate::store::Db::Postgres { pool, .. } => {
                sqlx::query($sql)$(.bind($arg))*.execute(pool).await?.rows_affected()
            }
        }
    };
}

/// Executes a statement inside a fenced transaction, after the writes gathered so far;
/// evaluates to the rows affected.
macro_rules! execute_tx {
    ($tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $tx {
            $crate::store::FencedTx::Sqlite(tx, _) => {
                sqlx::query($sql)$(.bind($arg))*.execute(&mut **tx).await?.rows_affected()
            }
            $crate::store::FencedTx::Postgres(tx, writes) => {
                // Gathered writes go first, so every statement sees them.
                writes.flush(tx).await?;
                sqlx::query($sql)$(.bind($arg))*.execute(&mut **tx).await?.rows_affected()
            }
        }
    };
}

/// Fetches rows as tuples of type `$ty` from the store's pool, with `$method` one of
/// `fetch_all`, `fetch_optional`, `fetch_one`.
macro_rules! fetch {
    ($store:expr, $method:ident, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $store.db() {
            $crate::store::Db::Sqlite(p) => {
                sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.$method(p).await?
            }
            $crate::store::Db::Postgres { pool, .. } => {
                sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.$method(pool).await?
            }
        }
    };
}

pub(crate) use {execute, execute_tx, fetch};
