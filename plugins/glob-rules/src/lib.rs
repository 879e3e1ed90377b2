//! Shared by the `archive`, `preflight` and `restore-files` plugins: the anchored glob rules of
//! archive's `exclude`/`include`, preflight's `exclude` and restore-files' `carry` ([`glob_set`]).
//! One copy, so preflight's size estimate leaves out exactly what archive leaves out.
//!
//! A library, not a plugin: a plugin crate cannot depend on another plugin crate, whose `run`
//! export would clash with its own at link time.

use globset::{Glob, GlobBuilder, GlobSetBuilder};
use qodify_plugin_sdk::Error;

/// Re-exported so the plugins name the matcher type of the same `globset` this crate builds with.
pub use globset::GlobSet;

/// Builds the matcher for the config field `field` (named in errors, e.g. `exclude`): anchored at
/// the root folder the paths are relative to, `*` never crosses `/`, and `dir/**` also matches
/// `dir` itself so the folder entry goes with its contents. Leading `./` and `/` and a trailing
/// `/` are ignored; a pattern that is empty after that is refused. No patterns, no matcher.
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
        set.add(glob(field, raw, pattern)?);
        if let Some(dir) = pattern.strip_suffix("/**") {
            set.add(glob(field, raw, dir)?);
        }
    }
    set.build()
        .map(Some)
        .map_err(|e| Error::invalid_config(format!("{field} patterns: {e}")))
}

/// Errors name the pattern as the user wrote it (`raw`), not the trimmed one.
fn glob(field: &str, raw: &str, pattern: &str) -> Result<Glob, Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| Error::invalid_config(format!("{field} pattern `{raw}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qodify_plugin_sdk::ErrorKind;

    fn set(patterns: &[&str]) -> GlobSet {
        glob_set("exclude", &strings(patterns)).unwrap().unwrap()
    }

    fn strings(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_are_anchored_at_the_root() {
        let ex = set(&["tmp/**", "logs/*.log", "uploads"]);
        assert!(ex.is_match("tmp"));
        assert!(ex.is_match("tmp/a/b"));
        assert!(!ex.is_match("a/tmp/b"));
        assert!(!ex.is_match("a/tmp"));
        assert!(ex.is_match("logs/a.log"));
        assert!(!ex.is_match("logs/old/a.log"), "`*` must not cross `/`");
        assert!(!ex.is_match("backend/logs/a.log"));
        assert!(ex.is_match("uploads"));
        assert!(!ex.is_match("public/uploads"), "unanchored match");
        let top = set(&["*.log"]);
        assert!(top.is_match("a.log"));
        assert!(!top.is_match("logs/a.log"), "`*` must not cross `/`");
    }

    #[test]
    fn double_star_prefix_matches_at_any_depth_including_the_folder() {
        let ex = set(&["**/node_modules/**"]);
        assert!(ex.is_match("node_modules"));
        assert!(ex.is_match("node_modules/x"));
        assert!(ex.is_match("a/b/node_modules"));
        assert!(ex.is_match("a/b/node_modules/c/d"));
        assert!(!ex.is_match("a/node_modules_old"));
        assert!(!ex.is_match("my_node_modules"));
        // Without `/**` (restore-files' default carry) the folder itself still matches anywhere.
        let carry = set(&["**/node_modules"]);
        assert!(carry.is_match("node_modules"));
        assert!(carry.is_match("packages/a/node_modules"));
        assert!(!carry.is_match("my_node_modules"));
    }

    #[test]
    fn leading_slash_and_trailing_slash_are_tolerated() {
        let ex = set(&["/dist/", "./.next/**"]);
        assert!(ex.is_match("dist"));
        assert!(ex.is_match(".next/cache"));
        assert!(!ex.is_match("a/dist"));
    }

    #[test]
    fn no_patterns_means_no_matcher() {
        assert!(glob_set("include", &[]).unwrap().is_none());
    }

    #[test]
    fn empty_pattern_is_refused_naming_the_field() {
        for empty in ["", "/", "./", "//"] {
            let err = glob_set("carry", &strings(&["uploads", empty])).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert_eq!(err.message(), format!("carry pattern `{empty}` is empty"));
        }
    }

    #[test]
    fn bad_pattern_is_invalid_config_naming_the_field_and_pattern() {
        let err = glob_set("include", &strings(&["./a["])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message().starts_with("include pattern `./a[`: "),
            "{err}"
        );
    }
}
