//! Storage: the one place that issues SQL. A [`Store`] is a connection pool to the node's shared
//! database, SQLite (embedded default, WAL) or Postgres, with the migrations of
//! `migrations/<backend>/` applied at connect. Node kinds keep their own store modules beside
//! this one; all of them write through [`Store::begin_fenced`] so a deposed leader never writes.

mod error;
mod fenced;
pub mod mediator;
pub mod participant;
mod replication;
pub mod sequencer;
mod sql;
pub mod synchronizer;

pub use error::StoreError;
pub use fenced::{Fence, FencedTx};
pub use replication::{Acquire, Leader, Leadership, Member};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres {
        pool: PgPool,
        /// For the dedicated leadership connection, which must not come from the pool.
        options: Box<PgConnectOptions>,
    },
}

/// A node's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    url: String,
    /// SQLite: taken by every write transaction of this process on the file (see
    /// [`write_gate`]); `None` on Postgres.
    gate: Option<WriteGate>,
}

/// SQLite lets one transaction write at a time and makes the others wait in its busy handler,
/// which sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries: under contention a write waits many
/// times longer than the one before it takes. The writers of one process (every node of a
/// benchmark or test, the tasks of one node) therefore queue for the file on this lock, in
/// order and without sleeping; only other processes' writers meet the busy handler.
pub(crate) type WriteGate = std::sync::Arc<tokio::sync::Mutex<()>>;

/// The write gate of the SQLite file `path` (which exists: its canonical path is the key),
/// shared by every store of this process on it.
fn write_gate(path: &std::path::Path) -> WriteGate {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, Weak};
    type Gates = HashMap<std::path::PathBuf, Weak<tokio::sync::Mutex<()>>>;
    static GATES: OnceLock<Mutex<Gates>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut gates = GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    gates.retain(|_, gate| gate.strong_count() > 0);
    if let Some(gate) = gates.get(&key).and_then(Weak::upgrade) {
        return gate;
    }
    let gate = WriteGate::default();
    gates.insert(key, std::sync::Arc::downgrade(&gate));
    gate
}

/// SQL for "now" in milliseconds by the database's clock, so replicas on several hosts agree.
pub(crate) const SQLITE_NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
pub(crate) const PG_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

impl Store {
    /// Connects, creating a missing SQLite file, and applies the migrations. Fails with an error
    /// naming the (password-less) URL when the database cannot be reached within `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        let shown = redact(url);
        let connect = async {
            if url.starts_with("sqlite:") {
                connect_sqlite(url).await
            } else {
                connect_postgres(url, timeout).await
            }
        };
        let db = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| StoreError::Connect {
                url: shown.clone(),
                reason: format!("no answer within {} ms", timeout.as_millis()),
            })?
            .map_err(|e| StoreError::Connect {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        let gate = match &db {
            Db::Sqlite(pool) => Some(write_gate(pool.connect_options().get_filename())),
            Db::Postgres { .. } => None,
        };
        let store = Store {
            db,
            url: shown,
            gate,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The URL without its password, for logs and errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Waits for this process's turn to write to the SQLite file; `None` on Postgres. Take it
    /// before beginning the transaction and hold it until the commit or rollback.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        Some(self.gate.clone()?.lock_owned().await)
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Db::Postgres { pool, .. } => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // Replicas of one node start together and may migrate one SQLite file at once; the loser
        // of that race sees "table already exists" and succeeds on a retry, which re-reads the
        // applied migrations. Postgres serialises migrations with an advisory lock.
        let mut attempt = 0;
        loop {
            let result = match &self.db {
                Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
                Db::Postgres { pool, .. } => POSTGRES_MIGRATIONS.run(pool).await,
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migration raced with another replica; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => {
                    return Err(StoreError::Migrate {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// Closes the pool; in-flight queries finish first.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres { pool, .. } => pool.close().await,
        }
    }
}

async fn connect_sqlite(url: &str) -> Result<Db, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    if let Some(parent) = options.get_filename().parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    Ok(Db::Sqlite(pool))
}

/// A pooled connection idle for longer than this is pinged before it is handed out, as
/// HikariCP does after 500 ms: one that Postgres or the network dropped while it sat in the pool
/// is replaced instead of failing the caller's statement. A busy connection is not pinged, which
/// would be one more round trip per statement.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

async fn connect_postgres(url: &str, timeout: Duration) -> Result<Db, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("tandem");
    // Fail fast on a bad address or credentials instead of waiting for the pool's timeout.
    options.connect().await?.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.clone())
        .await?;
    Ok(Db::Postgres {
        pool,
        options: Box::new(options),
    })
}

/// A Postgres connection of its own for one task that issues its statements one after another
/// (the sequencer's writer and its fan-out reader). Beside the statement, a pooled one costs
/// sqlx's ping when the connection goes back to the pool; a dedicated connection costs just the
/// statement. It is opened at the first statement; a statement that fails (or is cancelled)
/// drops it, and the next one opens a new one. On SQLite the store's pool serves instead.
pub struct Dedicated {
    store: Store,
    conn: Option<sqlx::PgConnection>,
}

impl Dedicated {
    /// The connection, opened if there is none, taken out until [`Dedicated::put_back`]: a
    /// statement that never finishes leaves nothing half-read behind. `None` on SQLite.
    pub(crate) async fn take(&mut self) -> Result<Option<sqlx::PgConnection>, StoreError> {
        let Db::Postgres { pool, options } = &self.store.db else {
            return Ok(None);
        };
        if let Some(conn) = self.conn.take() {
            return Ok(Some(conn));
        }
        let timeout = pool.options().get_acquire_timeout();
        match tokio::time::timeout(timeout, options.connect()).await {
            Ok(connected) => Ok(Some(connected?)),
            // As a pooled statement that waits too long for a connection.
            Err(_) => Err(StoreError::Unavailable(format!(
                "no connection to {} within {} ms",
                self.store.url,
                timeout.as_millis()
            ))),
        }
    }

    pub(crate) fn put_back(&mut self, conn: sqlx::PgConnection) {
        self.conn = Some(conn);
    }
}

impl Store {
    /// A connection for one serial task; see [`Dedicated`].
    pub fn dedicated(&self) -> Dedicated {
        Dedicated {
            store: self.clone(),
            conn: None,
        }
    }

    /// Postgres only: terminates every session on `database` whose `application_name` is
    /// `application` and returns how many it terminated. Operators (and the failover tests) use it to cut a
    /// replica's lock connection, e.g. `tandem-leader participant1/0`.
    pub async fn terminate_sessions(
        &self,
        application: &str,
        database: &str,
    ) -> Result<usize, StoreError> {
        let Db::Postgres { pool, .. } = &self.db else {
            return Err(StoreError::Database(
                "terminating sessions needs Postgres".into(),
            ));
        };
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = $2",
        )
        .bind(application)
        .bind(database)
        .fetch_all(pool)
        .await?;
        Ok(terminated.into_iter().filter(|t| *t).count())
    }
}

/// Creates database `name` on the Postgres server at `server_url` unless it exists, and returns
/// the URL of the new database. Used by `tandem up --postgres` to give each node its own.
pub async fn ensure_postgres_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    let shown = redact(server_url);
    let fail = |reason: String| StoreError::Connect {
        url: shown.clone(),
        reason,
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(fail(format!("{name:?} is not a valid database name")));
    }
    let options = PgConnectOptions::from_str(server_url).map_err(|e| fail(e.to_string()))?;
    let mut conn = options.connect().await.map_err(|e| fail(e.to_string()))?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        // Identifiers cannot be bound; the name was checked to be alphanumeric above.
        let create = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = sqlx::query(&create).execute(&mut conn).await {
            // Another replica may have created it a moment ago.
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| code == "42P04" || code == "23505");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    conn.close().await?;
    Ok(options.database(name).to_url_lossy().to_string())
}

/// Removes the password from a database URL.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn stores_on_one_sqlite_file_share_its_write_gate() {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| format!("sqlite://{}/{name}", dir.path().display());
        let timeout = Duration::from_secs(5);
        let a = Store::connect(&url("a.db"), timeout).await.unwrap();
        // The same file by another spelling of its path.
        let name = dir.path().file_name().unwrap().to_string_lossy();
        let same = url(&format!("../{name}/a.db"));
        let a2 = Store::connect(&same, timeout).await.unwrap();
        let b = Store::connect(&url("b.db"), timeout).await.unwrap();
        let turn = a.write_turn().await;
        assert!(turn.is_some());
        // a2 waits for a's turn; b does not.
        assert!(b.write_turn().await.is_some());
        assert!(
            a2.write_turn().now_or_never().is_none(),
            "a second store on a.db wrote during a's turn"
        );
        drop(turn);
        assert!(a2.write_turn().now_or_never().is_some_and(|t| t.is_some()));
    }
}
