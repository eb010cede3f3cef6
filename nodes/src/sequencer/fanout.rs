//! One reader per sequencer process. Each time the head moves past new events it hands the
//! batch to every subscription this process serves, which keeps the events addressed to its
//! member. The batch is read once, for all members, unless the journal knows it: when every
//! commit in the range is this process's own or read only by members subscribed elsewhere, the
//! batch is this process's own events and no read is made. A head move with no new event (an
//! idle writer's watermark) costs no read either. A subscription behind the fan-out (new, or one
//! that fell behind the channel) reads its own events from the database until it meets the
//! fan-out.

use super::head::Head;
use super::journal::Journal;
use crate::store::sequencer::StoredEvent;
use crate::store::Store;
use crate::topology::BROADCAST;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Events read per query.
pub(super) const PAGE: i64 = 500;
/// Batches a subscription may fall behind before it reads from the database instead.
const CHANNEL: usize = 1024;
/// After a failed read, the next try.
const RETRY: Duration = Duration::from_millis(50);

/// Every event with `after < ts <= up_to`.
#[derive(Debug)]
pub(super) struct Batch {
    pub after: i64,
    pub up_to: i64,
    pub events: Vec<Arc<StoredEvent>>,
}

#[derive(Clone)]
pub(super) struct Fanout {
    shared: Arc<Shared>,
}

struct Shared {
    batches: broadcast::Sender<Arc<Batch>>,
    state: Mutex<State>,
}

/// Changed together: a subscription joins between two batches, so a batch the journal made
/// for the members subscribed before is never sent to a newcomer.
#[derive(Default)]
struct State {
    /// Where the last batch ended.
    position: i64,
    /// Members subscribed here, with how many subscriptions each.
    members: HashMap<String, usize>,
}

impl State {
    fn wants(&self, reader: &str) -> bool {
        if reader == BROADCAST {
            !self.members.is_empty()
        } else {
            self.members.contains_key(reader)
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands every subscription here the events with `after < ts <= up_to`.
    fn send(&self, state: &mut State, after: i64, up_to: i64, events: Vec<Arc<StoredEvent>>) {
        state.position = up_to;
        let _ = self.batches.send(Arc::new(Batch {
            after,
            up_to,
            events,
        }));
    }
}

/// A member's subscription here, counted until dropped.
pub(super) struct Subscribed {
    shared: Arc<Shared>,
    member: String,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if let Some(n) = state.members.get_mut(&self.member) {
            *n -= 1;
            if *n == 0 {
                state.members.remove(&self.member);
            }
        }
    }
}

impl Fanout {
    /// Starts the reader at the current head: what lies before it, subscriptions read
    /// themselves.
    pub(super) fn start(
        store: Store,
        head: watch::Receiver<Head>,
        journal: Arc<Mutex<Journal>>,
        shutdown: CancellationToken,
    ) -> (Fanout, tokio::task::JoinHandle<()>) {
        let (batches, _) = broadcast::channel(CHANNEL);
        let shared = Arc::new(Shared {
            batches,
            state: Mutex::new(State {
                position: head.borrow().safe_ts,
                ..State::default()
            }),
        });
        let task = tokio::spawn(run(store, head, journal, shared.clone(), shutdown));
        (Fanout { shared }, task)
    }

    /// Subscribes `member`: a receiver of the batches to come, the position the fan-out had
    /// reached when it was taken (the receiver's first batch starts there or later), and the
    /// subscription, which must live as long as the receiver is used.
    pub(super) fn subscribe(
        &self,
        member: &str,
    ) -> (broadcast::Receiver<Arc<Batch>>, i64, Subscribed) {
        let mut state = self.shared.state();
        *state.members.entry(member.to_string()).or_default() += 1;
        let receiver = self.shared.batches.subscribe();
        let subscribed = Subscribed {
            shared: self.shared.clone(),
            member: member.to_string(),
        };
        (receiver, state.position, subscribed)
    }
}

async fn run(
    store: Store,
    mut head: watch::Receiver<Head>,
    journal: Arc<Mutex<Journal>>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut conn = store.dedicated();
    let mut at = shared.state().position;
    let mut failures = 0u32;
    let lock_journal = || journal.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let h = *head.borrow_and_update();
        while h.safe_ts > at {
            // What the journal knows depends on who is subscribed here, so its batch is sent
            // before anyone else can subscribe. Every event at or below the head is at or below
            // `max_event_ts`: a commit announces its events with its watermark.
            let sent = {
                let mut state = shared.state();
                let known = if h.max_event_ts <= at {
                    Some(Vec::new())
                } else {
                    lock_journal().known(at, h.safe_ts, |reader| state.wants(reader))
                };
                known
                    .map(|events| shared.send(&mut state, at, h.safe_ts, events))
                    .is_some()
            };
            if sent {
                at = h.safe_ts;
                lock_journal().passed(at);
                continue;
            }
            match conn.events_between(at, h.safe_ts, PAGE).await {
                Ok(events) => {
                    failures = 0;
                    let up_to = match events.last() {
                        Some(last) if events.len() as i64 == PAGE => last.ts,
                        _ => h.safe_ts,
                    };
                    let events = events.into_iter().map(Arc::new).collect();
                    shared.send(&mut shared.state(), at, up_to, events);
                    at = up_to;
                    lock_journal().passed(at);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "sequencer fan-out: cannot read events");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = head.changed() => if changed.is_err() { return },
        }
    }
}
