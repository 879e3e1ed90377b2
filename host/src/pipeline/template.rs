//! `{{customer.id}}`-style references in config strings and mount paths: parsed with positions
//! for validation, substituted at resolve time.

use std::ops::Range;

/// A piece of a templated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    /// The reference between the braces (trimmed), and the span of the whole `{{…}}`.
    Ref(String, Range<usize>),
}

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ref<'a> {
    CustomerId,
    CustomerDomain,
    RunId,
    RunTimestamp,
    Param(&'a str),
}

pub(crate) const KNOWN_REFS: &str =
    "customer.id, customer.domain, run.id, run.timestamp, params.<name>";

impl<'a> Ref<'a> {
    pub(crate) fn parse(name: &'a str) -> Option<Self> {
        match name {
            "customer.id" => Some(Ref::CustomerId),
            "customer.domain" => Some(Ref::CustomerDomain),
            "run.id" => Some(Ref::RunId),
            "run.timestamp" => Some(Ref::RunTimestamp),
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
        let name = s[open + 2..close].trim();
        if name.is_empty() {
            return Err(SyntaxError {
                span: open..close + 2,
                message: "empty template reference".to_owned(),
                hint: format!("name one of: {KNOWN_REFS}"),
            });
        }
        pieces.push(Piece::Ref(name.to_owned(), open..close + 2));
        rest = close + 2;
    }
    if rest < s.len() {
        pieces.push(Piece::Text(s[rest..].to_owned()));
    }
    Ok(pieces)
}

/// Substitutes every reference with `value(ref)`; references were checked before.
pub(crate) fn render(pieces: &[Piece], value: &dyn Fn(Ref<'_>) -> String) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Ref(name, _) => {
                if let Some(r) = Ref::parse(name) {
                    out.push_str(&value(r));
                }
            }
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
    fn renders_values() {
        let pieces = parse("{{customer.domain}}-{{params.n}}").unwrap();
        let out = render(&pieces, &|r| match r {
            Ref::CustomerDomain => "shop.example.com".into(),
            Ref::Param(p) => format!("<{p}>"),
            _ => String::new(),
        });
        assert_eq!(out, "shop.example.com-<n>");
    }
}
