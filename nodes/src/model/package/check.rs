//! Upload checking: resolves every type and template name, type-checks every expression
//! against the fields, parameters and bindings in scope, and builds the checked `Package`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::doc::Pos;
use super::error::{Ctx, PackageError, PackageErrorKind as K};
use super::raw::{
    RawAction, RawActionKind, RawArgs, RawChoice, RawField, RawPackage, RawTemplate, SrcExpr,
};
use super::store::PackageStore;
use super::{Action, Args, Choice, KeyDef, Module, Package, RecordDef, Template, ARCHIVE, SELF};
use crate::model::expr::{self, ExprError, TypeEnv, TypeScope};
use crate::model::ids::{PackageId, TypeConName};
use crate::model::types::{Name, RawType, RecordTypes, Type};

/// What the checker knows of a definition of the package being uploaded.
#[derive(Default)]
struct LocalDef {
    template: bool,
    fields: Vec<(Name, Type)>,
    choices: BTreeMap<Name, Vec<(Name, Type)>>,
}

struct Checker<'a> {
    id: PackageId,
    name: Arc<str>,
    store: &'a PackageStore,
    defs: BTreeMap<(Name, Name), LocalDef>,
}

/// The checker seen from one module, where unqualified names resolve.
struct ModuleEnv<'c> {
    checker: &'c Checker<'c>,
    module: &'c str,
}

impl RecordTypes for ModuleEnv<'_> {
    fn record_fields(&self, id: &TypeConName) -> Option<&[(Name, Type)]> {
        if id.package_id == self.checker.id {
            let d = self
                .checker
                .defs
                .get(&(id.module.clone(), id.entity.clone()))?;
            Some(&d.fields)
        } else {
            self.checker.store.record_fields(id)
        }
    }
}

impl TypeEnv for ModuleEnv<'_> {
    fn resolve_record(&self, written: &str) -> Option<TypeConName> {
        self.checker.resolve(written, self.module).map(|(id, _)| id)
    }
}

pub fn check_package(
    raw: RawPackage,
    id: PackageId,
    store: &PackageStore,
) -> Result<Package, PackageError> {
    let ctx = Ctx {
        package: Some(format!("{} {}", raw.name, raw.version)),
        ..Ctx::default()
    };
    let mut checker = Checker {
        id,
        name: Arc::from(raw.name.as_str()),
        store,
        defs: BTreeMap::new(),
    };
    checker.declare(&raw, &ctx)?;
    checker.resolve_signatures(&raw, &ctx)?;
    let mut modules = BTreeMap::new();
    for m in raw.modules {
        let mctx = ctx.module(&m.name.value);
        let mname: Name = Arc::from(m.name.value.as_str());
        let mut module = Module::default();
        for r in &m.records {
            let d = checker.local(&mname, &r.name.value);
            module.records.insert(
                Arc::from(r.name.value.as_str()),
                RecordDef {
                    fields: d.fields.clone(),
                },
            );
        }
        for t in m.templates {
            let tctx = mctx.definition("template", &t.name.value);
            let template = checker.template(&mname, t, &tctx)?;
            module
                .templates
                .insert(template.id.entity.clone(), template);
        }
        modules.insert(mname, module);
    }
    Ok(Package {
        id: checker.id,
        name: checker.name,
        version: raw.version,
        modules,
    })
}

impl<'a> Checker<'a> {
    fn local(&self, module: &Name, entity: &str) -> &LocalDef {
        static EMPTY: std::sync::OnceLock<LocalDef> = std::sync::OnceLock::new();
        self.defs
            .get(&(module.clone(), Arc::from(entity)))
            .unwrap_or_else(|| EMPTY.get_or_init(LocalDef::default))
    }

    fn type_id(&self, module: &str, entity: &str) -> TypeConName {
        TypeConName {
            package_id: self.id.clone(),
            package_name: self.name.clone(),
            module: Arc::from(module),
            entity: Arc::from(entity),
        }
    }

    /// Records the names of all records and templates, so definitions may refer to each
    /// other in any order.
    fn declare(&mut self, raw: &RawPackage, ctx: &Ctx) -> Result<(), PackageError> {
        for m in &raw.modules {
            let mctx = ctx.module(&m.name.value);
            let names = m
                .records
                .iter()
                .map(|r| (&r.name, false))
                .chain(m.templates.iter().map(|t| (&t.name, true)));
            for (name, template) in names {
                let key = (
                    Arc::from(m.name.value.as_str()),
                    Arc::from(name.value.as_str()),
                );
                if self
                    .defs
                    .insert(
                        key,
                        LocalDef {
                            template,
                            ..LocalDef::default()
                        },
                    )
                    .is_some()
                {
                    let msg = format!("{} is defined twice in module {}", name.value, m.name.value);
                    return Err(mctx.err(K::Duplicate, name.pos, msg));
                }
            }
        }
        Ok(())
    }

    /// Resolves the field types of records and templates and the parameter types of choices.
    fn resolve_signatures(&mut self, raw: &RawPackage, ctx: &Ctx) -> Result<(), PackageError> {
        for m in &raw.modules {
            let mctx = ctx.module(&m.name.value);
            let module = m.name.value.as_str();
            for r in &m.records {
                let rctx = mctx.definition("record", &r.name.value);
                let fields = self.resolve_fields(&r.fields, module, &rctx, "field")?;
                self.set_def(module, &r.name.value, |d| d.fields = fields);
            }
            for t in &m.templates {
                let tctx = mctx.definition("template", &t.name.value);
                let fields = self.resolve_fields(&t.fields, module, &tctx, "field")?;
                let mut choices = BTreeMap::new();
                choices.insert(Arc::from(ARCHIVE), Vec::new());
                for c in &t.choices {
                    let cctx = tctx.choice(&c.name.value);
                    if c.name.value == ARCHIVE {
                        return Err(cctx.err(
                            K::Duplicate,
                            c.name.pos,
                            "choice Archive is implicit and cannot be redefined",
                        ));
                    }
                    let params = self.resolve_fields(&c.params, module, &cctx, "parameter")?;
                    choices.insert(Arc::from(c.name.value.as_str()), params);
                }
                self.set_def(module, &t.name.value, |d| {
                    d.fields = fields;
                    d.choices = choices;
                });
            }
        }
        Ok(())
    }

    fn set_def(&mut self, module: &str, entity: &str, f: impl FnOnce(&mut LocalDef)) {
        if let Some(d) = self.defs.get_mut(&(Arc::from(module), Arc::from(entity))) {
            f(d);
        }
    }

    fn resolve_fields(
        &self,
        fields: &[RawField],
        module: &str,
        ctx: &Ctx,
        what: &str,
    ) -> Result<Vec<(Name, Type)>, PackageError> {
        let mut out: Vec<(Name, Type)> = Vec::new();
        for f in fields {
            if &*f.name == SELF {
                return Err(ctx.err(
                    K::Schema,
                    f.pos,
                    format!("`{SELF}` is reserved and cannot name a {what}"),
                ));
            }
            let ty = self
                .resolve_type(&f.ty, module)
                .map_err(|m| ctx.err(K::Reference, f.ty_pos, m))?;
            out.push((f.name.clone(), ty));
        }
        Ok(out)
    }

    fn resolve_type(&self, t: &RawType, module: &str) -> Result<Type, String> {
        Ok(match t {
            RawType::Prim(p) => p.clone(),
            RawType::List(inner) => Type::List(Box::new(self.resolve_type(inner, module)?)),
            RawType::Optional(inner) => Type::Optional(Box::new(self.resolve_type(inner, module)?)),
            RawType::Named(n) => match self.resolve(n, module) {
                Some((id, _)) => Type::Record(id),
                None => return Err(format!("unknown type {n}")),
            },
        })
    }

    /// Resolves `X`, `Mod:X` or `#pkg:Mod:X` to a record or template; the flag says which.
    fn resolve(&self, written: &str, module: &str) -> Option<(TypeConName, bool)> {
        let parts: Vec<&str> = written.split(':').collect();
        let (pkg, m, e) = match parts.as_slice() {
            [e] => (None, module, *e),
            [m, e] => (None, *m, *e),
            [p, m, e] => (Some(p.strip_prefix('#')?), *m, *e),
            _ => return None,
        };
        match pkg {
            Some(p) if p != &*self.name => {
                let other = self.store.latest(p)?;
                let module = other.modules.get(m)?;
                let template = module.templates.contains_key(e);
                if !template && !module.records.contains_key(e) {
                    return None;
                }
                let id = TypeConName {
                    package_id: other.id.clone(),
                    package_name: other.name.clone(),
                    module: Arc::from(m),
                    entity: Arc::from(e),
                };
                Some((id, template))
            }
            _ => {
                let d = self.defs.get(&(Arc::from(m), Arc::from(e)))?;
                Some((self.type_id(m, e), d.template))
            }
        }
    }

    fn template(&self, module: &Name, t: RawTemplate, ctx: &Ctx) -> Result<Template, PackageError> {
        let env = ModuleEnv {
            checker: self,
            module,
        };
        let fields = self.local(module, &t.name.value).fields.clone();
        let scope = TypeScope {
            vars: fields.clone(),
        };
        let mut signatories = t.signatories;
        party_sets(&mut signatories, "signatories", &scope, &env, ctx)?;
        if signatories.is_empty() {
            return Err(ctx.err(
                K::Schema,
                t.name.pos,
                "a template needs at least one signatory",
            ));
        }
        let mut observers = t.observers;
        party_sets(&mut observers, "observers", &scope, &env, ctx)?;
        let ensure = t
            .ensure
            .map(|e| check_expr(e, &Type::Bool, "ensure", &scope, &env, ctx))
            .transpose()?;
        let key = match t.key {
            None => None,
            Some(mut k) => {
                let ty = expr::infer(&mut k.value.expr, &scope, &env)
                    .map_err(|e| expr_error(ctx, &k.value, "key", e))?;
                if ty.contains_contract_id(&env) {
                    return Err(ctx.err(
                        K::Type,
                        k.value.pos,
                        format!("a key must not contain contract ids, got {ty}"),
                    ));
                }
                let mut maintainers = k.maintainers;
                party_sets(&mut maintainers, "maintainers", &scope, &env, ctx)?;
                Some(KeyDef {
                    value: k.value,
                    ty,
                    maintainers,
                })
            }
        };
        let mut choices = BTreeMap::new();
        let archive = Choice {
            name: Arc::from(ARCHIVE),
            consuming: true,
            controllers: signatories.clone(),
            params: Vec::new(),
            ensure: None,
            body: Vec::new(),
        };
        choices.insert(archive.name.clone(), archive);
        for c in t.choices {
            let cctx = ctx.choice(&c.name.value);
            let choice = self.choice(module, &t.name.value, &fields, c, &env, &cctx)?;
            choices.insert(choice.name.clone(), choice);
        }
        let id = self.type_id(module, &t.name.value);
        Ok(Template {
            id,
            fields,
            signatories,
            observers,
            ensure,
            key,
            choices,
        })
    }

    fn choice(
        &self,
        module: &Name,
        template: &str,
        fields: &[(Name, Type)],
        c: RawChoice,
        env: &ModuleEnv<'_>,
        ctx: &Ctx,
    ) -> Result<Choice, PackageError> {
        let name: Name = Arc::from(c.name.value.as_str());
        let params = self
            .local(module, template)
            .choices
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let mut scope = TypeScope {
            vars: fields.to_vec(),
        };
        for ((p, t), raw) in params.iter().zip(&c.params) {
            bind(&mut scope, p.clone(), t.clone(), raw.pos, ctx)?;
        }
        let mut controllers = c.controllers;
        party_sets(&mut controllers, "controllers", &scope, env, ctx)?;
        if controllers.is_empty() {
            return Err(ctx.err(
                K::Schema,
                c.name.pos,
                "a choice needs at least one controller",
            ));
        }
        let ensure = c
            .ensure
            .map(|e| check_expr(e, &Type::Bool, "ensure", &scope, env, ctx))
            .transpose()?;
        bind(
            &mut scope,
            Arc::from(SELF),
            Type::ContractId,
            c.name.pos,
            ctx,
        )?;
        let mut body = Vec::with_capacity(c.body.len());
        for a in c.body {
            body.push(self.action(a, &mut scope, env, ctx)?);
        }
        Ok(Choice {
            name,
            consuming: c.consuming,
            controllers,
            params,
            ensure,
            body,
        })
    }

    fn action(
        &self,
        a: RawAction,
        scope: &mut TypeScope,
        env: &ModuleEnv<'_>,
        ctx: &Ctx,
    ) -> Result<Action, PackageError> {
        Ok(match a.kind {
            RawActionKind::Create {
                template,
                with,
                bind: b,
            } => {
                let id = self.template_ref(&template.value, env.module, template.pos, ctx)?;
                let fields = self.template_fields(&id);
                let args = check_args(
                    with,
                    &fields,
                    &format!("template {id}"),
                    "field",
                    a.pos,
                    scope,
                    env,
                    ctx,
                )?;
                if let Some(b) = &b {
                    bind(scope, b.value.clone(), Type::ContractId, b.pos, ctx)?;
                }
                Action::Create {
                    template: id,
                    args,
                    bind: b.map(|b| b.value),
                }
            }
            RawActionKind::Exercise {
                choice,
                on,
                template,
                with,
            } => {
                let id = self.template_ref(&template.value, env.module, template.pos, ctx)?;
                let params = self.choice_params(&id, &choice.value).ok_or_else(|| {
                    ctx.err(
                        K::Reference,
                        choice.pos,
                        format!("template {id} has no choice {}", choice.value),
                    )
                })?;
                let on = check_expr(on, &Type::ContractId, "on", scope, env, ctx)?;
                let what = format!("choice {}", choice.value);
                let args = check_args(with, &params, &what, "parameter", a.pos, scope, env, ctx)?;
                Action::Exercise {
                    template: id,
                    choice: Arc::from(choice.value.as_str()),
                    on,
                    args,
                }
            }
            RawActionKind::Archive { on, template } => {
                let template = template
                    .map(|t| self.template_ref(&t.value, env.module, t.pos, ctx))
                    .transpose()?;
                Action::Archive {
                    template,
                    on: check_expr(on, &Type::ContractId, "archive", scope, env, ctx)?,
                }
            }
            RawActionKind::Fetch {
                on,
                template,
                bind: b,
            } => {
                let id = self.template_ref(&template.value, env.module, template.pos, ctx)?;
                let on = check_expr(on, &Type::ContractId, "fetch", scope, env, ctx)?;
                bind(scope, b.value.clone(), Type::Record(id.clone()), b.pos, ctx)?;
                Action::Fetch {
                    template: id,
                    on,
                    bind: b.value,
                }
            }
            RawActionKind::Assert { cond, message } => Action::Assert {
                cond: check_expr(cond, &Type::Bool, "assert", scope, env, ctx)?,
                message,
            },
        })
    }

    fn template_ref(
        &self,
        written: &str,
        module: &str,
        pos: Pos,
        ctx: &Ctx,
    ) -> Result<TypeConName, PackageError> {
        match self.resolve(written, module) {
            Some((id, true)) => Ok(id),
            Some((id, false)) => Err(ctx.err(
                K::Reference,
                pos,
                format!("{id} is a record, not a template"),
            )),
            None => Err(ctx.err(K::Reference, pos, format!("unknown template {written}"))),
        }
    }

    fn template_fields(&self, id: &TypeConName) -> Vec<(Name, Type)> {
        if id.package_id == self.id {
            return self.local(&id.module, &id.entity).fields.clone();
        }
        self.store
            .template_by_id(id)
            .map(|t| t.fields.clone())
            .unwrap_or_default()
    }

    fn choice_params(&self, id: &TypeConName, choice: &str) -> Option<Vec<(Name, Type)>> {
        if id.package_id == self.id {
            return self
                .local(&id.module, &id.entity)
                .choices
                .get(choice)
                .cloned();
        }
        self.store
            .template_by_id(id)?
            .choices
            .get(choice)
            .map(|c| c.params.clone())
    }
}

fn bind(
    scope: &mut TypeScope,
    name: Name,
    t: Type,
    pos: Pos,
    ctx: &Ctx,
) -> Result<(), PackageError> {
    if scope.get(&name).is_some() {
        return Err(ctx.err(K::Duplicate, pos, format!("`{name}` is already in scope")));
    }
    scope.push(name, t);
    Ok(())
}

fn expr_error(ctx: &Ctx, src: &SrcExpr, what: &str, e: ExprError) -> PackageError {
    let pos = Pos {
        line: src.pos.line,
        column: src.pos.column + e.offset,
    };
    ctx.err(
        K::Type,
        pos,
        format!("in {what} `{}`: {}", src.text, e.message),
    )
}

fn check_expr(
    mut src: SrcExpr,
    t: &Type,
    what: &str,
    scope: &TypeScope,
    env: &ModuleEnv<'_>,
    ctx: &Ctx,
) -> Result<SrcExpr, PackageError> {
    expr::check(&mut src.expr, t, scope, env).map_err(|e| expr_error(ctx, &src, what, e))?;
    Ok(src)
}

fn party_sets(
    exprs: &mut [SrcExpr],
    what: &str,
    scope: &TypeScope,
    env: &ModuleEnv<'_>,
    ctx: &Ctx,
) -> Result<(), PackageError> {
    for src in exprs {
        let t =
            expr::infer(&mut src.expr, scope, env).map_err(|e| expr_error(ctx, src, what, e))?;
        if !t.is_party_set() {
            let msg = format!(
                "in {what} `{}`: expected party or list<party>, got {t}",
                src.text
            );
            return Err(ctx.err(K::Type, src.pos, msg));
        }
    }
    Ok(())
}

/// Checks `with` arguments against the fields or parameters they fill: each given exactly
/// once, none unknown; returns them in declaration order.
#[allow(clippy::too_many_arguments)]
fn check_args(
    given: RawArgs,
    expected: &[(Name, Type)],
    owner: &str,
    what: &str,
    pos: Pos,
    scope: &TypeScope,
    env: &ModuleEnv<'_>,
    ctx: &Ctx,
) -> Result<Args, PackageError> {
    if let Some((n, _)) = given
        .iter()
        .find(|(n, _)| !expected.iter().any(|(e, _)| *e == n.value))
    {
        return Err(ctx.err(
            K::Type,
            n.pos,
            format!("{owner} has no {what} `{}`", n.value),
        ));
    }
    let mut given = given;
    let mut out = Vec::with_capacity(expected.len());
    for (name, t) in expected {
        let idx = given.iter().position(|(n, _)| n.value == *name);
        let idx = idx
            .ok_or_else(|| ctx.err(K::Type, pos, format!("missing {what} `{name}` of {owner}")))?;
        let (_, src) = given.swap_remove(idx);
        out.push((
            name.clone(),
            check_expr(src, t, &format!("{what} {name}"), scope, env, ctx)?,
        ));
    }
    Ok(out)
}
