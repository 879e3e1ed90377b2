//! `when` conditions: a small boolean language over params, parsed with positions, type-checked
//! against the params' types and evaluated at resolve time.
//!
//! ```text
//! expr := or;  or := and ("||" and)*;  and := not ("&&" not)*;  not := "!" not | cmp
//! cmp  := atom (("==" | "!=") literal)?;  atom := IDENT | "(" expr ")" | literal
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use super::check::ParamKind;
use super::diag::{did_you_mean, list};
use super::resolve::ParamValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Lit {
    fn kind_name(&self) -> &'static str {
        match self {
            Lit::Str(_) => "a string",
            Lit::Int(_) => "an integer",
            Lit::Bool(_) => "a bool",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        lhs: Box<Expr>,
        equal: bool,
        rhs: Lit,
        rhs_span: Range<usize>,
    },
    Param(String, Range<usize>),
    Lit(Lit, Range<usize>),
}

/// An error inside a condition: span relative to the condition string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExprError {
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

fn err<T>(span: Range<usize>, message: impl Into<String>, hint: &str) -> Result<T, ExprError> {
    Err(ExprError {
        span,
        message: message.into(),
        hint: (!hint.is_empty()).then(|| hint.to_owned()),
    })
}

const SYNTAX_HINT: &str = "conditions use param names, 'strings', integers, true, false, ==, !=, !, &&, || and parentheses";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Lit(Lit),
    AndAnd,
    OrOr,
    Not,
    Eq,
    Ne,
    Open,
    Close,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn lex(s: &str) -> Result<Vec<(Tok, Range<usize>)>, ExprError> {
    let mut toks = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, c)| c);
        let two = |tok| (tok, i..i + 2);
        let tok = match (c, next) {
            (c, _) if c.is_whitespace() => continue,
            ('&', Some('&')) => two(Tok::AndAnd),
            ('|', Some('|')) => two(Tok::OrOr),
            ('=', Some('=')) => two(Tok::Eq),
            ('!', Some('=')) => two(Tok::Ne),
            ('&', _) => return err(i..i + 1, "`&` is not an operator", "write `&&` for and"),
            ('|', _) => return err(i..i + 1, "`|` is not an operator", "write `||` for or"),
            ('=', _) => return err(i..i + 1, "`=` is not an operator", "write `==` to compare"),
            ('!', _) => (Tok::Not, i..i + 1),
            ('(', _) => (Tok::Open, i..i + 1),
            (')', _) => (Tok::Close, i..i + 1),
            ('\'' | '"', _) => {
                let Some(len) = s[i + 1..].find(c) else {
                    return err(
                        i..s.len(),
                        "string is not closed",
                        &format!("close it with {c}"),
                    );
                };
                let end = i + 1 + len + 1;
                (Tok::Lit(Lit::Str(s[i + 1..end - 1].to_owned())), i..end)
            }
            (c, next)
                if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) =>
            {
                let mut end = i + 1;
                while let Some(&(j, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    end = j + 1;
                    chars.next();
                }
                if chars.peek().is_some_and(|&(_, d)| is_ident_char(d)) {
                    let bad_end = s[end..]
                        .find(|d: char| !is_ident_char(d))
                        .map_or(s.len(), |k| end + k);
                    return err(
                        i..bad_end,
                        format!(
                            "`{}` is neither an integer nor a param name",
                            &s[i..bad_end]
                        ),
                        "param names start with a letter or `_`",
                    );
                }
                let Ok(n) = s[i..end].parse() else {
                    return err(i..end, "integer is too large", "");
                };
                (Tok::Lit(Lit::Int(n)), i..end)
            }
            (c, _) if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + 1;
                while let Some(&(j, d)) = chars.peek() {
                    if !is_ident_char(d) {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let tok = match &s[i..end] {
                    "true" => Tok::Lit(Lit::Bool(true)),
                    "false" => Tok::Lit(Lit::Bool(false)),
                    name => Tok::Ident(name.to_owned()),
                };
                (tok, i..end)
            }
            (c, _) => {
                return err(
                    i..i + c.len_utf8(),
                    format!("unexpected character `{c}`"),
                    SYNTAX_HINT,
                );
            }
        };
        // Skip the rest of a multi-char token.
        while chars.peek().is_some_and(|&(j, _)| j < tok.1.end) {
            chars.next();
        }
        toks.push(tok);
    }
    Ok(toks)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, Range<usize>)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    /// Span of the current token, or the empty span at the end of the string.
    fn here(&self) -> Range<usize> {
        self.toks
            .get(self.pos)
            .map_or(self.src.len()..self.src.len(), |(_, s)| s.clone())
    }

    fn found(&self) -> String {
        match self.toks.get(self.pos) {
            Some((_, span)) => format!("`{}`", &self.src[span.clone()]),
            None => "the end of the condition".to_owned(),
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::OrOr) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut items = vec![self.not()?];
        while self.peek() == Some(&Tok::AndAnd) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let lhs = self.atom()?;
        let equal = match self.peek() {
            Some(Tok::Eq) => true,
            Some(Tok::Ne) => false,
            _ => return Ok(lhs),
        };
        self.pos += 1;
        match self.toks.get(self.pos).cloned() {
            Some((Tok::Lit(rhs), rhs_span)) => {
                self.pos += 1;
                Ok(Expr::Cmp {
                    lhs: Box::new(lhs),
                    equal,
                    rhs,
                    rhs_span,
                })
            }
            _ => err(
                self.here(),
                format!(
                    "expected a 'string', an integer, true or false after `{}`, found {}",
                    if equal { "==" } else { "!=" },
                    self.found()
                ),
                "compare a param with a literal, e.g. type == 'custom'",
            ),
        }
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let Some((tok, span)) = self.toks.get(self.pos).cloned() else {
            return err(
                self.here(),
                "condition ends early",
                "add a param name or a literal",
            );
        };
        self.pos += 1;
        match tok {
            Tok::Ident(name) => Ok(Expr::Param(name, span)),
            Tok::Lit(lit) => Ok(Expr::Lit(lit, span)),
            Tok::Open => {
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return err(
                        self.here(),
                        format!("expected `)`, found {}", self.found()),
                        "add `)` to close the `(`",
                    );
                }
                self.pos += 1;
                Ok(inner)
            }
            _ => {
                self.pos -= 1;
                err(
                    span,
                    format!(
                        "expected a param name, a literal or `(`, found {}",
                        self.found()
                    ),
                    SYNTAX_HINT,
                )
            }
        }
    }
}

/// Parses a condition; the first syntax error ends the parse.
pub(crate) fn parse(src: &str) -> Result<Expr, ExprError> {
    if src.trim().is_empty() {
        return err(
            0..src.len(),
            "empty condition",
            "remove `when`, or write a condition such as `include.db`",
        );
    }
    let mut parser = Parser {
        src,
        toks: lex(src)?,
        pos: 0,
    };
    let expr = parser.or()?;
    if parser.pos < parser.toks.len() {
        return err(
            parser.here(),
            format!("unexpected {} in condition", parser.found()),
            "join conditions with `&&` or `||`",
        );
    }
    Ok(expr)
}

/// The type of a sub-expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty<'a> {
    Bool,
    Int,
    Str,
    Enum(&'a str, &'a [String]),
}

/// Type-checks a parsed condition against the params, collecting every error.
pub(crate) fn check(expr: &Expr, params: &BTreeMap<String, ParamKind>) -> Vec<ExprError> {
    let mut errors = Vec::new();
    Checker {
        params,
        errors: &mut errors,
    }
    .expect_bool(expr);
    errors
}

struct Checker<'a, 'e> {
    params: &'a BTreeMap<String, ParamKind>,
    errors: &'e mut Vec<ExprError>,
}

impl<'a> Checker<'a, '_> {
    fn push(&mut self, span: Range<usize>, message: String, hint: String) {
        self.errors.push(ExprError {
            span,
            message,
            hint: Some(hint),
        });
    }

    fn param(&mut self, name: &str, span: &Range<usize>) -> Option<Ty<'a>> {
        let Some((key, kind)) = self.params.get_key_value(name) else {
            let known = list(self.params.keys());
            let bare = name
                .strip_prefix("params.")
                .filter(|b| self.params.contains_key(*b));
            let hint = match (
                bare,
                did_you_mean(name, self.params.keys().map(String::as_str)),
            ) {
                (Some(bare), _) => {
                    format!("conditions name params without `params.`: write `{bare}`")
                }
                (None, Some(best)) => format!("did you mean `{best}`? known params: {known}"),
                (None, None) if self.params.is_empty() => "this pipeline has no params".to_owned(),
                (None, None) => format!("known params: {known}"),
            };
            self.push(span.clone(), format!("unknown param `{name}`"), hint);
            return None;
        };
        Some(match kind {
            ParamKind::Bool => Ty::Bool,
            ParamKind::Int => Ty::Int,
            ParamKind::String => Ty::Str,
            ParamKind::Enum(values) => Ty::Enum(key, values),
        })
    }

    fn expect_bool(&mut self, expr: &Expr) {
        match expr {
            Expr::Or(items) | Expr::And(items) => items.iter().for_each(|e| self.expect_bool(e)),
            Expr::Not(inner) => self.expect_bool(inner),
            Expr::Cmp { .. } => self.cmp(expr),
            Expr::Lit(Lit::Bool(_), _) => {}
            Expr::Lit(lit, span) => self.push(
                span.clone(),
                format!("{} is not a condition", lit.kind_name()),
                "compare it with a param, e.g. type == 'custom'".to_owned(),
            ),
            Expr::Param(name, span) => match self.param(name, span) {
                None | Some(Ty::Bool) => {}
                Some(ty) => {
                    let (kind, example) = match ty {
                        Ty::Int => ("an int", format!("{name} == 1")),
                        Ty::Str => ("a string", format!("{name} == 'value'")),
                        Ty::Enum(_, values) => (
                            "an enum",
                            format!("{name} == '{}'", values.first().map_or("", String::as_str)),
                        ),
                        Ty::Bool => unreachable!(),
                    };
                    self.push(
                        span.clone(),
                        format!("param `{name}` is {kind}, not a bool"),
                        format!("compare it, e.g. {example}"),
                    );
                }
            },
        }
    }

    fn cmp(&mut self, expr: &Expr) {
        let Expr::Cmp {
            lhs, rhs, rhs_span, ..
        } = expr
        else {
            return;
        };
        let lhs_ty = match &**lhs {
            Expr::Param(name, span) => match self.param(name, span) {
                Some(ty) => ty,
                None => return,
            },
            Expr::Lit(Lit::Str(_), _) => Ty::Str,
            Expr::Lit(Lit::Int(_), _) => Ty::Int,
            other => {
                self.expect_bool(other);
                Ty::Bool
            }
        };
        let subject = match &**lhs {
            Expr::Param(name, _) => format!("param `{name}`"),
            _ => "the left side".to_owned(),
        };
        match (&lhs_ty, rhs) {
            (Ty::Bool, Lit::Bool(_)) | (Ty::Int, Lit::Int(_)) | (Ty::Str, Lit::Str(_)) => {}
            (Ty::Enum(name, values), Lit::Str(value)) => {
                if !values.contains(value) {
                    let hint = match did_you_mean(value, values.iter().map(String::as_str)) {
                        Some(best) => {
                            format!("did you mean '{best}'? values: {}", list(values.iter()))
                        }
                        None => format!("values: {}", list(values.iter())),
                    };
                    self.push(
                        rhs_span.clone(),
                        format!("'{value}' is not a value of param `{name}`"),
                        hint,
                    );
                }
            }
            (ty, lit) => {
                let (is, with) = match ty {
                    Ty::Bool => ("a bool", "true or false"),
                    Ty::Int => ("an int", "an integer"),
                    Ty::Str => ("a string", "a quoted string"),
                    Ty::Enum(..) => ("an enum", "one of its values, quoted"),
                };
                self.push(
                    rhs_span.clone(),
                    format!(
                        "{subject} is {is}, but is compared with {}",
                        lit.kind_name()
                    ),
                    format!("compare it with {with}"),
                );
            }
        }
    }
}

/// Evaluates a checked condition.
pub(crate) fn eval(expr: &Expr, params: &BTreeMap<String, ParamValue>) -> bool {
    match expr {
        Expr::Or(items) => items.iter().any(|e| eval(e, params)),
        Expr::And(items) => items.iter().all(|e| eval(e, params)),
        Expr::Not(inner) => !eval(inner, params),
        Expr::Param(name, _) => matches!(params.get(name), Some(ParamValue::Bool(true))),
        Expr::Lit(lit, _) => *lit == Lit::Bool(true),
        Expr::Cmp {
            lhs, equal, rhs, ..
        } => {
            let lhs = match &**lhs {
                Expr::Param(name, _) => match params.get(name) {
                    Some(ParamValue::Bool(b)) => Lit::Bool(*b),
                    Some(ParamValue::Int(n)) => Lit::Int(*n),
                    Some(ParamValue::String(s)) => Lit::Str(s.clone()),
                    None => return false,
                },
                Expr::Lit(lit, _) => lit.clone(),
                other => Lit::Bool(eval(other, params)),
            };
            (lhs == *rhs) == *equal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, ParamKind> {
        BTreeMap::from([
            ("include.logs".to_owned(), ParamKind::Bool),
            ("heapMB".to_owned(), ParamKind::Int),
            ("target".to_owned(), ParamKind::String),
            (
                "type".to_owned(),
                ParamKind::Enum(vec!["fast".to_owned(), "custom".to_owned()]),
            ),
        ])
    }

    fn errors(src: &str) -> Vec<(String, String)> {
        match parse(src) {
            Err(e) => vec![(src[e.span].to_owned(), e.message)],
            Ok(expr) => check(&expr, &params())
                .into_iter()
                .map(|e| (src[e.span].to_owned(), e.message))
                .collect(),
        }
    }

    #[test]
    fn precedence_follows_the_grammar() {
        let e = parse("a || b && !c == true").unwrap();
        let Expr::Or(items) = e else { panic!() };
        assert!(matches!(&items[1], Expr::And(and) if matches!(&and[1], Expr::Not(_))));
    }

    #[test]
    fn well_typed_conditions_pass() {
        for ok in [
            "include.logs",
            "include.logs && type == 'custom'",
            "!(type != \"fast\") || heapMB == -1",
            "target == 'v2' && (include.logs || false)",
        ] {
            assert_eq!(errors(ok), vec![], "{ok}");
        }
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        assert_eq!(
            errors("include.log && x"),
            vec![
                ("include.log".into(), "unknown param `include.log`".into()),
                ("x".into(), "unknown param `x`".into()),
            ]
        );
        assert_eq!(
            errors("params.include.logs"),
            vec![(
                "params.include.logs".into(),
                "unknown param `params.include.logs`".into()
            )]
        );
        assert_eq!(
            errors("type == 'slow'"),
            vec![(
                "'slow'".into(),
                "'slow' is not a value of param `type`".into()
            )]
        );
        assert_eq!(
            errors("heapMB == 'x'"),
            vec![(
                "'x'".into(),
                "param `heapMB` is an int, but is compared with a string".into()
            )]
        );
        assert_eq!(
            errors("type"),
            vec![("type".into(), "param `type` is an enum, not a bool".into())]
        );
        assert_eq!(
            errors("a = 1"),
            vec![("=".into(), "`=` is not an operator".into())]
        );
        assert_eq!(
            errors("a &&"),
            vec![("".into(), "condition ends early".into())]
        );
        assert_eq!(
            errors("(a"),
            vec![(
                "".into(),
                "expected `)`, found the end of the condition".into()
            )]
        );
        assert_eq!(
            errors("a b"),
            vec![("b".into(), "unexpected `b` in condition".into())]
        );
        assert_eq!(
            errors("a == b"),
            vec![(
                "b".into(),
                "expected a 'string', an integer, true or false after `==`, found `b`".into()
            )]
        );
        assert_eq!(
            errors("'x"),
            vec![("'x".into(), "string is not closed".into())]
        );
        assert_eq!(
            errors("1abc"),
            vec![(
                "1abc".into(),
                "`1abc` is neither an integer nor a param name".into()
            )]
        );
    }

    #[test]
    fn evaluates_against_param_values() {
        let values = BTreeMap::from([
            ("include.logs".to_owned(), ParamValue::Bool(true)),
            ("type".to_owned(), ParamValue::String("fast".to_owned())),
            ("heapMB".to_owned(), ParamValue::Int(4096)),
        ]);
        let eval_src = |s: &str| eval(&parse(s).unwrap(), &values);
        assert!(eval_src("include.logs"));
        assert!(!eval_src("include.logs && type == 'custom'"));
        assert!(eval_src("type != 'custom' && heapMB == 4096"));
        assert!(eval_src("!include.logs || (type == 'fast')"));
        assert!(eval_src("(include.logs && false) == false"));
    }
}
