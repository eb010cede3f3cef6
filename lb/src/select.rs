//! Server selection, per request: which server of a group takes this request. Selection only
//! reads server state; health checks and passive health write it. Passive ejection steers
//! traffic away from a server only while another can take it (Envoy's panic threshold at its
//! strictest): ejecting the last server, or the one active server, would turn a server's
//! partial failures (say, UNAVAILABLE while its own dependency fails over) into a total outage.

use crate::server::{now_ms, Server};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tandem_nodes::config::Strategy;

pub trait Selector: Send + Sync {
    /// The index of the server for one request, never one of `tried`; `None` when no
    /// server may take it.
    fn select(&self, servers: &[Arc<Server>], tried: &[usize]) -> Option<usize>;

    /// The server that holds the active role, for strategies that have one.
    fn active(&self, _servers: &[Arc<Server>]) -> Option<usize> {
        None
    }
}

pub fn for_strategy(strategy: Strategy) -> Box<dyn Selector> {
    match strategy {
        Strategy::Active => Box::new(Active),
        Strategy::RoundRobin => Box::new(RoundRobin::default()),
    }
}

/// Every healthy server in turn.
#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selector for RoundRobin {
    fn select(&self, servers: &[Arc<Server>], tried: &[usize]) -> Option<usize> {
        let n = servers.len();
        if n == 0 {
            return None;
        }
        let now = now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let pick = |usable: &dyn Fn(&Server) -> bool| {
            (0..n)
                .map(|i| (start + i) % n)
                .find(|&i| !tried.contains(&i) && usable(&servers[i]))
        };
        pick(&|s| s.is_available(now)).or_else(|| pick(&|s| s.is_up()))
    }
}

/// The one server whose health check answers 200. If several do (a switchover in progress),
/// the one that came up last: it is the newest leader.
pub struct Active;

fn newest_up(servers: &[Arc<Server>], accept: impl Fn(usize, &Server) -> bool) -> Option<usize> {
    servers
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_up() && accept(*i, s))
        .max_by_key(|(_, s)| s.up_seq())
        .map(|(i, _)| i)
}

impl Selector for Active {
    fn select(&self, servers: &[Arc<Server>], tried: &[usize]) -> Option<usize> {
        // Only the active server may take traffic, ejected or not (there is no other); when
        // its connect failed, the request fails rather than reaching a standby.
        let active = newest_up(servers, |_, _| true)?;
        (!tried.contains(&active)).then_some(active)
    }

    fn active(&self, servers: &[Arc<Server>]) -> Option<usize> {
        newest_up(servers, |_, _| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{CheckRecord, ServerKey};

    fn servers(n: usize) -> Vec<Arc<Server>> {
        let registry = prometheus::Registry::new();
        let metrics = crate::metrics::Metrics::new(&registry).unwrap();
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Arc::new(Server::new(
                    ServerKey {
                        address: addr,
                        health: addr,
                    },
                    metrics.server("g", addr),
                ))
            })
            .collect()
    }

    fn set(s: &Server, ok: bool) {
        let record = CheckRecord {
            at_unix_ms: 0,
            ok,
            duration_ms: 0,
            detail: String::new(),
        };
        s.observe_check(record, 1, 1);
    }

    #[test]
    fn round_robin_spreads_over_available_servers_and_skips_tried() {
        let s = servers(3);
        let rr = RoundRobin::default();
        assert_eq!(rr.select(&s, &[]), None, "servers start down");
        for server in &s {
            set(server, true);
        }
        let mut picks: Vec<_> = (0..6).map(|_| rr.select(&s, &[]).unwrap()).collect();
        picks.sort_unstable();
        assert_eq!(picks, [0, 0, 1, 1, 2, 2]);
        set(&s[1], false);
        assert!((0..6).all(|_| rr.select(&s, &[]) != Some(1)));
        assert!((0..6).all(|_| rr.select(&s, &[0]) == Some(2)));
    }

    #[test]
    fn active_picks_the_newest_up_server_only() {
        let s = servers(2);
        assert_eq!(Active.select(&s, &[]), None);
        set(&s[0], true);
        assert_eq!(Active.select(&s, &[]), Some(0));
        set(&s[1], true);
        assert_eq!(Active.select(&s, &[]), Some(1));
        assert_eq!(Active.select(&s, &[1]), None, "never a standby");
        set(&s[1], false);
        assert_eq!(Active.select(&s, &[]), Some(0));
        eject(&s[0]);
        assert_eq!(
            Active.select(&s, &[]),
            Some(0),
            "the active server stays, ejected"
        );
    }

    fn eject(s: &Server) {
        let kind = crate::server::FailureKind::GrpcUnavailable;
        assert!(s.record_failure(kind, 1, std::time::Duration::from_secs(60)));
    }

    #[test]
    fn ejection_steers_round_robin_only_while_another_server_can_take_it() {
        let s = servers(2);
        let rr = RoundRobin::default();
        for server in &s {
            set(server, true);
        }
        eject(&s[0]);
        assert!((0..4).all(|_| rr.select(&s, &[]) == Some(1)));
        eject(&s[1]);
        let mut picks: Vec<_> = (0..4).map(|_| rr.select(&s, &[]).unwrap()).collect();
        picks.sort_unstable();
        assert_eq!(picks, [0, 0, 1, 1], "all ejected: all serve");
        set(&s[0], false);
        assert!(
            (0..4).all(|_| rr.select(&s, &[]) == Some(1)),
            "down stays out"
        );
    }
}
