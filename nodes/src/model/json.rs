//! Values in the Canton JSON API encoding: ints and decimals as strings, time as RFC 3339,
//! optional as value-or-null (nested optionals as `[]` / `[v]`), contract ids and parties
//! as strings, records as objects, lists and tuples as arrays.
//!
//! Decoding is type-directed and strict: unknown fields, missing non-optional fields,
//! wrong JSON kinds, out-of-range numbers and malformed ids are errors with a path.
//! Missing optional fields decode as none, as in Canton. Ints may also be JSON integers;
//! decimals may be JSON integers but not fractional JSON numbers, which are binary floats
//! and could already have lost digits.

use serde_json::{Map, Value as Json};

use super::decimal::{Decimal, DecimalError};
use super::ids::{ContractId, Party, TypeConName};
use super::time::{Date, TimeError, Timestamp};
use super::types::{Name, RecordTypes, Type};
use super::value::Value;
use super::value::{join_path, Record, ValueError};

/// Encodes a value. Never fails: every value has an encoding.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Party(p) => Json::String(p.as_str().to_string()),
        Value::Text(t) => Json::String(t.clone()),
        Value::Int(i) => Json::String(i.to_string()),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Time(t) => Json::String(t.to_string()),
        Value::Date(d) => Json::String(d.to_string()),
        Value::ContractId(c) => Json::String(c.as_str().to_string()),
        Value::List(vs) => Json::Array(vs.iter().map(to_json).collect()),
        Value::Optional(None) => Json::Null,
        Value::Optional(Some(inner)) => match &**inner {
            Value::Optional(None) => Json::Array(Vec::new()),
            nested @ Value::Optional(Some(_)) => Json::Array(vec![to_json(nested)]),
            plain => to_json(plain),
        },
        Value::Record(r) => {
            let mut m = Map::with_capacity(r.fields.len());
            for (name, v) in &r.fields {
                m.insert(name.to_string(), to_json(v));
            }
            Json::Object(m)
        }
    }
}

/// Decodes `json` as a value of type `t`.
pub fn from_json(t: &Type, json: &Json, records: &dyn RecordTypes) -> Result<Value, ValueError> {
    decode(t, json, records, "")
}

/// Parses JSON text and decodes it as a value of type `t`.
pub fn from_json_str(t: &Type, text: &str, records: &dyn RecordTypes) -> Result<Value, ValueError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| ValueError::new("", format!("malformed JSON: {e}")))?;
    from_json(t, &json, records)
}

fn got(json: &Json) -> String {
    let mut s = json.to_string();
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn expected(path: &str, what: &str, json: &Json) -> ValueError {
    ValueError::new(path, format!("expected {what}, got {}", got(json)))
}

fn decode(
    t: &Type,
    json: &Json,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<Value, ValueError> {
    match t {
        Type::Party => {
            let s = string(json, path, "party")?;
            Party::parse(s)
                .map(Value::Party)
                .map_err(|e| ValueError::new(path, e.to_string()))
        }
        Type::Text => string(json, path, "text").map(|s| Value::Text(s.to_string())),
        Type::Int => decode_int(json, path),
        Type::Decimal => decode_decimal(json, path),
        Type::Bool => json
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| expected(path, "bool", json)),
        Type::Time => {
            let s = string(json, path, "time (RFC 3339)")?;
            Timestamp::parse(s)
                .map(Value::Time)
                .map_err(|e| time_error(path, "time", e, json))
        }
        Type::Date => {
            let s = string(json, path, "date (YYYY-MM-DD)")?;
            Date::parse(s)
                .map(Value::Date)
                .map_err(|e| time_error(path, "date", e, json))
        }
        Type::ContractId => {
            let s = string(json, path, "contract id")?;
            ContractId::parse(s)
                .map(Value::ContractId)
                .map_err(|e| ValueError::new(path, e.to_string()))
        }
        Type::List(inner) => {
            let items = json
                .as_array()
                .ok_or_else(|| expected(path, &t.to_string(), json))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(decode(inner, item, records, &format!("{path}[{i}]"))?);
            }
            Ok(Value::List(out))
        }
        Type::Tuple(ts) => decode_tuple(t, ts, json, records, path),
        Type::Optional(inner) => decode_optional(inner, json, records, path),
        Type::Record(id) => decode_record(id, json, records, path),
    }
}

fn string<'a>(json: &'a Json, path: &str, what: &str) -> Result<&'a str, ValueError> {
    json.as_str().ok_or_else(|| expected(path, what, json))
}

fn time_error(path: &str, what: &str, e: TimeError, json: &Json) -> ValueError {
    ValueError::new(path, format!("expected {what}: {e}, got {}", got(json)))
}

fn decode_int(json: &Json, path: &str) -> Result<Value, ValueError> {
    let out_of_range = || {
        ValueError::new(
            path,
            format!("int out of range (64 bits), got {}", got(json)),
        )
    };
    match json {
        Json::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(expected(path, "int", json));
            }
            s.parse::<i64>().map(Value::Int).map_err(|_| out_of_range())
        }
        Json::Number(n) if n.is_i64() => n.as_i64().map(Value::Int).ok_or_else(out_of_range),
        Json::Number(n) if n.is_u64() => Err(out_of_range()),
        _ => Err(expected(path, "int", json)),
    }
}

fn decode_decimal(json: &Json, path: &str) -> Result<Value, ValueError> {
    let text = match json {
        Json::String(s) => s.clone(),
        Json::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Json::Number(_) => {
            return Err(ValueError::new(
                path,
                format!(
                    "expected decimal as a string (fractional JSON numbers are inexact), got {}",
                    got(json)
                ),
            ))
        }
        _ => return Err(expected(path, "decimal", json)),
    };
    Decimal::parse(&text)
        .map(Value::Decimal)
        .map_err(|e| match e {
            DecimalError::Syntax => expected(path, "decimal", json),
            other => ValueError::new(path, format!("{other}, got {}", got(json))),
        })
}

fn decode_tuple(
    t: &Type,
    ts: &[Type],
    json: &Json,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<Value, ValueError> {
    let items = json.as_array().filter(|a| a.len() == ts.len());
    let items = items.ok_or_else(|| expected(path, &t.to_string(), json))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, (item, ty)) in items.iter().zip(ts).enumerate() {
        out.push(decode(ty, item, records, &format!("{path}[{i}]"))?);
    }
    Ok(Value::List(out))
}

fn decode_optional(
    inner: &Type,
    json: &Json,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<Value, ValueError> {
    if json.is_null() {
        return Ok(Value::Optional(None));
    }
    if !matches!(inner, Type::Optional(_)) {
        let v = decode(inner, json, records, path)?;
        return Ok(Value::Optional(Some(Box::new(v))));
    }
    // Nested optionals: `[]` is some(none), `[v]` is some(v).
    match json.as_array().map(Vec::as_slice) {
        Some([]) => Ok(Value::Optional(Some(Box::new(Value::Optional(None))))),
        Some([v]) => {
            let v = decode(inner, v, records, path)?;
            Ok(Value::Optional(Some(Box::new(v))))
        }
        _ => Err(expected(
            path,
            &format!("optional<{inner}> ([] or [value])"),
            json,
        )),
    }
}

fn decode_record(
    id: &TypeConName,
    json: &Json,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<Value, ValueError> {
    let fields = records
        .record_fields(id)
        .ok_or_else(|| ValueError::new(path, format!("unknown record type {id}")))?;
    decode_fields(fields, &format!("record {id}"), json, records, path)
}

/// Decodes a JSON object with the given fields, e.g. a choice argument (its parameters).
pub fn record_from_json(
    fields: &[(Name, Type)],
    json: &Json,
    records: &dyn RecordTypes,
) -> Result<Value, ValueError> {
    decode_fields(fields, "object", json, records, "")
}

fn decode_fields(
    fields: &[(Name, Type)],
    what: &str,
    json: &Json,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<Value, ValueError> {
    let obj = json.as_object().ok_or_else(|| expected(path, what, json))?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !fields.iter().any(|(f, _)| &**f == k.as_str()))
    {
        return Err(ValueError::new(path, format!("unknown field {unknown:?}")));
    }
    let mut out = Vec::with_capacity(fields.len());
    for (name, ty) in fields {
        let v = match (obj.get(&**name), ty) {
            (Some(j), _) => decode(ty, j, records, &join_path(path, name))?,
            (None, Type::Optional(_)) => Value::Optional(None),
            (None, _) => return Err(ValueError::new(path, format!("missing field {name:?}"))),
        };
        out.push((name.clone(), v));
    }
    Ok(Value::Record(Record { fields: out }))
}
