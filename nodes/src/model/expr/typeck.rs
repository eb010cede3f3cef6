//! Type checking of expressions against the names in scope (fields, parameters, bindings).
//! Checking is bidirectional: `check` pushes an expected type into `[]`, `none` and
//! record literals, `infer` synthesises one.

use std::sync::Arc;

use super::{BinOp, Expr, ExprError, ExprKind};
use crate::model::ids::TypeConName;
use crate::model::types::{Name, RecordTypes, Type};

/// Record definitions and the resolution of record names written in expressions.
pub trait TypeEnv: RecordTypes {
    /// Resolves `Money`, `Mod:Money` or `#pkg:Mod:Money` as written in the current module.
    fn resolve_record(&self, written: &str) -> Option<TypeConName>;
}

/// The names in scope and their types; later entries shadow earlier ones.
#[derive(Clone, Default, Debug)]
pub struct TypeScope {
    pub vars: Vec<(Name, Type)>,
}

impl TypeScope {
    pub fn get(&self, name: &str) -> Option<&Type> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| &**n == name)
            .map(|(_, t)| t)
    }

    pub fn push(&mut self, name: Name, t: Type) {
        self.vars.push((name, t));
    }
}

/// Synthesises the type of `e`.
pub fn infer(e: &mut Expr, scope: &TypeScope, env: &dyn TypeEnv) -> Result<Type, ExprError> {
    let at = e.offset;
    match &mut e.kind {
        ExprKind::Int(_) => Ok(Type::Int),
        ExprKind::Decimal(_) => Ok(Type::Decimal),
        ExprKind::Text(_) => Ok(Type::Text),
        ExprKind::Bool(_) => Ok(Type::Bool),
        ExprKind::None => Err(ExprError::new(at, "cannot tell the type of `none` here")),
        ExprKind::Some(inner) => Ok(Type::Optional(Box::new(infer(inner, scope, env)?))),
        ExprKind::Name(n) => scope
            .get(n)
            .cloned()
            .ok_or_else(|| ExprError::new(at, format!("unknown name `{n}`"))),
        ExprKind::Field(rec, field) => infer_field(rec, field, scope, env),
        ExprKind::Not(inner) => check(inner, &Type::Bool, scope, env).map(|()| Type::Bool),
        ExprKind::Neg(inner) => match infer(inner, scope, env)? {
            t @ (Type::Int | Type::Decimal) => Ok(t),
            t => Err(ExprError::new(
                at,
                format!("`-` needs int or decimal, got {t}"),
            )),
        },
        ExprKind::Binary(op, l, r) => infer_binary(*op, l, r, at, scope, env),
        ExprKind::List(items) => infer_list(items, at, scope, env),
        ExprKind::If(c, t, f) => {
            check(c, &Type::Bool, scope, env)?;
            let ty = match infer(t, scope, env) {
                Ok(ty) => ty,
                Err(_) => infer(f, scope, env)?,
            };
            check(t, &ty, scope, env)?;
            check(f, &ty, scope, env)?;
            Ok(ty)
        }
        ExprKind::Record { name, ty, fields } => {
            let id = env
                .resolve_record(name)
                .ok_or_else(|| ExprError::new(at, format!("unknown record type `{name}`")))?;
            check_record_fields(&id, fields, at, scope, env)?;
            *ty = Some(id.clone());
            Ok(Type::Record(id))
        }
    }
}

/// Checks that `e` has type `want`.
pub fn check(
    e: &mut Expr,
    want: &Type,
    scope: &TypeScope,
    env: &dyn TypeEnv,
) -> Result<(), ExprError> {
    let at = e.offset;
    match (&mut e.kind, want) {
        (ExprKind::None, Type::Optional(_)) => Ok(()),
        (ExprKind::Some(inner), Type::Optional(t)) => check(inner, t, scope, env),
        (ExprKind::List(items), Type::List(t)) => {
            items.iter_mut().try_for_each(|i| check(i, t, scope, env))
        }
        (ExprKind::List(items), Type::Tuple(ts)) if items.len() == ts.len() => items
            .iter_mut()
            .zip(ts)
            .try_for_each(|(i, t)| check(i, t, scope, env)),
        (ExprKind::If(c, t, f), _) => {
            check(c, &Type::Bool, scope, env)?;
            check(t, want, scope, env)?;
            check(f, want, scope, env)
        }
        _ => {
            let got = infer(e, scope, env)?;
            if &got == want {
                Ok(())
            } else {
                Err(ExprError::new(at, format!("expected {want}, got {got}")))
            }
        }
    }
}

fn infer_field(
    rec: &mut Expr,
    field: &Name,
    scope: &TypeScope,
    env: &dyn TypeEnv,
) -> Result<Type, ExprError> {
    let at = rec.offset;
    match infer(rec, scope, env)? {
        Type::Record(id) => {
            let fields = env
                .record_fields(&id)
                .ok_or_else(|| ExprError::new(at, format!("unknown record type {id}")))?;
            fields
                .iter()
                .find(|(n, _)| n == field)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| ExprError::new(at, format!("record {id} has no field `{field}`")))
        }
        t => Err(ExprError::new(
            at,
            format!("`.{field}` needs a record, got {t}"),
        )),
    }
}

fn infer_binary(
    op: BinOp,
    l: &mut Expr,
    r: &mut Expr,
    at: usize,
    scope: &TypeScope,
    env: &dyn TypeEnv,
) -> Result<Type, ExprError> {
    if matches!(op, BinOp::And | BinOp::Or) {
        check(l, &Type::Bool, scope, env)?;
        check(r, &Type::Bool, scope, env)?;
        return Ok(Type::Bool);
    }
    // `none == x` and `[] == x`: take the type from the side that has one.
    let (first, second) = if needs_expected_type(l) {
        (r, l)
    } else {
        (l, r)
    };
    let t = infer(first, scope, env)?;
    let sym = op.symbol();
    let ok = match op {
        BinOp::Add => matches!(t, Type::Int | Type::Decimal | Type::Text),
        BinOp::Sub | BinOp::Mul | BinOp::Div => matches!(t, Type::Int | Type::Decimal),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => t.is_ordered(),
        _ => true,
    };
    if !ok {
        return Err(ExprError::new(at, format!("`{sym}` is not defined on {t}")));
    }
    check(second, &t, scope, env)?;
    Ok(
        if matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div) {
            t
        } else {
            Type::Bool
        },
    )
}

fn needs_expected_type(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::None => true,
        ExprKind::List(items) => items.is_empty(),
        _ => false,
    }
}

fn infer_list(
    items: &mut [Expr],
    at: usize,
    scope: &TypeScope,
    env: &dyn TypeEnv,
) -> Result<Type, ExprError> {
    if items.is_empty() {
        return Err(ExprError::new(at, "cannot tell the type of `[]` here"));
    }
    let types = items
        .iter_mut()
        .map(|i| infer(i, scope, env))
        .collect::<Result<Vec<_>, _>>()?;
    if types.iter().all(|t| *t == types[0]) {
        Ok(Type::List(Box::new(types[0].clone())))
    } else {
        Ok(Type::Tuple(types))
    }
}

fn check_record_fields(
    id: &TypeConName,
    fields: &mut Vec<(Name, Expr)>,
    at: usize,
    scope: &TypeScope,
    env: &dyn TypeEnv,
) -> Result<(), ExprError> {
    let defs: Vec<(Name, Type)> = env
        .record_fields(id)
        .ok_or_else(|| ExprError::new(at, format!("unknown record type {id}")))?
        .to_vec();
    let mut given = std::mem::take(fields);
    for (name, e) in &given {
        if !defs.iter().any(|(n, _)| n == name) {
            return Err(ExprError::new(
                e.offset,
                format!("record {id} has no field `{name}`"),
            ));
        }
    }
    for (name, t) in &defs {
        let idx = given.iter().position(|(n, _)| n == name);
        let idx = idx
            .ok_or_else(|| ExprError::new(at, format!("missing field `{name}` of record {id}")))?;
        let (n, mut e) = given.swap_remove(idx);
        check(&mut e, t, scope, env)?;
        fields.push((Arc::clone(&n), e));
    }
    if let Some((dup, e)) = given.first() {
        return Err(ExprError::new(
            e.offset,
            format!("field `{dup}` given twice"),
        ));
    }
    Ok(())
}
