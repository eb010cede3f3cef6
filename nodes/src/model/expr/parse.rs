//! Lexer and recursive-descent parser. Precedence, loosest first: `if`, `||`, `&&`,
//! comparisons (non-associative), `+ -`, `* /`, unary `! -`, field access.

use std::sync::Arc;

use super::{BinOp, Expr, ExprError, ExprKind};
use crate::model::decimal::Decimal;

/// Nesting bound, so hostile documents cannot overflow the stack.
const MAX_DEPTH: usize = 64;

#[derive(Clone, PartialEq, Debug)]
enum Tok {
    Int(String),
    Dec(String),
    Str(String),
    Ident(String),
    Sym(&'static str),
    End,
}

const SYMBOLS: [&str; 20] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "!", "(", ")", "[", "]", ",",
    ".", ":",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let is_dec =
                chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if is_dec {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            out.push((
                if is_dec {
                    Tok::Dec(text)
                } else {
                    Tok::Int(text)
                },
                start,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
        } else if c == '"' || c == '\'' {
            let (s, next) = lex_string(&chars, i)?;
            out.push((Tok::Str(s), start));
            i = next;
        } else if c == '{' || c == '}' {
            out.push((Tok::Sym(if c == '{' { "{" } else { "}" }), start));
            i += 1;
        } else {
            let sym = SYMBOLS.iter().find(|s| {
                s.chars()
                    .enumerate()
                    .all(|(k, sc)| chars.get(i + k) == Some(&sc))
            });
            let sym =
                sym.ok_or_else(|| ExprError::new(start, format!("unexpected character {c:?}")))?;
            i += sym.len();
            out.push((Tok::Sym(sym), start));
        }
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ExprError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(ExprError::new(start, "unterminated string literal")),
            Some(&c) if c == quote => return Ok((s, i + 1)),
            Some('\\') => {
                let esc = match chars.get(i + 1) {
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some(&c @ ('\\' | '"' | '\'')) => c,
                    _ => return Err(ExprError::new(i, "unknown escape in string literal")),
                };
                s.push(esc);
                i += 2;
            }
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

/// Parses one expression; the whole source must be consumed.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        Tok::End => Ok(e),
        t => Err(ExprError::new(
            p.offset(),
            format!("unexpected {} after expression", describe(t)),
        )),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Int(s) | Tok::Dec(s) => format!("number {s}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Sym(s) => format!("`{s}`"),
        Tok::End => "end of expression".to_string(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::End, |(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(0, |(_, o)| *o)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Tok::Sym(x) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), ExprError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(ExprError::new(
                self.offset(),
                format!("expected `{s}`, found {}", describe(self.peek())),
            ))
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == kw)
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), ExprError> {
        if self.is_keyword(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ExprError::new(
                self.offset(),
                format!("expected `{kw}`, found {}", describe(self.peek())),
            ))
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                self.offset(),
                "expression nested too deeply",
            ));
        }
        let e = if self.is_keyword("if") {
            self.if_expr()
        } else {
            self.binary(0)
        };
        self.depth -= 1;
        e
    }

    fn if_expr(&mut self) -> Result<Expr, ExprError> {
        let offset = self.offset();
        self.pos += 1;
        let c = self.expr()?;
        self.expect_keyword("then")?;
        let t = self.expr()?;
        self.expect_keyword("else")?;
        let e = self.expr()?;
        Ok(Expr {
            kind: ExprKind::If(Box::new(c), Box::new(t), Box::new(e)),
            offset,
        })
    }

    /// Precedence climbing over the binary operator levels.
    fn binary(&mut self, level: usize) -> Result<Expr, ExprError> {
        const LEVELS: [&[(&str, BinOp)]; 5] = [
            &[("||", BinOp::Or)],
            &[("&&", BinOp::And)],
            &[
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
                ("<=", BinOp::Le),
                (">=", BinOp::Ge),
                ("<", BinOp::Lt),
                (">", BinOp::Gt),
            ],
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div)],
        ];
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut lhs = self.binary(level + 1)?;
        loop {
            let found = ops
                .iter()
                .find(|(s, _)| matches!(self.peek(), Tok::Sym(x) if x == s));
            let Some(&(_, op)) = found else {
                return Ok(lhs);
            };
            // A binary expression is located at its left operand, where it starts.
            let offset = lhs.offset;
            self.pos += 1;
            let rhs = self.binary(level + 1)?;
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                offset,
            };
            // Comparisons do not chain: `a < b < c` is almost always a mistake.
            if level == 2
                && LEVELS[2]
                    .iter()
                    .any(|(s, _)| matches!(self.peek(), Tok::Sym(x) if x == s))
            {
                return Err(ExprError::new(
                    self.offset(),
                    "comparisons cannot be chained; use &&",
                ));
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        let offset = self.offset();
        if self.eat_sym("!") || self.eat_sym("-") {
            let negate = matches!(self.toks.get(self.pos - 1), Some((Tok::Sym("-"), _)));
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(ExprError::new(offset, "expression nested too deeply"));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            let kind = if negate {
                negate_literal(inner)
            } else {
                ExprKind::Not(Box::new(inner))
            };
            return Ok(Expr { kind, offset });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.primary()?;
        while self.eat_sym(".") {
            let offset = self.offset();
            match self.bump() {
                Tok::Ident(f) => {
                    e = Expr {
                        kind: ExprKind::Field(Box::new(e), Arc::from(f)),
                        offset,
                    }
                }
                t => {
                    return Err(ExprError::new(
                        offset,
                        format!("expected field name after `.`, found {}", describe(&t)),
                    ))
                }
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let offset = self.offset();
        let kind = match self.bump() {
            Tok::Int(s) => ExprKind::Int(parse_int(&s, offset)?),
            Tok::Dec(s) => ExprKind::Decimal(
                Decimal::parse(&s)
                    .map_err(|e| ExprError::new(offset, format!("decimal literal {s}: {e}")))?,
            ),
            Tok::Str(s) => ExprKind::Text(s),
            Tok::Ident(id) => return self.ident(id, offset),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                return Ok(e);
            }
            Tok::Sym("[") => ExprKind::List(self.list_items()?),
            t => {
                return Err(ExprError::new(
                    offset,
                    format!("expected an expression, found {}", describe(&t)),
                ))
            }
        };
        Ok(Expr { kind, offset })
    }

    fn ident(&mut self, id: String, offset: usize) -> Result<Expr, ExprError> {
        let kind = match id.as_str() {
            "true" => ExprKind::Bool(true),
            "false" => ExprKind::Bool(false),
            "none" => ExprKind::None,
            "some" => {
                self.expect_sym("(")?;
                let e = self.expr()?;
                self.expect_sym(")")?;
                ExprKind::Some(Box::new(e))
            }
            "if" | "then" | "else" => {
                return Err(ExprError::new(offset, format!("unexpected keyword `{id}`")));
            }
            _ if matches!(self.peek(), Tok::Sym("{")) => self.record(id)?,
            _ => ExprKind::Name(Arc::from(id)),
        };
        Ok(Expr { kind, offset })
    }

    fn list_items(&mut self) -> Result<Vec<Expr>, ExprError> {
        let mut items = Vec::new();
        if self.eat_sym("]") {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat_sym("]") {
                return Ok(items);
            }
            self.expect_sym(",")?;
        }
    }

    fn record(&mut self, name: String) -> Result<ExprKind, ExprError> {
        self.expect_sym("{")?;
        let mut fields = Vec::new();
        if !self.eat_sym("}") {
            loop {
                let offset = self.offset();
                let Tok::Ident(f) = self.bump() else {
                    return Err(ExprError::new(offset, "expected a field name"));
                };
                self.expect_sym(":")?;
                fields.push((Arc::from(f), self.expr()?));
                if self.eat_sym("}") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        Ok(ExprKind::Record {
            name,
            ty: None,
            fields,
        })
    }
}

fn parse_int(s: &str, offset: usize) -> Result<i64, ExprError> {
    s.parse::<i64>()
        .map_err(|_| ExprError::new(offset, format!("int literal {s} out of range")))
}

/// Folds `-` into numeric literals so that `-9223372036854775808`-style minima and
/// negative constants need no runtime negation.
fn negate_literal(inner: Expr) -> ExprKind {
    match inner.kind {
        ExprKind::Int(i) if i != i64::MIN => ExprKind::Int(-i),
        ExprKind::Decimal(d) => ExprKind::Decimal(d.checked_neg()),
        _ => ExprKind::Neg(Box::new(inner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> (usize, String) {
        let e = parse(src).expect_err(src);
        (e.offset, e.message)
    }

    #[test]
    fn precedence_and_shapes() {
        let e = parse("a + b * 2 > 3.5 && !c").expect("parses");
        let ExprKind::Binary(BinOp::And, lhs, rhs) = e.kind else {
            panic!("and at top")
        };
        assert!(matches!(rhs.kind, ExprKind::Not(_)));
        let ExprKind::Binary(BinOp::Gt, sum, _) = lhs.kind else {
            panic!("gt")
        };
        assert!(matches!(sum.kind, ExprKind::Binary(BinOp::Add, _, _)));
        assert!(parse("if x then [a, b] else []").is_ok());
        assert!(parse("p.price.amount - -1.5").is_ok());
        assert!(parse("Money {currency: 'USD', amount: 1.0}").is_ok());
        assert_eq!(parse("-5").map(|e| e.kind), Ok(ExprKind::Int(-5)));
    }

    #[test]
    fn errors_have_offsets() {
        assert_eq!(
            err("amount > "),
            (9, "expected an expression, found end of expression".into())
        );
        assert_eq!(err("a $ b"), (2, "unexpected character '$'".into()));
        assert_eq!(
            err("a < b < c"),
            (6, "comparisons cannot be chained; use &&".into())
        );
        assert_eq!(err("'abc"), (0, "unterminated string literal".into()));
        assert_eq!(err("a b"), (2, "unexpected `b` after expression".into()));
        assert_eq!(
            err("99999999999999999999"),
            (0, "int literal 99999999999999999999 out of range".into())
        );
        assert_eq!(err(&"(".repeat(100)).1, "expression nested too deeply");
        assert_eq!(err(&"!".repeat(100)).1, "expression nested too deeply");
    }
}
