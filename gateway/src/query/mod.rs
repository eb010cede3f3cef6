//! `POST /v2/query` (beyond Canton's v2, what JSON API v1's query store did): active contracts
//! of templates and parties, filtered on their payload, served from the local cache in stable
//! pages. The pure parts are here: [`filter`] (the predicate language), [`page`] (tokens) and
//! [`template`] (template id matching); [`run`] reads the cache.

pub mod filter;
pub mod page;
pub mod template;

use crate::api::model::JsCreatedEvent;
use crate::cache::acs::{CachedContract, ContractKey};
use crate::cache::PartyEntry;
use filter::Predicate;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A checked query.
#[derive(Debug, Clone)]
pub struct Query {
    pub template_ids: Vec<String>,
    pub predicate: Option<Predicate>,
    pub page_size: usize,
    pub after: Option<ContractKey>,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page {
    pub contracts: Vec<JsCreatedEvent>,
    /// The sort key of the last contract, if more follow.
    pub next: Option<ContractKey>,
}

impl Query {
    fn takes(&self, contract: &CachedContract, names: &HashMap<String, String>) -> bool {
        let event = &contract.event;
        (self.template_ids.is_empty()
            || self
                .template_ids
                .iter()
                .any(|t| template::matches(t, &event.template_id, names)))
            && self
                .predicate
                .as_ref()
                .is_none_or(|p| p.matches(Some(&event.create_argument)))
    }
}

/// Runs the query over the parties' cached sets: contracts in creation order, each once, with
/// the queried parties that see it as `witnessParties`.
pub fn run(query: &Query, entries: &[Arc<PartyEntry>], names: &HashMap<String, String>) -> Page {
    let want = query.page_size + 1;
    let hint = query.predicate.as_ref().and_then(Predicate::index_hint);
    let mut found: BTreeMap<ContractKey, (Arc<CachedContract>, Vec<String>)> = BTreeMap::new();
    for entry in entries {
        if let Some((path, _)) = &hint {
            entry.ensure_index(path);
        }
        let acs = entry.acs();
        let mut taken = 0;
        // An equality on a field narrows the scan to its index's candidates (a superset of the
        // matches, in creation order); without one every contract is checked.
        let candidates = hint
            .as_ref()
            .and_then(|(path, keys)| acs.candidates(path, keys, query.after.as_ref()));
        let scan: Box<dyn Iterator<Item = (&ContractKey, &Arc<CachedContract>)>> = match candidates
        {
            Some(c) => Box::new(c.into_iter()),
            None => acs.iter_after(query.after.as_ref()),
        };
        for (key, contract) in scan {
            if taken >= want {
                break;
            }
            // Keys beyond the page we can still fill cannot make it into this page.
            if found.len() >= want && found.keys().next_back().is_some_and(|last| key > last) {
                break;
            }
            if !query.takes(contract, names) {
                continue;
            }
            taken += 1;
            found
                .entry(key.clone())
                .or_insert_with(|| (contract.clone(), Vec::new()))
                .1
                .push(entry.party.clone());
        }
    }
    let more = found.len() > query.page_size;
    let contracts: Vec<(ContractKey, JsCreatedEvent)> = found
        .into_iter()
        .take(query.page_size)
        .map(|(key, (contract, witnesses))| {
            let mut event = contract.event.clone();
            event.witness_parties = witnesses;
            (key, event)
        })
        .collect();
    let next = if more {
        contracts.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    Page {
        contracts: contracts.into_iter().map(|(_, e)| e).collect(),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::acs::tests::{archived, created, tx};
    use crate::cache::tests::{cache, entry};
    use std::time::Duration;

    fn query(page_size: usize, predicate: Option<Predicate>) -> Query {
        Query {
            template_ids: vec!["#iou:Iou:Iou".into()],
            predicate,
            page_size,
            after: None,
        }
    }

    #[tokio::test]
    async fn pages_merge_parties_in_creation_order() {
        let c = cache(u64::MAX, Duration::from_secs(1));
        let alice = entry(
            &c,
            "Alice",
            &[
                tx(1, vec![created(1, "a1", "USD")]),
                tx(3, vec![created(3, "shared", "USD")]),
                tx(5, vec![created(5, "a5", "EUR")]),
                tx(6, vec![archived(6, "a1")]),
            ],
        );
        let bob = entry(
            &c,
            "Bob",
            &[
                tx(2, vec![created(2, "b2", "USD")]),
                tx(3, vec![created(3, "shared", "USD")]),
                tx(4, vec![created(4, "b4", "USD")]),
            ],
        );
        let entries = vec![alice, bob];
        let names = HashMap::new();
        let usd = filter::parse(&serde_json::json!({"currency": "USD"}), "filter").unwrap();
        let first = run(&query(2, Some(usd.clone())), &entries, &names);
        let ids: Vec<_> = first
            .contracts
            .iter()
            .map(|c| c.contract_id.as_str())
            .collect();
        assert_eq!(ids, vec!["b2", "shared"]);
        assert_eq!(first.contracts[1].witness_parties, vec!["Alice", "Bob"]);
        let next = first.next.clone().unwrap();
        let second = run(
            &Query {
                after: Some(next),
                ..query(2, Some(usd))
            },
            &entries,
            &names,
        );
        let ids: Vec<_> = second
            .contracts
            .iter()
            .map(|c| c.contract_id.as_str())
            .collect();
        assert_eq!(ids, vec!["b4"]);
        assert!(second.next.is_none());
        // Another template matches nothing.
        let other = Query {
            template_ids: vec!["#iou:Iou:Other".into()],
            ..query(10, None)
        };
        assert!(run(&other, &entries, &names).contracts.is_empty());
        // No filter: all four active contracts.
        assert_eq!(run(&query(10, None), &entries, &names).contracts.len(), 4);
    }
}
