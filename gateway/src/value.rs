//! Ledger values between JSON (the HTTP side) and `google.protobuf.Value` (the Ledger API).
//! Both sides already use the Canton JSON API encoding (records as objects, Int64 and Numeric
//! as strings, Optional as null or the value, Variant as `{"tag", "value"}`), so the mapping is
//! structural. The one lossy spot is a JSON number that a 64-bit float cannot hold exactly:
//! it is refused, naming the field, and the client is told to send it as a string.

use std::collections::BTreeMap;
use tandem_proto::prost_types::{value::Kind, ListValue, Struct, Value};

/// Largest integer a 64-bit float holds exactly (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Deepest nesting accepted, so a hostile body cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// A JSON value that cannot become a protobuf value, with the path of the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// Where, e.g. `commands[0].CreateCommand.createArguments.amount`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// JSON → protobuf. `path` names the value in error messages.
pub fn json_to_value(json: &serde_json::Value, path: &str) -> Result<Value, ValueError> {
    to_value(json, path, 0)
}

fn to_value(json: &serde_json::Value, path: &str, depth: usize) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(ValueError {
            path: path.to_owned(),
            message: format!("nested deeper than {MAX_DEPTH} levels"),
        });
    }
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Number(n) => Kind::NumberValue(exact_f64(n).ok_or_else(|| ValueError {
            path: path.to_owned(),
            message: format!(
                "the number {n} cannot be carried exactly; send 64-bit integers and decimals as strings"
            ),
        })?),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items
                .iter()
                .enumerate()
                .map(|(i, v)| to_value(v, &format!("{path}[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?,
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_value(v, &format!("{path}.{k}"), depth + 1)?)))
                .collect::<Result<BTreeMap<_, _>, ValueError>>()?,
        }),
    };
    Ok(Value { kind: Some(kind) })
}

/// The number as an f64 if that loses nothing.
fn exact_f64(n: &serde_json::Number) -> Option<f64> {
    if let Some(i) = n.as_i64() {
        return (i.unsigned_abs() <= MAX_EXACT_INTEGER).then_some(i as f64);
    }
    if let Some(u) = n.as_u64() {
        return (u <= MAX_EXACT_INTEGER).then_some(u as f64);
    }
    n.as_f64().filter(|f| f.is_finite())
}

/// protobuf → JSON. Integral numbers print without a fraction; a non-finite number (which the
/// ledger never sends) becomes null.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::NumberValue(f)) => number_to_json(*f),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v)))
                .collect(),
        ),
    }
}

/// An optional protobuf value (absent → null).
pub fn opt_value_to_json(value: Option<&Value>) -> serde_json::Value {
    value.map_or(serde_json::Value::Null, value_to_json)
}

fn number_to_json(f: f64) -> serde_json::Value {
    if f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER as f64 {
        return serde_json::Value::from(f as i64);
    }
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Microseconds since the Unix epoch as RFC 3339 UTC (`2026-01-02T03:04:05.123456Z`).
pub fn micros_to_rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:06}Z")
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canton_encoded_values_round_trip() {
        let v = json!({
            "issuer": "Alice::1220ab", "amount": "100.0000000000", "count": "9223372036854775807",
            "flag": true, "none": null, "some": "x", "viewers": ["Bob", "Carol"],
            "variant": {"tag": "Left", "value": {"n": 3}}, "small": 42, "half": 0.5,
            "nested": {"deep": [[{"a": []}]]}
        });
        let proto = json_to_value(&v, "arg").unwrap();
        assert_eq!(value_to_json(&proto), v);
    }

    #[test]
    fn inexact_numbers_are_refused_with_their_path() {
        let err =
            json_to_value(&json!({"a": [1, 9007199254740993_u64]}), "createArguments").unwrap_err();
        assert_eq!(err.path, "createArguments.a[1]");
        assert!(err.message.contains("as strings"), "{}", err.message);
        assert!(json_to_value(&json!(9007199254740992_u64), "x").is_ok());
        assert!(json_to_value(&json!(-9007199254740993_i64), "x").is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!(1);
        for _ in 0..=MAX_DEPTH {
            v = json!([v]);
        }
        assert!(json_to_value(&v, "x").is_err());
    }

    #[test]
    fn missing_and_odd_values() {
        assert_eq!(opt_value_to_json(None), serde_json::Value::Null);
        assert_eq!(
            value_to_json(&Value { kind: None }),
            serde_json::Value::Null
        );
        let nan = Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert_eq!(value_to_json(&nan), serde_json::Value::Null);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(micros_to_rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            micros_to_rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(micros_to_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            micros_to_rfc3339(951_782_400_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
