//! Identifier formats of the ledger model, defined in one place: parties, contract ids,
//! package ids and template references. Nothing else in the model parses these strings.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Longest party id accepted, as in Daml (`Party` is at most 255 characters).
pub const PARTY_MAX_LEN: usize = 255;
/// Longest hint (the part before `::`), as Canton's `String185` identifier.
pub const PARTY_HINT_MAX_LEN: usize = 185;
/// Longest namespace fingerprint accepted (Canton's are `1220` + 64 hex digits = 68).
pub const FINGERPRINT_MAX_LEN: usize = 128;

/// A party: `<hint>::<fingerprint>`, e.g. `Alice::1220f3a1…` (design.md §5.3).
///
/// The hint is 1–185 ASCII letters, digits, `-`, `_` or `.`; the fingerprint is 1–128
/// lowercase hex digits. Parties compare as strings, so only the canonical (lowercase)
/// form is accepted.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Party(Arc<str>);

impl Party {
    /// Parses and validates a party id.
    pub fn parse(s: &str) -> Result<Party, IdError> {
        let err = || IdError::Party(s.to_string());
        if s.len() > PARTY_MAX_LEN {
            return Err(err());
        }
        let (hint, fp) = s.split_once("::").ok_or_else(err)?;
        let hint_ok = !hint.is_empty()
            && hint.len() <= PARTY_HINT_MAX_LEN
            && hint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let fp_ok = !fp.is_empty()
            && fp.len() <= FINGERPRINT_MAX_LEN
            && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hint_ok && fp_ok {
            Ok(Party(Arc::from(s)))
        } else {
            Err(err())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `::`, for display.
    pub fn hint(&self) -> &str {
        self.0.split_once("::").map_or(&self.0, |(h, _)| h)
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Party({})", self.0)
    }
}

/// A contract id: `00` followed by 64 lowercase hex digits (a SHA-256 discriminator).
///
/// Ids are derived by [`ContractId::derive`] from the submission seed and the position of
/// the create node, so every participant that re-interprets a submission gets the same ids.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractId(Arc<str>);

/// Version prefix of contract ids; a new derivation scheme gets a new prefix.
const CID_PREFIX: &str = "00";
const CID_HEX_LEN: usize = 64;
const CID_DOMAIN: &[u8] = b"tandem/contract-id/v1";

impl ContractId {
    pub fn parse(s: &str) -> Result<ContractId, IdError> {
        let ok = s.len() == CID_PREFIX.len() + CID_HEX_LEN
            && s.starts_with(CID_PREFIX)
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(ContractId(Arc::from(s)))
        } else {
            Err(IdError::ContractId(s.to_string()))
        }
    }

    /// `00 ‖ hex(SHA-256("tandem/contract-id/v1" ‖ seed ‖ node index as u32 BE))`.
    pub fn derive(seed: &SubmissionSeed, node_index: u32) -> ContractId {
        let mut h = Sha256::new();
        h.update(CID_DOMAIN);
        h.update(seed.0);
        h.update(node_index.to_be_bytes());
        let mut s = String::with_capacity(CID_PREFIX.len() + CID_HEX_LEN);
        s.push_str(CID_PREFIX);
        push_hex(&mut s, &h.finalize());
        ContractId(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContractId({})", self.0)
    }
}

/// The 32 random bytes a submitting participant draws per submission; it travels with the
/// confirmation request so that confirmers derive the same contract ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SubmissionSeed(pub [u8; 32]);

/// A package id: lowercase hex SHA-256 of the uploaded document bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageId(Arc<str>);

impl PackageId {
    pub fn of_bytes(bytes: &[u8]) -> PackageId {
        let mut s = String::with_capacity(64);
        push_hex(&mut s, &Sha256::digest(bytes));
        PackageId(Arc::from(s))
    }

    pub fn parse(s: &str) -> Option<PackageId> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| PackageId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageId({})", self.0)
    }
}

/// Which package a reference points at: by name (the highest loaded version) or by id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PackageRef {
    Name(String),
    Id(PackageId),
}

/// A template (or record) reference as clients write it: `#iou:Iou:Iou` (by package name,
/// Canton's package-name form) or `<package-id>:Iou:Iou`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TemplateRef {
    pub package: PackageRef,
    pub module: String,
    pub entity: String,
}

impl TemplateRef {
    pub fn parse(s: &str) -> Result<TemplateRef, IdError> {
        let err = || IdError::TemplateRef(s.to_string());
        let mut parts = s.split(':');
        let (Some(pkg), Some(module), Some(entity), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        let package = match pkg.strip_prefix('#') {
            Some(name) if is_package_name(name) => PackageRef::Name(name.to_string()),
            Some(_) => return Err(err()),
            None => PackageRef::Id(PackageId::parse(pkg).ok_or_else(err)?),
        };
        if !is_ident(module) || !is_ident(entity) {
            return Err(err());
        }
        Ok(TemplateRef {
            package,
            module: module.to_string(),
            entity: entity.to_string(),
        })
    }

    /// A reference by package name: `TemplateRef::by_name("iou", "Iou", "Iou")`.
    pub fn by_name(package: &str, module: &str, entity: &str) -> TemplateRef {
        TemplateRef {
            package: PackageRef::Name(package.to_string()),
            module: module.to_string(),
            entity: entity.to_string(),
        }
    }
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.package {
            PackageRef::Name(n) => write!(f, "#{n}:{}:{}", self.module, self.entity),
            PackageRef::Id(id) => write!(f, "{id}:{}:{}", self.module, self.entity),
        }
    }
}

/// A resolved template or record: the exact package that defines it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TypeConName {
    pub package_id: PackageId,
    /// Package name, kept so that keys and display use the `#name:Module:Entity` form.
    pub package_name: Arc<str>,
    pub module: Arc<str>,
    pub entity: Arc<str>,
}

/// Templates are identified like records.
pub type TemplateId = TypeConName;

impl TypeConName {
    /// Whether two ids name the same template across package versions.
    pub fn same_qualified_name(&self, other: &TypeConName) -> bool {
        self.package_name == other.package_name
            && self.module == other.module
            && self.entity == other.entity
    }

    /// The package-name form, `#iou:Iou:Iou`.
    pub fn to_ref(&self) -> TemplateRef {
        TemplateRef::by_name(&self.package_name, &self.module, &self.entity)
    }
}

impl fmt::Display for TypeConName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}:{}:{}", self.package_name, self.module, self.entity)
    }
}

/// An identifier in package documents and expressions: ASCII letter or `_`, then letters,
/// digits or `_`.
pub fn is_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Package names: 1–64 ASCII letters, digits, `-`, `_` or `.`, starting with a letter.
pub fn is_package_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected party (<hint>::<fingerprint>), got {0:?}")]
    Party(String),
    #[error("expected contract id (00 followed by 64 lowercase hex digits), got {0:?}")]
    ContractId(String),
    #[error(
        "expected template id (#<package-name>:<Module>:<Template> or <package-id>:<Module>:<Template>), got {0:?}"
    )]
    TemplateRef(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_format() {
        assert!(Party::parse("Alice::1220abcd").is_ok());
        assert!(Party::parse("a.b-c_d::0").is_ok());
        for bad in [
            "Alice",
            "::12",
            "Alice::",
            "Alice::12G",
            "Al ice::12",
            "A::B::12",
            "Alice::12AB",
        ] {
            assert!(Party::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Party::parse("Alice::12").map(|p| p.hint().to_string()),
            Ok("Alice".into())
        );
    }

    #[test]
    fn contract_ids_are_deterministic_and_parse() {
        let seed = SubmissionSeed([7; 32]);
        let a = ContractId::derive(&seed, 3);
        assert_eq!(a, ContractId::derive(&seed, 3));
        assert_ne!(a, ContractId::derive(&seed, 4));
        assert_eq!(ContractId::parse(a.as_str()), Ok(a.clone()));
        assert!(ContractId::parse("01abc").is_err());
    }

    #[test]
    fn template_refs() {
        let r = TemplateRef::parse("#iou:Iou:Iou").expect("parses");
        assert_eq!(r, TemplateRef::by_name("iou", "Iou", "Iou"));
        assert_eq!(r.to_string(), "#iou:Iou:Iou");
        let id = PackageId::of_bytes(b"x");
        let r = TemplateRef::parse(&format!("{id}:A:B")).expect("parses");
        assert_eq!(r.package, PackageRef::Id(id));
        for bad in [
            "iou:Iou:Iou",
            "#iou:Iou",
            "#:A:B",
            "#iou:A:B:C",
            "#iou:1A:B",
        ] {
            assert!(TemplateRef::parse(bad).is_err(), "{bad}");
        }
    }
}
