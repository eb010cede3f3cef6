//! One backend server's state: active health (rise/fall), passive health (max_fails within
//! fail_timeout), counters, and the token that ends its streams when it loses the active role.
//! Read on every request, so the hot fields are atomics; the rest sits behind short locks.

use crate::metrics::ServerMetrics;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Milliseconds since the first call, on the monotonic clock; 0 is never returned.
pub(crate) fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// Orders "came up" events across servers: the active strategy prefers the newest.
fn next_up_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed) + 1
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What identifies a server across reloads: a reload keeps the state of a server whose
/// traffic and health addresses are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerKey {
    pub address: SocketAddr,
    pub health: SocketAddr,
}

/// Why a live request counted against a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Status5xx,
    GrpcUnavailable,
    Upstream,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Status5xx => "http_5xx",
            FailureKind::GrpcUnavailable => "grpc_unavailable",
            FailureKind::Upstream => "upstream_error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckRecord {
    /// Unix time of the check, in ms.
    pub at_unix_ms: u64,
    pub ok: bool,
    pub duration_ms: u64,
    /// The status seen, or why there was none.
    pub detail: String,
}

#[derive(Debug, Default)]
struct ActiveHealth {
    consecutive_ok: u32,
    consecutive_fail: u32,
    was_up: bool,
    last: Option<CheckRecord>,
}

#[derive(Debug, Default)]
struct Passive {
    fails: u32,
    first_fail_ms: u64,
}

/// A health transition caused by one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

pub struct Server {
    pub key: ServerKey,
    /// 0 while down; otherwise the sequence number of the moment it came up.
    up_seq: AtomicU64,
    /// Passive ejection: out until this `now_ms()`; 0 when not ejected.
    ejected_until_ms: AtomicU64,
    active: Mutex<ActiveHealth>,
    passive: Mutex<Passive>,
    streams: Mutex<CancellationToken>,
    requests: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicI64,
    pub(crate) metrics: ServerMetrics,
}

impl Server {
    pub fn new(key: ServerKey, metrics: ServerMetrics) -> Self {
        Self {
            key,
            up_seq: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            active: Mutex::default(),
            passive: Mutex::default(),
            streams: Mutex::new(CancellationToken::new()),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            metrics,
        }
    }

    /// Passing its active health check (whatever passive health says).
    pub fn is_up(&self) -> bool {
        self.up_seq.load(Ordering::Acquire) != 0
    }

    pub(crate) fn up_seq(&self) -> u64 {
        self.up_seq.load(Ordering::Acquire)
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Acquire) > now
    }

    /// May take a request now.
    pub fn is_available(&self, now: u64) -> bool {
        self.is_up() && !self.is_ejected(now)
    }

    /// Feeds one active check result. A server that never passed comes up on its first pass;
    /// later it needs `rise` passes in a row, and `fall` failures in a row take it down.
    pub fn observe_check(&self, record: CheckRecord, rise: u32, fall: u32) -> Option<Transition> {
        let mut h = lock(&self.active);
        let ok = record.ok;
        h.last = Some(record);
        if ok {
            h.consecutive_ok = h.consecutive_ok.saturating_add(1);
            h.consecutive_fail = 0;
            let needed = if h.was_up { rise } else { 1 };
            if !self.is_up() && h.consecutive_ok >= needed {
                h.was_up = true;
                self.up_seq.store(next_up_seq(), Ordering::Release);
                self.metrics.up.set(1);
                return Some(Transition::Up);
            }
        } else {
            h.consecutive_fail = h.consecutive_fail.saturating_add(1);
            h.consecutive_ok = 0;
            if self.is_up() && h.consecutive_fail >= fall {
                self.up_seq.store(0, Ordering::Release);
                self.metrics.up.set(0);
                return Some(Transition::Down);
            }
        }
        None
    }

    /// Between states: up but failing, or down (after having been up) but passing, fewer
    /// than `fall`/`rise` times so far. Its checks then come at the fast interval.
    pub fn in_transition(&self) -> bool {
        let h = lock(&self.active);
        if self.is_up() {
            h.consecutive_fail > 0
        } else {
            h.was_up && h.consecutive_ok > 0
        }
    }

    /// Counts a failure of live traffic; `max_fails` of them within `fail_timeout` eject the
    /// server for `fail_timeout` (nginx's `max_fails`/`fail_timeout`). Returns whether this
    /// failure ejected it.
    pub fn record_failure(
        &self,
        kind: FailureKind,
        max_fails: u32,
        fail_timeout: Duration,
    ) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.metrics.failure(kind);
        if max_fails == 0 {
            return false;
        }
        let now = now_ms();
        let window = u64::try_from(fail_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut p = lock(&self.passive);
        if p.fails == 0 || now.saturating_sub(p.first_fail_ms) > window {
            p.fails = 0;
            p.first_fail_ms = now;
        }
        p.fails += 1;
        if p.fails >= max_fails && !self.is_ejected(now) {
            p.fails = 0;
            self.ejected_until_ms
                .store(now.saturating_add(window), Ordering::Release);
            return true;
        }
        false
    }

    /// A token cancelled when this server loses the active role; streams sent to it watch it.
    pub fn streams_token(&self) -> CancellationToken {
        lock(&self.streams).clone()
    }

    /// Ends every stream sent to this server so far; later streams get a fresh token.
    pub fn end_streams(&self) {
        let old = std::mem::replace(&mut *lock(&self.streams), CancellationToken::new());
        old.cancel();
    }

    /// Marks the start of one request to this server; the guard marks its end.
    pub fn start_request(self: &std::sync::Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.requests.inc();
        self.metrics.in_flight.inc();
        InFlight(self.clone())
    }

    pub fn status(&self) -> ServerStatus {
        let now = now_ms();
        let h = lock(&self.active);
        let state = if !self.is_up() {
            "down"
        } else if self.is_ejected(now) {
            "ejected"
        } else {
            "up"
        };
        ServerStatus {
            address: self.key.address,
            health_address: self.key.health,
            state,
            last_check: h.last.clone(),
            consecutive_check_failures: h.consecutive_fail,
            failures: self.failures.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            active_requests: self.in_flight.load(Ordering::Relaxed),
            ejected_for_ms: self
                .ejected_until_ms
                .load(Ordering::Acquire)
                .saturating_sub(now),
        }
    }
}

/// One request in flight to a server; dropping it (on completion or cancellation) ends it.
pub struct InFlight(std::sync::Arc<Server>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.in_flight.dec();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub address: SocketAddr,
    pub health_address: SocketAddr,
    /// `up`, `down` (active check) or `ejected` (passive health).
    pub state: &'static str,
    pub last_check: Option<CheckRecord>,
    pub consecutive_check_failures: u32,
    pub failures: u64,
    pub requests: u64,
    pub active_requests: i64,
    pub ejected_for_ms: u64,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let registry = prometheus::Registry::new();
        let metrics = crate::metrics::Metrics::new(&registry).unwrap();
        Server::new(
            ServerKey {
                address: addr,
                health: addr,
            },
            metrics.server("g", addr),
        )
    }

    fn check(ok: bool) -> CheckRecord {
        CheckRecord {
            at_unix_ms: 0,
            ok,
            duration_ms: 0,
            detail: String::new(),
        }
    }

    #[test]
    fn starts_down_comes_up_on_first_pass_then_needs_fall_and_rise() {
        let s = server();
        assert!(!s.is_up());
        assert_eq!(s.observe_check(check(false), 2, 2), None);
        assert_eq!(s.observe_check(check(true), 2, 2), Some(Transition::Up));
        assert_eq!(s.observe_check(check(false), 2, 2), None);
        assert!(s.is_up());
        assert_eq!(s.observe_check(check(false), 2, 2), Some(Transition::Down));
        assert_eq!(s.observe_check(check(true), 2, 2), None);
        assert!(!s.is_up());
        assert_eq!(s.observe_check(check(true), 2, 2), Some(Transition::Up));
    }

    #[test]
    fn between_states_only_while_a_change_is_unconfirmed() {
        let s = server();
        // Never up: its first pass brings it up, so a failing new server is not in transition.
        s.observe_check(check(false), 2, 2);
        assert!(!s.in_transition());
        s.observe_check(check(true), 2, 2);
        assert!(!s.in_transition());
        s.observe_check(check(false), 2, 2);
        assert!(s.in_transition(), "up, one failure of two");
        s.observe_check(check(false), 2, 2);
        assert!(!s.in_transition(), "down: confirmed");
        s.observe_check(check(true), 2, 2);
        assert!(s.in_transition(), "down, one pass of two");
        s.observe_check(check(false), 2, 2);
        assert!(!s.in_transition(), "the pass was not repeated");
        s.observe_check(check(true), 2, 2);
        s.observe_check(check(true), 2, 2);
        assert!(s.is_up() && !s.in_transition());
    }

    #[test]
    fn max_fails_within_fail_timeout_ejects() {
        let s = server();
        s.observe_check(check(true), 1, 1);
        let t = Duration::from_secs(60);
        assert!(!s.record_failure(FailureKind::Connect, 3, t));
        assert!(!s.record_failure(FailureKind::Status5xx, 3, t));
        assert!(s.is_available(now_ms()));
        assert!(s.record_failure(FailureKind::GrpcUnavailable, 3, t));
        assert!(!s.is_available(now_ms()));
        assert_eq!(s.status().state, "ejected");
        // max_fails = 0 turns passive health off.
        let s = server();
        s.observe_check(check(true), 1, 1);
        for _ in 0..10 {
            assert!(!s.record_failure(FailureKind::Connect, 0, t));
        }
        assert!(s.is_available(now_ms()));
    }

    #[test]
    fn ending_streams_cancels_old_tokens_only() {
        let s = server();
        let old = s.streams_token();
        s.end_streams();
        assert!(old.is_cancelled());
        assert!(!s.streams_token().is_cancelled());
    }
}
