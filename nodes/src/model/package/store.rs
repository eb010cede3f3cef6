//! The set of loaded packages, and lookups by reference and by id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::error::{Location, PackageError, PackageErrorKind};
use super::{check, doc, raw, Choice, Package, Template};
use crate::model::ids::{PackageId, PackageRef, TemplateRef, TypeConName};
use crate::model::json;
use crate::model::types::{Name, RecordTypes, Type};
use crate::model::value::{Value, ValueError};

/// All loaded packages. Cloning is cheap (packages are shared), so a participant can keep a
/// snapshot per submission.
#[derive(Clone, Default, Debug)]
pub struct PackageStore {
    by_id: HashMap<PackageId, Arc<Package>>,
    by_name: HashMap<Arc<str>, BTreeMap<semver::Version, PackageId>>,
}

/// A reference that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("package {0} is not loaded")]
    PackageNotFound(String),
    #[error("template {0} does not exist")]
    TemplateNotFound(String),
    #[error("template {template} has no choice {choice}")]
    ChoiceNotFound { template: String, choice: String },
    #[error("template {0} has no key")]
    NoKey(String),
}

impl LookupError {
    /// Stable error code for the Ledger API.
    pub fn code(&self) -> &'static str {
        match self {
            LookupError::PackageNotFound(_) => "PACKAGE_NOT_FOUND",
            LookupError::TemplateNotFound(_) => "TEMPLATE_NOT_FOUND",
            LookupError::ChoiceNotFound { .. } => "CHOICE_NOT_FOUND",
            LookupError::NoKey(_) => "INVALID_ARGUMENT",
        }
    }
}

impl PackageStore {
    pub fn new() -> PackageStore {
        PackageStore::default()
    }

    /// Parses, checks and loads a package document. Uploading the same bytes again is a
    /// no-op returning the same id; a different document with a loaded name and version is
    /// refused.
    pub fn upload(&mut self, bytes: &[u8], format: doc::Format) -> Result<PackageId, PackageError> {
        let id = PackageId::of_bytes(bytes);
        if self.by_id.contains_key(&id) {
            return Ok(id);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            PackageError::new(
                PackageErrorKind::Syntax,
                Location::default(),
                format!("document is not UTF-8: {e}"),
            )
        })?;
        let tree = doc::parse(text, format).map_err(|e| {
            let location = Location {
                pos: Some(e.pos),
                ..Location::default()
            };
            PackageError::new(PackageErrorKind::Syntax, location, e.message)
        })?;
        let raw = raw::read_package(&tree)?;
        if self
            .by_name
            .get(raw.name.as_str())
            .is_some_and(|vs| vs.contains_key(&raw.version))
        {
            let location = Location {
                package: Some(format!("{} {}", raw.name, raw.version)),
                ..Location::default()
            };
            let message = "a different package with this name and version is already loaded";
            return Err(PackageError::new(
                PackageErrorKind::VersionConflict,
                location,
                message,
            ));
        }
        let package = check::check_package(raw, id.clone(), self)?;
        self.by_name
            .entry(package.name.clone())
            .or_default()
            .insert(package.version.clone(), id.clone());
        self.by_id.insert(id.clone(), Arc::new(package));
        Ok(id)
    }

    pub fn get(&self, id: &PackageId) -> Option<&Arc<Package>> {
        self.by_id.get(id)
    }

    /// The package a reference means now: by id, or the highest version of a name.
    pub fn resolve(&self, r: &PackageRef) -> Option<&Arc<Package>> {
        match r {
            PackageRef::Id(id) => self.by_id.get(id),
            PackageRef::Name(n) => self.latest(n),
        }
    }

    pub fn latest(&self, name: &str) -> Option<&Arc<Package>> {
        let (_, id) = self.by_name.get(name)?.iter().next_back()?;
        self.by_id.get(id)
    }

    pub fn packages(&self) -> impl Iterator<Item = &Arc<Package>> {
        self.by_id.values()
    }

    pub fn template(&self, r: &TemplateRef) -> Result<&Template, LookupError> {
        let pkg = self
            .resolve(&r.package)
            .ok_or_else(|| LookupError::PackageNotFound(package_ref(r)))?;
        pkg.modules
            .get(r.module.as_str())
            .and_then(|m| m.templates.get(r.entity.as_str()))
            .ok_or_else(|| LookupError::TemplateNotFound(r.to_string()))
    }

    pub fn template_by_id(&self, id: &TypeConName) -> Option<&Template> {
        self.by_id
            .get(&id.package_id)?
            .modules
            .get(&id.module)?
            .templates
            .get(&id.entity)
    }

    pub fn choice<'a>(&'a self, t: &'a Template, choice: &str) -> Result<&'a Choice, LookupError> {
        t.choices
            .get(choice)
            .ok_or_else(|| LookupError::ChoiceNotFound {
                template: t.id.to_string(),
                choice: choice.to_string(),
            })
    }

    /// Decodes a create argument (the template's payload) from the JSON API encoding.
    pub fn decode_create_argument(
        &self,
        r: &TemplateRef,
        j: &serde_json::Value,
    ) -> Result<Value, DecodeError> {
        let t = self.template(r)?;
        Ok(json::from_json(&Type::Record(t.id.clone()), j, self)?)
    }

    /// Decodes a choice argument (an object of the choice's parameters).
    pub fn decode_choice_argument(
        &self,
        r: &TemplateRef,
        choice: &str,
        j: &serde_json::Value,
    ) -> Result<Value, DecodeError> {
        let t = self.template(r)?;
        let c = self.choice(t, choice)?;
        Ok(json::record_from_json(&c.params, j, self)?)
    }

    /// Decodes a contract key of a template.
    pub fn decode_key(&self, r: &TemplateRef, j: &serde_json::Value) -> Result<Value, DecodeError> {
        let t = self.template(r)?;
        let k = t
            .key
            .as_ref()
            .ok_or_else(|| LookupError::NoKey(r.to_string()))?;
        Ok(json::from_json(&k.ty, j, self)?)
    }
}

fn package_ref(r: &TemplateRef) -> String {
    match &r.package {
        PackageRef::Name(n) => format!("#{n}"),
        PackageRef::Id(id) => id.to_string(),
    }
}

/// Failure to decode a command argument: the reference or the value is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl DecodeError {
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Lookup(e) => e.code(),
            DecodeError::Value(e) => e.code(),
        }
    }
}

impl RecordTypes for PackageStore {
    fn record_fields(&self, id: &TypeConName) -> Option<&[(Name, Type)]> {
        let m = self.by_id.get(&id.package_id)?.modules.get(&id.module)?;
        if let Some(r) = m.records.get(&id.entity) {
            return Some(&r.fields);
        }
        m.templates.get(&id.entity).map(|t| t.fields.as_slice())
    }
}
