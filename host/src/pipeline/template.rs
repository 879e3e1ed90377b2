//! Templates in config strings and mount paths: `{{…}}` pieces, parsed with positions for
//! validation and substituted at resolve time.
//!
//! Between the braces (surrounding whitespace ignored) is either
//!
//! - a **reference**: one name whose first dot-separated part is `customer`, `run` or `params`:
//!   `{{customer.id}}`, `{{customer.domain}}`, `{{run.id}}`, `{{run.timestamp}}`,
//!   `{{params.NAME}}`, and where the customer's services are, as the host finds them on disk in
//!   either layout ([`crate::customer::service_paths`]): `{{customer.path.backend}}`,
//!   `{{customer.path.admin}}`, `{{customer.path.store}}`, `{{customer.path.uploads}}` (paths
//!   relative to the customer folder); allowed in config strings and mount paths; in command
//!   argument patterns
//!   also the customer's database, as the host reads it from the customer's own `.env`
//!   ([`crate::customer::database`]): `{{customer.db.host}}`, `{{customer.db.port}}`,
//!   `{{customer.db.name}}`, `{{customer.db.user}}` (never the password); or
//! - an **expression** (config strings only): anything else, in the `when` language of
//!   [`super::expr`] and type-checked like `when`, so it must be a bool:
//!   `{{ type == 'custom' && include.logs }}`, `{{ !include.db }}`, `{{ include.logs }}` (a bare
//!   name is a param of the expression language, without `params.`, and must be a bool param).
//!   A param whose name itself starts with `customer.`, `run.` or `params.` is reached alone
//!   only as `{{params.NAME}}` (which gives a bool param's value as a bool just the same).
//!
//! Typed values: when a config string is exactly one `{{…}}` (nothing before `{{` or after
//! `}}`), its value keeps its type in the plugin's JSON config: an expression becomes `true` or
//! `false`, `{{params.NAME}}` becomes the param's value (bool → JSON bool, int → JSON number,
//! string and enum → JSON string), and the other references stay strings. Anywhere else a piece
//! is rendered as text: an expression as `true`/`false`, a reference as its value. Mount paths
//! reject expressions; their references stand for path text.
//!
//! Known limitation: the first `}}` closes a piece, so an expression cannot contain `}}`, even
//! inside a quoted string.

use std::ops::Range;

/// A piece of a templated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    /// The reference between the braces (trimmed), and the span of the whole `{{…}}`.
    Ref(String, Range<usize>),
    /// An expression: its text between the braces (trimmed), where that text starts in the
    /// string (expression error spans are relative to it), and the span of the whole `{{…}}`.
    Expr {
        text: String,
        at: usize,
        span: Range<usize>,
    },
}

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ref<'a> {
    CustomerId,
    CustomerDomain,
    RunId,
    RunTimestamp,
    Param(&'a str),
    /// A value of the customer's database, derived by the host (command patterns only).
    CustomerDb(DbField),
    /// A folder of the customer's services, found by the host on disk.
    CustomerPath(PathField),
}

/// A folder of the customer's, relative to the customer folder, in whichever layout it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathField {
    /// `customer.path.backend`.
    Backend,
    /// `customer.path.admin`.
    Admin,
    /// `customer.path.store`.
    Store,
    /// `customer.path.uploads`.
    Uploads,
}

impl PathField {
    /// The reference naming it.
    pub fn reference(self) -> &'static str {
        match self {
            PathField::Backend => "customer.path.backend",
            PathField::Admin => "customer.path.admin",
            PathField::Store => "customer.path.store",
            PathField::Uploads => "customer.path.uploads",
        }
    }
}

/// A field of the customer's database that a command pattern may fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbField {
    /// `customer.db.host`.
    Host,
    /// `customer.db.port`.
    Port,
    /// `customer.db.name`.
    Name,
    /// `customer.db.user`.
    User,
}

impl DbField {
    /// The reference naming it.
    pub fn reference(self) -> &'static str {
        match self {
            DbField::Host => "customer.db.host",
            DbField::Port => "customer.db.port",
            DbField::Name => "customer.db.name",
            DbField::User => "customer.db.user",
        }
    }
}

pub(crate) const KNOWN_REFS: &str = "customer.id, customer.domain, customer.path.backend, \
     customer.path.admin, customer.path.store, customer.path.uploads, run.id, run.timestamp, \
     params.<name>";

/// What command argument patterns may reference besides [`KNOWN_REFS`].
pub(crate) const DB_REFS: &str =
    "customer.db.host, customer.db.port, customer.db.name, customer.db.user";

impl<'a> Ref<'a> {
    pub(crate) fn parse(name: &'a str) -> Option<Self> {
        match name {
            "customer.id" => Some(Ref::CustomerId),
            "customer.domain" => Some(Ref::CustomerDomain),
            "run.id" => Some(Ref::RunId),
            "run.timestamp" => Some(Ref::RunTimestamp),
            "customer.db.host" => Some(Ref::CustomerDb(DbField::Host)),
            "customer.db.port" => Some(Ref::CustomerDb(DbField::Port)),
            "customer.db.name" => Some(Ref::CustomerDb(DbField::Name)),
            "customer.db.user" => Some(Ref::CustomerDb(DbField::User)),
            "customer.path.backend" => Some(Ref::CustomerPath(PathField::Backend)),
            "customer.path.admin" => Some(Ref::CustomerPath(PathField::Admin)),
            "customer.path.store" => Some(Ref::CustomerPath(PathField::Store)),
            "customer.path.uploads" => Some(Ref::CustomerPath(PathField::Uploads)),
            _ => name.strip_prefix("params.").map(Ref::Param),
        }
    }
}

/// A template syntax error: the span inside the string and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
    pub(crate) hint: String,
}

/// Whether the text between the braces is a reference (see the module docs), not an expression.
fn is_reference(inner: &str) -> bool {
    let head = inner.split('.').next().unwrap_or("");
    matches!(head, "customer" | "run" | "params")
        && inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(crate) fn parse(s: &str) -> Result<Vec<Piece>, SyntaxError> {
    let mut pieces = Vec::new();
    let mut rest = 0;
    while let Some(open) = s[rest..].find("{{").map(|i| rest + i) {
        if open > rest {
            pieces.push(Piece::Text(s[rest..open].to_owned()));
        }
        let Some(close) = s[open + 2..].find("}}").map(|i| open + 2 + i) else {
            return Err(SyntaxError {
                span: open..open + 2,
                message: "`{{` is not closed".to_owned(),
                hint: format!("close it with `}}}}`; references: {KNOWN_REFS}"),
            });
        };
        let raw = &s[open + 2..close];
        let inner = raw.trim();
        if inner.is_empty() {
            return Err(SyntaxError {
                span: open..close + 2,
                message: "empty template reference".to_owned(),
                hint: format!("name one of: {KNOWN_REFS}"),
            });
        }
        let span = open..close + 2;
        pieces.push(if is_reference(inner) {
            Piece::Ref(inner.to_owned(), span)
        } else {
            let at = open + 2 + (raw.len() - raw.trim_start().len());
            Piece::Expr {
                text: inner.to_owned(),
                at,
                span,
            }
        });
        rest = close + 2;
    }
    if rest < s.len() {
        pieces.push(Piece::Text(s[rest..].to_owned()));
    }
    Ok(pieces)
}

/// The piece, when the string is exactly one `{{…}}` (its value then keeps its type).
pub(crate) fn whole(pieces: &[Piece]) -> Option<&Piece> {
    match pieces {
        [piece @ (Piece::Ref(..) | Piece::Expr { .. })] => Some(piece),
        _ => None,
    }
}

/// Renders the pieces as text: each reference as `value(ref)`, each expression as `true` or
/// `false` from `test(text)`. Both were checked before.
pub(crate) fn render(
    pieces: &[Piece],
    value: &dyn Fn(Ref<'_>) -> String,
    test: &dyn Fn(&str) -> bool,
) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Ref(name, _) => {
                if let Some(r) = Ref::parse(name) {
                    out.push_str(&value(r));
                }
            }
            Piece::Expr { text, .. } => out.push_str(if test(text) { "true" } else { "false" }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_references() {
        assert_eq!(
            parse("a/{{ run.id }}/{{params.x.y}}").unwrap(),
            vec![
                Piece::Text("a/".into()),
                Piece::Ref("run.id".into(), 2..14),
                Piece::Text("/".into()),
                Piece::Ref("params.x.y".into(), 15..29),
            ]
        );
        assert_eq!(
            parse("plain }} text").unwrap(),
            vec![Piece::Text("plain }} text".into())]
        );
    }

    #[test]
    fn unclosed_and_empty_references_are_errors() {
        assert_eq!(parse("a {{run.id").unwrap_err().span, 2..4);
        assert_eq!(
            parse("a {{ }}").unwrap_err().message,
            "empty template reference"
        );
    }

    #[test]
    fn anything_but_a_reference_is_an_expression() {
        let pieces = parse("{{  type == 'custom' && include.logs }}-{{!x}}").unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Expr {
                    text: "type == 'custom' && include.logs".into(),
                    at: 4,
                    span: 0..39,
                },
                Piece::Text("-".into()),
                Piece::Expr {
                    text: "!x".into(),
                    at: 42,
                    span: 40..46,
                },
            ]
        );
        // A bare name is a param of the expression language; the reserved prefixes make references.
        for (src, is_ref) in [
            ("{{ include.logs }}", false),
            ("{{logs}}", false),
            ("{{ customer.name }}", true),
            ("{{run}}", true),
            ("{{params.x}}", true),
            ("{{ params.x && y }}", false),
            ("{{ customers.id }}", false),
        ] {
            let pieces = parse(src).unwrap();
            assert_eq!(matches!(pieces[0], Piece::Ref(..)), is_ref, "{src}");
        }
    }

    #[test]
    fn only_a_lone_piece_is_whole() {
        let whole_of = |s: &str| whole(&parse(s).unwrap()).cloned();
        assert!(matches!(whole_of("{{ a }}"), Some(Piece::Expr { .. })));
        assert!(matches!(whole_of("{{params.n}}"), Some(Piece::Ref(..))));
        assert_eq!(whole_of(" {{ a }}"), None);
        assert_eq!(whole_of("{{ a }}\n"), None);
        assert_eq!(whole_of("{{a}}{{b}}"), None);
        assert_eq!(whole_of("text"), None);
    }

    #[test]
    fn renders_values() {
        let pieces = parse("{{customer.domain}}-{{params.n}}-{{ a && b }}-{{ !a }}").unwrap();
        let out = render(
            &pieces,
            &|r| match r {
                Ref::CustomerDomain => "shop.example.com".into(),
                Ref::Param(p) => format!("<{p}>"),
                _ => String::new(),
            },
            &|text| text == "!a",
        );
        assert_eq!(out, "shop.example.com-<n>-false-true");
    }
}
