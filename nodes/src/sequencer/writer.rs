//! The writer of one sequencer process. It holds a writer index (claimed among those not
//! online), assigns timestamps `ts ≡ index (mod N)` above its watermark, and writes each batch of
//! submissions with its new watermark in one transaction fenced by its session. Idle, it raises
//! its watermark on a heartbeat, and at once when another writer's events wait on it. It marks
//! peers whose watermark lags by more than `offline_after` offline; if its peers marked it
//! offline, its next write fails and it rejoins under a new session.

use super::head::{Head, Signal};
use super::journal::Written;
use super::now_us;
use crate::config::SequencingConfig;
use crate::store::sequencer::{ts_range, NewEvent, Outcome, StoredEvent, WriteError};
use crate::store::{Dedicated, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 512;
/// How often a writer lets other tasks run before it takes a batch (see `gather`).
const GATHER_YIELDS: usize = 4;
/// How far above the clock and every timestamp in use a joining writer starts its watermark,
/// and so its events. Other processes' heads move with the writers they know of; this is the
/// time they have to learn of a new one (its `NOTIFY`, or their 50 ms poll) before their head
/// could pass its first event.
const JOIN_AHEAD_US: i64 = 200_000;
/// The most a commit's watermark runs ahead of the clock (see `Writer::lead_us`).
const MAX_LEAD_US: i64 = 5_000;

/// A message waiting to be sequenced.
pub(crate) struct Submission {
    pub event: NewEvent,
    pub max_sequencing_time_us: i64,
    pub reply: oneshot::Sender<Result<i64, SendError>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SendError {
    #[error("message id {0:?} was already used by this sender")]
    Duplicate(String),
    #[error("the max sequencing time had passed when the message was sequenced at {0}; the sender received a DeliverError")]
    TooLate(i64),
    #[error("sequencer unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct WriterStatus {
    pub index: Option<u32>,
    pub problem: Option<String>,
}

pub(super) struct Writer {
    store: Store,
    /// Event writes and bumps, one after another on a connection of their own.
    conn: Dedicated,
    config: SequencingConfig,
    preferred: u32,
    index: Option<u32>,
    session: i64,
    last_ts: i64,
    watermark: i64,
    /// How long a commit takes to land, averaged: a commit's watermark is set this far ahead of
    /// the clock at its start, so that when it lands it stands about at the time, not at the
    /// time it started. Other writers' events written meanwhile then need no later commit of
    /// ours before readers may pass them. Our own next events take timestamps above it, which
    /// is about when their commit starts anyway.
    lead_us: i64,
    head: watch::Receiver<Head>,
    status: watch::Sender<WriterStatus>,
    signals: mpsc::UnboundedSender<Signal>,
    next_heartbeat: Instant,
    next_offline_check: Instant,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        config: SequencingConfig,
        preferred: u32,
        head: watch::Receiver<Head>,
        status: watch::Sender<WriterStatus>,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Self {
        Self {
            conn: store.dedicated(),
            store,
            config,
            preferred,
            index: None,
            session: 0,
            last_ts: 0,
            watermark: 0,
            lead_us: 0,
            head,
            status,
            signals,
            next_heartbeat: Instant::now(),
            next_offline_check: Instant::now(),
        }
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.config.heartbeat_interval_ms)
    }

    pub(super) async fn run(
        mut self,
        mut submissions: mpsc::Receiver<Submission>,
        shutdown: CancellationToken,
    ) {
        loop {
            if self.index.is_none() {
                if let Err(problem) = self.join().await {
                    self.publish(None, Some(problem));
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(self.heartbeat()) => continue,
                    }
                }
            }
            self.check_peers().await;
            // Not after a failed write up to `last_ts`: that is no other writer's event, and its
            // retry waits for the heartbeat.
            let waiting_on_us = {
                let head = self.head.borrow();
                head.max_event_ts > self.watermark.max(self.last_ts)
            };
            // Submissions first: their write raises the watermark as far as a bump would.
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                first = submissions.recv() => match first {
                    Some(first) => self.write(gather(first, &mut submissions).await).await,
                    None => break,
                },
                () = tokio::time::sleep_until(self.next_heartbeat.into()) => self.bump().await,
                // Another writer's events are above our watermark: readers wait for us. A send
                // being handled right now is let in first, to raise it with its write rather
                // than a bump of its own.
                () = async {}, if waiting_on_us => {
                    tokio::task::yield_now().await;
                    match submissions.try_recv() {
                        Ok(first) => self.write(gather(first, &mut submissions).await).await,
                        Err(_) => self.bump().await,
                    }
                }
                _ = self.head.changed() => {}
            }
        }
        if let Some(index) = self.index {
            if let Err(e) = self.store.release_writer(index, self.session).await {
                tracing::warn!(index, error = %e, "could not take the writer offline on shutdown");
            }
        }
    }

    fn publish(&self, index: Option<u32>, problem: Option<String>) {
        self.status.send_modify(|s| {
            s.index = index;
            s.problem = problem;
        });
    }

    /// Claims an index: the preferred one, else any that is not online.
    async fn join(&mut self) -> Result<(), String> {
        let n = self.config.total_node_count;
        let session = i64::from_be_bytes(random8().map_err(|e| e.to_string())?);
        let candidates =
            std::iter::once(self.preferred % n).chain((0..n).filter(|i| *i != self.preferred % n));
        for index in candidates {
            match self
                .store
                .claim_writer(index, session, now_us(), JOIN_AHEAD_US)
                .await
            {
                Ok(Some(watermark)) => {
                    self.index = Some(index);
                    self.session = session;
                    self.watermark = watermark;
                    self.last_ts = watermark;
                    self.next_heartbeat = Instant::now() + self.heartbeat();
                    tracing::info!(index, watermark, "sequencer writer online");
                    self.publish(Some(index), None);
                    let _ = self.signals.send(Signal::Joined { index, session });
                    return Ok(());
                }
                Ok(None) => continue,
                Err(e) => return Err(format!("database unreachable: {e}")),
            }
        }
        Err(format!(
            "all {n} writer indexes are online; raise synchronizer.sequencing.total_node_count"
        ))
    }

    /// The next timestamp: the smallest `ts ≡ index (mod N)` above the clock, the last timestamp
    /// and the watermark.
    fn next_ts(&mut self, index: u32) -> i64 {
        let n = i64::from(self.config.total_node_count);
        let base = now_us().max(self.last_ts + 1).max(self.watermark + 1);
        let mut ts = base - base.rem_euclid(n) + i64::from(index);
        if ts < base {
            ts += n;
        }
        self.last_ts = ts;
        ts
    }

    async fn write(&mut self, batch: Vec<Submission>) {
        let Some(index) = self.index else {
            for s in batch {
                let _ = s
                    .reply
                    .send(Err(SendError::Unavailable("writer not online".into())));
            }
            return;
        };
        let mut events = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for s in batch {
            let mut event = s.event;
            event.ts = self.next_ts(index);
            if event.ts > s.max_sequencing_time_us {
                event.error = Some((
                    "MAX_SEQUENCING_TIME_EXCEEDED".into(),
                    format!(
                        "sequenced at {} after the max sequencing time {}",
                        event.ts, s.max_sequencing_time_us
                    ),
                ));
            }
            events.push(event);
            replies.push(s.reply);
        }
        match self.commit(index, events).await {
            Ok(written) => {
                for (reply, (outcome, e)) in replies.into_iter().zip(written) {
                    let result = match (outcome, &e.error) {
                        (Outcome::Duplicate, _) => Err(SendError::Duplicate(e.message_id.clone())),
                        (Outcome::Sequenced, Some(_)) => Err(SendError::TooLate(e.ts)),
                        (Outcome::Sequenced, None) => Ok(e.ts),
                    };
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(SendError::Unavailable(e.to_string())));
                }
            }
        }
    }

    async fn bump(&mut self) {
        let Some(index) = self.index else { return };
        let _ = self.commit(index, Vec::new()).await;
    }

    /// Writes `events` (none for a bump) and raises the watermark as far as a bump would, so
    /// other writers' events that wait on this writer need no bump of their own. After the
    /// commit the head tracker learns the new watermark and the events inserted without a
    /// query, and the heartbeat starts over; a failure is published as this writer's problem.
    async fn commit(
        &mut self,
        index: u32,
        events: Vec<NewEvent>,
    ) -> Result<Vec<(Outcome, Arc<StoredEvent>)>, WriteError> {
        let watermark = self.bump_target();
        let started = Instant::now();
        let written = self
            .conn
            .write_events(index, self.session, watermark, &events)
            .await;
        self.next_heartbeat = Instant::now() + self.heartbeat();
        match written {
            Ok(outcomes) => {
                let took = i64::try_from(started.elapsed().as_micros()).unwrap_or(MAX_LEAD_US);
                self.lead_us = (self.lead_us * 7 + took.min(MAX_LEAD_US)) / 8;
                self.watermark = watermark;
                let (min_ts, max_ts) = ts_range(&events);
                let written: Vec<(Outcome, Arc<StoredEvent>)> = outcomes
                    .into_iter()
                    .zip(events.into_iter().map(|e| Arc::new(StoredEvent::from(e))))
                    .collect();
                let inserted = written
                    .iter()
                    .filter(|(outcome, _)| *outcome == Outcome::Sequenced)
                    .map(|(_, e)| e.clone())
                    .collect();
                let _ = self.signals.send(Signal::Wrote {
                    index,
                    session: self.session,
                    watermark,
                    min_ts,
                    max_ts,
                    written: Written::Events(inserted),
                });
                if self.status.borrow().problem.is_some() {
                    self.publish(Some(index), None);
                }
                Ok(written)
            }
            Err(e) => {
                self.failed(&e, watermark);
                Err(e)
            }
        }
    }

    /// How far the next commit raises the watermark: to the clock plus the time the commit
    /// takes, past this writer's own events, and never below another writer's latest event,
    /// which is what readers wait for (a clock slightly behind the other writer's must not keep
    /// them waiting). Later timestamps are above it, so the promise holds.
    fn bump_target(&self) -> i64 {
        let waited_for = self.head.borrow().max_event_ts;
        (now_us() + self.lead_us)
            .max(self.watermark)
            .max(self.last_ts)
            .max(waited_for)
    }

    /// After a write of `watermark` failed. Its outcome may be unknown (committed, then the
    /// connection dropped): later timestamps stay above it either way.
    fn failed(&mut self, e: &WriteError, watermark: i64) {
        self.last_ts = self.last_ts.max(watermark);
        match e {
            WriteError::Offline => {
                tracing::warn!(index = ?self.index, "peers marked this writer offline; rejoining");
                self.index = None;
                self.publish(None, Some("writer was marked offline; rejoining".into()));
            }
            WriteError::Store(e) => {
                tracing::warn!(error = %e, "sequencer write failed");
                // It may have committed all the same: readers must read up to it.
                let _ = self.signals.send(Signal::Unsure(watermark));
                self.publish(self.index, Some(format!("database unreachable: {e}")));
            }
        }
    }

    /// Marks writers whose watermark lags by more than `offline_after` offline.
    async fn check_peers(&mut self) {
        let Some(index) = self.index else { return };
        if Instant::now() < self.next_offline_check {
            return;
        }
        self.next_offline_check =
            Instant::now() + Duration::from_millis(self.config.offline_after_ms / 4);
        let offline_after_us =
            i64::try_from(self.config.offline_after_ms * 1_000).unwrap_or(i64::MAX);
        match self
            .store
            .mark_stale_writers_offline(index, now_us() - offline_after_us)
            .await
        {
            Ok(marked) if !marked.is_empty() => {
                tracing::warn!(writers = ?marked, "marked lagging sequencer writers offline");
                let _ = self.signals.send(Signal::WritersChanged);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "offline check failed"),
        }
    }
}

/// The batch a write takes: `first` and what is queued behind it, once the send handlers that
/// are ready have run. Each commit has a fixed cost (a round trip, a `NOTIFY` that wakes every
/// listener, the readers' work), so sends are worth gathering; yielding a few times lets the
/// handlers on this runtime finish checking theirs. On an idle runtime that costs microseconds;
/// on a busy one each yield waits for the tasks ready on this worker, which is the point (the
/// queue wait it adds is repaid by the commits it saves).
///
/// On the 3-sequencer benchmark at 4 sends in flight per member, three to six yields took the
/// batch from about 2.6 sends to about 4.8 (writes per run 4,500 → 2,500) and raised throughput
/// by about a fifth; one yield got only to 4.0.
async fn gather(
    first: Submission,
    submissions: &mut mpsc::Receiver<Submission>,
) -> Vec<Submission> {
    let mut batch = vec![first];
    for _ in 0..GATHER_YIELDS {
        tokio::task::yield_now().await;
    }
    while batch.len() < MAX_BATCH {
        match submissions.try_recv() {
            Ok(s) => batch.push(s),
            Err(_) => break,
        }
    }
    batch
}

fn random8() -> Result<[u8; 8], getrandom::Error> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes)
}
