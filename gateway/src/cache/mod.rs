//! The local query cache (design.md §9): per party, an in-memory active contract set, built
//! from a `GetActiveContracts` snapshot and kept up to date with `GetUpdates` from its last
//! offset. A reader names the offset it needs (the ledger end it observed, or one the caller
//! gave) and waits until every party it reads has reached it, so nobody reads older data than
//! it wrote, through any instance. Catching up is driven by that demand: one task per party
//! reads the updates between its offset and the highest offset wanted, so the cache needs no
//! checkpoints from the participant to know it is complete.
//!
//! The cache holds only what the gateway can rebuild: after a restart, an eviction or a pruned
//! offset it starts again from a snapshot. Its memory is bounded (`cache_max_bytes`; the least
//! recently used parties are evicted first) and reported as metrics. The ledger calls use the
//! credentials of the latest caller that read the party.

pub mod acs;
mod end;

use crate::error::ApiError;
use crate::ledger::{CallContext, LedgerClient};
use crate::metrics::Metrics;
use acs::PartyAcs;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};
use std::time::{Duration, Instant};
use tandem_proto::ledger::v2 as pb;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// How far a party's set is, and the last failure to advance it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The offset the set is complete up to; `None` before the first snapshot.
    pub applied: Option<i64>,
    /// Counts failures, so a waiter sees only those after it started waiting.
    pub failures: u64,
    pub last_error: Option<Arc<ApiError>>,
}

/// One cached party.
pub struct PartyEntry {
    pub party: String,
    acs: RwLock<PartyAcs>,
    progress: watch::Sender<Progress>,
    wanted: watch::Sender<i64>,
    ctx: Mutex<CallContext>,
    last_used: AtomicU64,
    task: Mutex<Option<AbortHandle>>,
}

impl PartyEntry {
    fn new(party: &str) -> Self {
        Self {
            party: party.to_owned(),
            acs: RwLock::new(PartyAcs::default()),
            progress: watch::channel(Progress::default()).0,
            wanted: watch::channel(-1).0,
            ctx: Mutex::new(CallContext::default()),
            last_used: AtomicU64::new(0),
            task: Mutex::new(None),
        }
    }

    /// The contracts, for reading. Hold the guard briefly (no `.await` while holding it).
    pub fn acs(&self) -> RwLockReadGuard<'_, PartyAcs> {
        self.acs.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds the equality index on `path` unless it exists or the set has all it may hold.
    pub fn ensure_index(&self, path: &[String]) {
        if self.acs().can_index(path) {
            self.acs
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .build_index(path);
        }
    }

    /// The offset the set is complete up to.
    pub fn applied(&self) -> Option<i64> {
        self.progress.borrow().applied
    }

    fn fail(&self, error: ApiError) {
        self.progress.send_modify(|p| {
            p.failures += 1;
            p.last_error = Some(Arc::new(error));
        });
    }

    fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl Drop for PartyEntry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cache of all parties. Cheap to clone.
#[derive(Clone)]
pub struct QueryCache {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: LedgerClient,
    ends: Arc<end::EndObserver>,
    max_bytes: u64,
    wait_timeout: Duration,
    entries: Mutex<HashMap<String, Arc<PartyEntry>>>,
    metrics: Metrics,
    epoch: Instant,
}

/// Pause after a failed catch-up before the next demand may retry.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

impl QueryCache {
    pub fn new(
        ledger: LedgerClient,
        max_bytes: u64,
        wait_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        metrics.cache_max_bytes.set(max_bytes as i64);
        Self {
            inner: Arc::new(Inner {
                ends: end::EndObserver::new(ledger.clone(), metrics.clone()),
                ledger,
                max_bytes,
                wait_timeout,
                entries: Mutex::new(HashMap::new()),
                metrics,
                epoch: Instant::now(),
            }),
        }
    }

    /// Observes the ledger end on `handle`'s runtime (a worker thread's).
    pub fn observe_on(&self, handle: tokio::runtime::Handle) {
        self.inner.ends.run_on(handle);
    }

    /// The entries of `parties`, each at least at `at_least` (or, without it, at the ledger end
    /// observed now with the caller's token). Returns them and the offset they are read at.
    pub async fn read(
        &self,
        parties: &[String],
        ctx: &CallContext,
        at_least: Option<i64>,
    ) -> Result<(Vec<Arc<PartyEntry>>, i64), ApiError> {
        let entries: Vec<_> = parties.iter().map(|p| self.entry(p, ctx)).collect();
        let ready_at = |target: i64| {
            entries
                .iter()
                .all(|e| e.applied().is_some_and(|a| a >= target))
        };
        let target = match at_least {
            Some(offset) if ready_at(offset) => offset,
            _ => {
                let end = self.inner.ends.observe(ctx).await?;
                match at_least {
                    Some(offset) => {
                        crate::api::within_ledger_end("offset", offset, end)?;
                        offset
                    }
                    None => end,
                }
            }
        };
        for entry in &entries {
            self.wait(entry, target).await?;
        }
        let read_at = entries
            .iter()
            .filter_map(|e| e.applied())
            .min()
            .unwrap_or(target);
        Ok((entries, read_at))
    }

    /// The entry of `party`, created (and its tracker started) on first use.
    fn entry(&self, party: &str, ctx: &CallContext) -> Arc<PartyEntry> {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries
            .entry(party.to_owned())
            .or_insert_with(|| {
                let entry = Arc::new(PartyEntry::new(party));
                // Subscribed before the first demand can be sent, so none is missed.
                let wanted = entry.wanted.subscribe();
                let task = tokio::spawn(track(
                    Arc::downgrade(&entry),
                    wanted,
                    self.inner.ledger.clone(),
                    Arc::downgrade(&self.inner),
                ));
                *entry.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
                entry
            })
            .clone();
        drop(entries);
        *entry.ctx.lock().unwrap_or_else(|p| p.into_inner()) = ctx.clone();
        entry.last_used.store(
            self.inner.epoch.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        self.inner
            .metrics
            .cache_parties
            .set(self.party_count() as i64);
        entry
    }

    async fn wait(&self, entry: &PartyEntry, target: i64) -> Result<(), ApiError> {
        let mut progress = entry.progress.subscribe();
        let failures_before = progress.borrow().failures;
        if entry.applied().is_some_and(|a| a >= target) {
            return Ok(());
        }
        entry.wanted.send_modify(|w| *w = (*w).max(target));
        let waited = tokio::time::timeout(self.inner.wait_timeout, async {
            loop {
                {
                    let p = progress.borrow_and_update();
                    if p.applied.is_some_and(|a| a >= target) {
                        return Ok(());
                    }
                    if p.failures > failures_before {
                        return Err(match &p.last_error {
                            Some(e) => clone_error(e),
                            None => unavailable("the cache failed to catch up"),
                        });
                    }
                }
                if progress.changed().await.is_err() {
                    return Err(unavailable("the cache was stopped"));
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(ApiError::Unavailable {
                code: "CACHE_CATCH_UP_TIMEOUT",
                detail: format!(
                    "the cache of {} did not reach offset {target} in time; retry",
                    entry.party
                ),
            })
        })
    }

    pub fn party_count(&self) -> usize {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Approximate memory held by all parties.
    pub fn bytes(&self) -> u64 {
        self.inner.total().0
    }

    /// Stops every tracker and forgets every party.
    pub fn clear(&self) {
        let drained: Vec<_> = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, entry) in drained {
            entry.stop();
        }
    }
}

impl Inner {
    /// (bytes, contracts) over all parties.
    fn total(&self) -> (u64, u64) {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.values().fold((0, 0), |(b, c), e| {
            let acs = e.acs();
            (b + acs.bytes() as u64, c + acs.len() as u64)
        })
    }

    /// Evicts least recently used parties until the cache fits its bound; `current` last.
    /// Returns false if `current` itself had to go.
    fn enforce_bound(&self, current: &PartyEntry) -> bool {
        let (mut bytes, _) = self.total();
        let mut kept = true;
        if bytes > self.max_bytes {
            let mut victims: Vec<_> = {
                let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                entries.values().cloned().collect()
            };
            // Others by age first, the party being updated last.
            victims.sort_by_key(|e| {
                (
                    e.party == current.party,
                    e.last_used.load(Ordering::Relaxed),
                )
            });
            for victim in victims {
                if bytes <= self.max_bytes {
                    break;
                }
                bytes = bytes.saturating_sub(victim.acs().bytes() as u64);
                self.entries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&victim.party);
                self.metrics.cache_evictions.inc();
                tracing::info!(party = %victim.party, "query cache evicted a party to stay within cache_max_bytes");
                victim.fail(ApiError::Unavailable {
                    code: "CACHE_FULL",
                    detail: format!(
                        "the active contracts of {} do not fit the gateway's cache (cache_max_bytes)",
                        victim.party
                    ),
                });
                if victim.party == current.party {
                    kept = false;
                } else {
                    victim.stop();
                }
            }
        }
        let (bytes, contracts) = self.total();
        self.metrics.cache_bytes.set(bytes as i64);
        self.metrics.cache_contracts.set(contracts as i64);
        self.metrics
            .cache_parties
            .set(self.entries.lock().unwrap_or_else(|p| p.into_inner()).len() as i64);
        kept
    }
}

fn unavailable(detail: &str) -> ApiError {
    ApiError::Unavailable {
        code: "CACHE_UNAVAILABLE",
        detail: detail.to_owned(),
    }
}

/// Errors are shared between waiters; rebuild an owned one.
fn clone_error(e: &ApiError) -> ApiError {
    match e {
        ApiError::Ledger(s) => ApiError::Ledger(s.clone()),
        ApiError::Unavailable { code, detail } => ApiError::Unavailable {
            code,
            detail: detail.clone(),
        },
        other => unavailable(&other.to_string()),
    }
}

/// The tracker of one party: waits for demand, then snapshots (once) and catches up.
async fn track(
    entry: Weak<PartyEntry>,
    mut wanted: watch::Receiver<i64>,
    ledger: LedgerClient,
    cache: Weak<Inner>,
) {
    loop {
        if wanted.changed().await.is_err() {
            return;
        }
        loop {
            let target = *wanted.borrow_and_update();
            let Some(e) = entry.upgrade() else { return };
            if e.applied().is_some_and(|a| a >= target) {
                break;
            }
            let ctx = e.ctx.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let started = Instant::now();
            match catch_up(&e, &ledger, &ctx, target).await {
                Ok(()) => {
                    let Some(cache) = cache.upgrade() else { return };
                    cache.metrics.cache_catch_ups.inc();
                    tracing::debug!(party = %e.party, target, elapsed_ms = started.elapsed().as_millis() as u64, "query cache caught up");
                    if !cache.enforce_bound(&e) {
                        return;
                    }
                }
                Err(error) => {
                    if let Some(cache) = cache.upgrade() {
                        cache.metrics.cache_failures.inc();
                    }
                    if let ApiError::Ledger(status) = &error {
                        if is_pruned(status) {
                            // Start again from a snapshot at the next demand.
                            e.progress.send_modify(|p| p.applied = None);
                        }
                        tracing::warn!(party = %e.party, code = ?status.code(), message = status.message(), "query cache could not catch up");
                    }
                    e.fail(error);
                    drop(e);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    // Retry only when someone asks again.
                    break;
                }
            }
        }
    }
}

fn is_pruned(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition | tonic::Code::OutOfRange | tonic::Code::NotFound
    ) && status.message().contains("PRUNED")
}

/// Brings the party's set to `target`: a snapshot first if there is none, then the updates
/// after its offset up to `target`.
async fn catch_up(
    entry: &PartyEntry,
    ledger: &LedgerClient,
    ctx: &CallContext,
    target: i64,
) -> Result<(), ApiError> {
    let filter = pb::TransactionFilter {
        parties: vec![entry.party.clone()],
        template_ids: Vec::new(),
    };
    if entry.applied().is_none() {
        let end = ledger.ledger_end(ctx).await?;
        let mut snapshot = PartyAcs::at(end);
        if end > 0 {
            let request = pb::GetActiveContractsRequest {
                filter: Some(filter.clone()),
                active_at_offset: end,
            };
            let mut stream = ledger
                .state()
                .get_active_contracts(ledger.stream_request(request, ctx))
                .await?
                .into_inner();
            while let Some(item) = stream.message().await? {
                if let Some(event) = &item.created_event {
                    snapshot.insert(event);
                }
            }
        }
        *entry.acs.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
        entry.progress.send_modify(|p| p.applied = Some(end));
    }
    let from = entry.acs().offset();
    if target <= from {
        return Ok(());
    }
    let request = pb::GetUpdatesRequest {
        begin_exclusive: from,
        end_inclusive: target,
        filter: Some(filter),
    };
    let mut stream = ledger
        .updates()
        .get_updates(ledger.stream_request(request, ctx))
        .await?
        .into_inner();
    while let Some(item) = stream.message().await? {
        let mut acs = entry.acs.write().unwrap_or_else(|p| p.into_inner());
        match &item.update {
            Some(pb::get_updates_response::Update::Transaction(tx)) => {
                acs.apply(tx);
            }
            Some(pb::get_updates_response::Update::OffsetCheckpoint(c)) => {
                acs.advance(c.offset.min(target));
            }
            None => {}
        }
        let offset = acs.offset();
        drop(acs);
        entry.progress.send_modify(|p| p.applied = Some(offset));
    }
    // The bounded read ended: nothing else the party sees happened up to `target`.
    entry
        .acs
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .advance(target);
    entry.progress.send_modify(|p| p.applied = Some(target));
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::acs::tests::{archived, created, tx};
    use super::*;

    pub fn cache(max_bytes: u64, wait: Duration) -> QueryCache {
        let ledger = LedgerClient::new(
            "http://127.0.0.1:1",
            Duration::from_millis(100),
            Duration::from_millis(100),
        )
        .unwrap();
        QueryCache::new(ledger, max_bytes, wait, Metrics::new())
    }

    /// An entry fed by hand (no tracker), registered in the cache.
    pub fn entry(cache: &QueryCache, party: &str, txs: &[pb::Transaction]) -> Arc<PartyEntry> {
        let entry = Arc::new(PartyEntry::new(party));
        let mut acs = PartyAcs::at(0);
        for t in txs {
            acs.apply(t);
        }
        let offset = acs.offset();
        *entry.acs.write().unwrap() = acs;
        entry.progress.send_modify(|p| p.applied = Some(offset));
        cache
            .inner
            .entries
            .lock()
            .unwrap()
            .insert(party.to_owned(), entry.clone());
        entry
    }

    #[tokio::test]
    async fn waiting_until_an_offset() {
        let cache = cache(u64::MAX, Duration::from_secs(5));
        let e = entry(&cache, "Alice", &[tx(1, vec![created(1, "a", "USD")])]);
        // Already there: no wait.
        cache.wait(&e, 1).await.unwrap();
        // Behind: the wait ends when the set reaches the offset.
        let feeder = {
            let e = e.clone();
            tokio::spawn(async move {
                let mut wanted = e.wanted.subscribe();
                wanted.wait_for(|w| *w >= 3).await.unwrap();
                for t in [
                    tx(2, vec![archived(2, "a")]),
                    tx(3, vec![created(3, "b", "EUR")]),
                ] {
                    e.acs.write().unwrap().apply(&t);
                    let offset = e.acs().offset();
                    e.progress.send_modify(|p| p.applied = Some(offset));
                }
            })
        };
        cache.wait(&e, 3).await.unwrap();
        feeder.await.unwrap();
        let acs = e.acs();
        assert!(!acs.contains("a") && acs.contains("b"));
    }

    #[tokio::test]
    async fn a_failure_or_a_timeout_ends_the_wait() {
        let cache = cache(u64::MAX, Duration::from_millis(100));
        let e = entry(&cache, "Alice", &[]);
        let err = cache.wait(&e, 7).await.unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Unavailable {
                    code: "CACHE_CATCH_UP_TIMEOUT",
                    ..
                }
            ),
            "{err:?}"
        );
        let cache2 = self::cache(u64::MAX, Duration::from_secs(5));
        let e2 = entry(&cache2, "Bob", &[]);
        let failing = {
            let e2 = e2.clone();
            tokio::spawn(async move {
                e2.wanted.subscribe().wait_for(|w| *w >= 9).await.unwrap();
                e2.fail(ApiError::Ledger(tonic::Status::unavailable(
                    "REPLICA_PASSIVE: passive",
                )));
            })
        };
        let err = cache2.wait(&e2, 9).await.unwrap_err();
        failing.await.unwrap();
        assert!(matches!(err, ApiError::Ledger(s) if s.code() == tonic::Code::Unavailable));
    }

    #[tokio::test]
    async fn memory_bound_evicts_least_recently_used_parties() {
        let many: Vec<_> = (1..=20)
            .map(|i| tx(i, vec![created(i, &format!("c{i}"), "USD")]))
            .collect();
        let cache = cache(u64::MAX, Duration::from_secs(1));
        let old = entry(&cache, "Old", &many);
        let one_party = old.acs().bytes() as u64;
        let bounded = self::cache(one_party + one_party / 2, Duration::from_secs(1));
        let old = entry(&bounded, "Old", &many);
        old.last_used.store(1, Ordering::Relaxed);
        let new = entry(&bounded, "New", &many);
        new.last_used.store(2, Ordering::Relaxed);
        assert!(
            bounded.inner.enforce_bound(&new),
            "the party being updated stays"
        );
        assert_eq!(bounded.party_count(), 1);
        assert!(bounded.bytes() <= one_party + one_party / 2);
        assert!(
            old.progress.borrow().last_error.is_some(),
            "waiters on the evicted party are told"
        );
        assert_eq!(bounded.inner.metrics.cache_evictions.get(), 1);
        assert_eq!(bounded.inner.metrics.cache_contracts.get(), 20);
        // A party that alone exceeds the bound is evicted too.
        let tiny = self::cache(10, Duration::from_secs(1));
        let big = entry(&tiny, "Big", &many);
        assert!(!tiny.inner.enforce_bound(&big));
        assert_eq!(tiny.party_count(), 0);
    }
}
