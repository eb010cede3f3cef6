//! The expression language of package documents (`ensure`, `with`, party sets, keys):
//! syntax tree, parser, type checker and a deterministic evaluator.

mod eval;
mod parse;
mod typeck;

pub use eval::{eval, Env, EvalError};
pub use parse::parse;
pub use typeck::{check, infer, TypeEnv, TypeScope};

use super::decimal::Decimal;
use super::ids::TypeConName;
use super::types::Name;

/// An expression node; `offset` is the character offset of its first token in the source.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub offset: usize,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ExprKind {
    Int(i64),
    Decimal(Decimal),
    Text(String),
    Bool(bool),
    None,
    Some(Box<Expr>),
    Name(Name),
    Field(Box<Expr>, Name),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `Money {currency: c, amount: a}`; the checker resolves `ty` and puts the fields in
    /// definition order.
    Record {
        name: String,
        ty: Option<TypeConName>,
        fields: Vec<(Name, Expr)>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// A parse or type error inside one expression, at a character offset of its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl ExprError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            offset,
            message: message.into(),
        }
    }
}
