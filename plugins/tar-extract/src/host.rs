//! What unpacking (and the plugins' work around it) needs beyond `std::fs`: the host's `files`
//! calls (modes, mtimes, symlinks, listings with metadata), renames, logs, progress and
//! cancellation. Each plugin implements it over the host; native tests implement it over
//! `std::fs` and inject failures.

use std::fs;

use qodify_plugin_sdk::fs::{DirEntry, Metadata, Timestamp};
use qodify_plugin_sdk::{Error, ErrorKind, ResultExt};

/// File operations and runtime hooks; paths are absolute guest paths.
pub trait Host {
    /// Metadata of `path` without following a final symlink; a `not-found` error when missing.
    fn stat(&self, path: &str) -> Result<Metadata, Error>;
    /// The entries of folder `path`, any order; symlinks not followed.
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error>;
    /// Sets the permission bits of `path` (never through a symlink).
    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error>;
    /// Sets the mtime of `path` without following a final symlink.
    fn set_mtime(&self, path: &str, mtime: Timestamp) -> Result<(), Error>;
    /// Creates a symlink at `path` with `target` stored verbatim; fails if `path` exists.
    fn symlink(&self, target: &str, path: &str) -> Result<(), Error>;
    /// Renames `from` to `to` (same mount).
    fn rename(&self, from: &str, to: &str) -> Result<(), Error>;
    /// Logs a warning.
    fn warn(&self, message: &str);
    /// Reports progress.
    fn progress(&self, percent: f32, message: &str);
    /// True once the run was cancelled.
    fn cancelled(&self) -> bool;
    /// Makes the entries of folder `path` durable (a journal renamed into it). Natively a no-op.
    fn sync_dir(&self, _path: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Metadata of `path`, or `None` when nothing is there.
pub fn stat_opt(host: &impl Host, path: &str) -> Result<Option<Metadata>, Error> {
    match host.stat(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes `path` and everything below it without following symlinks. Folders whose mode keeps
/// their owner out (an unpacked `0555`, say) are opened up first. Iterative: archives can nest
/// deeper than a guest stack likes.
pub fn remove_tree(host: &impl Host, path: &str) -> Result<(), Error> {
    let Some(meta) = stat_opt(host, path)? else {
        return Ok(());
    };
    if !meta.is_dir() {
        return fs::remove_file(path).with_context(|| format!("removing {path}"));
    }
    if meta.mode & 0o700 != 0o700 {
        host.set_mode(path, 0o700)?;
    }
    // (folder, listed): a folder is removed when it comes up the second time, emptied.
    let mut stack = vec![(path.to_string(), false)];
    while let Some((dir, listed)) = stack.pop() {
        if listed {
            fs::remove_dir(&dir).with_context(|| format!("removing {dir}"))?;
            continue;
        }
        stack.push((dir.clone(), true));
        for entry in host.list_dir(&dir)? {
            let child = format!("{dir}/{}", entry.name);
            if entry.metadata.is_dir() {
                if entry.metadata.mode & 0o700 != 0o700 {
                    host.set_mode(&child, 0o700)?;
                }
                stack.push((child, false));
            } else {
                fs::remove_file(&child).with_context(|| format!("removing {child}"))?;
            }
        }
    }
    Ok(())
}
