//! The anchored `carry` globs: which entries of the old folder move into the restored one.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use qodify_plugin_sdk::Error;

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
}
