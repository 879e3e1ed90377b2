//! Joining and splitting guest paths and the relative paths of a tree's entries, which hold no
//! `.` or `..` components ([`extract`](crate::extract) refuses archive names that do).

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

#[cfg(test)]
mod tests {
    use qodify_plugin_sdk::path::{is_within, normalize};

    use super::*;

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
