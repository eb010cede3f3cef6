//! The reader head: how far events may be delivered. Recomputed whenever a writer in this
//! process commits (in-process signal), whenever any writer commits on Postgres (`LISTEN`), and
//! on a short poll, which on SQLite is how other processes' commits are seen.

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// On SQLite other processes' commits are only seen by polling; the query is two index lookups.
const SQLITE_POLL: Duration = Duration::from_millis(2);
/// On Postgres notifications wake the tracker; the poll only covers a lost listener connection.
const POSTGRES_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// Readers may deliver events with `ts <= safe_ts`: the lowest watermark of online writers.
    pub safe_ts: i64,
    /// The latest event written by any writer; a writer whose watermark is below it holds
    /// readers back and should raise its watermark.
    pub max_event_ts: i64,
}

pub(super) async fn run(
    store: Store,
    head: watch::Sender<Head>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let postgres = store.backend() == crate::store::Backend::Postgres;
    if postgres {
        tokio::spawn(listen(store.clone(), wake.clone(), shutdown.clone()));
    }
    let poll = if postgres { POSTGRES_POLL } else { SQLITE_POLL };
    let mut failures = 0u32;
    loop {
        match store.sequencer_head().await {
            Ok((safe, max)) => {
                failures = 0;
                let next = Head {
                    safe_ts: safe.unwrap_or(0),
                    max_event_ts: max.unwrap_or(0),
                };
                head.send_if_modified(|h| {
                    // Never move backwards: a writer going offline can only raise the minimum,
                    // and one rejoining starts at or above it.
                    let new = Head {
                        safe_ts: next.safe_ts.max(h.safe_ts),
                        max_event_ts: next.max_event_ts.max(h.max_event_ts),
                    };
                    let changed = new != *h;
                    *h = new;
                    changed
                });
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "sequencer head: database unreachable");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Postgres: turns every `NOTIFY tandem_sequencer` into a wake-up of the tracker. Runs in a task
/// of its own because `PgListener::recv` must not be cancelled half-way through a message.
async fn listen(store: Store, wake: Arc<Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let mut listener = match store.sequencer_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "sequencer listener: cannot connect");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(POSTGRES_POLL) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(_) => wake.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "sequencer listener lost its connection");
                        break;
                    }
                },
            }
        }
    }
}
