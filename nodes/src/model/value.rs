//! Ledger values, and the check that a value conforms to a type (used on command
//! arguments that arrive already decoded, e.g. from protobuf).

use std::collections::BTreeSet;
use std::fmt;

use super::decimal::Decimal;
use super::ids::{ContractId, Party};
use super::time::{Date, Timestamp};
use super::types::{Name, RecordTypes, Type};

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Value {
    Party(Party),
    Text(String),
    Int(i64),
    Decimal(Decimal),
    Bool(bool),
    Time(Timestamp),
    Date(Date),
    ContractId(ContractId),
    /// Lists, and tuples (see [`Type::Tuple`]).
    List(Vec<Value>),
    Optional(Option<Box<Value>>),
    Record(Record),
}

/// A record's fields, in the order its definition declares them.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Record {
    pub fields: Vec<(Name, Value)>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }
}

impl Value {
    /// The parties in a party-set value (a party, a list of parties, or a tuple of either).
    pub fn collect_parties(&self, out: &mut BTreeSet<Party>) {
        match self {
            Value::Party(p) => {
                out.insert(p.clone());
            }
            Value::List(vs) => vs.iter().for_each(|v| v.collect_parties(out)),
            _ => {}
        }
    }

    /// A short description of the value's kind for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Party(_) => "party",
            Value::Text(_) => "text",
            Value::Int(_) => "int",
            Value::Decimal(_) => "decimal",
            Value::Bool(_) => "bool",
            Value::Time(_) => "time",
            Value::Date(_) => "date",
            Value::ContractId(_) => "contract_id",
            Value::List(_) => "list",
            Value::Optional(_) => "optional",
            Value::Record(_) => "record",
        }
    }
}

impl fmt::Display for Value {
    /// A readable form for messages; JSON is the wire form (see `json`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Party(p) => write!(f, "{p}"),
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Time(t) => write!(f, "{t}"),
            Value::Date(d) => write!(f, "{d}"),
            Value::ContractId(c) => write!(f, "{c}"),
            Value::List(vs) => {
                f.write_str("[")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Optional(None) => f.write_str("none"),
            Value::Optional(Some(v)) => write!(f, "some({v})"),
            Value::Record(r) => {
                f.write_str("{")?;
                for (i, (n, v)) in r.fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A value that does not fit its type, with the path to the offending part
/// (`amount`, `viewers[2]`, `price.currency`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ValueError {
    pub path: String,
    pub message: String,
}

impl ValueError {
    pub fn new(path: &str, message: impl Into<String>) -> ValueError {
        ValueError {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// Stable error code for the Ledger API.
    pub fn code(&self) -> &'static str {
        "INVALID_ARGUMENT"
    }
}

pub(crate) fn join_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Checks that `v` has type `t`, field by field.
pub fn conforms(v: &Value, t: &Type, records: &dyn RecordTypes) -> Result<(), ValueError> {
    conforms_at(v, t, records, "")
}

fn conforms_at(
    v: &Value,
    t: &Type,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<(), ValueError> {
    let mismatch = || ValueError::new(path, format!("expected {t}, got {}", v.kind()));
    match (t, v) {
        (Type::Party, Value::Party(_))
        | (Type::Text, Value::Text(_))
        | (Type::Int, Value::Int(_))
        | (Type::Decimal, Value::Decimal(_))
        | (Type::Bool, Value::Bool(_))
        | (Type::Time, Value::Time(_))
        | (Type::Date, Value::Date(_))
        | (Type::ContractId, Value::ContractId(_))
        | (Type::Optional(_), Value::Optional(None)) => Ok(()),
        (Type::Optional(inner), Value::Optional(Some(x))) => conforms_at(x, inner, records, path),
        (Type::List(inner), Value::List(xs)) => xs
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| conforms_at(x, inner, records, &format!("{path}[{i}]"))),
        (Type::Tuple(ts), Value::List(xs)) if ts.len() == xs.len() => xs
            .iter()
            .zip(ts)
            .enumerate()
            .try_for_each(|(i, (x, t))| conforms_at(x, t, records, &format!("{path}[{i}]"))),
        (Type::Record(id), Value::Record(r)) => conforms_record(r, id, records, path),
        _ => Err(mismatch()),
    }
}

fn conforms_record(
    r: &Record,
    id: &super::ids::TypeConName,
    records: &dyn RecordTypes,
    path: &str,
) -> Result<(), ValueError> {
    let fields = records
        .record_fields(id)
        .ok_or_else(|| ValueError::new(path, format!("unknown record type {id}")))?;
    if let Some((extra, _)) = r
        .fields
        .iter()
        .find(|(n, _)| !fields.iter().any(|(f, _)| f == n))
    {
        return Err(ValueError::new(path, format!("unknown field {extra:?}")));
    }
    if r.fields.len() != fields.len() {
        let missing = fields.iter().find(|(f, _)| r.get(f).is_none());
        let name = missing.map_or("?", |(f, _)| &**f);
        return Err(ValueError::new(path, format!("missing field {name:?}")));
    }
    for ((name, t), (given, v)) in fields.iter().zip(&r.fields) {
        if name != given {
            return Err(ValueError::new(
                path,
                format!("field {given:?} out of order, expected {name:?}"),
            ));
        }
        conforms_at(v, t, records, &join_path(path, name))?;
    }
    Ok(())
}
