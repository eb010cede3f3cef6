//! A package document as a tree of scalars, sequences and mappings, each with its line and
//! column, read from YAML (saphyr's event parser) or JSON. JSON is first checked by
//! serde_json, so only real JSON is accepted, then read by the same YAML 1.2 parser (JSON is
//! a subset of YAML 1.2), which gives every node a position.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Nesting bound, so hostile documents cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// 1-based line and column.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// `quoted` scalars start one column after `pos`; expressions in them are offset by one.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// Document syntax.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Yaml,
    Json,
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// A plain `~`, `null` or empty scalar: an absent optional section.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, quoted: false } if matches!(text.as_str(), "" | "~" | "null"))
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

pub fn parse(text: &str, format: Format) -> Result<Node, SyntaxError> {
    if format == Format::Json {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
            return Err(SyntaxError {
                pos: Pos {
                    line: e.line(),
                    column: e.column(),
                },
                message: format!("invalid JSON: {e}"),
            });
        }
    }
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        depth: 0,
    };
    reader.document()
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    depth: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(SyntaxError {
                pos: Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                },
                message: format!("invalid YAML: {}", e.info()),
            }),
            None => Err(SyntaxError {
                pos: Pos::default(),
                message: "unexpected end of document".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Node, SyntaxError> {
        let mut root = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) if root.is_some() => {
                    return Err(SyntaxError {
                        pos: pos_of(&span),
                        message: "expected one document, found several".into(),
                    });
                }
                Event::DocumentStart(_) => root = Some(self.node()?),
                Event::StreamEnd => {
                    return root.ok_or(SyntaxError {
                        pos: pos_of(&span),
                        message: "empty document".into(),
                    });
                }
                _ => {
                    return Err(SyntaxError {
                        pos: pos_of(&span),
                        message: "unexpected content".into(),
                    })
                }
            }
        }
    }

    fn node(&mut self) -> Result<Node, SyntaxError> {
        let (ev, span) = self.next()?;
        self.node_from(ev, span)
    }

    fn node_from(&mut self, ev: Event<'a>, span: Span) -> Result<Node, SyntaxError> {
        let pos = pos_of(&span);
        let unsupported = |what: &str| SyntaxError {
            pos,
            message: format!("{what} are not supported in packages"),
        };
        match ev {
            Event::Scalar(_, _, _, Some(_))
            | Event::SequenceStart(_, Some(_))
            | Event::MappingStart(_, Some(_)) => Err(unsupported("YAML tags")),
            Event::Alias(_) => Err(unsupported("YAML aliases")),
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _)
                if anchor != 0 =>
            {
                Err(unsupported("YAML anchors"))
            }
            Event::Scalar(text, style, _, None) => Ok(Node {
                pos,
                kind: Kind::Scalar {
                    text: text.into_owned(),
                    quoted: matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted),
                },
            }),
            Event::SequenceStart(..) => self.nested(pos, |r| r.seq_items()).map(|items| Node {
                pos,
                kind: Kind::Seq(items),
            }),
            Event::MappingStart(..) => self.nested(pos, |r| r.map_entries()).map(|m| Node {
                pos,
                kind: Kind::Map(m),
            }),
            _ => Err(SyntaxError {
                pos,
                message: "unexpected YAML event".into(),
            }),
        }
    }

    fn nested<T>(
        &mut self,
        pos: Pos,
        f: impl FnOnce(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<T, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: "document nested too deeply".into(),
            });
        }
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn seq_items(&mut self) -> Result<Vec<Node>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::SequenceEnd) {
                return Ok(items);
            }
            items.push(self.node_from(ev, span)?);
        }
    }

    fn map_entries(&mut self) -> Result<Vec<(Key, Node)>, SyntaxError> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            let pos = pos_of(&span);
            let name = match ev {
                Event::MappingEnd => return Ok(entries),
                Event::Scalar(text, _, 0, None) => text.into_owned(),
                _ => {
                    return Err(SyntaxError {
                        pos,
                        message: "mapping keys must be plain scalars".into(),
                    })
                }
            };
            if entries.iter().any(|(k, _)| k.name == name) {
                return Err(SyntaxError {
                    pos,
                    message: format!("duplicate key {name:?}"),
                });
            }
            let value = self.node()?;
            entries.push((Key { name, pos }, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_in_yaml_and_json() {
        let doc = parse("a:\n  b: [x, 'y']\n", Format::Yaml).expect("parses");
        let Kind::Map(m) = &doc.kind else {
            panic!("map")
        };
        assert_eq!(m[0].0.pos, Pos { line: 1, column: 1 });
        let Kind::Map(inner) = &m[0].1.kind else {
            panic!("inner map")
        };
        let Kind::Seq(items) = &inner[0].1.kind else {
            panic!("seq")
        };
        assert_eq!(
            items[1].pos,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert!(matches!(&items[1].kind, Kind::Scalar { quoted: true, .. }));

        let doc = parse("{\n  \"a\": {\"b\": 1}\n}", Format::Json).expect("parses");
        let Kind::Map(m) = &doc.kind else {
            panic!("map")
        };
        assert_eq!(m[0].0.pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn rejects() {
        let err = |t: &str, f| parse(t, f).expect_err(t);
        assert_eq!(
            err("a: 1\na: 2\n", Format::Yaml).message,
            "duplicate key \"a\""
        );
        assert_eq!(
            err("a: &x 1\nb: *x\n", Format::Yaml).message,
            "YAML anchors are not supported in packages"
        );
        assert_eq!(
            err("{\"a\": 1,}", Format::Json).pos,
            Pos { line: 1, column: 9 }
        );
        assert_eq!(
            err(&"[".repeat(100), Format::Yaml).message,
            "document nested too deeply"
        );
        assert_eq!(err("", Format::Yaml).message, "empty document");
    }
}
