//! The reader head: how far events may be delivered, the lowest watermark of the online writers.
//! The tracker keeps every online writer's watermark and moves them on signals that carry the new
//! value, so a commit reaches readers without a query:
//! - this process's writer reports each commit in-process;
//! - on Postgres every writer's commit notifies `tandem_sequencer` with its index, session and
//!   watermark (notifications arrive in commit order);
//! - a writer coming or going, a signal about a session the tracker does not know, and a short
//!   poll re-read the writers. On SQLite the poll is how other processes' commits are seen.

use crate::store::sequencer::{parse_wrote_payload, HeadState, WRITERS_CHANGED};
use crate::store::Store;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// On SQLite other processes' commits are only seen by polling; the query is two index lookups.
const SQLITE_POLL: Duration = Duration::from_millis(2);
/// On Postgres notifications move the head; the poll only covers a lost listener connection.
const POSTGRES_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// Readers may deliver events with `ts <= safe_ts`: the lowest watermark of online writers.
    pub safe_ts: i64,
    /// The latest event written by any writer; a writer whose watermark is below it holds
    /// readers back and should raise its watermark.
    pub max_event_ts: i64,
}

/// What moves the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// A writer committed: its watermark is now `watermark`, its latest event `max_ts`.
    Wrote {
        index: u32,
        session: i64,
        watermark: i64,
        max_ts: i64,
    },
    /// A writer came online or went offline: re-read the writers.
    WritersChanged,
}

impl Signal {
    /// A Postgres notification payload; anything unknown asks for a re-read.
    fn from_payload(payload: &str) -> Signal {
        match parse_wrote_payload(payload) {
            Some((index, session, watermark, max_ts)) => Signal::Wrote {
                index,
                session,
                watermark,
                max_ts,
            },
            None => {
                if payload != WRITERS_CHANGED {
                    tracing::debug!(payload, "unknown sequencer notification");
                }
                Signal::WritersChanged
            }
        }
    }
}

/// The online writers as last read, moved forward by signals.
#[derive(Debug, Default)]
struct Tracked {
    /// index → (session, watermark).
    online: HashMap<u32, (i64, i64)>,
    max_event_ts: i64,
}

impl Tracked {
    /// Applies a signal; false if the writers must be re-read first.
    fn apply(&mut self, signal: Signal) -> bool {
        match signal {
            Signal::Wrote {
                index,
                session,
                watermark,
                max_ts,
            } => match self.online.get_mut(&index) {
                Some((known, w)) if *known == session => {
                    *w = (*w).max(watermark);
                    self.max_event_ts = self.max_event_ts.max(max_ts);
                    true
                }
                _ => false,
            },
            Signal::WritersChanged => false,
        }
    }

    /// Replaces the online set by what was read; a watermark never moves back within a session,
    /// as a signal applied before the read may be newer than the read.
    fn reset(&mut self, state: HeadState) {
        let online = state
            .online
            .into_iter()
            .map(|w| {
                let watermark = match self.online.get(&w.index) {
                    Some((session, known)) if *session == w.session => (*known).max(w.watermark_us),
                    _ => w.watermark_us,
                };
                (w.index, (w.session, watermark))
            })
            .collect();
        self.online = online;
        self.max_event_ts = self.max_event_ts.max(state.max_event_ts);
    }

    /// The head, if any writer is online.
    fn head(&self) -> Option<Head> {
        let safe_ts = self.online.values().map(|(_, w)| *w).min()?;
        Some(Head {
            safe_ts,
            max_event_ts: self.max_event_ts,
        })
    }
}

pub(super) async fn run(
    store: Store,
    head: watch::Sender<Head>,
    tx: mpsc::UnboundedSender<Signal>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    shutdown: CancellationToken,
) {
    let postgres = store.backend() == crate::store::Backend::Postgres;
    if postgres {
        tokio::spawn(listen(store.clone(), tx, shutdown.clone()));
    }
    let poll = if postgres { POSTGRES_POLL } else { SQLITE_POLL };
    let mut tracked = Tracked::default();
    let mut reread = true;
    let mut failures = 0u32;
    loop {
        if reread {
            match store.sequencer_head_state().await {
                Ok(state) => {
                    failures = 0;
                    tracked.reset(state);
                    reread = false;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "sequencer head: database unreachable");
                    }
                }
            }
        }
        if let Some(next) = tracked.head() {
            head.send_if_modified(|h| {
                // Never move backwards: a writer going offline can only raise the minimum, and
                // one rejoining starts at or above it.
                let new = Head {
                    safe_ts: next.safe_ts.max(h.safe_ts),
                    max_event_ts: next.max_event_ts.max(h.max_event_ts),
                };
                let changed = new != *h;
                *h = new;
                changed
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            signal = signals.recv() => {
                let Some(signal) = signal else { return };
                reread |= !tracked.apply(signal);
                // Apply everything already waiting before publishing once.
                while let Ok(signal) = signals.try_recv() {
                    reread |= !tracked.apply(signal);
                }
            }
            () = tokio::time::sleep(poll) => reread = true,
        }
    }
}

/// Postgres: turns every notification on the sequencer channel into a signal. Runs in a task of
/// its own because `PgListener::recv` must not be cancelled half-way through a message. A new
/// listener asks for a re-read, since notifications may have been missed while it was away.
async fn listen(store: Store, signals: mpsc::UnboundedSender<Signal>, shutdown: CancellationToken) {
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
        if signals.send(Signal::WritersChanged).is_err() {
            return;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(n) => if signals.send(Signal::from_payload(n.payload())).is_err() { return },
                    Err(e) => {
                        tracing::debug!(error = %e, "sequencer listener lost its connection");
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sequencer::{wrote_payload, OnlineWriter};

    fn state(writers: &[(u32, i64, i64)], max: i64) -> HeadState {
        HeadState {
            online: writers
                .iter()
                .map(|&(index, session, watermark_us)| OnlineWriter {
                    index,
                    session,
                    watermark_us,
                })
                .collect(),
            max_event_ts: max,
        }
    }

    #[test]
    fn head_is_the_lowest_online_watermark_and_follows_signals() {
        let mut t = Tracked::default();
        assert_eq!(t.head(), None);
        t.reset(state(&[(0, 7, 100), (1, 8, 90)], 100));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(90));
        let wrote = Signal::from_payload(&wrote_payload(1, 8, 120, 120));
        assert!(t.apply(wrote));
        assert_eq!(
            t.head(),
            Some(Head {
                safe_ts: 100,
                max_event_ts: 120
            })
        );
    }

    #[test]
    fn unknown_sessions_and_membership_changes_ask_for_a_reread() {
        let mut t = Tracked::default();
        t.reset(state(&[(0, 7, 100)], 100));
        // Index 0 rejoined under a new session; index 2 is not known at all.
        assert!(!t.apply(Signal::Wrote {
            index: 0,
            session: 9,
            watermark: 200,
            max_ts: 200
        }));
        assert!(!t.apply(Signal::Wrote {
            index: 2,
            session: 1,
            watermark: 200,
            max_ts: 200
        }));
        assert!(!t.apply(Signal::from_payload(WRITERS_CHANGED)));
        assert!(!t.apply(Signal::from_payload("garbage")));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(100));
    }

    #[test]
    fn a_reread_never_moves_a_watermark_back_within_a_session() {
        let mut t = Tracked::default();
        t.reset(state(&[(0, 7, 100)], 100));
        assert!(t.apply(Signal::Wrote {
            index: 0,
            session: 7,
            watermark: 150,
            max_ts: 150
        }));
        t.reset(state(&[(0, 7, 120)], 120));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(150));
        // A new session starts from what was read.
        t.reset(state(&[(0, 8, 130)], 130));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(130));
    }
}
