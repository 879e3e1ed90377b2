//! Diagnostics for pipeline and overlay files: `file:line:col`, what is wrong, the source line with
//! the span underlined, and a hint saying what to do next.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a pipeline or overlay file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as it was given to the loader (kept relative when given relative).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in chars.
    pub col: usize,
    /// What is wrong: lowercase, no trailing period.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
    /// The source line and the underline width, when the source is known.
    pub snippet: Option<Snippet>,
    /// A warning: worth a look, but the file is valid.
    pub warning: bool,
}

/// The source line a [`Diagnostic`] points into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The whole line, without its line ending.
    pub text: String,
    /// How many chars to underline from the diagnostic's column (at least 1).
    pub width: usize,
}

impl Diagnostic {
    /// A diagnostic without source context, e.g. for a file that cannot be read.
    pub fn new(
        file: impl Into<PathBuf>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            col,
            message: message.into(),
            hint: None,
            snippet: None,
            warning: false,
        }
    }

    /// The same, as a warning.
    pub fn into_warning(mut self) -> Self {
        self.warning = true;
        self
    }

    /// Adds (or replaces) the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        let hint = hint.into();
        self.hint = (!hint.is_empty()).then_some(hint);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            if self.warning { "warning" } else { "error" },
            self.message
        )?;
        if let Some(snippet) = &self.snippet {
            // Keep tabs so the caret lines up under the same terminal column as the source.
            let pad: String = snippet
                .text
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{:>5} | {}\n{:>5} | {}{}",
                self.line,
                snippet.text,
                "",
                pad,
                "^".repeat(snippet.width.max(1))
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n   = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// A non-empty list of diagnostics, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.0))]
pub struct Diagnostics(Vec<Diagnostic>);

fn join(list: &[Diagnostic]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Diagnostics {
    /// Wraps a list; `None` when it is empty.
    pub fn from_vec(list: Vec<Diagnostic>) -> Option<Self> {
        (!list.is_empty()).then_some(Diagnostics(list))
    }

    /// The diagnostics, in file order.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.0
    }

    /// Takes the list out.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }

    /// Appends the diagnostics of another load (e.g. several files validated at once).
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
}

impl std::ops::Deref for Diagnostics {
    type Target = [Diagnostic];
    fn deref(&self) -> &[Diagnostic] {
        &self.0
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// `Ok(())` for an empty list, else the list as an error.
pub(crate) fn to_result(list: Vec<Diagnostic>) -> Result<(), Diagnostics> {
    Diagnostics::from_vec(list).map_or(Ok(()), Err)
}

/// A file diagnostics can point into.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: PathBuf,
    pub(crate) text: String,
}

impl Source {
    pub(crate) fn new(file: &Path, text: &str) -> Self {
        Source {
            file: file.to_path_buf(),
            text: text.to_owned(),
        }
    }

    /// A diagnostic at a byte span of this source.
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let text = &self.text;
        let start = floor_boundary(text, span.start.min(text.len()));
        let end = floor_boundary(text, span.end.clamp(start, text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_text = text[line_start..line_end].trim_end_matches('\r');
        let width = text[start..end.min(line_start + line_text.len()).max(start)]
            .chars()
            .count();
        Diagnostic {
            file: self.file.clone(),
            line: text[..start].matches('\n').count() + 1,
            col: text[line_start..start].chars().count() + 1,
            message: message.into(),
            hint: None,
            snippet: Some(Snippet {
                text: line_text.to_owned(),
                width: width.max(1),
            }),
            warning: false,
        }
    }

    /// The span of `range` (byte offsets into the decoded string `value`) inside the TOML string
    /// literal at `span`. Exact when the literal has no escapes, else clamped to the literal.
    pub(crate) fn inner_span(
        &self,
        span: &Range<usize>,
        value: &str,
        range: Range<usize>,
    ) -> Range<usize> {
        let Some(raw) = self.text.get(span.clone()) else {
            return span.clone();
        };
        let delim = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            1
        } else {
            return span.clone();
        };
        if raw.len() < 2 * delim {
            return span.clone();
        }
        let mut start = span.start + delim;
        let end = span.end - delim;
        // A newline right after an opening `"""` is not part of the value.
        if delim == 3 {
            if self.text[start..end].starts_with("\r\n") {
                start += 2;
            } else if self.text[start..end].starts_with('\n') {
                start += 1;
            }
        }
        let content = &self.text[start..end];
        if content == value {
            return start + range.start..start + range.end;
        }
        let clamp = |offset: usize| floor_boundary(content, offset.min(content.len()));
        start + clamp(range.start)..start + clamp(range.end)
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Turns a toml/serde error into a diagnostic whose hint lists what was expected.
pub(crate) fn from_toml_error(src: &Source, err: &toml::de::Error) -> Diagnostic {
    let raw = err.message().trim().trim_end_matches('.');
    let (message, expected) = match raw.find(", expected ") {
        Some(i) => (&raw[..i], Some(&raw[i + 2..])),
        None => (raw, None),
    };
    let mut hint = match expected {
        Some("expected nothing") => Some("remove it".to_owned()),
        Some(expected) => Some(expected.to_owned()),
        None => None,
    };
    if let (Some(unknown), Some(expected)) = (backticked_after(message, "unknown "), expected) {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if let Some(best) = did_you_mean(unknown, candidates.iter().copied()) {
            hint = Some(format!("did you mean `{best}`? {expected}"));
        }
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|s| s.strip_suffix('`'))
    {
        hint = Some(format!("add `{field} = …` to this table"));
    }
    let diag = src.error(err.span().unwrap_or(0..0), message);
    match hint {
        Some(hint) => diag.with_hint(hint),
        None => diag,
    }
}

/// `x` in "unknown field `x`" / "unknown variant `x`".
fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    let rest = &rest[rest.find('`')? + 1..];
    Some(&rest[..rest.find('`')?])
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d > 0 && d <= (c.chars().count() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Formats names as "a, b, c" (or "none").
pub(crate) fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let list: Vec<String> = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_source_line_and_caret_under_the_span() {
        let src = Source::new(Path::new("p.toml"), "name = \"x\"\nplugin = \"archve\"\n");
        let d = src
            .error(20..28, "unknown plugin `archve`")
            .with_hint("known plugins: archive");
        assert_eq!(
            d.to_string(),
            "p.toml:2:10: error: unknown plugin `archve`\n    2 | plugin = \"archve\"\n      |          ^^^^^^^^\n   = hint: known plugins: archive"
        );
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        let src = Source::new(Path::new("p.toml"), "a = \"é\" # x\n");
        let d = src.error(8..9, "x");
        assert_eq!((d.line, d.col), (1, 8));
    }

    #[test]
    fn inner_span_maps_offsets_past_the_opening_quote() {
        let text = "when = 'a && b'\n";
        let src = Source::new(Path::new("p.toml"), text);
        let span = 7..15;
        assert_eq!(&text[src.inner_span(&span, "a && b", 5..6)], "b");
        let text = "when = \"\"\"\na && b\"\"\"\n";
        let src = Source::new(Path::new("p.toml"), text);
        assert_eq!(&text[src.inner_span(&(7..20), "a && b", 5..6)], "b");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("descripton", ["name", "description"]),
            Some("description")
        );
        assert_eq!(did_you_mean("zzz", ["name", "description"]), None);
    }
}
