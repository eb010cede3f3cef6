//! Errors of package upload: each names the package, module, definition and choice it is
//! about, and the line and column in the document.

use std::fmt;

use super::doc::Pos;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PackageErrorKind {
    /// Not well-formed YAML or JSON.
    Syntax,
    /// Well-formed, but a key is unknown or missing, or a value has the wrong shape.
    Schema,
    /// A name that does not resolve (type, template, choice, package).
    Reference,
    /// An expression does not type-check, or a party set is not `party`/`list<party>`.
    Type,
    /// A name defined twice.
    Duplicate,
    /// Another document with the same package name and version is already loaded.
    VersionConflict,
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub struct PackageError {
    pub kind: PackageErrorKind,
    /// Boxed: errors travel through every reader and checker function.
    pub location: Box<Location>,
    pub message: String,
}

/// Where in the document an error is.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Location {
    /// `name version`, when known.
    pub package: Option<String>,
    pub module: Option<String>,
    /// `template Iou` or `record Money`.
    pub definition: Option<String>,
    pub choice: Option<String>,
    pub pos: Option<Pos>,
}

impl PackageError {
    pub fn new(
        kind: PackageErrorKind,
        location: Location,
        message: impl Into<String>,
    ) -> PackageError {
        PackageError {
            kind,
            location: Box::new(location),
            message: message.into(),
        }
    }

    /// Stable error code for the Ledger API.
    pub fn code(&self) -> &'static str {
        match self.kind {
            PackageErrorKind::VersionConflict => "PACKAGE_VERSION_CONFLICT",
            _ => "INVALID_PACKAGE",
        }
    }
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.location;
        let mut parts: Vec<String> = Vec::new();
        if let Some(p) = &l.package {
            parts.push(format!("package {p}"));
        }
        if let Some(m) = &l.module {
            parts.push(format!("module {m}"));
        }
        if let Some(d) = &l.definition {
            parts.push(d.clone());
        }
        if let Some(c) = &l.choice {
            parts.push(format!("choice {c}"));
        }
        if let Some(p) = l.pos {
            parts.push(format!("line {}, column {}", p.line, p.column));
        }
        if parts.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.message)
        }
    }
}

/// Where in the package the reader or checker is, so that errors can say so.
#[derive(Clone, Default, Debug)]
pub struct Ctx {
    pub package: Option<String>,
    pub module: Option<String>,
    pub definition: Option<String>,
    pub choice: Option<String>,
}

impl Ctx {
    pub fn err(
        &self,
        kind: PackageErrorKind,
        pos: Pos,
        message: impl Into<String>,
    ) -> PackageError {
        let location = Location {
            package: self.package.clone(),
            module: self.module.clone(),
            definition: self.definition.clone(),
            choice: self.choice.clone(),
            pos: Some(pos),
        };
        PackageError::new(kind, location, message)
    }

    pub fn module(&self, m: &str) -> Ctx {
        Ctx {
            module: Some(m.to_string()),
            definition: None,
            choice: None,
            ..self.clone()
        }
    }

    pub fn definition(&self, what: &str, name: &str) -> Ctx {
        Ctx {
            definition: Some(format!("{what} {name}")),
            choice: None,
            ..self.clone()
        }
    }

    pub fn choice(&self, c: &str) -> Ctx {
        Ctx {
            choice: Some(c.to_string()),
            ..self.clone()
        }
    }
}
