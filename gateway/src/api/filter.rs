//! Canton's `TransactionFilter` (templates per party) against the Ledger API's simpler one
//! (parties and one template list): the request asks the ledger for the union, and events are
//! then kept only where some witness party's own filter accepts the template.

use super::model::{JsIdentifierFilter, JsTransaction, JsTransactionFilter};
use crate::error::ApiError;
use crate::query::template;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tandem_proto::ledger::v2 as pb;

/// Per party: `None` for all templates, else the template ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyFilter {
    by_party: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl PartyFilter {
    /// Checks and converts a request's filter; `field` is its path in the request.
    pub fn from_js(filter: &JsTransactionFilter, field: &str) -> Result<Self, ApiError> {
        if filter.filters_by_party.is_empty() {
            return Err(ApiError::field(
                format!("{field}.filtersByParty"),
                "name at least one party",
            ));
        }
        let mut by_party = BTreeMap::new();
        for (party, filters) in &filter.filters_by_party {
            if party.is_empty() {
                return Err(ApiError::field(
                    format!("{field}.filtersByParty"),
                    "party ids must not be empty",
                ));
            }
            let mut templates = BTreeSet::new();
            let mut wildcard = filters.cumulative.is_empty();
            for (i, f) in filters.cumulative.iter().enumerate() {
                match &f.identifier_filter {
                    JsIdentifierFilter::WildcardFilter(_) => wildcard = true,
                    JsIdentifierFilter::TemplateFilter(t) => {
                        if template::split(&t.value.template_id).is_none() {
                            return Err(ApiError::field(
                                format!("{field}.filtersByParty.{party}.cumulative[{i}].identifierFilter.TemplateFilter.value.templateId"),
                                "not a template id (<package>:<Module>:<Template>)",
                            ));
                        }
                        templates.insert(t.value.template_id.clone());
                    }
                }
            }
            by_party.insert(party.clone(), (!wildcard).then_some(templates));
        }
        Ok(Self { by_party })
    }

    /// Every template id the filter names.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.by_party
            .values()
            .flatten()
            .flatten()
            .map(String::as_str)
    }

    pub fn parties(&self) -> Vec<String> {
        self.by_party.keys().cloned().collect()
    }

    /// The filter to send to the ledger: all parties, and the union of templates (none, i.e.
    /// all, if any party takes every template).
    pub fn to_pb(&self) -> pb::TransactionFilter {
        let mut templates = BTreeSet::new();
        let mut all = false;
        for t in self.by_party.values() {
            match t {
                Some(ids) => templates.extend(ids.iter().cloned()),
                None => all = true,
            }
        }
        pb::TransactionFilter {
            parties: self.parties(),
            template_ids: if all {
                Vec::new()
            } else {
                templates.into_iter().collect()
            },
        }
    }

    /// Whether a witness party's filter takes the template.
    pub fn accepts(
        &self,
        template_id: &str,
        witnesses: &[String],
        names: &HashMap<String, String>,
    ) -> bool {
        witnesses.iter().any(|w| match self.by_party.get(w) {
            Some(None) => true,
            Some(Some(ids)) => ids.iter().any(|t| template::matches(t, template_id, names)),
            None => false,
        })
    }

    /// The transaction with only the events the filter takes; `None` if none is left.
    pub fn narrow(
        &self,
        mut tx: JsTransaction,
        names: &HashMap<String, String>,
    ) -> Option<JsTransaction> {
        tx.events
            .retain(|e| self.accepts(e.template_id(), e.witness_parties(), names));
        (!tx.events.is_empty()).then_some(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::*;

    fn filter(json: serde_json::Value) -> JsTransactionFilter {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn per_party_templates_become_a_union_and_narrow_events() {
        let f = PartyFilter::from_js(
            &filter(serde_json::json!({"filtersByParty": {
                "Alice": {"cumulative": [{"identifierFilter": {"TemplateFilter": {"value": {"templateId": "#iou:Iou:Iou"}}}}]},
                "Bob": {"cumulative": [{"identifierFilter": {"TemplateFilter": {"value": {"templateId": "#iou:Iou:Other", "includeCreatedEventBlob": false}}}}]}
            }})),
            "filter",
        )
        .unwrap();
        let pb = f.to_pb();
        assert_eq!(pb.parties, vec!["Alice", "Bob"]);
        assert_eq!(pb.template_ids, vec!["#iou:Iou:Iou", "#iou:Iou:Other"]);
        let names = HashMap::new();
        assert!(f.accepts("#iou:Iou:Iou", &["Alice".into()], &names));
        assert!(!f.accepts("#iou:Iou:Iou", &["Bob".into()], &names));
        assert!(f.accepts("#iou:Iou:Other", &["Alice".into(), "Bob".into()], &names));

        let wildcard = PartyFilter::from_js(
            &filter(serde_json::json!({"filtersByParty": {"Alice": {}, "Bob": {"cumulative": [{"identifierFilter": {"WildcardFilter": {"value": {}}}}]}}})),
            "filter",
        )
        .unwrap();
        assert!(wildcard.to_pb().template_ids.is_empty());
        assert!(wildcard.accepts("#x:Y:Z", &["Bob".into()], &names));
    }

    #[test]
    fn bad_filters_name_the_field() {
        let err =
            PartyFilter::from_js(&filter(serde_json::json!({"filtersByParty": {}})), "filter")
                .unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest { field: Some(f), .. } if f == "filter.filtersByParty")
        );
        let err = PartyFilter::from_js(
            &filter(serde_json::json!({"filtersByParty": {"A": {"cumulative": [{"identifierFilter": {"TemplateFilter": {"value": {"templateId": "nope"}}}}]}}})),
            "filter",
        )
        .unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest { field: Some(f), .. } if f.ends_with("templateId"))
        );
        assert!(serde_json::from_value::<JsTransactionFilter>(
            serde_json::json!({"filtersByParty": {}, "filtersForAnyParty": {}})
        )
        .is_err());
    }
}
