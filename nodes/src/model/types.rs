//! The types of ledger values, and the syntax packages use to write them
//! (`party`, `list<party>`, `optional<decimal>`, `Money`, `Mod:Money`, `#pkg:Mod:Money`).

use std::fmt;
use std::sync::Arc;

use super::ids::{is_ident, is_package_name, TypeConName};

/// Field, parameter, choice and binding names.
pub type Name = Arc<str>;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Type {
    Party,
    Text,
    Int,
    Decimal,
    Bool,
    Time,
    Date,
    ContractId,
    List(Box<Type>),
    Optional(Box<Type>),
    /// A record defined in a package; a template's payload is the record named like it.
    Record(TypeConName),
    /// A fixed-length list of differently typed elements. It has no surface syntax: it is the
    /// type of a list literal such as `[issuer, currency]` (a contract key) whose elements
    /// differ in type, and is encoded in JSON as an array.
    Tuple(Vec<Type>),
}

impl Type {
    /// Whether a value of this type can hold a contract id (keys must not).
    pub fn contains_contract_id(&self, records: &dyn RecordTypes) -> bool {
        self.contains_cid_bounded(records, 0)
    }

    fn contains_cid_bounded(&self, records: &dyn RecordTypes, depth: usize) -> bool {
        // Records may be recursive; a depth bound keeps this check finite.
        if depth > 32 {
            return false;
        }
        match self {
            Type::ContractId => true,
            Type::List(t) | Type::Optional(t) => t.contains_cid_bounded(records, depth + 1),
            Type::Tuple(ts) => ts
                .iter()
                .any(|t| t.contains_cid_bounded(records, depth + 1)),
            Type::Record(id) => records.record_fields(id).is_some_and(|fields| {
                fields
                    .iter()
                    .any(|(_, t)| t.contains_cid_bounded(records, depth + 1))
            }),
            _ => false,
        }
    }

    /// `party`, `list<party>` or a tuple of those: the types a party-set expression
    /// (signatories, observers, controllers, maintainers) may have.
    pub fn is_party_set(&self) -> bool {
        match self {
            Type::Party => true,
            Type::List(t) => **t == Type::Party,
            Type::Tuple(ts) => ts
                .iter()
                .all(|t| matches!(t, Type::Party) || t.is_party_list()),
            _ => false,
        }
    }

    fn is_party_list(&self) -> bool {
        matches!(self, Type::List(t) if **t == Type::Party)
    }

    /// Whether `<`, `<=`, `>`, `>=` apply.
    pub fn is_ordered(&self) -> bool {
        matches!(
            self,
            Type::Int | Type::Decimal | Type::Text | Type::Time | Type::Date | Type::Party
        )
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Party => f.write_str("party"),
            Type::Text => f.write_str("text"),
            Type::Int => f.write_str("int"),
            Type::Decimal => f.write_str("decimal"),
            Type::Bool => f.write_str("bool"),
            Type::Time => f.write_str("time"),
            Type::Date => f.write_str("date"),
            Type::ContractId => f.write_str("contract_id"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Optional(t) => write!(f, "optional<{t}>"),
            Type::Record(id) => write!(f, "{id}"),
            Type::Tuple(ts) => {
                f.write_str("tuple<")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(">")
            }
        }
    }
}

/// Where record definitions come from: the package store, or the package being checked.
pub trait RecordTypes {
    fn record_fields(&self, id: &TypeConName) -> Option<&[(Name, Type)]>;
}

/// A type as written in a document, before record names are resolved.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RawType {
    Prim(Type),
    List(Box<RawType>),
    Optional(Box<RawType>),
    /// `Money`, `Mod:Money` or `#pkg:Mod:Money`.
    Named(String),
}

/// Deepest nesting of `list<...>` / `optional<...>` accepted.
const MAX_TYPE_DEPTH: usize = 32;

/// Parses the type syntax; the error says what was expected.
pub fn parse_type(s: &str) -> Result<RawType, String> {
    parse_type_at(s, 0)
}

fn parse_type_at(s: &str, depth: usize) -> Result<RawType, String> {
    if depth > MAX_TYPE_DEPTH {
        return Err(format!(
            "type nested more than {MAX_TYPE_DEPTH} levels deep"
        ));
    }
    let s = s.trim();
    if let Some(inner) = strip_wrapper(s, "list") {
        return Ok(RawType::List(Box::new(parse_type_at(inner, depth + 1)?)));
    }
    if let Some(inner) = strip_wrapper(s, "optional") {
        return Ok(RawType::Optional(Box::new(parse_type_at(
            inner,
            depth + 1,
        )?)));
    }
    let prim = match s {
        "party" => Type::Party,
        "text" => Type::Text,
        "int" => Type::Int,
        "decimal" => Type::Decimal,
        "bool" => Type::Bool,
        "time" => Type::Time,
        "date" => Type::Date,
        "contract_id" => Type::ContractId,
        _ if is_type_name(s) => return Ok(RawType::Named(s.to_string())),
        _ => return Err(format!("unknown type syntax {s:?}")),
    };
    Ok(RawType::Prim(prim))
}

fn strip_wrapper<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    s.strip_prefix(name)?
        .trim_start()
        .strip_prefix('<')?
        .strip_suffix('>')
}

fn is_type_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [name] => is_ident(name),
        [module, name] => is_ident(module) && is_ident(name),
        [pkg, module, name] => {
            pkg.strip_prefix('#').is_some_and(is_package_name) && is_ident(module) && is_ident(name)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_syntax() {
        assert_eq!(parse_type("party"), Ok(RawType::Prim(Type::Party)));
        assert_eq!(
            parse_type("list<optional<int>>"),
            Ok(RawType::List(Box::new(RawType::Optional(Box::new(
                RawType::Prim(Type::Int)
            )))))
        );
        assert_eq!(
            parse_type("#iou:Iou:Money"),
            Ok(RawType::Named("#iou:Iou:Money".into()))
        );
        assert!(parse_type("list<>").is_err());
        assert!(parse_type("map<text>").is_err());
        assert!(parse_type("a:b:c").is_err());
        let deep = format!("{}int{}", "list<".repeat(1000), ">".repeat(1000));
        assert_eq!(
            parse_type(&deep),
            Err("type nested more than 32 levels deep".into())
        );
    }
}
