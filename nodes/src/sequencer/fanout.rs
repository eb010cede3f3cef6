//! One reader per sequencer process. Each time the head moves past new events it reads them
//! once, for all members, and hands the batch to every subscription this process serves, which
//! keeps the events addressed to its member. A head move with no new event (an idle writer's
//! watermark) costs no read at all. A subscription behind the fan-out (new, or one that fell
//! behind the channel) reads its own events from the database until it meets the fan-out.

use super::head::Head;
use crate::store::sequencer::StoredEvent;
use crate::store::Store;
use std::sync::Arc;
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
    batches: broadcast::Sender<Arc<Batch>>,
    position: watch::Receiver<i64>,
}

impl Fanout {
    /// Starts the reader at the current head: what lies before it, subscriptions read
    /// themselves.
    pub(super) fn start(
        store: Store,
        head: watch::Receiver<Head>,
        shutdown: CancellationToken,
    ) -> (Fanout, tokio::task::JoinHandle<()>) {
        let (batches, _) = broadcast::channel(CHANNEL);
        let (position_tx, position) = watch::channel(head.borrow().safe_ts);
        let task = tokio::spawn(run(store, head, batches.clone(), position_tx, shutdown));
        (Fanout { batches, position }, task)
    }

    /// A receiver of the batches to come, and the position the fan-out had reached when it was
    /// taken: the receiver's first batch starts there or later.
    pub(super) fn subscribe(&self) -> (broadcast::Receiver<Arc<Batch>>, i64) {
        let receiver = self.batches.subscribe();
        (receiver, *self.position.borrow())
    }
}

async fn run(
    store: Store,
    mut head: watch::Receiver<Head>,
    batches: broadcast::Sender<Arc<Batch>>,
    position: watch::Sender<i64>,
    shutdown: CancellationToken,
) {
    let mut conn = store.dedicated();
    let mut at = *position.borrow();
    let mut failures = 0u32;
    loop {
        let h = *head.borrow_and_update();
        while h.safe_ts > at {
            // Every event at or below the head is at or below `max_event_ts`: a commit announces
            // its events with its watermark.
            let events = if h.max_event_ts <= at {
                Ok(Vec::new())
            } else {
                conn.events_between(at, h.safe_ts, PAGE).await
            };
            match events {
                Ok(events) => {
                    failures = 0;
                    let up_to = match events.last() {
                        Some(last) if events.len() as i64 == PAGE => last.ts,
                        _ => h.safe_ts,
                    };
                    let batch = Batch {
                        after: at,
                        up_to,
                        events: events.into_iter().map(Arc::new).collect(),
                    };
                    at = up_to;
                    position.send_replace(at);
                    let _ = batches.send(Arc::new(batch));
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
