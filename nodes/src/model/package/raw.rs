//! Reads a document tree into unchecked definitions: every key is known, every section has
//! the right shape, every expression parses. Names are resolved later, by `check`.

use std::sync::Arc;

use super::doc::{Key, Kind, Node, Pos};
use super::error::{Ctx, PackageError, PackageErrorKind as K};
use crate::model::expr::{self, Expr};
use crate::model::ids::{is_ident, is_package_name};
use crate::model::types::{parse_type, Name, RawType};

/// An expression with its source text and position, kept for error messages.
#[derive(Clone, Debug)]
pub struct SrcExpr {
    pub text: Arc<str>,
    pub expr: Expr,
    pub pos: Pos,
}

#[derive(Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

#[derive(Debug)]
pub struct RawPackage {
    pub name: String,
    pub version: semver::Version,
    pub modules: Vec<RawModule>,
}

#[derive(Debug)]
pub struct RawModule {
    pub name: Spanned<String>,
    pub records: Vec<RawRecord>,
    pub templates: Vec<RawTemplate>,
}

#[derive(Debug)]
pub struct RawField {
    pub name: Name,
    pub pos: Pos,
    pub ty: RawType,
    pub ty_pos: Pos,
}

#[derive(Debug)]
pub struct RawRecord {
    pub name: Spanned<String>,
    pub fields: Vec<RawField>,
}

#[derive(Debug)]
pub struct RawTemplate {
    pub name: Spanned<String>,
    pub fields: Vec<RawField>,
    pub signatories: Vec<SrcExpr>,
    pub observers: Vec<SrcExpr>,
    pub ensure: Option<SrcExpr>,
    pub key: Option<RawKey>,
    pub choices: Vec<RawChoice>,
}

#[derive(Debug)]
pub struct RawKey {
    pub value: SrcExpr,
    pub maintainers: Vec<SrcExpr>,
}

#[derive(Debug)]
pub struct RawChoice {
    pub name: Spanned<String>,
    pub consuming: bool,
    pub controllers: Vec<SrcExpr>,
    pub params: Vec<RawField>,
    pub ensure: Option<SrcExpr>,
    pub body: Vec<RawAction>,
}

#[derive(Debug)]
pub struct RawAction {
    pub pos: Pos,
    pub kind: RawActionKind,
}

pub type RawArgs = Vec<(Spanned<Name>, SrcExpr)>;

#[derive(Debug)]
pub enum RawActionKind {
    Create {
        template: Spanned<String>,
        with: RawArgs,
        bind: Option<Spanned<Name>>,
    },
    Exercise {
        choice: Spanned<String>,
        on: SrcExpr,
        template: Spanned<String>,
        with: RawArgs,
    },
    Archive {
        on: SrcExpr,
        template: Option<Spanned<String>>,
    },
    Fetch {
        on: SrcExpr,
        template: Spanned<String>,
        bind: Spanned<Name>,
    },
    Assert {
        cond: SrcExpr,
        message: Option<String>,
    },
}

/// Walks one mapping, handing out the values of known keys and rejecting unknown ones.
struct Fields<'a> {
    entries: &'a [(Key, Node)],
    pos: Pos,
}

impl<'a> Fields<'a> {
    fn new(
        node: &'a Node,
        what: &str,
        allowed: &[&str],
        ctx: &Ctx,
    ) -> Result<Fields<'a>, PackageError> {
        let Kind::Map(entries) = &node.kind else {
            return Err(ctx.err(
                K::Schema,
                node.pos,
                format!("{what} must be a mapping, found {}", node.describe()),
            ));
        };
        if let Some((k, _)) = entries
            .iter()
            .find(|(k, _)| !allowed.contains(&k.name.as_str()))
        {
            let msg = format!(
                "unknown key {:?} in {what} (expected one of: {})",
                k.name,
                allowed.join(", ")
            );
            return Err(ctx.err(K::Schema, k.pos, msg));
        }
        Ok(Fields {
            entries,
            pos: node.pos,
        })
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    fn key_pos(&self, key: &str) -> Pos {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map_or(self.pos, |(k, _)| k.pos)
    }

    fn required(&self, key: &str, what: &str, ctx: &Ctx) -> Result<&'a Node, PackageError> {
        self.get(key).ok_or_else(|| {
            ctx.err(
                K::Schema,
                self.pos,
                format!("{what} is missing required key {key:?}"),
            )
        })
    }
}

fn scalar<'a>(node: &'a Node, what: &str, ctx: &Ctx) -> Result<&'a str, PackageError> {
    match &node.kind {
        Kind::Scalar { text, .. } => Ok(text),
        _ => Err(ctx.err(
            K::Schema,
            node.pos,
            format!("{what} must be a scalar, found {}", node.describe()),
        )),
    }
}

fn entries<'a>(
    node: Option<&'a Node>,
    what: &str,
    ctx: &Ctx,
) -> Result<&'a [(Key, Node)], PackageError> {
    match node.map(|n| (&n.kind, n)) {
        None => Ok(&[]),
        Some((Kind::Map(m), _)) => Ok(m),
        Some((_, n)) => Err(ctx.err(
            K::Schema,
            n.pos,
            format!("{what} must be a mapping, found {}", n.describe()),
        )),
    }
}

fn ident(key: &Key, what: &str, ctx: &Ctx) -> Result<Spanned<String>, PackageError> {
    if is_ident(&key.name) {
        Ok(Spanned {
            value: key.name.clone(),
            pos: key.pos,
        })
    } else {
        Err(ctx.err(
            K::Schema,
            key.pos,
            format!("{what} name {:?} is not an identifier", key.name),
        ))
    }
}

/// Parses a scalar as an expression; errors point at the character inside the scalar.
/// A YAML list in expression position is read as a list literal of its items.
pub fn expression(node: &Node, what: &str, ctx: &Ctx) -> Result<SrcExpr, PackageError> {
    if let Kind::Seq(items) = &node.kind {
        let items: Vec<SrcExpr> = items
            .iter()
            .map(|i| expression(i, what, ctx))
            .collect::<Result<_, _>>()?;
        let texts: Vec<&str> = items.iter().map(|i| &*i.text).collect();
        let text = Arc::from(format!("[{}]", texts.join(", ")));
        let expr = Expr {
            kind: expr::ExprKind::List(items.into_iter().map(|i| i.expr).collect()),
            offset: 0,
        };
        return Ok(SrcExpr {
            text,
            expr,
            pos: node.pos,
        });
    }
    let Kind::Scalar { text, quoted } = &node.kind else {
        return Err(ctx.err(
            K::Schema,
            node.pos,
            format!("{what} must be an expression, found {}", node.describe()),
        ));
    };
    let base = Pos {
        line: node.pos.line,
        column: node.pos.column + usize::from(*quoted),
    };
    let expr = expr::parse(text).map_err(|e| {
        let pos = Pos {
            line: base.line,
            column: base.column + e.offset,
        };
        ctx.err(K::Syntax, pos, format!("in {what} `{text}`: {}", e.message))
    })?;
    Ok(SrcExpr {
        text: Arc::from(text.as_str()),
        expr,
        pos: base,
    })
}

/// A party set is a list of expressions or a single one.
fn party_set(node: Option<&Node>, what: &str, ctx: &Ctx) -> Result<Vec<SrcExpr>, PackageError> {
    match node.map(|n| (&n.kind, n)) {
        None => Ok(Vec::new()),
        Some((Kind::Seq(items), _)) => items.iter().map(|i| expression(i, what, ctx)).collect(),
        Some((_, n)) => Ok(vec![expression(n, what, ctx)?]),
    }
}

fn typed_fields(node: Option<&Node>, what: &str, ctx: &Ctx) -> Result<Vec<RawField>, PackageError> {
    let mut out = Vec::new();
    for (k, v) in entries(node, what, ctx)? {
        let name = ident(k, "field", ctx)?;
        let text = scalar(v, "a type", ctx)?;
        let ty = parse_type(text).map_err(|m| ctx.err(K::Schema, v.pos, m))?;
        out.push(RawField {
            name: Arc::from(name.value),
            pos: name.pos,
            ty,
            ty_pos: v.pos,
        });
    }
    Ok(out)
}

pub fn read_package(root: &Node) -> Result<RawPackage, PackageError> {
    let mut ctx = Ctx::default();
    let f = Fields::new(
        root,
        "the package",
        &["package", "version", "modules"],
        &ctx,
    )?;
    let name_node = f.required("package", "the package", &ctx)?;
    let name = scalar(name_node, "package", &ctx)?.to_string();
    if !is_package_name(&name) {
        return Err(ctx.err(
            K::Schema,
            name_node.pos,
            format!("package name {name:?} is not valid"),
        ));
    }
    let version_node = f.required("version", "the package", &ctx)?;
    let version_text = scalar(version_node, "version", &ctx)?;
    let version = semver::Version::parse(version_text).map_err(|e| {
        ctx.err(
            K::Schema,
            version_node.pos,
            format!("version {version_text:?} is not semver: {e}"),
        )
    })?;
    ctx.package = Some(format!("{name} {version}"));
    let mut modules = Vec::new();
    for (k, v) in entries(f.get("modules"), "modules", &ctx)? {
        modules.push(read_module(k, v, &ctx.module(&k.name))?);
    }
    Ok(RawPackage {
        name,
        version,
        modules,
    })
}

fn read_module(key: &Key, node: &Node, ctx: &Ctx) -> Result<RawModule, PackageError> {
    let name = ident(key, "module", ctx)?;
    let f = Fields::new(node, "a module", &["records", "templates"], ctx)?;
    let mut records = Vec::new();
    for (k, v) in entries(f.get("records"), "records", ctx)? {
        let rctx = ctx.definition("record", &k.name);
        records.push(RawRecord {
            name: ident(k, "record", &rctx)?,
            fields: typed_fields(Some(v), "a record", &rctx)?,
        });
    }
    let mut templates = Vec::new();
    for (k, v) in entries(f.get("templates"), "templates", ctx)? {
        templates.push(read_template(k, v, &ctx.definition("template", &k.name))?);
    }
    Ok(RawModule {
        name,
        records,
        templates,
    })
}

fn read_template(key: &Key, node: &Node, ctx: &Ctx) -> Result<RawTemplate, PackageError> {
    let allowed = [
        "fields",
        "signatories",
        "observers",
        "ensure",
        "key",
        "choices",
    ];
    let f = Fields::new(node, "a template", &allowed, ctx)?;
    let signatories = party_set(
        Some(f.required("signatories", "a template", ctx)?),
        "signatories",
        ctx,
    )?;
    let key_def = match f.get("key") {
        None => None,
        Some(k) => {
            let kf = Fields::new(k, "a key", &["value", "maintainers"], ctx)?;
            Some(RawKey {
                value: expression(kf.required("value", "a key", ctx)?, "key value", ctx)?,
                maintainers: party_set(
                    Some(kf.required("maintainers", "a key", ctx)?),
                    "maintainers",
                    ctx,
                )?,
            })
        }
    };
    let mut choices = Vec::new();
    for (k, v) in entries(f.get("choices"), "choices", ctx)? {
        choices.push(read_choice(k, v, &ctx.choice(&k.name))?);
    }
    Ok(RawTemplate {
        name: ident(key, "template", ctx)?,
        fields: typed_fields(f.get("fields"), "fields", ctx)?,
        signatories,
        observers: party_set(f.get("observers"), "observers", ctx)?,
        ensure: f
            .get("ensure")
            .map(|n| expression(n, "ensure", ctx))
            .transpose()?,
        key: key_def,
        choices,
    })
}

fn read_choice(key: &Key, node: &Node, ctx: &Ctx) -> Result<RawChoice, PackageError> {
    let f = Fields::new(
        node,
        "a choice",
        &["controllers", "consuming", "params", "ensure", "do"],
        ctx,
    )?;
    let consuming = match f.get("consuming") {
        None => true,
        Some(n) => match scalar(n, "consuming", ctx)? {
            "true" => true,
            "false" => false,
            other => {
                return Err(ctx.err(
                    K::Schema,
                    n.pos,
                    format!("consuming must be true or false, got {other:?}"),
                ))
            }
        },
    };
    let body = match f.get("do") {
        None => Vec::new(),
        Some(Node {
            kind: Kind::Seq(items),
            ..
        }) => items
            .iter()
            .map(|a| read_action(a, ctx))
            .collect::<Result<_, _>>()?,
        Some(n) => {
            return Err(ctx.err(
                K::Schema,
                n.pos,
                format!("do must be a list of actions, found {}", n.describe()),
            ))
        }
    };
    Ok(RawChoice {
        name: ident(key, "choice", ctx)?,
        consuming,
        controllers: party_set(
            Some(f.required("controllers", "a choice", ctx)?),
            "controllers",
            ctx,
        )?,
        params: typed_fields(f.get("params"), "params", ctx)?,
        ensure: f
            .get("ensure")
            .map(|n| expression(n, "ensure", ctx))
            .transpose()?,
        body,
    })
}

const ACTIONS: [(&str, &[&str]); 5] = [
    ("create", &["create", "with", "as"]),
    ("exercise", &["exercise", "on", "template", "with"]),
    ("archive", &["archive", "template"]),
    ("fetch", &["fetch", "template", "as"]),
    ("assert", &["assert", "message"]),
];

fn read_action(node: &Node, ctx: &Ctx) -> Result<RawAction, PackageError> {
    let Kind::Map(m) = &node.kind else {
        return Err(ctx.err(
            K::Schema,
            node.pos,
            format!("an action must be a mapping, found {}", node.describe()),
        ));
    };
    let verbs: Vec<&str> = ACTIONS.iter().map(|(v, _)| *v).collect();
    let found = ACTIONS
        .iter()
        .find(|(verb, _)| m.iter().any(|(k, _)| k.name == *verb));
    let Some((verb, allowed)) = found else {
        let msg = format!("an action needs one of the keys {}", verbs.join(", "));
        return Err(ctx.err(K::Schema, node.pos, msg));
    };
    let f = Fields::new(node, &format!("a {verb} action"), allowed, ctx)?;
    let head = f.required(verb, "an action", ctx)?;
    let name_of = |key: &str| -> Result<Spanned<String>, PackageError> {
        let n = f.required(key, &format!("a {verb} action"), ctx)?;
        Ok(Spanned {
            value: scalar(n, key, ctx)?.to_string(),
            pos: n.pos,
        })
    };
    let kind = match *verb {
        "create" => RawActionKind::Create {
            template: Spanned {
                value: scalar(head, "create", ctx)?.to_string(),
                pos: head.pos,
            },
            with: args(f.get("with"), ctx)?,
            bind: binding(&f, ctx)?,
        },
        "exercise" => RawActionKind::Exercise {
            choice: Spanned {
                value: scalar(head, "exercise", ctx)?.to_string(),
                pos: head.pos,
            },
            on: expression(f.required("on", "an exercise action", ctx)?, "on", ctx)?,
            template: name_of("template")?,
            with: args(f.get("with"), ctx)?,
        },
        "archive" => RawActionKind::Archive {
            on: expression(head, "archive", ctx)?,
            template: f.get("template").map(|_| name_of("template")).transpose()?,
        },
        "fetch" => RawActionKind::Fetch {
            on: expression(head, "fetch", ctx)?,
            template: name_of("template")?,
            bind: binding(&f, ctx)?
                .ok_or_else(|| ctx.err(K::Schema, node.pos, "a fetch action needs `as`"))?,
        },
        _ => RawActionKind::Assert {
            cond: expression(head, "assert", ctx)?,
            message: f
                .get("message")
                .map(|n| scalar(n, "message", ctx).map(str::to_string))
                .transpose()?,
        },
    };
    Ok(RawAction {
        pos: node.pos,
        kind,
    })
}

fn binding(f: &Fields<'_>, ctx: &Ctx) -> Result<Option<Spanned<Name>>, PackageError> {
    let Some(n) = f.get("as") else {
        return Ok(None);
    };
    let name = scalar(n, "as", ctx)?;
    if !is_ident(name) {
        return Err(ctx.err(
            K::Schema,
            f.key_pos("as"),
            format!("binding name {name:?} is not an identifier"),
        ));
    }
    Ok(Some(Spanned {
        value: Arc::from(name),
        pos: n.pos,
    }))
}

fn args(node: Option<&Node>, ctx: &Ctx) -> Result<RawArgs, PackageError> {
    let mut out = Vec::new();
    for (k, v) in entries(node, "with", ctx)? {
        let name = ident(k, "argument", ctx)?;
        out.push((
            Spanned {
                value: Arc::from(name.value),
                pos: name.pos,
            },
            expression(v, &format!("argument {}", k.name), ctx)?,
        ));
    }
    Ok(out)
}
