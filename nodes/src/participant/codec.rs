//! Encodings the participant needs: contracts as stored JSON, template ids with their exact
//! package, and ledger values between `google.protobuf.Value` (the Ledger API) and JSON (the
//! model's Canton JSON API encoding).

use crate::model::ids::{ContractId, Party, TemplateRef};
use crate::model::{to_json, Contract, ContractKey, PackageStore};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tandem_proto::prost_types::{self, value::Kind};

/// `<package id>:<Module>:<Entity>`: the exact package version, parseable as a `TemplateRef`.
pub fn template_id(c: &crate::model::TemplateId) -> String {
    format!("{}:{}:{}", c.package_id.as_str(), c.module, c.entity)
}

fn parties(ps: &BTreeSet<Party>) -> Json {
    Json::Array(ps.iter().map(|p| Json::String(p.to_string())).collect())
}

/// A contract's stored JSON: its argument, parties and key.
pub fn contract_to_json(c: &Contract) -> Json {
    json!({
        "argument": to_json(&c.argument),
        "signatories": parties(&c.signatories),
        "observers": parties(&c.observers),
        "key": c.key.as_ref().map(|k| to_json(&k.value)),
        "maintainers": c.key.as_ref().map(|k| parties(&k.maintainers)),
    })
}

fn party_set(j: &Json, field: &str) -> Result<BTreeSet<Party>, String> {
    j.get(field)
        .and_then(Json::as_array)
        .ok_or_else(|| format!("{field}: not a list"))?
        .iter()
        .map(|p| {
            p.as_str()
                .ok_or_else(|| format!("{field}: not a party"))
                .and_then(|s| Party::parse(s).map_err(|e| e.to_string()))
        })
        .collect()
}

/// The contract `id` of `template_id` from its stored JSON, decoded with the package's types.
pub fn contract_from_json(
    packages: &PackageStore,
    id: &str,
    template_id: &str,
    j: &Json,
) -> Result<Arc<Contract>, String> {
    let r = TemplateRef::parse(template_id).map_err(|e| e.to_string())?;
    let template = packages.template(&r).map_err(|e| e.to_string())?;
    let argument = packages
        .decode_create_argument(&r, j.get("argument").unwrap_or(&Json::Null))
        .map_err(|e| e.to_string())?;
    let key = match j.get("key") {
        Some(k) if !k.is_null() => Some(ContractKey {
            value: packages.decode_key(&r, k).map_err(|e| e.to_string())?,
            maintainers: party_set(j, "maintainers")?,
        }),
        _ => None,
    };
    Ok(Arc::new(Contract {
        id: ContractId::parse(id).map_err(|e| e.to_string())?,
        template_id: template.id.clone(),
        argument,
        signatories: party_set(j, "signatories")?,
        observers: party_set(j, "observers")?,
        key,
    }))
}

/// `google.protobuf.Value` → JSON. Numbers that are whole stay integers.
pub fn proto_to_json(v: &prost_types::Value) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
            }
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(proto_to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), proto_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// JSON → `google.protobuf.Value`.
pub fn json_to_proto(j: &Json) -> prost_types::Value {
    let kind = match j {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_proto).collect(),
        }),
        Json::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), json_to_proto(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_the_proto_value_round_trip() {
        let j = json!({"issuer": "Bank::1220ab", "amount": "100.0000000000", "tags": ["a", null],
                       "nested": {"n": 3, "f": 1.5, "ok": true}});
        assert_eq!(proto_to_json(&json_to_proto(&j)), j);
    }
}
