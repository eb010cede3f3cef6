//! One party's active contract set as the cache keeps it: contracts by creation order (offset,
//! contract id), so pages are stable, and the offset the set is complete up to. Applying
//! updates is pure and idempotent: an update at or below the current offset is a duplicate and
//! is ignored, so a resumed stream can never apply a transaction twice.

use crate::api::model::JsCreatedEvent;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tandem_proto::ledger::v2 as pb;

/// A cached contract, converted to its JSON form once.
#[derive(Debug, Clone)]
pub struct CachedContract {
    pub event: JsCreatedEvent,
    /// Approximate memory held (for the cache's bound).
    pub bytes: usize,
}

/// The sort key: creation offset, then contract id.
pub type ContractKey = (i64, String);

/// What applying an update did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub created: usize,
    pub archived: usize,
    /// The update was at or below the current offset and was skipped.
    pub duplicate: bool,
}

/// Fixed overhead per contract beyond its JSON (maps, keys, Arc).
const PER_CONTRACT_OVERHEAD: usize = 160;

/// One party's active contracts.
#[derive(Debug, Default)]
pub struct PartyAcs {
    contracts: BTreeMap<ContractKey, Arc<CachedContract>>,
    by_id: HashMap<String, i64>,
    offset: i64,
    bytes: usize,
}

impl PartyAcs {
    /// An empty set complete up to `offset` (a snapshot's offset).
    pub fn at(offset: i64) -> Self {
        Self {
            offset,
            ..Self::default()
        }
    }

    /// The offset the set is complete up to.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    pub fn len(&self) -> usize {
        self.contracts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contracts.is_empty()
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a contract of the snapshot (or of an update).
    pub fn insert(&mut self, event: &pb::CreatedEvent) {
        if self.by_id.contains_key(&event.contract_id) {
            return;
        }
        let json = JsCreatedEvent::from(event);
        let bytes = serde_json::to_vec(&json).map_or(0, |v| v.len()) + PER_CONTRACT_OVERHEAD;
        self.by_id.insert(event.contract_id.clone(), event.offset);
        self.contracts.insert(
            (event.offset, event.contract_id.clone()),
            Arc::new(CachedContract { event: json, bytes }),
        );
        self.bytes += bytes;
    }

    /// Removes a contract; unknown ids are ignored (the party may not have seen its creation).
    pub fn remove(&mut self, contract_id: &str) -> bool {
        let Some(offset) = self.by_id.remove(contract_id) else {
            return false;
        };
        if let Some(c) = self.contracts.remove(&(offset, contract_id.to_owned())) {
            self.bytes = self.bytes.saturating_sub(c.bytes);
        }
        true
    }

    /// Applies one transaction: creates add, archives and consuming exercises remove, in event
    /// order. Then the set is complete up to the transaction's offset.
    pub fn apply(&mut self, tx: &pb::Transaction) -> Applied {
        if tx.offset <= self.offset {
            return Applied {
                duplicate: true,
                ..Applied::default()
            };
        }
        let mut applied = Applied::default();
        for event in &tx.events {
            match &event.event {
                Some(pb::event::Event::Created(c)) => {
                    let mut c = c.clone();
                    if c.offset == 0 {
                        c.offset = tx.offset;
                    }
                    self.insert(&c);
                    applied.created += 1;
                }
                Some(pb::event::Event::Archived(a)) => {
                    applied.archived += usize::from(self.remove(&a.contract_id));
                }
                Some(pb::event::Event::Exercised(x)) if x.consuming => {
                    applied.archived += usize::from(self.remove(&x.contract_id));
                }
                _ => {}
            }
        }
        self.offset = tx.offset;
        applied
    }

    /// Records that nothing the party sees happened up to `offset` (a checkpoint, or the end
    /// of a bounded update read). Never moves backwards.
    pub fn advance(&mut self, offset: i64) {
        self.offset = self.offset.max(offset);
    }

    /// Contracts after `after` in creation order.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&ContractKey>,
    ) -> Box<dyn Iterator<Item = (&'a ContractKey, &'a Arc<CachedContract>)> + 'a> {
        use std::ops::Bound;
        match after {
            Some(key) => Box::new(
                self.contracts
                    .range((Bound::Excluded(key.clone()), Bound::Unbounded)),
            ),
            None => Box::new(self.contracts.iter()),
        }
    }

    /// Whether the contract is in the set.
    pub fn contains(&self, contract_id: &str) -> bool {
        self.by_id.contains_key(contract_id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tandem_proto::prost_types::{value::Kind, Struct, Value};

    pub fn created(offset: i64, cid: &str, currency: &str) -> pb::Event {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            "currency".to_owned(),
            Value {
                kind: Some(Kind::StringValue(currency.to_owned())),
            },
        );
        pb::Event {
            event: Some(pb::event::Event::Created(pb::CreatedEvent {
                offset,
                contract_id: cid.to_owned(),
                template_id: "#iou:Iou:Iou".to_owned(),
                create_arguments: Some(Value {
                    kind: Some(Kind::StructValue(Struct { fields })),
                }),
                signatories: vec!["Bank".into()],
                witness_parties: vec!["Alice".into()],
                ..Default::default()
            })),
        }
    }

    pub fn archived(offset: i64, cid: &str) -> pb::Event {
        pb::Event {
            event: Some(pb::event::Event::Archived(pb::ArchivedEvent {
                offset,
                contract_id: cid.to_owned(),
                template_id: "#iou:Iou:Iou".to_owned(),
                ..Default::default()
            })),
        }
    }

    pub fn exercised(offset: i64, cid: &str, consuming: bool) -> pb::Event {
        pb::Event {
            event: Some(pb::event::Event::Exercised(pb::ExercisedEvent {
                offset,
                contract_id: cid.to_owned(),
                consuming,
                ..Default::default()
            })),
        }
    }

    pub fn tx(offset: i64, events: Vec<pb::Event>) -> pb::Transaction {
        pb::Transaction {
            update_id: format!("u{offset}"),
            offset,
            events,
            ..Default::default()
        }
    }

    fn ids(acs: &PartyAcs) -> Vec<String> {
        acs.iter_after(None).map(|(k, _)| k.1.clone()).collect()
    }

    #[test]
    fn creates_and_archives_in_order() {
        let mut acs = PartyAcs::at(0);
        acs.apply(&tx(1, vec![created(1, "a", "USD"), created(1, "b", "EUR")]));
        acs.apply(&tx(2, vec![archived(2, "a"), created(2, "c", "USD")]));
        assert_eq!(ids(&acs), vec!["b", "c"]);
        assert_eq!(acs.offset(), 2);
        // A consuming exercise removes; a non-consuming one does not.
        acs.apply(&tx(3, vec![exercised(3, "b", false)]));
        assert!(acs.contains("b"));
        let applied = acs.apply(&tx(4, vec![exercised(4, "b", true), archived(4, "b")]));
        assert_eq!(applied.archived, 1);
        assert_eq!(ids(&acs), vec!["c"]);
    }

    #[test]
    fn duplicates_and_replays_are_ignored() {
        let mut acs = PartyAcs::at(5);
        let applied = acs.apply(&tx(5, vec![created(5, "old", "USD")]));
        assert!(applied.duplicate);
        assert!(acs.is_empty());
        acs.apply(&tx(6, vec![created(6, "x", "USD")]));
        // The same transaction again (a resumed stream overlapping by one) changes nothing.
        assert!(acs.apply(&tx(6, vec![created(6, "x", "USD")])).duplicate);
        assert_eq!(acs.len(), 1);
        // Archiving a contract the party never saw is harmless.
        acs.apply(&tx(7, vec![archived(7, "unknown")]));
        assert_eq!(acs.len(), 1);
        acs.advance(3);
        assert_eq!(acs.offset(), 7);
        acs.advance(10);
        assert_eq!(acs.offset(), 10);
    }

    #[test]
    fn memory_is_accounted() {
        let mut acs = PartyAcs::at(0);
        acs.apply(&tx(1, vec![created(1, "a", "USD"), created(1, "b", "USD")]));
        let two = acs.bytes();
        assert!(two > 2 * PER_CONTRACT_OVERHEAD);
        acs.apply(&tx(2, vec![archived(2, "a"), archived(2, "b")]));
        assert_eq!(acs.bytes(), 0);
    }

    #[test]
    fn iteration_resumes_after_a_key() {
        let mut acs = PartyAcs::at(0);
        for i in 1..=5 {
            acs.apply(&tx(i, vec![created(i, &format!("c{i}"), "USD")]));
        }
        let after = (2, "c2".to_owned());
        let rest: Vec<_> = acs.iter_after(Some(&after)).map(|(k, _)| k.0).collect();
        assert_eq!(rest, vec![3, 4, 5]);
    }
}
