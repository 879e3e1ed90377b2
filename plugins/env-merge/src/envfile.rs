//! A `.env` file as a list of entries that renders back to the same text: assignments (which may
//! span lines: a quoted value with newlines) and everything else (blank lines, comments, lines
//! that assign nothing) kept verbatim. Values are read by [`pg_conn::dotenv::lookup`] on the
//! entry's own text, so this module and the database plugins agree on what a value is (Node
//! `dotenv` rules: `export `, `#` comments, `'`, `"` and `` ` `` quotes, `\n` in double quotes).

/// Longest key accepted; longer ones are kept as plain lines.
const MAX_KEY: usize = 256;

/// One entry of a `.env` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A blank line, a comment, or a line that assigns nothing; kept as written.
    Other(String),
    /// An assignment.
    Assign(Assign),
}

/// `KEY=value`, optionally `export`ed; `lines` are the lines as written (more than one when a
/// quoted value spans lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// The variable's name.
    pub key: String,
    /// The lines as written, without line endings.
    pub lines: Vec<String>,
}

impl Assign {
    /// The value, as Node's `dotenv` reads it.
    pub fn value(&self) -> String {
        pg_conn::dotenv::lookup(&self.lines.join("\n"), &self.key).unwrap_or_default()
    }

    /// True when written as `export KEY=…`.
    pub fn exported(&self) -> bool {
        self.lines
            .first()
            .is_some_and(|l| l.trim_start().starts_with("export "))
    }
}

/// A parsed `.env` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// The entries in file order.
    pub entries: Vec<Entry>,
    /// Lines end with `\r\n` (judged by the first line).
    pub crlf: bool,
    /// The text ended with a line ending (or was empty).
    pub final_newline: bool,
}

impl EnvFile {
    /// Parses `.env` text; never fails (what is not an assignment is kept as a plain line).
    pub fn parse(text: &str) -> EnvFile {
        let crlf =
            text.split('\n').next().is_some_and(|l| l.ends_with('\r')) && text.contains('\n');
        let final_newline = text.is_empty() || text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect()
        };
        let mut entries = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let Some((key, value)) = split_assignment(line) else {
                entries.push(Entry::Other(line.to_string()));
                i += 1;
                continue;
            };
            // A quoted value without its closing quote on this line continues on the next lines;
            // never closed, dotenv keeps the line as written and the next lines stand alone.
            let mut end = i;
            if let Some(quote) = value
                .chars()
                .next()
                .filter(|c| matches!(c, '"' | '\'' | '`'))
            {
                let mut body = value[1..].to_string();
                let mut j = i;
                while closing_quote(&body, quote).is_none() {
                    j += 1;
                    if j == lines.len() {
                        break;
                    }
                    body.push('\n');
                    body.push_str(lines[j]);
                }
                if j < lines.len() {
                    end = j;
                }
            }
            entries.push(Entry::Assign(Assign {
                key: key.to_string(),
                lines: lines[i..=end].iter().map(|l| l.to_string()).collect(),
            }));
            i = end + 1;
        }
        EnvFile {
            entries,
            crlf,
            final_newline,
        }
    }

    /// The text: entries in order, with the file's line endings.
    pub fn render(&self) -> String {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        let mut first = true;
        for entry in &self.entries {
            let lines: &[String] = match entry {
                Entry::Other(line) => std::slice::from_ref(line),
                Entry::Assign(a) => &a.lines,
            };
            for line in lines {
                if !first {
                    out.push_str(eol);
                }
                out.push_str(line);
                first = false;
            }
        }
        if self.final_newline && !first {
            out.push_str(eol);
        }
        out
    }

    /// The assignments.
    pub fn assignments(&self) -> impl Iterator<Item = &Assign> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Assign(a) => Some(a),
            Entry::Other(_) => None,
        })
    }

    /// The last assignment of `key` (the one that counts).
    pub fn last(&self, key: &str) -> Option<&Assign> {
        self.assignments().filter(|a| a.key == key).last()
    }

    /// The value of `key`: its last assignment wins, as in dotenv.
    pub fn get(&self, key: &str) -> Option<String> {
        self.last(key).map(Assign::value)
    }

    /// The keys, each once, in order of first appearance.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        for a in self.assignments() {
            if !keys.contains(&a.key.as_str()) {
                keys.push(&a.key);
            }
        }
        keys
    }
}

/// A variable name as dotenv accepts it: `[A-Za-z0-9_.-]+`.
pub fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `KEY` and the text after `=` (leading blanks dropped), when `line` assigns a variable; the
/// same reading as [`pg_conn::dotenv::lookup`].
fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    if line.starts_with('#') {
        return None;
    }
    let (key, rest) = line.split_once('=')?;
    let key = key.trim_end();
    is_key(key).then_some((key, rest.trim_start()))
}

/// Byte index of the closing `quote` in `body`; in double quotes `\"` does not close.
fn closing_quote(body: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if quote == '"' && c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        if c == quote && !escaped {
            return Some(i);
        }
        escaped = false;
    }
    None
}

/// `value` written so that dotenv (and [`pg_conn::dotenv::lookup`]) reads it back unchanged:
/// bare when that is safe, else in single quotes, double quotes (newlines as `\n`) or
/// backticks. `None` when no quoting keeps it intact (it holds every quote character and a
/// newline or a backslash).
pub fn quote_value(value: &str) -> Option<String> {
    let bare = value.chars().all(|c| {
        !c.is_whitespace() && !c.is_control() && !matches!(c, '#' | '"' | '\'' | '`' | '\\' | '$')
    });
    if bare {
        return Some(value.to_string());
    }
    let newline = value.contains(['\n', '\r']);
    if !value.contains('\'') && !newline {
        return Some(format!("'{value}'"));
    }
    // dotenv turns `\n` and `\r` in double quotes into line breaks and leaves other backslashes
    // alone, while `\"` ends the value early in some readers: no `"` and no `\` then.
    if !value.contains(['"', '\\']) {
        let escaped = value.replace('\r', "\\r").replace('\n', "\\n");
        return Some(format!("\"{escaped}\""));
    }
    if !value.contains(['`', '\r']) {
        return Some(format!("`{value}`"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_and_values(text: &str) -> Vec<(String, String)> {
        EnvFile::parse(text)
            .assignments()
            .map(|a| (a.key.clone(), a.value()))
            .collect()
    }

    #[test]
    fn renders_back_exactly() {
        for text in [
            "",
            "\n",
            "A=1",
            "A=1\n",
            "A=1\r\nB=2\r\n",
            "# comment\n\nexport A = 'x y' # note\n  B=\"multi\nline\"\nnot an assignment\n",
            "OPEN='never closed\nB=2\n",
            "K=`tick\n\n`\n#end",
        ] {
            assert_eq!(EnvFile::parse(text).render(), text, "{text:?}");
        }
    }

    #[test]
    fn assignments_quotes_export_and_comments() {
        let text = "\
# DATABASE_URL=commented out
NODE_ENV=production
export DATABASE_URL = postgres://a:b@h/db  # the main db
QUOTED=\"x # not a comment\" # a comment
SINGLE='a\\nb'
DOUBLE=\"a\\nb\"
TICK=`t'\"`
HASH=abc#def
EMPTY=
bad key=1
=nokey
just text
";
        assert_eq!(
            keys_and_values(text),
            [
                ("NODE_ENV", "production"),
                ("DATABASE_URL", "postgres://a:b@h/db"),
                ("QUOTED", "x # not a comment"),
                ("SINGLE", "a\\nb"),
                ("DOUBLE", "a\nb"),
                ("TICK", "t'\""),
                ("HASH", "abc#def"),
                ("EMPTY", ""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let file = EnvFile::parse(text);
        assert!(file.last("DATABASE_URL").unwrap().exported());
        assert!(!file.last("NODE_ENV").unwrap().exported());
        let others = file
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::Other(_)))
            .count();
        assert_eq!(others, 4, "comment, `bad key`, `=nokey`, text");
    }

    #[test]
    fn multi_line_values_are_one_entry() {
        let text = "KEY=\"line1\nNOT_A_KEY=inside\nline3\"\nNEXT=1\nESC=\"a\\\"\nstill\"\n";
        let file = EnvFile::parse(text);
        assert_eq!(file.keys(), ["KEY", "NEXT", "ESC"]);
        assert_eq!(file.get("KEY").unwrap(), "line1\nNOT_A_KEY=inside\nline3");
        assert_eq!(file.last("KEY").unwrap().lines.len(), 3);
        assert_eq!(file.get("ESC").unwrap(), "a\"\nstill");
        assert_eq!(file.get("NOT_A_KEY"), None);
    }

    #[test]
    fn unterminated_quote_keeps_the_line_and_the_rest_stands_alone() {
        let file = EnvFile::parse("OPEN='abc\nNEXT=1\n");
        assert_eq!(file.get("OPEN").unwrap(), "'abc");
        assert_eq!(file.get("NEXT").unwrap(), "1");
    }

    #[test]
    fn last_assignment_wins_and_keys_are_listed_once() {
        let file = EnvFile::parse("A=1\nB=2\nA=3\n");
        assert_eq!(file.get("A").unwrap(), "3");
        assert_eq!(file.keys(), ["A", "B"]);
    }

    #[test]
    fn crlf_files_read_like_lf_files() {
        let file = EnvFile::parse("A=\"x\r\ny\"\r\nB=2\r\n");
        assert!(file.crlf);
        assert_eq!(file.get("A").unwrap(), "x\ny");
        assert_eq!(file.get("B").unwrap(), "2");
    }

    #[test]
    fn quoted_values_read_back_unchanged() {
        for (value, written) in [
            ("plain", "plain"),
            (
                "postgres://u:p@h:5432/db?x=1",
                "postgres://u:p@h:5432/db?x=1",
            ),
            ("", ""),
            ("with space", "'with space'"),
            (" lead", "' lead'"),
            ("a#b", "'a#b'"),
            ("${HOME}", "'${HOME}'"),
            ("say \"hi\"", "'say \"hi\"'"),
            ("back\\slash", "'back\\slash'"),
            ("it's", "\"it's\""),
            ("two\nlines", "\"two\\nlines\""),
            ("it's\n\"x\"", "`it's\n\"x\"`"),
        ] {
            let quoted = quote_value(value).unwrap();
            assert_eq!(quoted, written, "{value:?}");
            let text = format!("K={quoted}\nNEXT=1\n");
            assert_eq!(
                pg_conn::dotenv::lookup(&text, "K").as_deref(),
                Some(value),
                "{text:?}"
            );
            assert_eq!(EnvFile::parse(&text).get("K").as_deref(), Some(value));
            assert_eq!(EnvFile::parse(&text).get("NEXT").as_deref(), Some("1"));
        }
        assert_eq!(quote_value("'\"`\n"), None);
        assert_eq!(quote_value("'\"\\\n"), Some("`'\"\\\n`".into()));
    }
}
