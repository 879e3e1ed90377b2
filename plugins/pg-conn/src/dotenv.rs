//! Reads one variable from the text of a `.env` file, the way Node's `dotenv` does: `KEY=value`
//! lines, optional `export `, `#` comments, single, double or backtick quotes (`\n` escapes in
//! double quotes), inline comments after unquoted values, and the last assignment wins.

/// The value of `name` in the `.env` text `text`, if assigned.
pub fn lookup(text: &str, name: &str) -> Option<String> {
    let mut found = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        if key.trim_end() != name {
            continue;
        }
        found = Some(value(rest.trim_start(), &mut lines));
    }
    found
}

/// Parses the value after `=`; a quoted value may continue on the following lines.
fn value<'a>(raw: &'a str, more: &mut impl Iterator<Item = &'a str>) -> String {
    let Some(quote) = raw.chars().next().filter(|c| matches!(c, '"' | '\'' | '`')) else {
        // Unquoted: up to an inline comment (a `#` after whitespace).
        let end = raw
            .char_indices()
            .find(|&(i, c)| c == '#' && (i == 0 || raw[..i].ends_with([' ', '\t'])))
            .map_or(raw.len(), |(i, _)| i);
        return raw[..end].trim().to_string();
    };
    let mut body = raw[1..].to_string();
    loop {
        if let Some(end) = closing_quote(&body, quote) {
            body.truncate(end);
            break;
        }
        match more.next() {
            Some(line) => {
                body.push('\n');
                body.push_str(line);
            }
            // No closing quote: dotenv keeps the text as written.
            None => return raw.trim().to_string(),
        }
    }
    if quote == '"' { unescape(&body) } else { body }
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

fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_quoted_exported_and_commented_values() {
        let env = "\
# DATABASE_URL=commented
NODE_ENV=production
export DATABASE_URL = postgres://a:b@h/db  # the main db
QUOTED=\"x # not a comment\" # a comment
SINGLE='a\\nb'
DOUBLE=\"a\\nb \\\"q\\\"\"
TICK=`t'\"`
HASH=abc#def
EMPTY=
";
        assert_eq!(lookup(env, "DATABASE_URL").unwrap(), "postgres://a:b@h/db");
        assert_eq!(lookup(env, "QUOTED").unwrap(), "x # not a comment");
        assert_eq!(lookup(env, "SINGLE").unwrap(), "a\\nb");
        assert_eq!(lookup(env, "DOUBLE").unwrap(), "a\nb \"q\"");
        assert_eq!(lookup(env, "TICK").unwrap(), "t'\"");
        assert_eq!(lookup(env, "HASH").unwrap(), "abc#def");
        assert_eq!(lookup(env, "EMPTY").unwrap(), "");
        assert_eq!(lookup(env, "MISSING"), None);
        assert_eq!(lookup(env, "DATABASE"), None);
    }

    #[test]
    fn last_assignment_wins_and_crlf_is_fine() {
        let env = "DATABASE_URL=first\r\nDATABASE_URL=\"second\"\r\n";
        assert_eq!(lookup(env, "DATABASE_URL").unwrap(), "second");
    }

    #[test]
    fn multiline_and_unterminated_quotes() {
        let env = "KEY=\"line1\nline2\"\nNEXT=1\nOPEN='abc\n";
        assert_eq!(lookup(env, "KEY").unwrap(), "line1\nline2");
        assert_eq!(lookup(env, "NEXT").unwrap(), "1");
        assert_eq!(lookup(env, "OPEN").unwrap(), "'abc");
    }
}
