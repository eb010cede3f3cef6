//! What this process knows about the events above the fan-out's position without reading them.
//! Every commit with events that the head tracker learns of by a signal is recorded here before
//! the head moves past it: this process's own commits with their events, other writers' with who
//! reads their events (the notification names them). Where no other writer's commit in a range
//! has a reader subscribed here, the fan-out takes this process's own events from here and skips
//! the database read.
//!
//! What was not announced is unknown and read: everything up to the latest event of the last
//! re-read of the writers (notifications may have been missed before it), everything from a sign
//! of missed notifications until the next re-read, and a write of this process whose outcome is
//! unknown.

use crate::store::sequencer::StoredEvent;
use std::collections::VecDeque;
use std::sync::Arc;

/// Recorded commits beyond which the journal gives up and the fan-out reads (it only grows while
/// the fan-out cannot keep up).
const MAX_WRITES: usize = 100_000;

/// What a commit wrote, as far as this process knows without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Written {
    /// This process's own commit: the events it inserted.
    Events(Vec<Arc<StoredEvent>>),
    /// Another writer's commit, announced with who reads its events (`*`: everyone).
    ReadBy(Vec<String>),
    /// Announced without its readers (too many to name).
    Unknown,
}

/// One commit's events: every one has `lo <= ts <= hi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Write {
    pub lo: i64,
    pub hi: i64,
    pub written: Written,
}

#[derive(Debug)]
pub(super) struct Journal {
    writes: VecDeque<Write>,
    /// Events at or below this may have been committed unannounced.
    unknown_up_to: i64,
    /// Set from the start and whenever announcements may have been missed, until the writers
    /// are re-read: until then nothing is known.
    lost: bool,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            writes: VecDeque::new(),
            unknown_up_to: 0,
            lost: true,
        }
    }
}

impl Journal {
    pub fn record(&mut self, write: Write) {
        if self.writes.len() >= MAX_WRITES {
            self.writes.clear();
            self.lost = true;
        }
        self.writes.push_back(write);
    }

    /// Announcements may have been missed: nothing is known until the next re-read.
    pub fn lost(&mut self) {
        self.lost = true;
    }

    /// Events up to `up_to` may have been committed unannounced.
    pub fn unsure(&mut self, up_to: i64) {
        self.unknown_up_to = self.unknown_up_to.max(up_to);
    }

    /// The writers were re-read with every commit up to `max_event_ts` in the snapshot, and the
    /// listener hears every commit since: what follows is announced.
    pub fn resynced(&mut self, max_event_ts: i64) {
        self.lost = false;
        self.unsure(max_event_ts);
    }

    /// The events with `after < ts <= up_to` that `wanted` readers read, if the journal knows
    /// them all: None if the range must be read.
    pub fn known(
        &self,
        after: i64,
        up_to: i64,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<Vec<Arc<StoredEvent>>> {
        if self.lost || self.unknown_up_to > after {
            return None;
        }
        let mut events = Vec::new();
        for w in &self.writes {
            if w.hi <= after || w.lo > up_to {
                continue;
            }
            match &w.written {
                Written::Events(own) => events.extend(
                    own.iter()
                        .filter(|e| e.ts > after && e.ts <= up_to)
                        .cloned(),
                ),
                Written::ReadBy(readers) if !readers.iter().any(|r| wanted(r)) => {}
                Written::ReadBy(_) | Written::Unknown => return None,
            }
        }
        events.sort_by_key(|e| e.ts);
        Some(events)
    }

    /// Drops the commits wholly at or below `at`, which the fan-out has passed.
    pub fn passed(&mut self, at: i64) {
        self.writes.retain(|w| w.hi > at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, reader: &str) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            ts,
            sender: reader.into(),
            message_id: format!("m{ts}"),
            recipients: vec![reader.into()],
            payload: vec![],
            error: None,
        })
    }

    fn resynced() -> Journal {
        let mut j = Journal::default();
        j.resynced(100);
        j
    }

    #[test]
    fn nothing_is_known_before_the_first_reread_nor_below_its_snapshot() {
        let mut j = Journal::default();
        assert_eq!(j.known(100, 200, |_| false), None);
        j.resynced(150);
        assert_eq!(j.known(100, 200, |_| false), None);
        assert_eq!(j.known(150, 200, |_| false), Some(vec![]));
        j.lost();
        assert_eq!(j.known(150, 200, |_| false), None);
    }

    #[test]
    fn own_events_are_known_and_others_skipped_unless_wanted() {
        let mut j = resynced();
        j.record(Write {
            lo: 110,
            hi: 130,
            written: Written::Events(vec![event(110, "a"), event(130, "a")]),
        });
        j.record(Write {
            lo: 120,
            hi: 120,
            written: Written::ReadBy(vec!["b".into()]),
        });
        let ts = |events: Option<Vec<Arc<StoredEvent>>>| {
            events.map(|e| e.iter().map(|e| e.ts).collect::<Vec<_>>())
        };
        // `b` is not subscribed here: only the own events in range.
        assert_eq!(ts(j.known(100, 125, |r| r == "a")), Some(vec![110]));
        assert_eq!(ts(j.known(125, 200, |r| r == "a")), Some(vec![130]));
        // `b` is: its event must be read.
        assert_eq!(j.known(100, 125, |r| r == "b"), None);
        // Passed commits no longer count.
        j.passed(125);
        assert_eq!(ts(j.known(125, 200, |r| r == "b")), Some(vec![130]));
    }

    #[test]
    fn unnamed_readers_and_unsure_writes_are_read() {
        let mut j = resynced();
        j.record(Write {
            lo: 110,
            hi: 110,
            written: Written::Unknown,
        });
        assert_eq!(j.known(100, 200, |_| false), None);
        j.passed(110);
        assert_eq!(j.known(110, 200, |_| false), Some(vec![]));
        j.unsure(150);
        assert_eq!(j.known(110, 200, |_| false), None);
        assert_eq!(j.known(150, 200, |_| false), Some(vec![]));
    }
}
