//! The payload filter language of `POST /v2/query` (JSON API v1's query language, on Canton
//! JSON values): an object of field → predicate, where a predicate is
//! - a literal (`"USD"`, `"10.0"`, `true`, `null`, a list): equality (numeric for decimals,
//!   so `"10.0"` equals `"10.0000000000"`);
//! - an object without `%` keys: a nested record, each of its fields a predicate;
//! - an object of operators: `%eq`, `%lt`, `%lte`, `%gt`, `%gte` (ranges: numeric when both
//!   sides are numbers or decimal strings, else string order, which orders ISO dates and
//!   timestamps), `%in` (a list of literals). All operators of one object must hold.
//!
//! A missing field equals `null` (an absent Optional). Pure: parse once, evaluate per contract.

use serde_json::Value;
use std::cmp::Ordering;

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Eq(Value),
    Record(Vec<(String, Predicate)>),
    All(Vec<Op>),
}

/// One operator of an operator object.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Cmp(Ordering, bool, Value),
    In(Vec<Value>),
}

/// A filter that cannot be parsed, with the path of the culprit inside the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub path: String,
    pub message: String,
}

/// Parses the filter object at `path` (e.g. `filter`).
pub fn parse(filter: &Value, path: &str) -> Result<Predicate, FilterError> {
    match filter {
        Value::Object(_) => parse_predicate(filter, path, 0),
        _ => Err(FilterError {
            path: path.to_owned(),
            message: "must be an object of field → predicate".into(),
        }),
    }
}

fn parse_predicate(value: &Value, path: &str, depth: usize) -> Result<Predicate, FilterError> {
    if depth > crate::value::MAX_DEPTH {
        return Err(FilterError {
            path: path.to_owned(),
            message: "nested too deeply".into(),
        });
    }
    let Value::Object(map) = value else {
        return Ok(Predicate::Eq(value.clone()));
    };
    let operators = map.keys().filter(|k| k.starts_with('%')).count();
    if operators == 0 {
        let fields = map
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    parse_predicate(v, &format!("{path}.{k}"), depth + 1)?,
                ))
            })
            .collect::<Result<_, FilterError>>()?;
        return Ok(Predicate::Record(fields));
    }
    if operators != map.len() {
        return Err(FilterError {
            path: path.to_owned(),
            message: "mixes %operators and field names; nest the fields instead".into(),
        });
    }
    let mut ops = Vec::new();
    for (k, v) in map {
        let at = format!("{path}.{k}");
        let op = match k.as_str() {
            "%eq" => Op::Eq(v.clone()),
            "%lt" => Op::Cmp(Ordering::Less, false, literal(v, &at)?),
            "%lte" => Op::Cmp(Ordering::Less, true, literal(v, &at)?),
            "%gt" => Op::Cmp(Ordering::Greater, false, literal(v, &at)?),
            "%gte" => Op::Cmp(Ordering::Greater, true, literal(v, &at)?),
            "%in" => match v {
                Value::Array(items) => Op::In(items.clone()),
                _ => {
                    return Err(FilterError {
                        path: at,
                        message: "%in takes a list".into(),
                    })
                }
            },
            other => {
                return Err(FilterError {
                    path: at,
                    message: format!(
                        "unknown operator {other}; use %eq, %lt, %lte, %gt, %gte or %in"
                    ),
                })
            }
        };
        ops.push(op);
    }
    Ok(Predicate::All(ops))
}

fn literal(v: &Value, path: &str) -> Result<Value, FilterError> {
    match v {
        Value::String(_) | Value::Number(_) => Ok(v.clone()),
        _ => Err(FilterError {
            path: path.to_owned(),
            message: "a range bound must be a number or a string".into(),
        }),
    }
}

impl Predicate {
    /// Whether `value` (a contract's field, `None` when absent) satisfies the predicate.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        let value = value.unwrap_or(&Value::Null);
        match self {
            Predicate::Eq(expected) => equal(expected, value),
            Predicate::Record(fields) => match value {
                Value::Object(map) => fields.iter().all(|(k, p)| p.matches(map.get(k))),
                _ => false,
            },
            Predicate::All(ops) => ops.iter().all(|op| op.matches(value)),
        }
    }
}

impl Op {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Op::Eq(expected) => equal(expected, value),
            Op::In(options) => options.iter().any(|o| equal(o, value)),
            Op::Cmp(direction, or_equal, bound) => match compare(value, bound) {
                Some(Ordering::Equal) => *or_equal,
                Some(ord) => ord == *direction,
                None => false,
            },
        }
    }
}

/// Equality on Canton JSON values: structural, except that decimals compare by value.
pub fn equal(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(_), Value::String(_) | Value::Number(_))
        | (Value::String(_), Value::Number(_)) => {
            compare(actual, expected) == Some(Ordering::Equal)
        }
        (Value::String(a), Value::String(b)) => {
            a == b
                || ((a.contains('.') || b.contains('.'))
                    && decimal_cmp(a, b) == Some(Ordering::Equal))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| equal(x, y)))
        }
        _ => expected == actual,
    }
}

/// Orders two scalars: numerically when both are numbers or decimal strings, by string order
/// when both are other strings; `None` when they do not compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (x, y) = (text(a)?, text(b)?);
    if let Some(ord) = decimal_cmp(&x, &y) {
        return Some(ord);
    }
    match (a, b) {
        (Value::String(_), Value::String(_)) => Some(x.cmp(&y)),
        _ => {
            let (fx, fy) = (x.parse::<f64>().ok()?, y.parse::<f64>().ok()?);
            fx.partial_cmp(&fy)
        }
    }
}

/// Exact comparison of two plain decimal strings (`-12.50`), `None` if either is not one.
pub fn decimal_cmp(a: &str, b: &str) -> Option<Ordering> {
    let (na, ia, fa) = split_decimal(a)?;
    let (nb, ib, fb) = split_decimal(b)?;
    let zero_a = ia.is_empty() && fa.is_empty();
    let zero_b = ib.is_empty() && fb.is_empty();
    let neg_a = na && !zero_a;
    let neg_b = nb && !zero_b;
    if neg_a != neg_b {
        return Some(if neg_a {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    let magnitude = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(ib))
        .then_with(|| fa.cmp(fb));
    Some(if neg_a {
        magnitude.reverse()
    } else {
        magnitude
    })
}

/// (negative, integer digits without leading zeros, fraction digits without trailing zeros).
fn split_decimal(s: &str) -> Option<(bool, &str, &str)> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    Some((neg, int.trim_start_matches('0'), frac.trim_end_matches('0')))
}

/// A key for equality indexes: values that [`equal`] may call equal share a key (decimals by
/// their normalized value, whether strings or numbers), so an index lookup returns a superset
/// of the matches, which the predicate then checks. `None` for lists and records, which are
/// not indexed.
pub fn index_key(value: &Value) -> Option<String> {
    let plain = |s: &str| {
        split_decimal(s).map(|(neg, int, frac)| {
            let zero = int.is_empty() && frac.is_empty();
            format!("d{}{int}.{frac}", if neg && !zero { "-" } else { "" })
        })
    };
    // Numbers also equal strings by their f64 value ("1e3" equals 1000): such text gets the
    // key of the plain decimal the f64 prints as.
    let numeric = |s: &str| {
        plain(s).or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(|f| plain(&f.to_string()))
        })
    };
    match value {
        Value::Null => Some("z".into()),
        Value::Bool(b) => Some(format!("b{b}")),
        Value::Number(n) => {
            let text = n.to_string();
            Some(numeric(&text).unwrap_or(format!("n{text}")))
        }
        Value::String(s) => Some(numeric(s).unwrap_or_else(|| format!("s{s}"))),
        Value::Array(_) | Value::Object(_) => None,
    }
}

impl Predicate {
    /// An equality condition an index can answer: the path of a field (through nested
    /// records) and the values it must equal one of, each with an [`index_key`]. `None` when
    /// the predicate has none.
    pub fn index_hint(&self) -> Option<(Vec<String>, Vec<String>)> {
        let Predicate::Record(fields) = self else {
            return None;
        };
        fields.iter().find_map(|(name, p)| {
            let (mut path, keys) = match p {
                Predicate::Record(_) => p.index_hint()?,
                Predicate::Eq(v) => (Vec::new(), vec![index_key(v)?]),
                Predicate::All(ops) => (
                    Vec::new(),
                    ops.iter().find_map(|op| match op {
                        Op::Eq(v) => Some(vec![index_key(v)?]),
                        Op::In(vs) => vs.iter().map(index_key).collect(),
                        Op::Cmp(..) => None,
                    })?,
                ),
            };
            path.insert(0, name.clone());
            Some((path, keys))
        })
    }
}

/// The index key of the field at `path` of a payload: a missing last field is `null` (as the
/// predicate reads it); a missing or non-record step on the way has a key no value has.
pub fn index_key_at(payload: &Value, path: &[String]) -> String {
    let mut value = payload;
    for (i, name) in path.iter().enumerate() {
        match value {
            Value::Object(map) => match map.get(name) {
                Some(v) => value = v,
                None if i + 1 == path.len() => value = &Value::Null,
                None => return "x".into(),
            },
            _ => return "x".into(),
        }
    }
    index_key(value).unwrap_or_else(|| "x".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, payload: &Value) -> bool {
        parse(&filter, "filter").unwrap().matches(Some(payload))
    }

    fn iou() -> Value {
        json!({"issuer": "Bank", "owner": "Alice", "currency": "USD", "amount": "100.0000000000",
               "count": "42", "due": "2026-03-01", "viewers": ["Bob"],
               "address": {"city": "Zurich", "zip": "8000"}, "note": null})
    }

    #[test]
    fn equality_on_fields_and_decimals() {
        let p = iou();
        assert!(check(json!({"currency": "USD"}), &p));
        assert!(!check(json!({"currency": "EUR"}), &p));
        assert!(check(json!({"amount": "100.0"}), &p));
        assert!(check(json!({"amount": 100}), &p));
        assert!(check(json!({"currency": "USD", "owner": "Alice"}), &p));
        assert!(check(json!({"viewers": ["Bob"]}), &p));
        assert!(!check(json!({"viewers": ["Carol"]}), &p));
        assert!(check(json!({"note": null, "missing": null}), &p));
        assert!(!check(json!({"missing": "x"}), &p));
        assert!(check(json!({}), &p));
    }

    #[test]
    fn ranges_and_in() {
        let p = iou();
        assert!(check(
            json!({"amount": {"%gte": "100", "%lt": "100.5"}}),
            &p
        ));
        assert!(!check(json!({"amount": {"%gt": "100"}}), &p));
        assert!(check(json!({"amount": {"%lte": 100}}), &p));
        assert!(
            check(json!({"count": {"%gt": "9"}}), &p),
            "numeric, not string order"
        );
        assert!(check(
            json!({"due": {"%gte": "2026-01-01", "%lt": "2026-04-01"}}),
            &p
        ));
        assert!(!check(json!({"due": {"%lt": "2026-03-01"}}), &p));
        assert!(check(json!({"currency": {"%in": ["EUR", "USD"]}}), &p));
        assert!(!check(json!({"currency": {"%in": []}}), &p));
        assert!(check(json!({"amount": {"%in": ["1", "100.00"]}}), &p));
        assert!(check(json!({"currency": {"%eq": "USD"}}), &p));
    }

    #[test]
    fn nested_fields() {
        let p = iou();
        assert!(check(json!({"address": {"city": "Zurich"}}), &p));
        assert!(check(json!({"address": {"zip": {"%gte": "8000"}}}), &p));
        assert!(!check(json!({"address": {"city": "Basel"}}), &p));
        assert!(!check(json!({"owner": {"city": "Zurich"}}), &p));
    }

    #[test]
    fn bad_filters_name_the_path() {
        let err = parse(&json!({"amount": {"%between": [1, 2]}}), "filter").unwrap_err();
        assert_eq!(err.path, "filter.amount.%between");
        let err = parse(&json!({"a": {"b": {"%in": 3}}}), "filter").unwrap_err();
        assert_eq!(err.path, "filter.a.b.%in");
        let err = parse(&json!({"a": {"%lt": 1, "b": 2}}), "filter").unwrap_err();
        assert_eq!(err.path, "filter.a");
        let err = parse(&json!({"a": {"%lt": [1]}}), "filter").unwrap_err();
        assert_eq!(err.path, "filter.a.%lt");
        assert!(parse(&json!([1]), "filter").is_err());
    }

    #[test]
    fn decimal_comparison_is_exact() {
        use Ordering::*;
        assert_eq!(decimal_cmp("0.1", "0.10"), Some(Equal));
        assert_eq!(decimal_cmp("-0", "0.0"), Some(Equal));
        assert_eq!(decimal_cmp("-2", "-10"), Some(Greater));
        assert_eq!(
            decimal_cmp("12345678901234567890.5", "12345678901234567890.49"),
            Some(Greater)
        );
        assert_eq!(decimal_cmp("007", "7"), Some(Equal));
        assert_eq!(decimal_cmp("1e3", "1000"), None);
        assert_eq!(decimal_cmp("abc", "1"), None);
        assert_eq!(decimal_cmp(".", "1"), None);
    }
}
