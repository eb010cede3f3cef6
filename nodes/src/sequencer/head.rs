//! The reader head: how far events may be delivered, the lowest watermark of the online writers.
//! The tracker keeps every online writer's watermark and moves them on signals that carry the new
//! value, so a commit reaches readers without a query:
//! - this process's writer reports each commit in-process, with the events it inserted;
//! - on Postgres every writer's commit notifies `tandem_sequencer` with its index, session,
//!   watermark, the range of its events and who reads them (notifications arrive in commit
//!   order);
//! - a writer coming or going, a signal about a session the tracker does not know, and a short
//!   poll re-read the writers. On SQLite the poll is how other processes' commits are seen.
//!
//! Each commit is recorded in the journal before the head moves past it, and a re-read marks
//! everything up to the latest event it saw as unannounced, so the fan-out knows what it may
//! skip.

use super::journal::{Journal, Write, Written};
use crate::store::sequencer::{parse_wrote_payload, HeadState, WRITERS_CHANGED};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// On SQLite other processes' commits are only seen by polling; the query is two index lookups.
const SQLITE_POLL: Duration = Duration::from_millis(2);
/// On Postgres notifications move the head; the poll re-reads the writers whatever arrives, in
/// case the listener's connection was lost unnoticed or a writer's coming was missed.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signal {
    /// A writer committed: its watermark is now `watermark`, its events lie in
    /// `min_ts..=max_ts` (both 0 if it wrote none).
    Wrote {
        index: u32,
        session: i64,
        watermark: i64,
        min_ts: i64,
        max_ts: i64,
        written: Written,
    },
    /// This process's write failed and may yet have committed events up to this timestamp.
    Unsure(i64),
    /// This process's writer came online under this index and session: its commits are
    /// signalled in-process, and their notifications are ignored.
    Joined { index: u32, session: i64 },
    /// A writer came online or went offline, or notifications may have been missed: re-read
    /// the writers.
    WritersChanged,
}

impl Signal {
    /// A Postgres notification payload; anything unknown asks for a re-read.
    fn from_payload(payload: &str) -> Signal {
        match parse_wrote_payload(payload) {
            Some(a) => Signal::Wrote {
                index: a.index,
                session: a.session,
                watermark: a.watermark_us,
                min_ts: a.min_ts,
                max_ts: a.max_ts,
                written: a.readers.map_or(Written::Unknown, Written::ReadBy),
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

/// What a signal did to the tracked writers.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// A watermark moved or stood; the commit to record, if it was news and had events.
    Moved(Option<Write>),
    /// Events up to this timestamp may have been committed unannounced.
    Unsure(i64),
    /// The writers must be re-read.
    Reread,
}

/// The online writers as last read, moved forward by signals.
#[derive(Debug, Default)]
struct Tracked {
    /// index → (session, watermark).
    online: HashMap<u32, (i64, i64)>,
    max_event_ts: i64,
    /// This process's writer's index and session.
    own: Option<(u32, i64)>,
}

impl Tracked {
    /// Applies a signal. A commit is news if it raised its writer's watermark: one that did not
    /// was committed before the last re-read. This process's own commits move the head only by
    /// their in-process signal, which carries their events: the notification may come first.
    fn apply(&mut self, signal: Signal) -> Applied {
        match signal {
            Signal::Wrote {
                index,
                written: Written::ReadBy(_) | Written::Unknown,
                session,
                max_ts,
                ..
            } if self.own == Some((index, session)) => {
                self.max_event_ts = self.max_event_ts.max(max_ts);
                Applied::Moved(None)
            }
            Signal::Wrote {
                index,
                session,
                watermark,
                min_ts,
                max_ts,
                written,
            } => match self.online.get_mut(&index) {
                Some((known, w)) if *known == session => {
                    let news = watermark > *w && max_ts > 0;
                    *w = (*w).max(watermark);
                    self.max_event_ts = self.max_event_ts.max(max_ts);
                    Applied::Moved(news.then_some(Write {
                        lo: min_ts,
                        hi: max_ts,
                        written,
                    }))
                }
                _ => Applied::Reread,
            },
            Signal::Unsure(up_to) => {
                // Readers must not take the range for empty.
                self.max_event_ts = self.max_event_ts.max(up_to);
                Applied::Unsure(up_to)
            }
            Signal::Joined { index, session } => {
                self.own = Some((index, session));
                Applied::Reread
            }
            Signal::WritersChanged => Applied::Reread,
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
    journal: Arc<Mutex<Journal>>,
    tx: mpsc::UnboundedSender<Signal>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    shutdown: CancellationToken,
) {
    let postgres = store.backend() == crate::store::Backend::Postgres;
    if postgres {
        tokio::spawn(listen(store.clone(), tx, shutdown.clone()));
    }
    let mut poll = tokio::time::interval(if postgres { POSTGRES_POLL } else { SQLITE_POLL });
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tracked = Tracked::default();
    let mut reread = true;
    let mut failures = 0u32;
    let apply = |tracked: &mut Tracked, signal: Signal, reread: &mut bool| {
        let applied = tracked.apply(signal);
        let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
        match applied {
            Applied::Moved(Some(write)) => journal.record(write),
            Applied::Moved(None) => {}
            Applied::Unsure(up_to) => {
                journal.unsure(up_to);
                // The write may have moved this writer's watermark too.
                *reread = true;
            }
            Applied::Reread => {
                *reread = true;
                journal.lost();
            }
        }
    };
    loop {
        if reread {
            match store.sequencer_head_state().await {
                Ok(state) => {
                    failures = 0;
                    let max_event_ts = state.max_event_ts;
                    tracked.reset(state);
                    journal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .resynced(max_event_ts);
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
        // While a re-read is owed, the writers known may be out of date: the head waits for it.
        if let Some(next) = tracked.head().filter(|_| !reread) {
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
                apply(&mut tracked, signal, &mut reread);
                // Apply everything already waiting before publishing once.
                while let Ok(signal) = signals.try_recv() {
                    apply(&mut tracked, signal, &mut reread);
                }
            }
            _ = poll.tick() => reread = true,
        }
    }
}

/// Postgres: turns every notification on the sequencer channel into a signal. Runs in a task of
/// its own because `PgListener::try_recv` must not be cancelled half-way through a message. A new
/// listener asks for a re-read, since notifications may have been missed while it was away.
async fn listen(store: Store, signals: mpsc::UnboundedSender<Signal>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = store.sequencer_listener() => connected,
        };
        let mut listener = match connected {
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
        // `try_recv`, not `recv`: on a lost connection `recv` reconnects and goes on as if no
        // notification had been missed; here a new listener asks for a re-read (the listener
        // does not reconnect by itself).
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(n)) => if signals.send(Signal::from_payload(n.payload())).is_err() { return },
                    Ok(None) => {
                        tracing::debug!("sequencer listener lost its connection");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "sequencer listener failed");
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
    use crate::store::sequencer::{wrote_payload, NewEvent, OnlineWriter};

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

    fn wrote(index: u32, session: i64, watermark: i64, ts: i64) -> Signal {
        Signal::Wrote {
            index,
            session,
            watermark,
            min_ts: ts,
            max_ts: ts,
            written: Written::Unknown,
        }
    }

    fn event(ts: i64, sender: &str, recipients: &[&str]) -> NewEvent {
        NewEvent {
            ts,
            sender: sender.into(),
            message_id: format!("m{ts}"),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            payload: vec![1],
            error: None,
        }
    }

    #[test]
    fn head_is_the_lowest_online_watermark_and_follows_signals() {
        let mut t = Tracked::default();
        assert_eq!(t.head(), None);
        t.reset(state(&[(0, 7, 100), (1, 8, 90)], 100));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(90));
        let events = [event(110, "a", &["b"]), event(120, "c", &["c"])];
        let signal = Signal::from_payload(&wrote_payload(1, 8, 120, &events));
        assert_eq!(
            t.apply(signal),
            Applied::Moved(Some(Write {
                lo: 110,
                hi: 120,
                written: Written::ReadBy(vec!["a".into(), "b".into(), "c".into()]),
            }))
        );
        assert_eq!(
            t.head(),
            Some(Head {
                safe_ts: 100,
                max_event_ts: 120
            })
        );
        // The same commit signalled again (in-process and by notification) is not news; nor is
        // a write without events.
        assert_eq!(t.apply(wrote(1, 8, 120, 120)), Applied::Moved(None));
        let bump = Signal::from_payload(&wrote_payload(1, 8, 130, &[]));
        assert_eq!(t.apply(bump), Applied::Moved(None));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(100));
    }

    #[test]
    fn own_commits_move_the_head_by_their_in_process_signal_only() {
        let mut t = Tracked::default();
        assert_eq!(
            t.apply(Signal::Joined {
                index: 0,
                session: 7
            }),
            Applied::Reread
        );
        t.reset(state(&[(0, 7, 100), (1, 8, 200)], 100));
        // The notification of the own commit came first: it moves nothing.
        assert_eq!(t.apply(wrote(0, 7, 150, 150)), Applied::Moved(None));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(100));
        let own = Signal::Wrote {
            index: 0,
            session: 7,
            watermark: 150,
            min_ts: 150,
            max_ts: 150,
            written: Written::Events(vec![]),
        };
        assert!(matches!(t.apply(own), Applied::Moved(Some(_))));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(150));
    }

    #[test]
    fn an_unsure_write_counts_as_events_up_to_its_watermark() {
        let mut t = Tracked::default();
        t.reset(state(&[(0, 7, 100)], 100));
        assert_eq!(t.apply(Signal::Unsure(180)), Applied::Unsure(180));
        // The fan-out must not take the range up to 180 for empty.
        assert_eq!(t.head().map(|h| h.max_event_ts), Some(180));
    }

    #[test]
    fn payloads_name_readers_while_they_fit() {
        let many: Vec<NewEvent> = (0..200)
            .map(|i| {
                event(
                    i + 1,
                    &format!("participant::p{i}::{}", "ab".repeat(20)),
                    &[],
                )
            })
            .collect();
        let payload = wrote_payload(0, 1, 300, &many);
        assert!(payload.len() < 8000);
        assert!(matches!(
            Signal::from_payload(&payload),
            Signal::Wrote {
                written: Written::Unknown,
                min_ts: 1,
                max_ts: 200,
                ..
            }
        ));
        let broadcast = wrote_payload(0, 1, 300, &[event(5, "a", &["*"])]);
        assert!(matches!(
            Signal::from_payload(&broadcast),
            Signal::Wrote { written: Written::ReadBy(r), .. } if r == ["*"]
        ));
    }

    #[test]
    fn unknown_sessions_and_membership_changes_ask_for_a_reread() {
        let mut t = Tracked::default();
        t.reset(state(&[(0, 7, 100)], 100));
        // Index 0 rejoined under a new session; index 2 is not known at all.
        assert_eq!(t.apply(wrote(0, 9, 200, 200)), Applied::Reread);
        assert_eq!(t.apply(wrote(2, 1, 200, 200)), Applied::Reread);
        assert_eq!(
            t.apply(Signal::from_payload(WRITERS_CHANGED)),
            Applied::Reread
        );
        assert_eq!(t.apply(Signal::from_payload("garbage")), Applied::Reread);
        assert_eq!(t.apply(Signal::from_payload("1 2 3 4 5 ")), Applied::Reread);
        assert_eq!(t.head().map(|h| h.safe_ts), Some(100));
    }

    #[test]
    fn a_reread_never_moves_a_watermark_back_within_a_session() {
        let mut t = Tracked::default();
        t.reset(state(&[(0, 7, 100)], 100));
        assert!(matches!(
            t.apply(wrote(0, 7, 150, 150)),
            Applied::Moved(Some(_))
        ));
        t.reset(state(&[(0, 7, 120)], 120));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(150));
        // A new session starts from what was read.
        t.reset(state(&[(0, 8, 130)], 130));
        assert_eq!(t.head().map(|h| h.safe_ts), Some(130));
    }
}
