//! Guest path helpers every plugin that takes paths from its config needs.
//!
//! ```
//! use qodify_plugin_sdk::path::{is_within, normalize};
//! assert_eq!(normalize("/out//a/./b/../c/").unwrap(), "/out/a/c");
//! assert!(normalize("relative").is_err() && normalize("/..").is_err());
//! assert!(is_within("/out", "/out/x") && !is_within("/out", "/outside"));
//! ```

use crate::Error;

/// Normalises an absolute guest path lexically (`.`, `..`, doubled and trailing slashes); a
/// relative path or one that goes above `/` is an `invalid-config` error.
pub fn normalize(path: &str) -> Result<String, Error> {
    if !path.starts_with('/') {
        return Err(Error::invalid_config(format!(
            "`{path}` is not an absolute guest path"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::invalid_config(format!("`{path}` goes above `/`")));
                }
            }
            name => parts.push(name),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// True when `path` is `root` or lies below it (whole components).
pub fn is_within(root: &str, path: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty() || path == root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/'))
}
