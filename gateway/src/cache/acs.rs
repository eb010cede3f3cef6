//! One party's active contract set as the cache keeps it: contracts by creation order (offset,
//! contract id), so pages are stable, and the offset the set is complete up to. Applying
//! updates is pure and idempotent: an update at or below the current offset is a duplicate and
//! is ignored, so a resumed stream can never apply a transaction twice.

use crate::api::model::JsCreatedEvent;
use crate::query::filter::index_key_at;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// Equality indexes on payload fields, built when a query first needs one and kept up to
    /// date after: field path → index key → contracts.
    indexes: HashMap<Vec<String>, HashMap<String, BTreeSet<ContractKey>>>,
}

/// Approximate memory of one contract's entry in one index (its key, a contract id, set nodes).
const INDEX_ENTRY_BYTES: usize = 128;

/// Indexes one party's set may hold; a query on another field scans.
pub const MAX_INDEXES: usize = 8;

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

    /// Approximate memory held, indexes included.
    pub fn bytes(&self) -> usize {
        self.bytes + self.indexes.len() * self.contracts.len() * INDEX_ENTRY_BYTES
    }

    /// Adds a contract of the snapshot (or of an update).
    pub fn insert(&mut self, event: &pb::CreatedEvent) {
        if self.by_id.contains_key(&event.contract_id) {
            return;
        }
        let json = JsCreatedEvent::from(event);
        let bytes = serde_json::to_vec(&json).map_or(0, |v| v.len()) + PER_CONTRACT_OVERHEAD;
        self.by_id.insert(event.contract_id.clone(), event.offset);
        let key = (event.offset, event.contract_id.clone());
        for (path, index) in &mut self.indexes {
            let at = index_key_at(&json.create_argument, path);
            index.entry(at).or_default().insert(key.clone());
        }
        self.contracts
            .insert(key, Arc::new(CachedContract { event: json, bytes }));
        self.bytes += bytes;
    }

    /// Removes a contract; unknown ids are ignored (the party may not have seen its creation).
    pub fn remove(&mut self, contract_id: &str) -> bool {
        let Some(offset) = self.by_id.remove(contract_id) else {
            return false;
        };
        let key = (offset, contract_id.to_owned());
        if let Some(c) = self.contracts.remove(&key) {
            self.bytes = self.bytes.saturating_sub(c.bytes);
            for (path, index) in &mut self.indexes {
                let at = index_key_at(&c.event.create_argument, path);
                if let Some(keys) = index.get_mut(&at) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        index.remove(&at);
                    }
                }
            }
        }
        true
    }

    /// Whether an index on `path` exists, or may be built.
    pub fn can_index(&self, path: &[String]) -> bool {
        self.indexes.contains_key(path) || self.indexes.len() < MAX_INDEXES
    }

    /// Builds the index on `path` (once; at most [`MAX_INDEXES`]).
    pub fn build_index(&mut self, path: &[String]) {
        if !self.can_index(path) || self.indexes.contains_key(path) {
            return;
        }
        let mut index: HashMap<String, BTreeSet<ContractKey>> = HashMap::new();
        for (key, c) in &self.contracts {
            let at = index_key_at(&c.event.create_argument, path);
            index.entry(at).or_default().insert(key.clone());
        }
        self.indexes.insert(path.to_vec(), index);
    }

    /// Through the index on `path`: the contracts whose field may equal one of the values with
    /// index keys `keys`, after `after`, in creation order. `None` without that index.
    pub fn candidates<'a>(
        &'a self,
        path: &[String],
        keys: &[String],
        after: Option<&ContractKey>,
    ) -> Option<Vec<(&'a ContractKey, &'a Arc<CachedContract>)>> {
        let index = self.indexes.get(path)?;
        let mut found: BTreeSet<&ContractKey> = BTreeSet::new();
        for k in keys {
            if let Some(set) = index.get(k) {
                found.extend(set.iter().filter(|c| after.is_none_or(|a| *c > a)));
            }
        }
        Some(
            found
                .into_iter()
                .filter_map(|k| self.contracts.get_key_value(k))
                .collect(),
        )
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

    /// Every query an index can answer gets, through the index, exactly the contracts a scan
    /// finds, before and after creates and archives change the indexed set.
    #[test]
    fn an_index_answers_like_a_scan() {
        use crate::query::filter::{parse, Predicate};
        let values = [
            "USD", "usd", "10", "10.0", "010", "10.50", "-0", "0", "0.0", "1e3",
        ];
        let mut acs = PartyAcs::at(0);
        let creates = values
            .iter()
            .enumerate()
            .map(|(i, v)| created(i as i64 + 1, &format!("c{i}"), v))
            .collect();
        acs.apply(&tx(20, creates));
        let filters = [
            serde_json::json!({"currency": "USD"}),
            serde_json::json!({"currency": "10"}),
            serde_json::json!({"currency": "10.0"}),
            serde_json::json!({"currency": 10}),
            serde_json::json!({"currency": 10.5}),
            serde_json::json!({"currency": "0"}),
            serde_json::json!({"currency": 0}),
            serde_json::json!({"currency": {"%eq": "010"}}),
            serde_json::json!({"currency": {"%in": ["usd", "10.5", 1000]}}),
            serde_json::json!({"currency": null}),
            serde_json::json!({"nested": {"currency": "USD"}}),
        ];
        let check = |acs: &PartyAcs, when: &str| {
            for f in &filters {
                let p: Predicate = parse(f, "filter").unwrap();
                let (path, keys) = p.index_hint().expect("an equality");
                let payload = |c: &CachedContract| c.event.create_argument.clone();
                let scanned: Vec<&str> = acs
                    .iter_after(None)
                    .filter(|(_, c)| p.matches(Some(&payload(c))))
                    .map(|(k, _)| k.1.as_str())
                    .collect();
                let indexed: Vec<&str> = acs
                    .candidates(&path, &keys, None)
                    .expect("the index was built")
                    .into_iter()
                    .filter(|(_, c)| p.matches(Some(&payload(c))))
                    .map(|(k, _)| k.1.as_str())
                    .collect();
                assert_eq!(indexed, scanned, "{when}: {f}");
            }
        };
        for path in [
            vec!["currency".to_string()],
            vec!["nested".into(), "currency".into()],
        ] {
            acs.build_index(&path);
        }
        check(&acs, "built");
        acs.apply(&tx(
            21,
            vec![
                archived(21, "c0"),
                archived(21, "c3"),
                created(21, "n1", "10.000"),
                created(21, "n2", "USD"),
            ],
        ));
        check(&acs, "after creates and archives");
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
