//! Deterministic evaluation. Arithmetic is checked: overflow and division by zero are
//! errors; nothing here panics on any input that passed the type checker.

use std::cmp::Ordering;

use super::{BinOp, Expr, ExprKind};
use crate::model::decimal::DecimalError;
use crate::model::types::Name;
use crate::model::value::{Record, Value};

/// Values of the names in scope; later entries shadow earlier ones.
#[derive(Clone, Default, Debug)]
pub struct Env {
    pub vars: Vec<(Name, Value)>,
}

impl Env {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    pub fn push(&mut self, name: Name, v: Value) {
        self.vars.push((name, v));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Overflow, division by zero.
    #[error("{0}")]
    Arithmetic(String),
    /// Anything the type checker should have excluded; kept as an error, not a panic,
    /// because a confirmer must never crash on a malicious submission.
    #[error("{0}")]
    Type(String),
}

pub fn eval(e: &Expr, env: &Env) -> Result<Value, EvalError> {
    match &e.kind {
        ExprKind::Int(i) => Ok(Value::Int(*i)),
        ExprKind::Decimal(d) => Ok(Value::Decimal(*d)),
        ExprKind::Text(t) => Ok(Value::Text(t.clone())),
        ExprKind::Bool(b) => Ok(Value::Bool(*b)),
        ExprKind::None => Ok(Value::Optional(None)),
        ExprKind::Some(inner) => Ok(Value::Optional(Some(Box::new(eval(inner, env)?)))),
        ExprKind::Name(n) => env
            .get(n)
            .cloned()
            .ok_or_else(|| EvalError::Type(format!("unknown name `{n}`"))),
        ExprKind::Field(rec, f) => match eval(rec, env)? {
            Value::Record(r) => r
                .get(f)
                .cloned()
                .ok_or_else(|| EvalError::Type(format!("no field `{f}`"))),
            v => Err(EvalError::Type(format!("`.{f}` on {}", v.kind()))),
        },
        ExprKind::Not(inner) => Ok(Value::Bool(!as_bool(eval(inner, env)?)?)),
        ExprKind::Neg(inner) => match eval(inner, env)? {
            Value::Int(i) => i.checked_neg().map(Value::Int).ok_or_else(|| overflow("-")),
            Value::Decimal(d) => Ok(Value::Decimal(d.checked_neg())),
            v => Err(EvalError::Type(format!("`-` on {}", v.kind()))),
        },
        ExprKind::Binary(op, l, r) => binary(*op, l, r, env),
        ExprKind::List(items) => items
            .iter()
            .map(|i| eval(i, env))
            .collect::<Result<_, _>>()
            .map(Value::List),
        ExprKind::If(c, t, f) => {
            if as_bool(eval(c, env)?)? {
                eval(t, env)
            } else {
                eval(f, env)
            }
        }
        ExprKind::Record { fields, .. } => {
            let mut out = Vec::with_capacity(fields.len());
            for (n, fe) in fields {
                out.push((n.clone(), eval(fe, env)?));
            }
            Ok(Value::Record(Record { fields: out }))
        }
    }
}

fn as_bool(v: Value) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(b),
        v => Err(EvalError::Type(format!("expected bool, got {}", v.kind()))),
    }
}

fn overflow(sym: &str) -> EvalError {
    EvalError::Arithmetic(format!("int overflow in `{sym}`"))
}

fn binary(op: BinOp, l: &Expr, r: &Expr, env: &Env) -> Result<Value, EvalError> {
    // The boolean operators short-circuit, so `x != 0 && y / x > 1` is safe.
    match op {
        BinOp::And => {
            return Ok(Value::Bool(
                as_bool(eval(l, env)?)? && as_bool(eval(r, env)?)?,
            ))
        }
        BinOp::Or => {
            return Ok(Value::Bool(
                as_bool(eval(l, env)?)? || as_bool(eval(r, env)?)?,
            ))
        }
        _ => {}
    }
    let (a, b) = (eval(l, env)?, eval(r, env)?);
    let sym = op.symbol();
    match op {
        BinOp::Eq => Ok(Value::Bool(a == b)),
        BinOp::Ne => Ok(Value::Bool(a != b)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = compare(&a, &b).ok_or_else(|| {
                EvalError::Type(format!("`{sym}` on {} and {}", a.kind(), b.kind()))
            })?;
            Ok(Value::Bool(match op {
                BinOp::Lt => ord == Ordering::Less,
                BinOp::Le => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        _ => arith(op, a, b),
    }
}

fn arith(op: BinOp, a: Value, b: Value) -> Result<Value, EvalError> {
    let sym = op.symbol();
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                _ if y == 0 => return Err(EvalError::Arithmetic("division by zero".into())),
                _ => x.checked_div(y),
            };
            r.map(Value::Int).ok_or_else(|| overflow(sym))
        }
        (Value::Decimal(x), Value::Decimal(y)) => {
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                _ => x.checked_div(y),
            };
            r.map(Value::Decimal).map_err(|e| match e {
                DecimalError::DivisionByZero => EvalError::Arithmetic("division by zero".into()),
                _ => EvalError::Arithmetic(format!("decimal overflow in `{sym}`")),
            })
        }
        (Value::Text(mut x), Value::Text(y)) if op == BinOp::Add => {
            x.push_str(&y);
            Ok(Value::Text(x))
        }
        (a, b) => Err(EvalError::Type(format!(
            "`{sym}` on {} and {}",
            a.kind(),
            b.kind()
        ))),
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Decimal(x), Value::Decimal(y)) => Some(x.cmp(y)),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::Party(x), Value::Party(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decimal::Decimal;
    use crate::model::expr::parse;
    use std::sync::Arc;

    fn run(src: &str, env: &Env) -> Result<Value, EvalError> {
        eval(&parse(src).expect(src), env)
    }

    #[test]
    fn evaluates() {
        let mut env = Env::default();
        env.push(Arc::from("amount"), Value::Decimal(Decimal::from_i64(10)));
        env.push(Arc::from("n"), Value::Int(i64::MAX));
        let dec = |s: &str| Value::Decimal(Decimal::parse(s).expect("decimal"));
        assert_eq!(run("amount - 2.5", &env), Ok(dec("7.5")));
        assert_eq!(run("amount / 4.0 * 2.0", &env), Ok(dec("5")));
        assert_eq!(
            run("if amount > 5.0 then 'big' else 'small'", &env),
            Ok(Value::Text("big".into()))
        );
        assert_eq!(run("'a' + 'b'", &env), Ok(Value::Text("ab".into())));
        assert_eq!(run("7 / 2", &env), Ok(Value::Int(3)));
        assert_eq!(run("-7 / 2", &env), Ok(Value::Int(-3)));
        assert_eq!(run("false && 1 / 0 == 1", &env), Ok(Value::Bool(false)));
        assert_eq!(
            run("n + 1", &env),
            Err(EvalError::Arithmetic("int overflow in `+`".into()))
        );
        assert_eq!(
            run("1 / 0", &env),
            Err(EvalError::Arithmetic("division by zero".into()))
        );
        assert_eq!(
            run("amount / 0.0", &env),
            Err(EvalError::Arithmetic("division by zero".into()))
        );
        assert_eq!(
            run("9999999999999999999999999999.0 * amount", &env),
            Err(EvalError::Arithmetic("decimal overflow in `*`".into()))
        );
        assert_eq!(
            run("(-n - 1) / -1", &env),
            Err(EvalError::Arithmetic("int overflow in `/`".into()))
        );
    }
}
