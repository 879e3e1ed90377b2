//! Removing a release folder: first renamed to `releases/.removing-<version>` (atomic, so a
//! half-deleted release is never mistaken for one, and cleanup skips dot names), then deleted
//! without ever following a symlink, so `backend/uploads -> ../../../shared/uploads` loses its
//! link and never its uploads.

use qodify_plugin_sdk::Error;
use qodify_plugin_sdk::fs::FileSystem;

use crate::layout;

/// Prefix of a release folder being removed, inside `releases/`.
pub const REMOVING_PREFIX: &str = ".removing-";

/// Removes `releases_dir/<version>`: renames it to `.removing-<version>`, syncs `releases_dir`,
/// then deletes it. Returns false when there was nothing to remove. Callers decide whether the
/// release may go (never `current`, never the rollback target).
pub fn remove_release(
    fs: &impl FileSystem,
    releases_dir: &str,
    version: &str,
) -> Result<bool, Error> {
    if !layout::is_version_name(version) {
        return Err(Error::invalid_config(format!(
            "`{version}` is not a release folder name"
        )));
    }
    let dir = releases_dir.trim_end_matches('/');
    let path = format!("{dir}/{version}");
    let hidden = format!("{dir}/{REMOVING_PREFIX}{version}");
    // A crash during an earlier removal may have left the hidden folder.
    fs.remove_tree(&hidden)?;
    if fs.stat_opt(&path)?.is_none() {
        return Ok(false);
    }
    fs.rename(&path, &hidden)?;
    fs.sync_dir(dir)?;
    fs.remove_tree(&hidden)?;
    Ok(true)
}

/// Removes `.removing-*` folders a crash left in `releases_dir`; returns their names.
pub fn remove_leftovers(fs: &impl FileSystem, releases_dir: &str) -> Result<Vec<String>, Error> {
    let dir = releases_dir.trim_end_matches('/');
    let mut removed = Vec::new();
    for entry in fs.list_dir(dir)? {
        if entry.name.starts_with(REMOVING_PREFIX) {
            fs.remove_tree(&format!("{dir}/{}", entry.name))?;
            removed.push(entry.name);
        }
    }
    Ok(removed)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use qodify_plugin_sdk::fs::StdFs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn p(path: &std::path::Path) -> String {
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn removing_a_release_never_follows_its_uploads_link() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path();
        std::fs::create_dir_all(c.join("shared/uploads")).unwrap();
        std::fs::write(c.join("shared/uploads/a.txt"), "keep me").unwrap();
        let be = c.join("releases/v1/backend");
        std::fs::create_dir_all(be.join("node_modules/x/y")).unwrap();
        std::fs::write(be.join("server.js"), "").unwrap();
        symlink("../../../shared/uploads", be.join("uploads")).unwrap();
        // A read-only folder inside (as a tarball may make it).
        std::fs::set_permissions(
            be.join("node_modules/x"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        assert!(remove_release(&StdFs::new(), &p(&c.join("releases")), "v1").unwrap());
        assert!(!c.join("releases/v1").exists());
        assert!(!c.join("releases/.removing-v1").exists());
        assert_eq!(
            std::fs::read_to_string(c.join("shared/uploads/a.txt")).unwrap(),
            "keep me"
        );
        // Missing: nothing to do.
        assert!(!remove_release(&StdFs::new(), &p(&c.join("releases")), "v1").unwrap());
        assert!(remove_release(&StdFs::new(), &p(&c.join("releases")), "../x").is_err());
    }

    #[test]
    fn leftovers_of_a_crashed_removal_go() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("releases");
        std::fs::create_dir_all(r.join(".removing-v0/backend")).unwrap();
        std::fs::create_dir_all(r.join("v1")).unwrap();
        assert_eq!(
            remove_leftovers(&StdFs::new(), &p(&r)).unwrap(),
            vec![".removing-v0".to_string()]
        );
        assert!(r.join("v1").exists() && !r.join(".removing-v0").exists());
    }
}
