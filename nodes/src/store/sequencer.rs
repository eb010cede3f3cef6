//! The sequencer's store (design.md §5.1): the writers sharing the
//! database (index, online, watermark, session), the events in timestamp order and who may read
//! each. Every event write is fenced by the writer's session: a writer its peers marked offline
//! cannot write until it has recovered and rejoined.

use super::{Db, Dedicated, Store, StoreError};
use crate::topology::BROADCAST;

/// One message to sequence, as the writer hands it to the store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub ts: i64,
    pub sender: String,
    pub message_id: String,
    pub recipients: Vec<String>,
    pub payload: Vec<u8>,
    /// Set when the message is recorded only as an error for its sender.
    pub error: Option<(String, String)>,
}

/// A sequenced event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub ts: i64,
    pub sender: String,
    pub message_id: String,
    pub recipients: Vec<String>,
    pub payload: Vec<u8>,
    pub error: Option<(String, String)>,
}

impl From<NewEvent> for StoredEvent {
    fn from(e: NewEvent) -> Self {
        StoredEvent {
            ts: e.ts,
            sender: e.sender,
            message_id: e.message_id,
            recipients: e.recipients,
            payload: e.payload,
            error: e.error,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterRow {
    pub index: u32,
    pub online: bool,
    pub watermark_us: i64,
}

/// A writer that is online, as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineWriter {
    pub index: u32,
    pub session: i64,
    pub watermark_us: i64,
}

/// The online writers and the latest event timestamp, read in one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadState {
    pub online: Vec<OnlineWriter>,
    pub max_event_ts: i64,
}

/// The Postgres channel writers notify on every commit that moves readers' head. The payload is
/// [`wrote_payload`] after a write, or [`WRITERS_CHANGED`] after a writer came or went.
pub const SEQUENCER_CHANNEL: &str = "tandem_sequencer";
/// Notified when a writer came online or went offline: readers re-read the writers.
pub const WRITERS_CHANGED: &str = "writers";

/// A committed write as its notification announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub index: u32,
    pub session: i64,
    pub watermark_us: i64,
    /// The write's events lie in `min_ts..=max_ts`; both 0 for a write without events.
    pub min_ts: i64,
    pub max_ts: i64,
    /// Who reads its events (see [`StoredEvent::is_for`]; `*` for everyone); None if there were
    /// too many to name.
    pub readers: Option<Vec<String>>,
}

/// How many bytes of a notification may name readers: Postgres refuses payloads of 8000 bytes.
const READERS_BUDGET: usize = 7000;

/// The notification payload of a committed write:
/// `index session watermark min_ts max_ts reader…`, with `?` for the readers if they would not
/// fit.
pub fn wrote_payload(index: u32, session: i64, watermark_us: i64, events: &[NewEvent]) -> String {
    let (min_ts, max_ts) = ts_range(events);
    let mut payload = format!("{index} {session} {watermark_us} {min_ts} {max_ts}");
    let names: std::collections::BTreeSet<&str> = events.iter().flat_map(readers).collect();
    if names.iter().map(|r| r.len() + 1).sum::<usize>() > READERS_BUDGET {
        payload.push_str(" ?");
    } else {
        for name in names {
            payload.push(' ');
            payload.push_str(name);
        }
    }
    payload
}

/// The lowest and highest timestamp of `events`; both 0 if there are none.
pub fn ts_range(events: &[NewEvent]) -> (i64, i64) {
    let min = events.iter().map(|e| e.ts).min().unwrap_or(0);
    let max = events.iter().map(|e| e.ts).max().unwrap_or(0);
    (min, max)
}

/// Parses [`wrote_payload`]; None for anything else.
pub fn parse_wrote_payload(payload: &str) -> Option<Announced> {
    let mut parts = payload.split(' ');
    let mut number = || parts.next()?.parse::<i64>().ok();
    let (index, session, watermark_us, min_ts, max_ts) =
        (number()?, number()?, number()?, number()?, number()?);
    let rest: Vec<&str> = parts.collect();
    let readers = match rest.as_slice() {
        ["?"] => None,
        names if names.iter().all(|n| !n.is_empty() && *n != "?") => {
            Some(names.iter().map(|n| n.to_string()).collect())
        }
        _ => return None,
    };
    Some(Announced {
        index: u32::try_from(index).ok()?,
        session,
        watermark_us,
        min_ts,
        max_ts,
        readers,
    })
}

/// What became of each event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sequenced,
    /// The sender already used this message id.
    Duplicate,
}

/// The writer's session is no longer the online one for its index.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this sequencer's writer was marked offline")]
    Offline,
    #[error(transparent)]
    Store(#[from] StoreError),
}

macro_rules! q {
    ($db:expr, $sqlite:expr, $pg:expr) => {
        match $db {
            Db::Sqlite(_) => $sqlite,
            Db::Postgres { .. } => $pg,
        }
    };
}

impl Store {
    /// Broadcasts by `sender` (the topology manager) with `after < ts <= up_to`, oldest first:
    /// how a sequencer learns the topology it admits members by.
    pub async fn broadcasts(
        &self,
        sender: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Ok(super::sql::fetch!(
            self,
            fetch_all,
            (i64, Vec<u8>),
            "SELECT e.ts, e.payload FROM sequencer_deliveries d JOIN sequencer_events e ON e.ts = d.ts \
             WHERE d.member = '*' AND e.sender = $1 AND d.ts > $2 AND d.ts <= $3 \
               AND e.error_code IS NULL ORDER BY d.ts",
            sender,
            after,
            up_to
        ))
    }

    pub async fn writers(&self) -> Result<Vec<WriterRow>, StoreError> {
        let sql = "SELECT idx, online, watermark_us FROM sequencer_writers ORDER BY idx";
        let rows: Vec<(i64, bool, i64)> = match self.db() {
            Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Db::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(i, online, watermark_us)| WriterRow {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                online,
                watermark_us,
            })
            .collect())
    }

    /// Claims writer index `index` for `session` if it is not online, and brings it online with
    /// a watermark `lead_us` above the highest of any writer's (offline ones too: readers may
    /// have delivered up to a writer's watermark before it went offline, and it may run a few
    /// ms ahead of the clock), the latest event and `now_us`: this writer must never write below
    /// what readers delivered; the lead is the time other readers have to learn of it before
    /// their head could pass its first event. First deletes what the index wrote past its old
    /// watermark (crash recovery). Returns the new watermark, or None if the index is taken.
    pub async fn claim_writer(
        &self,
        index: u32,
        session: i64,
        now_us: i64,
        lead_us: i64,
    ) -> Result<Option<i64>, StoreError> {
        let idx = i64::from(index);
        macro_rules! claim {
            ($tx:expr, $p:literal, $notify:expr) => {{
                let mut tx = $tx;
                let online: Option<bool> = sqlx::query_scalar(concat!("SELECT online FROM sequencer_writers WHERE idx = ", $p, "1"))
                    .bind(idx).fetch_optional(&mut *tx).await?;
                if online == Some(true) {
                    return Ok(None);
                }
                // Events past the old watermark were never visible to readers: drop them.
                let past = concat!("SELECT ts FROM sequencer_events WHERE writer = ", $p, "1 AND ts > COALESCE((SELECT watermark_us FROM sequencer_writers WHERE idx = ", $p, "1), -1)");
                sqlx::query(&format!("DELETE FROM sequencer_deliveries WHERE ts IN ({past})"))
                    .bind(idx).execute(&mut *tx).await?;
                sqlx::query(&format!("DELETE FROM sequencer_events WHERE ts IN ({past})"))
                    .bind(idx).execute(&mut *tx).await?;
                let high: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(m) FROM (SELECT MAX(watermark_us) AS m FROM sequencer_writers \
                     UNION ALL SELECT MAX(ts) AS m FROM sequencer_events) AS highs")
                    .fetch_one(&mut *tx).await?;
                let watermark = high.unwrap_or(0).max(now_us) + lead_us;
                sqlx::query(concat!("INSERT INTO sequencer_writers (idx, online, watermark_us, session) VALUES (", $p, "1, TRUE, ", $p, "2, ", $p, "3) \
                     ON CONFLICT (idx) DO UPDATE SET online = TRUE, watermark_us = excluded.watermark_us, session = excluded.session"))
                    .bind(idx).bind(watermark).bind(session).execute(&mut *tx).await?;
                if $notify {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(SEQUENCER_CHANNEL).bind(WRITERS_CHANGED).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(Some(watermark))
            }};
        }
        match self.db() {
            Db::Sqlite(p) => claim!(p.begin().await?, "?", false),
            Db::Postgres { pool, .. } => claim!(pool.begin().await?, "$", true),
        }
    }

    /// Takes a writer offline (on shutdown), if `session` still holds it.
    pub async fn release_writer(&self, index: u32, session: i64) -> Result<(), StoreError> {
        let sql = q!(
            self.db(),
            "UPDATE sequencer_writers SET online = FALSE WHERE idx = ?1 AND session = ?2",
            "WITH released AS (UPDATE sequencer_writers SET online = FALSE WHERE idx = $1 AND session = $2 RETURNING idx) \
             SELECT pg_notify($3, $4) FROM released"
        );
        match self.db() {
            Db::Sqlite(p) => sqlx::query(sql)
                .bind(i64::from(index))
                .bind(session)
                .execute(p)
                .await?
                .rows_affected(),
            Db::Postgres { pool, .. } => sqlx::query(sql)
                .bind(i64::from(index))
                .bind(session)
                .bind(SEQUENCER_CHANNEL)
                .bind(WRITERS_CHANGED)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(())
    }

    /// Marks offline every other writer whose watermark is below `stale_before_us`; returns their
    /// indexes.
    pub async fn mark_stale_writers_offline(
        &self,
        own: u32,
        stale_before_us: i64,
    ) -> Result<Vec<u32>, StoreError> {
        let sql = q!(self.db(),
            "UPDATE sequencer_writers SET online = FALSE WHERE online AND idx <> ?1 AND watermark_us < ?2 RETURNING idx",
            "WITH marked AS (UPDATE sequencer_writers SET online = FALSE WHERE online AND idx <> $1 AND watermark_us < $2 RETURNING idx) \
             SELECT idx FROM marked, LATERAL (SELECT pg_notify($3, $4)) AS n");
        let rows: Vec<i64> = match self.db() {
            Db::Sqlite(p) => {
                sqlx::query_scalar(sql)
                    .bind(i64::from(own))
                    .bind(stale_before_us)
                    .fetch_all(p)
                    .await?
            }
            Db::Postgres { pool, .. } => {
                sqlx::query_scalar(sql)
                    .bind(i64::from(own))
                    .bind(stale_before_us)
                    .bind(SEQUENCER_CHANNEL)
                    .bind(WRITERS_CHANGED)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|i| u32::try_from(i).ok())
            .collect())
    }

    /// Writes a batch of events and raises the writer's watermark to `watermark_us`, in one
    /// transaction fenced by `session`. On Postgres that is one statement whose commit notifies
    /// [`SEQUENCER_CHANNEL`] with [`wrote_payload`]; on SQLite one statement per table.
    pub async fn write_events(
        &self,
        index: u32,
        session: i64,
        watermark_us: i64,
        events: &[NewEvent],
    ) -> Result<Vec<Outcome>, WriteError> {
        let inserted = match self.db() {
            Db::Sqlite(pool) => {
                let _turn = self.write_turn().await;
                write_sqlite(pool, index, session, watermark_us, events).await?
            }
            Db::Postgres { pool, .. } => {
                write_postgres(pool, index, session, watermark_us, events).await?
            }
        };
        Ok(outcomes(events, &inserted))
    }

    /// What readers compute their head from: every online writer's index, session and
    /// watermark, and the latest event timestamp.
    pub async fn sequencer_head_state(&self) -> Result<HeadState, StoreError> {
        // The latest event, then one writer per row (all NULL when none is online).
        type Row4 = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let rows = super::sql::fetch!(
            self,
            fetch_all,
            Row4,
            "SELECT m.max_ts, w.idx, w.session, w.watermark_us \
             FROM (SELECT MAX(ts) AS max_ts FROM sequencer_events) AS m \
             LEFT JOIN sequencer_writers AS w ON w.online"
        );
        let mut state = HeadState::default();
        for (max_ts, idx, session, watermark) in rows {
            state.max_event_ts = max_ts.unwrap_or(0);
            if let (Some(idx), Some(session), Some(watermark_us)) = (idx, session, watermark) {
                state.online.push(OnlineWriter {
                    index: u32::try_from(idx).unwrap_or(u32::MAX),
                    session,
                    watermark_us,
                });
            }
        }
        Ok(state)
    }

    /// Events `member` may read with `after < ts <= up_to`, oldest first, at most `limit`.
    pub async fn events_for(
        &self,
        member: &str,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = super::sql::fetch!(
            self,
            fetch_all,
            EventRow,
            "SELECT e.ts, e.sender, e.message_id, e.recipients, e.payload, e.error_code, e.error_message \
             FROM sequencer_deliveries d JOIN sequencer_events e ON e.ts = d.ts \
             WHERE d.member IN ($1, '*') AND d.ts > $2 AND d.ts <= $3 ORDER BY d.ts LIMIT $4",
            member,
            after,
            up_to,
            limit
        );
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// Every event with `after < ts <= up_to`, whoever reads it, oldest first, at most `limit`:
    /// what a sequencer reads once and fans out to the subscriptions it serves.
    pub async fn events_between(
        &self,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = super::sql::fetch!(
            self,
            fetch_all,
            EventRow,
            EVENTS_BETWEEN,
            after,
            up_to,
            limit
        );
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// The timestamp of `member`'s last event at or before `ts`, 0 if none.
    pub async fn previous_event_of(&self, member: &str, ts: i64) -> Result<i64, StoreError> {
        let sql = q!(
            self.db(),
            "SELECT MAX(ts) FROM sequencer_deliveries WHERE member IN (?1, '*') AND ts <= ?2",
            "SELECT MAX(ts) FROM sequencer_deliveries WHERE member IN ($1, '*') AND ts <= $2"
        );
        let prev: Option<i64> = match self.db() {
            Db::Sqlite(p) => {
                sqlx::query_scalar(sql)
                    .bind(member)
                    .bind(ts)
                    .fetch_one(p)
                    .await?
            }
            Db::Postgres { pool, .. } => {
                sqlx::query_scalar(sql)
                    .bind(member)
                    .bind(ts)
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(prev.unwrap_or(0))
    }

    pub async fn acknowledge(&self, member: &str, ts: i64) -> Result<(), StoreError> {
        let sql = q!(self.db(),
            "INSERT INTO sequencer_acknowledgements (member, ts) VALUES (?1, ?2) ON CONFLICT (member) DO UPDATE SET ts = MAX(sequencer_acknowledgements.ts, excluded.ts)",
            "INSERT INTO sequencer_acknowledgements (member, ts) VALUES ($1, $2) ON CONFLICT (member) DO UPDATE SET ts = GREATEST(sequencer_acknowledgements.ts, excluded.ts)");
        match self.db() {
            Db::Sqlite(p) => sqlx::query(sql)
                .bind(member)
                .bind(ts)
                .execute(p)
                .await?
                .rows_affected(),
            Db::Postgres { pool, .. } => sqlx::query(sql)
                .bind(member)
                .bind(ts)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(())
    }

    /// Postgres: a listener on the channel writers notify after each commit. `None` on SQLite,
    /// whose readers poll. Its connection comes from a pool of its own: a listener dropped after
    /// its session was ended hands its connection back to its pool, dead, and the shared pool
    /// would give it to the next statement.
    pub async fn sequencer_listener(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match self.db() {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres { options, pool } => {
                let own = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(pool.options().get_acquire_timeout())
                    .connect_lazy_with((**options).clone());
                let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
                // The caller replaces a listener that lost its connection.
                listener.eager_reconnect(false);
                listener.listen(SEQUENCER_CHANNEL).await?;
                Ok(Some(listener))
            }
        }
    }
}

/// Every event in a timestamp range, oldest first, whoever reads it.
const EVENTS_BETWEEN: &str =
    "SELECT ts, sender, message_id, recipients, payload, error_code, error_message \
     FROM sequencer_events WHERE ts > $1 AND ts <= $2 ORDER BY ts LIMIT $3";

/// Each event's outcome: sequenced if its timestamp was inserted, else a duplicate message id.
fn outcomes(events: &[NewEvent], inserted: &std::collections::HashSet<i64>) -> Vec<Outcome> {
    events
        .iter()
        .map(|e| {
            if inserted.contains(&e.ts) {
                Outcome::Sequenced
            } else {
                Outcome::Duplicate
            }
        })
        .collect()
}

/// The writer's and the fan-out reader's statements, each on a connection of its own.
impl Dedicated {
    /// [`Store::write_events`] on this connection.
    pub async fn write_events(
        &mut self,
        index: u32,
        session: i64,
        watermark_us: i64,
        events: &[NewEvent],
    ) -> Result<Vec<Outcome>, WriteError> {
        let Some(mut conn) = self.take().await? else {
            return self
                .store
                .write_events(index, session, watermark_us, events)
                .await;
        };
        let inserted = write_postgres(&mut conn, index, session, watermark_us, events).await?;
        self.put_back(conn);
        Ok(outcomes(events, &inserted))
    }

    /// [`Store::events_between`] on this connection.
    pub async fn events_between(
        &mut self,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let Some(mut conn) = self.take().await? else {
            return self.store.events_between(after, up_to, limit).await;
        };
        let rows: Vec<EventRow> = sqlx::query_as(EVENTS_BETWEEN)
            .bind(after)
            .bind(up_to)
            .bind(limit)
            .fetch_all(&mut conn)
            .await?;
        self.put_back(conn);
        Ok(rows.into_iter().map(stored_event).collect())
    }
}

/// Who reads an event: its recipients and its sender; a broadcast is read by everyone through its
/// one `*` row.
fn readers(e: &NewEvent) -> std::collections::BTreeSet<&str> {
    let sender = std::iter::once(e.sender.as_str());
    if e.error.is_some() {
        sender.collect()
    } else if e.recipients.iter().any(|r| r == BROADCAST) {
        std::iter::once(BROADCAST).collect()
    } else {
        e.recipients
            .iter()
            .map(String::as_str)
            .chain(sender)
            .collect()
    }
}

impl StoredEvent {
    /// Whether the event names `member` among its recipients, directly or by broadcast.
    pub fn addressed_to(&self, member: &str) -> bool {
        self.recipients
            .iter()
            .any(|r| r == member || r == BROADCAST)
    }

    /// Whether `member` reads this event: as [`readers`] decided when it was written.
    pub fn is_for(&self, member: &str) -> bool {
        self.sender == member || (self.error.is_none() && self.addressed_to(member))
    }
}

/// An event as its columns are read: `ts, sender, message_id, recipients, payload,
/// error_code, error_message`.
type EventRow = (
    i64,
    String,
    String,
    String,
    Vec<u8>,
    Option<String>,
    Option<String>,
);

fn stored_event(
    (ts, sender, message_id, recipients, payload, code, message): EventRow,
) -> StoredEvent {
    StoredEvent {
        ts,
        sender,
        message_id,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        payload,
        error: code.map(|c| (c, message.unwrap_or_default())),
    }
}

fn recipients_json(e: &NewEvent) -> String {
    serde_json::to_string(&e.recipients).unwrap_or_else(|_| "[]".into())
}

/// Rows per multi-row INSERT on SQLite, well under its limit of bound parameters.
const SQLITE_ROWS: usize = 100;

async fn write_sqlite(
    pool: &sqlx::SqlitePool,
    index: u32,
    session: i64,
    watermark_us: i64,
    events: &[NewEvent],
) -> Result<std::collections::HashSet<i64>, WriteError> {
    let idx = i64::from(index);
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let fenced = sqlx::query(
        "UPDATE sequencer_writers SET watermark_us = ?1 WHERE idx = ?2 AND session = ?3 AND online",
    )
    .bind(watermark_us)
    .bind(idx)
    .bind(session)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::from)?;
    if fenced.rows_affected() != 1 {
        return Err(WriteError::Offline);
    }
    let mut inserted = std::collections::HashSet::new();
    for chunk in events.chunks(SQLITE_ROWS) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO sequencer_events (ts, writer, sender, message_id, recipients, payload, error_code, error_message) \
             VALUES {values} ON CONFLICT (sender, message_id) DO NOTHING RETURNING ts"
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for e in chunk {
            let (code, message) = e.error.clone().unzip();
            q = q
                .bind(e.ts)
                .bind(idx)
                .bind(&e.sender)
                .bind(&e.message_id)
                .bind(recipients_json(e))
                .bind(&e.payload)
                .bind(code)
                .bind(message);
        }
        inserted.extend(q.fetch_all(&mut *tx).await.map_err(StoreError::from)?);
    }
    let deliveries: Vec<(&str, i64)> = events
        .iter()
        .filter(|e| inserted.contains(&e.ts))
        .flat_map(|e| readers(e).into_iter().map(move |m| (m, e.ts)))
        .collect();
    for chunk in deliveries.chunks(SQLITE_ROWS * 4) {
        let values = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!("INSERT INTO sequencer_deliveries (member, ts) VALUES {values}");
        let mut q = sqlx::query(&sql);
        for (member, ts) in chunk {
            q = q.bind(*member).bind(*ts);
        }
        q.execute(&mut *tx).await.map_err(StoreError::from)?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(inserted)
}

/// One statement, so one round trip: the fence, both inserts and the notification. Events and
/// deliveries are written only if the fence matched; deliveries only for events not refused as
/// duplicates.
async fn write_postgres<'e>(
    db: impl sqlx::PgExecutor<'e>,
    index: u32,
    session: i64,
    watermark_us: i64,
    events: &[NewEvent],
) -> Result<std::collections::HashSet<i64>, WriteError> {
    const SQL: &str = "WITH fence AS ( \
           UPDATE sequencer_writers SET watermark_us = $9 WHERE idx = $2 AND session = $10 AND online RETURNING idx \
         ), ins AS ( \
           INSERT INTO sequencer_events (ts, writer, sender, message_id, recipients, payload, error_code, error_message) \
           SELECT t.ts, $2, t.sender, t.message_id, t.recipients, t.payload, t.error_code, t.error_message \
           FROM UNNEST($1::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::text[]) \
             AS t(ts, sender, message_id, recipients, payload, error_code, error_message) \
           WHERE EXISTS (SELECT 1 FROM fence) \
           ON CONFLICT (sender, message_id) DO NOTHING RETURNING ts \
         ), deliveries AS ( \
           INSERT INTO sequencer_deliveries (member, ts) \
           SELECT d.member, d.ts FROM UNNEST($11::text[], $12::bigint[]) AS d(member, ts) \
           WHERE d.ts IN (SELECT ts FROM ins) \
         ) \
         SELECT EXISTS (SELECT 1 FROM fence), ARRAY(SELECT ts FROM ins), \
           (SELECT COUNT(*) FROM (SELECT pg_notify($13, $14) WHERE EXISTS (SELECT 1 FROM fence)) AS n)";
    let ts: Vec<i64> = events.iter().map(|e| e.ts).collect();
    let senders: Vec<&str> = events.iter().map(|e| e.sender.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    let recipients: Vec<String> = events.iter().map(recipients_json).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let codes: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.error.as_ref().map(|(c, _)| c.as_str()))
        .collect();
    let messages: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.error.as_ref().map(|(_, m)| m.as_str()))
        .collect();
    let (members, stamps): (Vec<&str>, Vec<i64>) = events
        .iter()
        .flat_map(|e| readers(e).into_iter().map(move |m| (m, e.ts)))
        .unzip();
    let (fenced, inserted, _notified): (bool, Vec<i64>, i64) = sqlx::query_as(SQL)
        .bind(&ts)
        .bind(i64::from(index))
        .bind(&senders)
        .bind(&ids)
        .bind(&recipients)
        .bind(&payloads)
        .bind(&codes)
        .bind(&messages)
        .bind(watermark_us)
        .bind(session)
        .bind(&members)
        .bind(&stamps)
        .bind(SEQUENCER_CHANNEL)
        .bind(wrote_payload(index, session, watermark_us, events))
        .fetch_one(db)
        .await
        .map_err(StoreError::from)?;
    if !fenced {
        return Err(WriteError::Offline);
    }
    Ok(inserted.into_iter().collect())
}
