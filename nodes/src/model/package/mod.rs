//! Packages: the document format, upload checking, and the store of loaded packages that the
//! interpreter reads. A template reference by package name (`#iou:Iou:Iou`) resolves to the
//! highest loaded version (semver order); references inside a package body are pinned to
//! the package id they resolved to at upload, as Daml pins its dependencies.

mod check;
mod doc;
mod error;
mod raw;
mod store;

pub use doc::{Format, Pos};
pub use error::{Location, PackageError, PackageErrorKind};
pub use raw::SrcExpr;
pub use store::{DecodeError, LookupError, PackageStore};

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ids::{PackageId, TemplateId};
use super::types::{Name, Type};

/// A checked package.
#[derive(Debug)]
pub struct Package {
    pub id: PackageId,
    pub name: Arc<str>,
    pub version: semver::Version,
    pub modules: BTreeMap<Name, Module>,
}

#[derive(Debug, Default)]
pub struct Module {
    pub records: BTreeMap<Name, RecordDef>,
    pub templates: BTreeMap<Name, Template>,
}

#[derive(Debug)]
pub struct RecordDef {
    pub fields: Vec<(Name, Type)>,
}

#[derive(Debug)]
pub struct Template {
    pub id: TemplateId,
    /// The payload record, in declaration order.
    pub fields: Vec<(Name, Type)>,
    pub signatories: Vec<SrcExpr>,
    pub observers: Vec<SrcExpr>,
    pub ensure: Option<SrcExpr>,
    pub key: Option<KeyDef>,
    /// Includes the implicit consuming `Archive`, controlled by the signatories.
    pub choices: BTreeMap<Name, Choice>,
}

#[derive(Debug)]
pub struct KeyDef {
    pub value: SrcExpr,
    pub ty: Type,
    /// Evaluated over the template's fields; must be among the signatories.
    pub maintainers: Vec<SrcExpr>,
}

#[derive(Debug)]
pub struct Choice {
    pub name: Name,
    pub consuming: bool,
    pub controllers: Vec<SrcExpr>,
    pub params: Vec<(Name, Type)>,
    pub ensure: Option<SrcExpr>,
    pub body: Vec<Action>,
}

/// Arguments in declaration order of the fields or parameters they fill.
pub type Args = Vec<(Name, SrcExpr)>;

#[derive(Debug)]
pub enum Action {
    Create {
        template: TemplateId,
        args: Args,
        bind: Option<Name>,
    },
    Exercise {
        template: TemplateId,
        choice: Name,
        on: SrcExpr,
        args: Args,
    },
    Archive {
        template: Option<TemplateId>,
        on: SrcExpr,
    },
    Fetch {
        template: TemplateId,
        on: SrcExpr,
        bind: Name,
    },
    Assert {
        cond: SrcExpr,
        message: Option<String>,
    },
}

/// The name of the implicit choice every template has.
pub const ARCHIVE: &str = "Archive";
/// The name bound to the current contract's id inside a choice.
pub const SELF: &str = "self";
