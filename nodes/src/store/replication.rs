//! Leadership of an active-passive node (design.md §4), kept in the node's shared database.
//!
//! Both backends keep one `replica_leader` row per logical node: the holder, its epoch and a
//! lease by the database's clock. The epoch rises at every activation and fences every write
//! (see `fenced.rs`).
//! - SQLite: the lease is the lock. A standby takes over once the lease has expired, so a
//!   SIGKILLed leader is replaced within one lease.
//! - Postgres: a session advisory lock on a dedicated connection is the lock, so only one
//!   candidate at a time can claim the row, and a crashed leader's lock goes with its connection;
//!   the server's TCP keepalive bounds the wait when a host vanishes. A leader that holds the lock
//!   but stops renewing (stopped, hung) has its lock connection terminated by a standby once its
//!   lease ran out.
//!
//! On both backends a successor waits until the previous lease has run out (or was released):
//! a leader whose session was cut may not know it yet and keeps answering as active until its
//! own copy of the lease expires, so taking over earlier would make two actives.
//!
//! On SQLite the leadership writes (acquire, renew, release, heartbeat) queue for the process's
//! write turn with the node's other writes. Left to SQLite's sleeping busy handler, a renewal
//! lost every race for the lock to a stream of write transactions and a busy leader's lease
//! ran out (a renewal took 1.4 s in `a_busy_leader_renews_its_lease_in_time`).

use super::{Db, Fence, Store, StoreError, PG_NOW_MS, SQLITE_NOW_MS};
use sqlx::postgres::PgConnection;
use sqlx::{ConnectOptions, Connection, Row};

/// What an attempt to become leader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    Acquired {
        epoch: u64,
    },
    /// Another replica leads (or led, and its lease has not yet run out).
    Held {
        leader: Option<Leader>,
    },
}

/// The leader as recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub replica: u32,
    pub epoch: u64,
    /// Negative once the lease has expired.
    pub lease_remaining_ms: i64,
}

/// A replica's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub replica: u32,
    pub role: String,
    pub pid: u32,
    pub health_address: String,
    pub admin_address: String,
    pub last_seen_ms_ago: u64,
}

/// One replica's hold on leadership. On Postgres it owns the dedicated lock connection.
pub struct Leadership {
    store: Store,
    node: String,
    replica: u32,
    lock: Option<PgConnection>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The advisory lock key of a node: a stable FNV-1a hash of its name, kept positive so it can be
/// found again in `pg_locks` as `classid << 32 | objid`.
fn lock_key(node: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"tandem-leader:".iter().chain(node.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    to_i64(hash & 0x7fff_ffff_ffff_ffff)
}

impl Leadership {
    pub fn new(store: Store, node: &str, replica: u32) -> Self {
        Self {
            store,
            node: node.to_string(),
            replica,
            lock: None,
        }
    }

    fn fenced(&self, epoch: u64) -> StoreError {
        StoreError::Fenced {
            node: self.node.clone(),
            replica: self.replica,
            epoch,
        }
    }

    /// Drops the Postgres lock connection, which releases the advisory lock on the server. Used
    /// after any error on it: its state is unknown, so holding on would be unsafe.
    pub fn reset(&mut self) {
        self.lock = None;
    }

    /// Tries to become leader; on success returns the new epoch.
    pub async fn try_acquire(&mut self, lease_ms: u64) -> Result<Acquire, StoreError> {
        let result = match self.store.db().clone() {
            Db::Sqlite(pool) => {
                let sql = format!(
                    "INSERT INTO replica_leader \
                       (node, epoch, holder, holder_pid, lease_expires_at_ms, acquired_at_ms) \
                     VALUES (?1, 1, ?2, 0, {now} + ?3, {now}) \
                     ON CONFLICT (node) DO UPDATE SET epoch = replica_leader.epoch + 1, \
                       holder = excluded.holder, lease_expires_at_ms = excluded.lease_expires_at_ms, \
                       acquired_at_ms = excluded.acquired_at_ms \
                     WHERE replica_leader.lease_expires_at_ms < {now} \
                     RETURNING epoch",
                    now = SQLITE_NOW_MS
                );
                let turn = self.store.write_turn().await;
                let epoch: Option<i64> = sqlx::query_scalar(&sql)
                    .bind(&self.node)
                    .bind(i64::from(self.replica))
                    .bind(to_i64(lease_ms))
                    .fetch_optional(&pool)
                    .await?;
                drop(turn);
                match epoch {
                    Some(epoch) => Ok(Acquire::Acquired {
                        epoch: to_u64(epoch),
                    }),
                    None => Ok(Acquire::Held {
                        leader: self.store.leader(&self.node).await?,
                    }),
                }
            }
            Db::Postgres { .. } => self.try_acquire_postgres(lease_ms).await,
        };
        if result.is_err() {
            self.reset();
        }
        result
    }

    async fn lock_connection(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.lock.is_none() {
            let Db::Postgres { options, .. } = self.store.db() else {
                return Err(StoreError::Database("not a Postgres store".into()));
            };
            // Server-side keepalive: if this host vanishes, the server drops the session (and the
            // lock) after about 5 + 3 * 1 seconds instead of the kernel default of hours.
            let options = (**options)
                .clone()
                .application_name(&format!("tandem-leader {}/{}", self.node, self.replica))
                .options([
                    ("tcp_keepalives_idle", "5"),
                    ("tcp_keepalives_interval", "1"),
                    ("tcp_keepalives_count", "3"),
                ]);
            self.lock = Some(options.connect().await?);
        }
        self.lock
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("lock connection lost".into()))
    }

    async fn try_acquire_postgres(&mut self, lease_ms: u64) -> Result<Acquire, StoreError> {
        let key = lock_key(&self.node);
        let node = self.node.clone();
        let replica = i64::from(self.replica);
        let conn = self.lock_connection().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if locked {
            let sql = format!(
                "INSERT INTO replica_leader \
                   (node, epoch, holder, holder_pid, lease_expires_at_ms, acquired_at_ms) \
                 VALUES ($1, 1, $2, pg_backend_pid(), {now} + $3, {now}) \
                 ON CONFLICT (node) DO UPDATE SET epoch = replica_leader.epoch + 1, \
                   holder = excluded.holder, holder_pid = excluded.holder_pid, \
                   lease_expires_at_ms = excluded.lease_expires_at_ms, \
                   acquired_at_ms = excluded.acquired_at_ms \
                 WHERE replica_leader.lease_expires_at_ms < {now} \
                 RETURNING epoch",
                now = PG_NOW_MS
            );
            let epoch: Option<i64> = sqlx::query_scalar(&sql)
                .bind(&node)
                .bind(replica)
                .bind(to_i64(lease_ms))
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(epoch) = epoch {
                return Ok(Acquire::Acquired {
                    epoch: to_u64(epoch),
                });
            }
            // The previous leader's session is gone but its lease runs on: it may be alive and
            // not yet aware (a terminated connection is noticed at the next renewal), still
            // answering as active. Its successor waits the lease out.
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await?;
            return Ok(Acquire::Held {
                leader: self.store.leader(&node).await?,
            });
        }
        let leader = self.store.leader(&node).await?;
        if leader.as_ref().is_some_and(|l| l.lease_remaining_ms < 0) {
            self.terminate_hung_leader(key).await?;
        }
        Ok(Acquire::Held { leader })
    }

    /// The leader holds the lock but its lease ran out: it is stopped or hung. Terminating its
    /// lock connection releases the lock; its later writes fail their fence.
    async fn terminate_hung_leader(&mut self, key: i64) -> Result<(), StoreError> {
        let node = self.node.clone();
        let conn = self.lock_connection().await?;
        let sql = format!(
            "SELECT pg_terminate_backend(l.holder_pid::int) FROM replica_leader l \
             JOIN pg_locks k ON k.pid = l.holder_pid \
             WHERE l.node = $1 AND l.lease_expires_at_ms < {now} \
               AND k.locktype = 'advisory' AND k.granted AND k.objsubid = 1 \
               AND ((k.classid::bigint << 32) | k.objid::bigint) = $2",
            now = PG_NOW_MS
        );
        let terminated: Vec<bool> = sqlx::query_scalar(&sql)
            .bind(&node)
            .bind(key)
            .fetch_all(&mut *conn)
            .await?;
        if terminated.iter().any(|t| *t) {
            tracing::warn!(node = %node, "terminated the lock connection of a leader whose lease expired");
        }
        Ok(())
    }

    /// Extends the lease. Fails with [`StoreError::Fenced`] when another replica took over.
    pub async fn renew(&mut self, epoch: u64, lease_ms: u64) -> Result<(), StoreError> {
        let node = self.node.clone();
        let replica = i64::from(self.replica);
        let rows = match self.store.db().clone() {
            Db::Sqlite(pool) => {
                let sql = format!(
                    "UPDATE replica_leader SET lease_expires_at_ms = {SQLITE_NOW_MS} + ?1 \
                     WHERE node = ?2 AND holder = ?3 AND epoch = ?4"
                );
                let _turn = self.store.write_turn().await;
                sqlx::query(&sql)
                    .bind(to_i64(lease_ms))
                    .bind(&node)
                    .bind(replica)
                    .bind(to_i64(epoch))
                    .execute(&pool)
                    .await?
                    .rows_affected()
            }
            Db::Postgres { .. } => {
                // Renewing over the lock connection also proves that connection, and so the
                // lock, is still alive.
                let Some(conn) = self.lock.as_mut() else {
                    return Err(self.fenced(epoch));
                };
                let sql = format!(
                    "UPDATE replica_leader SET lease_expires_at_ms = {PG_NOW_MS} + $1 \
                     WHERE node = $2 AND holder = $3 AND epoch = $4"
                );
                let result = sqlx::query(&sql)
                    .bind(to_i64(lease_ms))
                    .bind(&node)
                    .bind(replica)
                    .bind(to_i64(epoch))
                    .execute(&mut *conn)
                    .await;
                match result {
                    Ok(r) => r.rows_affected(),
                    Err(e) => {
                        // The caller asks the leader row whether this means deposed or down.
                        self.reset();
                        return Err(e.into());
                    }
                }
            }
        };
        if rows == 1 {
            Ok(())
        } else {
            self.reset();
            Err(self.fenced(epoch))
        }
    }

    /// Gives leadership up: the lease ends now and, on Postgres, the advisory lock is released,
    /// so a standby can take over at its next attempt.
    pub async fn release(&mut self, epoch: u64) -> Result<(), StoreError> {
        let node = self.node.clone();
        let replica = i64::from(self.replica);
        match self.store.db().clone() {
            Db::Sqlite(pool) => {
                let _turn = self.store.write_turn().await;
                sqlx::query(
                    "UPDATE replica_leader SET lease_expires_at_ms = 0 \
                     WHERE node = ?1 AND holder = ?2 AND epoch = ?3",
                )
                .bind(&node)
                .bind(replica)
                .bind(to_i64(epoch))
                .execute(&pool)
                .await?;
            }
            Db::Postgres { .. } => {
                let key = lock_key(&node);
                let Some(conn) = self.lock.as_mut() else {
                    return Ok(());
                };
                let result = async {
                    sqlx::query(
                        "UPDATE replica_leader SET lease_expires_at_ms = 0 \
                         WHERE node = $1 AND holder = $2 AND epoch = $3",
                    )
                    .bind(&node)
                    .bind(replica)
                    .bind(to_i64(epoch))
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .execute(&mut *conn)
                        .await
                }
                .await;
                if let Err(e) = result {
                    self.reset();
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Closes the lock connection politely (on shutdown).
    pub async fn close(&mut self) {
        if let Some(conn) = self.lock.take() {
            let _ = conn.close().await;
        }
    }
}

impl Store {
    /// The current leader of `node`, if any replica ever led it.
    pub async fn leader(&self, node: &str) -> Result<Option<Leader>, StoreError> {
        let row = match self.db() {
            Db::Sqlite(pool) => {
                let sql = format!(
                    "SELECT holder, epoch, lease_expires_at_ms - {SQLITE_NOW_MS} AS remaining \
                     FROM replica_leader WHERE node = ?1"
                );
                sqlx::query(&sql)
                    .bind(node)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
            }
            Db::Postgres { pool, .. } => {
                let sql = format!(
                    "SELECT holder, epoch, lease_expires_at_ms - {PG_NOW_MS} AS remaining \
                     FROM replica_leader WHERE node = $1"
                );
                sqlx::query(&sql)
                    .bind(node)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
            }
        };
        Ok(row.map(|(holder, epoch, remaining)| Leader {
            replica: to_u32(holder),
            epoch: to_u64(epoch),
            lease_remaining_ms: remaining,
        }))
    }

    /// Records that a replica is alive, with its role and addresses.
    pub async fn heartbeat_member(&self, node: &str, member: &Member) -> Result<(), StoreError> {
        let (placeholders, now) = match self.db() {
            Db::Sqlite(_) => (["?1", "?2", "?3", "?4", "?5", "?6"], SQLITE_NOW_MS),
            Db::Postgres { .. } => (["$1", "$2", "$3", "$4", "$5", "$6"], PG_NOW_MS),
        };
        let [p1, p2, p3, p4, p5, p6] = placeholders;
        let sql = format!(
            "INSERT INTO replica_members \
               (node, replica, role, pid, health_address, admin_address, last_seen_at_ms) \
             VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6}, {now}) \
             ON CONFLICT (node, replica) DO UPDATE SET role = excluded.role, pid = excluded.pid, \
               health_address = excluded.health_address, admin_address = excluded.admin_address, \
               last_seen_at_ms = excluded.last_seen_at_ms"
        );
        macro_rules! bind_all {
            ($q:expr) => {
                $q.bind(node)
                    .bind(i64::from(member.replica))
                    .bind(&member.role)
                    .bind(i64::from(member.pid))
                    .bind(&member.health_address)
                    .bind(&member.admin_address)
            };
        }
        match self.db() {
            Db::Sqlite(pool) => {
                let _turn = self.write_turn().await;
                bind_all!(sqlx::query(&sql)).execute(pool).await?;
            }
            Db::Postgres { pool, .. } => {
                bind_all!(sqlx::query(&sql)).execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Every replica of `node` that ever sent a heartbeat, by replica index.
    pub async fn members(&self, node: &str) -> Result<Vec<Member>, StoreError> {
        let rows = match self.db() {
            Db::Sqlite(pool) => {
                let sql = format!(
                    "SELECT replica, role, pid, health_address, admin_address, \
                       {SQLITE_NOW_MS} - last_seen_at_ms FROM replica_members \
                     WHERE node = ?1 ORDER BY replica"
                );
                sqlx::query(&sql)
                    .bind(node)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(member_from_sqlite)
                    .collect()
            }
            Db::Postgres { pool, .. } => {
                let sql = format!(
                    "SELECT replica, role, pid, health_address, admin_address, \
                       {PG_NOW_MS} - last_seen_at_ms FROM replica_members \
                     WHERE node = $1 ORDER BY replica"
                );
                sqlx::query(&sql)
                    .bind(node)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(member_from_pg)
                    .collect()
            }
        };
        Ok(rows)
    }

    /// Appends to the leadership audit trail, fenced by the writer's epoch.
    pub async fn record_event(&self, fence: &Fence, event: &str) -> Result<(), StoreError> {
        let tx = self.begin_fenced(fence).await?;
        let epoch = to_i64(fence.epoch);
        let replica = i64::from(fence.replica);
        match tx {
            super::FencedTx::Sqlite(mut t, _turn) => {
                let sql = format!(
                    "INSERT INTO replica_events (node, replica, epoch, event, at_ms) \
                     VALUES (?1, ?2, ?3, ?4, {SQLITE_NOW_MS})"
                );
                sqlx::query(&sql)
                    .bind(&fence.node)
                    .bind(replica)
                    .bind(epoch)
                    .bind(event)
                    .execute(&mut *t)
                    .await?;
                t.commit().await?;
            }
            super::FencedTx::Postgres(mut t, _) => {
                let sql = format!(
                    "INSERT INTO replica_events (node, replica, epoch, event, at_ms) \
                     VALUES ($1, $2, $3, $4, {PG_NOW_MS})"
                );
                sqlx::query(&sql)
                    .bind(&fence.node)
                    .bind(replica)
                    .bind(epoch)
                    .bind(event)
                    .execute(&mut *t)
                    .await?;
                t.commit().await?;
            }
        }
        Ok(())
    }

    /// The audit trail of `node`, oldest first: (replica, epoch, event).
    pub async fn events(&self, node: &str) -> Result<Vec<(u32, u64, String)>, StoreError> {
        let rows: Vec<(i64, i64, String)> =
            match self.db() {
                Db::Sqlite(pool) => sqlx::query_as(
                    "SELECT replica, epoch, event FROM replica_events WHERE node = ?1 ORDER BY id",
                )
                .bind(node)
                .fetch_all(pool)
                .await?,
                Db::Postgres { pool, .. } => sqlx::query_as(
                    "SELECT replica, epoch, event FROM replica_events WHERE node = $1 ORDER BY id",
                )
                .bind(node)
                .fetch_all(pool)
                .await?,
            };
        Ok(rows
            .into_iter()
            .map(|(r, e, ev)| (to_u32(r), to_u64(e), ev))
            .collect())
    }
}

fn member_from_sqlite(r: &sqlx::sqlite::SqliteRow) -> Member {
    Member {
        replica: to_u32(r.get(0)),
        role: r.get(1),
        pid: to_u32(r.get(2)),
        health_address: r.get(3),
        admin_address: r.get(4),
        last_seen_ms_ago: to_u64(r.get(5)),
    }
}

fn member_from_pg(r: &sqlx::postgres::PgRow) -> Member {
    Member {
        replica: to_u32(r.get(0)),
        role: r.get(1),
        pid: to_u32(r.get(2)),
        health_address: r.get(3),
        admin_address: r.get(4),
        last_seen_ms_ago: to_u64(r.get(5)),
    }
}
