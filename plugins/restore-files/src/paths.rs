//! Guest path helpers and the anchored `carry` globs.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use qodify_plugin_sdk::Error;
pub use qodify_plugin_sdk::path::{is_within, normalize};

/// `dir/rel`; either may be empty (`rel` empty: the folder itself; `dir` empty: the top of a
/// relative tree).
pub fn join(dir: &str, rel: &str) -> String {
    if rel.is_empty() {
        dir.to_string()
    } else if dir.is_empty() {
        rel.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// The proper prefixes of the relative path `rel`, shortest first: `a/b/c` → `a`, `a/b`.
pub fn parents(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// The folder part of the relative path `rel` (`""` at the top).
pub fn parent(rel: &str) -> &str {
    rel.rfind('/').map_or("", |i| &rel[..i])
}

/// Number of components of the relative path `rel` (0 for `""`).
pub fn depth(rel: &str) -> usize {
    if rel.is_empty() {
        0
    } else {
        rel.split('/').count()
    }
}

/// Builds the `carry` matcher: anchored at the restored folder, `*` never crosses `/`, and
/// `dir/**` also matches `dir` itself (the same rules as the archive plugin's excludes).
pub fn glob_set(field: &str, patterns: &[String]) -> Result<Option<GlobSet>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for raw in patterns {
        let pattern = raw
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        if pattern.is_empty() {
            return Err(Error::invalid_config(format!(
                "{field} pattern `{raw}` is empty"
            )));
        }
        let mut add = |p: &str| {
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|g| {
                    set.add(g);
                })
                .map_err(|e| Error::invalid_config(format!("{field} pattern `{raw}`: {e}")))
        };
        add(pattern)?;
        if let Some(dir) = pattern.strip_suffix("/**") {
            add(dir)?;
        }
    }
    set.build()
        .map(Some)
        .map_err(|e| Error::invalid_config(format!("{field} patterns: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> GlobSet {
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        glob_set("carry", &patterns).unwrap().unwrap()
    }

    #[test]
    fn carry_globs_are_anchored() {
        let carry = set(&["**/node_modules", "uploads", "logs/**"]);
        assert!(carry.is_match("node_modules"));
        assert!(carry.is_match("packages/a/node_modules"));
        assert!(!carry.is_match("my_node_modules"));
        assert!(carry.is_match("uploads"));
        assert!(!carry.is_match("public/uploads"), "unanchored match");
        assert!(carry.is_match("logs"));
        assert!(!carry.is_match("a/logs"));
    }

    #[test]
    fn path_helpers() {
        assert_eq!(normalize("/a/./b//c/../d/").unwrap(), "/a/b/d");
        assert!(normalize("/..").is_err());
        assert!(normalize("rel").is_err());
        assert!(is_within("/c", "/c/x") && !is_within("/c", "/cx"));
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(parents("a").count(), 0);
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!((depth(""), depth("a"), depth("a/b")), (0, 1, 2));
        assert_eq!(join("/x", ""), "/x");
        assert_eq!(join("/x", "a/b"), "/x/a/b");
        assert_eq!(join("", "a"), "a");
    }
}
