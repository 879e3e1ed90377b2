//! Walks the source folder into a sorted list of entries to archive, applying the anchored
//! exclude/include globs (built by [`glob_rules`]) and the symlink policy. Over the SDK's
//! [`FileSystem`], so it runs natively in tests (`StdFs`) and over the host's `files` interface
//! in the plugin (`HostFs`).

use glob_rules::GlobSet;
use qodify_plugin_sdk::fs::{FileKind, FileSystem, Identity, Metadata};
pub use qodify_plugin_sdk::path::{is_within, normalize};
use qodify_plugin_sdk::{Error, ErrorKind};

/// Symlinks resolved one after another before we call it a loop (Linux uses 40 too).
const MAX_LINK_HOPS: usize = 40;

/// Callbacks into the runtime: logs and cancellation (progress is the writer's).
pub trait Hooks {
    /// Logs a warning.
    fn warn(&mut self, message: &str);
    /// Reports progress.
    fn progress(&mut self, percent: f32, message: &str);
    /// True once the run was cancelled.
    fn cancelled(&mut self) -> bool;
}

/// What to walk and how.
#[derive(Debug)]
pub struct WalkOptions {
    /// Absolute, normalised path of the source folder.
    pub source: String,
    /// Symlinks may be followed only to targets inside this folder (the source's mount).
    pub boundary: String,
    /// Entries to leave out, matched against paths relative to `source`.
    pub exclude: Option<GlobSet>,
    /// When set, only files matching it (and the folders leading to them) are kept.
    pub include: Option<GlobSet>,
    /// Store what symlinks point to instead of the links.
    pub follow_symlinks: bool,
    /// A path never to archive (the output itself, when it lies inside the source).
    pub skip_path: Option<String>,
    /// Also read each entry's [`Identity`] (change time, inode), for the source's fingerprint.
    pub identities: bool,
}

/// One entry to archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, relative to the source, `/`-separated, no trailing slash.
    pub name: String,
    /// Where to read it (for files).
    pub path: String,
    /// Its metadata: file, directory or symlink (with its target).
    pub meta: Metadata,
    /// Its change time and inode, when [`WalkOptions::identities`] asked and the entry is what
    /// was listed (not a followed symlink's target).
    pub identity: Option<Identity>,
}

/// The walk's result.
#[derive(Debug)]
pub struct Walk {
    /// Entries in archive order: depth first, names sorted bytewise.
    pub entries: Vec<Entry>,
    /// Sum of regular file sizes.
    pub total_bytes: u64,
    /// Entries left out by `exclude` (an excluded folder counts once).
    pub excluded: u64,
    /// Metadata of the source folder itself.
    pub root: Metadata,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Walks `opts.source`.
pub fn walk(
    tree: &impl FileSystem,
    opts: &WalkOptions,
    hooks: &mut impl Hooks,
) -> Result<Walk, Error> {
    let source_meta = tree
        .stat(&opts.source)
        .map_err(|e| e.context("reading the source"))?;
    let (source, root) = if opts.follow_symlinks || source_meta.is_symlink() {
        // Physical paths from here on, so relative link targets resolve as the kernel would.
        let boundary = opts.boundary.trim_end_matches('/');
        let rel = match opts.source.strip_prefix(boundary) {
            Some(rel) if rel.is_empty() || rel.starts_with('/') => rel.trim_start_matches('/'),
            _ => {
                return Err(Error::permission_denied(format!(
                    "source {} is outside {}",
                    opts.source,
                    display_root(boundary)
                )));
            }
        };
        let (real, meta) = Resolver { tree, boundary }
            .resolve(boundary, rel)
            .map_err(|e| e.context(format!("resolving the source {}", opts.source)))?;
        if !meta.is_dir() {
            return Err(Error::invalid_config(format!(
                "source {} is not a folder",
                opts.source
            )));
        }
        (real, meta)
    } else if source_meta.is_dir() {
        (opts.source.clone(), source_meta)
    } else {
        return Err(Error::invalid_config(format!(
            "source {} is not a folder",
            opts.source
        )));
    };
    let out = Walk {
        entries: Vec::new(),
        total_bytes: 0,
        excluded: 0,
        root,
    };
    let mut walker = Walker {
        tree,
        opts,
        hooks,
        out,
        real_dirs: Vec::new(),
    };
    walker.real_dirs.push(source.clone());
    let mut entries = Vec::new();
    walker.dir(&source, "", &mut entries)?;
    walker.out.entries = entries;
    Ok(walker.out)
}

struct Walker<'a, T: FileSystem, H: Hooks> {
    tree: &'a T,
    opts: &'a WalkOptions,
    hooks: &'a mut H,
    out: Walk,
    /// Physical paths of the folders being walked, to catch symlink loops.
    real_dirs: Vec<String>,
}

impl<T: FileSystem, H: Hooks> Walker<'_, T, H> {
    /// Appends the entries below folder `path` (archive name `rel`) to `out`.
    fn dir(&mut self, path: &str, rel: &str, out: &mut Vec<Entry>) -> Result<(), Error> {
        if self.hooks.cancelled() {
            return Err(Error::cancelled());
        }
        let mut listing = match self.tree.list_dir(path) {
            Ok(listing) => listing,
            Err(e) if e.kind() == ErrorKind::NotFound && !rel.is_empty() => {
                self.hooks
                    .warn(&format!("skipping {rel}: it vanished while archiving"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        listing.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let identities: std::collections::HashMap<String, Identity> = if self.opts.identities {
            match self.tree.list_identities(path) {
                Ok(ids) => ids.into_iter().collect(),
                // Gone since the listing: its entries get no identity, the source no fingerprint.
                Err(e) if e.kind() == ErrorKind::NotFound => Default::default(),
                Err(e) => return Err(e),
            }
        } else {
            Default::default()
        };
        for entry in listing {
            // Listed twice: an entry replaced in between has another identity or none, and a
            // source without every identity gets no fingerprint.
            let identity = identities.get(&entry.name).copied();
            let child_rel = join(rel, &entry.name);
            let child_path = join(path, &entry.name);
            if self.opts.skip_path.as_deref() == Some(child_path.as_str()) {
                continue;
            }
            if self
                .opts
                .exclude
                .as_ref()
                .is_some_and(|ex| ex.is_match(&child_rel))
            {
                self.out.excluded += 1;
                continue;
            }
            let (real_path, meta, identity) = match entry.metadata.kind {
                FileKind::Symlink if self.opts.follow_symlinks => {
                    let target = entry.metadata.symlink_target.clone().unwrap_or_default();
                    match self.follow(path, &entry.name, &target) {
                        Ok((real, meta)) => (real, meta, None),
                        Err(e) if e.kind() == ErrorKind::NotFound => {
                            self.hooks.warn(&format!(
                                "skipping {child_rel}: its target `{target}` does not exist"
                            ));
                            continue;
                        }
                        Err(e) => return Err(e.context(format!("following symlink {child_rel}"))),
                    }
                }
                _ => (child_path, entry.metadata, identity),
            };
            self.add(real_path, child_rel, meta, identity, out)?;
        }
        Ok(())
    }

    fn add(
        &mut self,
        path: String,
        rel: String,
        meta: Metadata,
        identity: Option<Identity>,
        out: &mut Vec<Entry>,
    ) -> Result<(), Error> {
        match meta.kind {
            FileKind::Directory => {
                if self.real_dirs.iter().any(|d| is_within(&path, d)) {
                    return Err(Error::invalid_config(format!(
                        "{rel} leads back into {path}, a folder being archived (symlink loop)"
                    )));
                }
                self.real_dirs.push(path.clone());
                let mut children = Vec::new();
                let result = self.dir(&path, &rel, &mut children);
                self.real_dirs.pop();
                result?;
                // With `include`, a folder is kept only on the way to an included file.
                if self.opts.include.is_none() || !children.is_empty() {
                    out.push(Entry {
                        name: rel,
                        path,
                        meta,
                        identity,
                    });
                    out.append(&mut children);
                }
            }
            FileKind::File | FileKind::Symlink => {
                if self
                    .opts
                    .include
                    .as_ref()
                    .is_some_and(|inc| !inc.is_match(&rel))
                {
                    return Ok(());
                }
                if meta.is_file() {
                    self.out.total_bytes += meta.size;
                }
                out.push(Entry {
                    name: rel,
                    path,
                    meta,
                    identity,
                });
            }
            FileKind::Other => {
                self.hooks
                    .warn(&format!("skipping {rel}: not a file, folder or symlink"));
            }
        }
        Ok(())
    }

    /// Resolves the symlink `name` in folder `dir` (a physical path) to its final target.
    fn follow(&self, dir: &str, name: &str, target: &str) -> Result<(String, Metadata), Error> {
        check_relative(&join(dir, name), target)?;
        Resolver {
            tree: self.tree,
            boundary: &self.opts.boundary,
        }
        .resolve(dir, target)
    }
}

/// Resolves paths component by component inside `boundary`, like `realpath` confined to a mount.
struct Resolver<'a, T: FileSystem> {
    tree: &'a T,
    boundary: &'a str,
}

impl<T: FileSystem> Resolver<'_, T> {
    /// Resolves the relative `path` from the physical folder `base` to a physical path
    /// and the metadata of what it names, following every symlink on the way.
    fn resolve(&self, base: &str, path: &str) -> Result<(String, Metadata), Error> {
        let boundary = self.boundary.trim_end_matches('/');
        if !is_within(boundary, base) {
            return Err(Error::permission_denied(format!(
                "{base} is outside {boundary}"
            )));
        }
        let mut real = base.trim_end_matches('/').to_string();
        let mut pending: Vec<String> = Vec::new();
        push_components(&mut pending, path);
        let mut hops = 0;
        let mut meta = None;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                ".." => {
                    if real.len() <= boundary.len() {
                        return Err(Error::permission_denied(format!(
                            "`{path}` points outside {}; only targets inside it can be followed",
                            display_root(boundary)
                        )));
                    }
                    real.truncate(real.rfind('/').unwrap_or(0));
                    meta = None;
                }
                name => {
                    let candidate = format!("{real}/{name}");
                    let m = self.tree.stat(&candidate)?;
                    if let Some(target) = m.symlink_target.as_deref().filter(|_| m.is_symlink()) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(Error::invalid_config(format!(
                                "too many symlinks resolving `{path}` (a loop?)"
                            )));
                        }
                        check_relative(&candidate, target)?;
                        push_components(&mut pending, target);
                        meta = None;
                    } else {
                        real = candidate;
                        meta = Some(m);
                    }
                }
            }
        }
        if real.is_empty() {
            real.push('/');
        }
        let meta = match meta {
            Some(m) => m,
            None => self.tree.stat(&real)?,
        };
        Ok((real, meta))
    }
}

/// Absolute targets are host paths: the sandbox cannot see them, so it cannot follow them.
fn check_relative(link: &str, target: &str) -> Result<(), Error> {
    if target.starts_with('/') {
        return Err(Error::invalid_config(format!(
            "{link} points to the absolute path `{target}`, which the sandbox cannot follow; make \
             the link relative or set follow_symlinks = false to store it as a link"
        )));
    }
    Ok(())
}

/// Pushes the components of the relative `path` onto a stack (last pushed = next to resolve).
fn push_components(stack: &mut Vec<String>, path: &str) {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    stack.extend(parts.into_iter().rev().map(str::to_string));
}

fn display_root(boundary: &str) -> &str {
    if boundary.is_empty() { "/" } else { boundary }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("/a/./b//c/../d/").unwrap(), "/a/b/d");
        assert_eq!(normalize("/").unwrap(), "/");
        assert!(normalize("/..").is_err());
        assert!(normalize("rel").is_err());
        assert!(is_within("/src", "/src/a"));
        assert!(!is_within("/src", "/srcx"));
        assert!(is_within("/", "/x"));
    }
}
