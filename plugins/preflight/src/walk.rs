//! Sums file sizes under a folder, minus anchored exclude globs, without following symlinks.
//! Pure over the [`Tree`] trait: the host's `files` interface in the plugin (one `list_dir` per
//! folder), `std::fs` in tests.

use glob_rules::GlobSet;
use qodify_plugin_sdk::fs::{DirEntry, FileKind, Metadata};
use qodify_plugin_sdk::{Error, ErrorKind};

/// Symlinks resolved one after another at a source's root before giving up.
const MAX_LINK_HOPS: usize = 8;

/// Where listings and metadata come from; paths are absolute, `/`-separated.
pub trait Tree {
    /// The entries of folder `path`; symlinks not followed.
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error>;
    /// Metadata of `path` without following a final symlink.
    fn stat(&self, path: &str) -> Result<Metadata, Error>;
}

/// Cancellation, checked once per folder.
pub trait Hooks {
    /// True once the run was cancelled.
    fn cancelled(&mut self) -> bool;
}

/// What a walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sized {
    /// Sum of regular file sizes.
    pub bytes: u64,
    /// Regular files counted.
    pub files: u64,
    /// Entries left out by the excludes (an excluded folder counts once).
    pub excluded: u64,
}

/// Resolves a source folder at `path`: when it is itself a symlink (e.g. `backend/uploads ->
/// ../shared/uploads`), follows relative targets that stay inside `boundary`. The inner `Err`
/// says why it cannot be walked (missing, not a folder, a link leaving the customer folder).
pub fn resolve_source(
    tree: &impl Tree,
    boundary: &str,
    path: &str,
) -> Result<Result<String, String>, Error> {
    let mut current = path.to_string();
    for _ in 0..MAX_LINK_HOPS {
        let meta = match tree.stat(&current) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Err("it does not exist".to_string()));
            }
            Err(e) => return Err(e),
        };
        match meta.kind {
            FileKind::Directory => return Ok(Ok(current)),
            FileKind::Symlink => {
                let target = meta.symlink_target.unwrap_or_default();
                if target.starts_with('/') {
                    return Ok(Err(format!(
                        "it is a symlink to the absolute path {target}, which the sandbox cannot see"
                    )));
                }
                let parent = current.rsplit_once('/').map_or("", |(p, _)| p);
                match join_within(boundary, parent, &target) {
                    Some(next) => current = next,
                    None => {
                        return Ok(Err(format!(
                            "it is a symlink to {target}, outside the customer folder"
                        )));
                    }
                }
            }
            _ => return Ok(Err("it is not a folder".to_string())),
        }
    }
    Ok(Err("too many symlinks (a loop?)".to_string()))
}

/// `parent/relative`, normalised lexically; `None` when it leaves `boundary`.
fn join_within(boundary: &str, parent: &str, relative: &str) -> Option<String> {
    let boundary = boundary.trim_end_matches('/');
    let mut parts: Vec<&str> = parent.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    let path = format!("/{}", parts.join("/"));
    let inside = boundary.is_empty()
        || path
            .strip_prefix(boundary)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    inside.then_some(path)
}

/// Walks folder `root` (already resolved), summing regular files not excluded. Symlinks are
/// neither followed nor counted; folders that vanish while walking are skipped.
pub fn measure(
    tree: &impl Tree,
    root: &str,
    exclude: Option<&GlobSet>,
    hooks: &mut impl Hooks,
) -> Result<Sized, Error> {
    let mut sized = Sized::default();
    let mut pending = vec![(root.trim_end_matches('/').to_string(), String::new())];
    while let Some((path, rel)) = pending.pop() {
        if hooks.cancelled() {
            return Err(Error::cancelled());
        }
        let listing = match tree.list_dir(&path) {
            Ok(listing) => listing,
            Err(e) if e.kind() == ErrorKind::NotFound && !rel.is_empty() => continue,
            Err(e) => return Err(e),
        };
        for entry in listing {
            let child_rel = if rel.is_empty() {
                entry.name.clone()
            } else {
                format!("{rel}/{}", entry.name)
            };
            if exclude.is_some_and(|ex| ex.is_match(&child_rel)) {
                sized.excluded += 1;
                continue;
            }
            match entry.metadata.kind {
                FileKind::File => {
                    sized.bytes += entry.metadata.size;
                    sized.files += 1;
                }
                FileKind::Directory => {
                    pending.push((format!("{path}/{}", entry.name), child_rel));
                }
                FileKind::Symlink | FileKind::Other => {}
            }
        }
    }
    Ok(sized)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use qodify_plugin_sdk::fs::Timestamp;
    use std::path::Path;

    /// The real file system, for tests.
    pub struct NativeTree;

    pub fn metadata(path: &Path) -> std::io::Result<Metadata> {
        let m = std::fs::symlink_metadata(path)?;
        let kind = if m.file_type().is_symlink() {
            FileKind::Symlink
        } else if m.is_dir() {
            FileKind::Directory
        } else if m.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        let symlink_target = (kind == FileKind::Symlink)
            .then(|| std::fs::read_link(path).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned());
        Ok(Metadata {
            kind,
            mode: 0o644,
            size: m.len(),
            mtime: Timestamp::default(),
            uid: 0,
            gid: 0,
            symlink_target,
        })
    }

    impl Tree for NativeTree {
        fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(path)? {
                let e = e?;
                out.push(DirEntry {
                    name: e.file_name().to_string_lossy().into_owned(),
                    metadata: metadata(&e.path())?,
                });
            }
            Ok(out)
        }

        fn stat(&self, path: &str) -> Result<Metadata, Error> {
            Ok(metadata(Path::new(path))?)
        }
    }

    pub struct Never;

    impl Hooks for Never {
        fn cancelled(&mut self) -> bool {
            false
        }
    }

    pub fn write(path: &Path, len: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![b'x'; len]).unwrap();
    }

    fn default_excludes() -> Vec<String> {
        [
            "**/node_modules/**",
            "**/.next/**",
            "**/dist/**",
            "**/logs/**",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn sums_files_minus_excludes_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path();
        write(&c.join("backend/src/a.js"), 100);
        write(&c.join("backend/package.json"), 20);
        write(&c.join("backend/node_modules/x/index.js"), 5000);
        write(&c.join("backend/src/dist/bundle.js"), 7000);
        write(&c.join("backend/logs/app.log"), 9000);
        write(&c.join("backend/logs.txt"), 3);
        write(&c.join("shared/uploads/img.png"), 400);
        std::os::unix::fs::symlink("../shared/uploads", c.join("backend/uploads")).unwrap();
        std::os::unix::fs::symlink("/etc", c.join("backend/etc")).unwrap();
        let ex = glob_rules::glob_set("exclude", &default_excludes()).unwrap();
        let root = c.join("backend");
        let sized = measure(&NativeTree, root.to_str().unwrap(), ex.as_ref(), &mut Never).unwrap();
        assert_eq!(
            sized,
            Sized {
                bytes: 123,
                files: 3,
                excluded: 3
            }
        );
        let all = measure(&NativeTree, root.to_str().unwrap(), None, &mut Never).unwrap();
        assert_eq!(all.bytes, 123 + 5000 + 7000 + 9000);
    }

    #[test]
    fn source_symlinks_are_followed_inside_the_customer_folder_only() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path();
        write(&c.join("shared/uploads/img.png"), 1);
        write(&c.join("releases/v1/backend/package.json"), 1);
        std::fs::create_dir_all(c.join("backend")).unwrap();
        std::os::unix::fs::symlink("../shared/uploads", c.join("backend/uploads")).unwrap();
        std::os::unix::fs::symlink("releases/v1", c.join("current")).unwrap();
        std::os::unix::fs::symlink("../../..", c.join("backend/up")).unwrap();
        std::os::unix::fs::symlink("/etc", c.join("backend/abs")).unwrap();
        std::os::unix::fs::symlink("loop", c.join("loop")).unwrap();
        let root = c.to_str().unwrap();
        let resolve = |p: &str| resolve_source(&NativeTree, root, &format!("{root}/{p}")).unwrap();
        assert_eq!(
            resolve("backend/uploads"),
            Ok(format!("{root}/shared/uploads"))
        );
        assert_eq!(resolve("current"), Ok(format!("{root}/releases/v1")));
        assert_eq!(resolve("backend"), Ok(format!("{root}/backend")));
        assert!(resolve("backend/up").unwrap_err().contains("outside"));
        assert!(resolve("backend/abs").unwrap_err().contains("absolute"));
        assert!(resolve("admin").unwrap_err().contains("does not exist"));
        assert!(resolve("loop").unwrap_err().contains("loop"));
        assert!(
            resolve("releases/v1/backend/package.json")
                .unwrap_err()
                .contains("not a folder")
        );
    }
}
