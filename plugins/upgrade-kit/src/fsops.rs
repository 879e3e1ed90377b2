//! The file operations the swap and release removal need, behind a trait: [`HostFs`] does them
//! through WASI and the host's `files` interface (exact symlink targets, listings that never
//! follow links, `fsync` of folders); [`NativeFs`] does them with `std` so the logic above it is
//! unit-tested natively on a temporary folder.

use qodify_plugin_sdk::fs::{DirEntry, Metadata};
use qodify_plugin_sdk::{Error, ErrorKind, ResultExt as _};

/// File operations on absolute paths (guest paths in the plugin, host paths in native tests).
pub trait Fs {
    /// Metadata without following a final symlink; `None` when nothing is there.
    fn stat(&self, path: &str) -> Result<Option<Metadata>, Error>;
    /// A folder's entries with their metadata, symlinks not followed.
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error>;
    /// Creates a symlink at `path` whose target is `target`, verbatim.
    fn symlink(&self, target: &str, path: &str) -> Result<(), Error>;
    /// Renames `from` over `to` (atomic; replaces a file or symlink at `to`).
    fn rename(&self, from: &str, to: &str) -> Result<(), Error>;
    /// Removes a file or symlink.
    fn remove_file(&self, path: &str) -> Result<(), Error>;
    /// Removes an empty folder.
    fn remove_dir(&self, path: &str) -> Result<(), Error>;
    /// Sets permission bits (never through a symlink).
    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error>;
    /// Flushes a folder's entries to disk.
    fn sync_dir(&self, path: &str) -> Result<(), Error>;
}

/// The plugin's file operations: `std::fs` inside the mounts plus the host's `files` calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFs;

impl Fs for HostFs {
    fn stat(&self, path: &str) -> Result<Option<Metadata>, Error> {
        match qodify_plugin_sdk::fs::stat(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        qodify_plugin_sdk::fs::list_dir(path)
    }

    fn symlink(&self, target: &str, path: &str) -> Result<(), Error> {
        qodify_plugin_sdk::fs::symlink(target, path)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        std::fs::rename(from, to).with_context(|| format!("renaming {from} to {to}"))
    }

    fn remove_file(&self, path: &str) -> Result<(), Error> {
        std::fs::remove_file(path).with_context(|| format!("removing {path}"))
    }

    fn remove_dir(&self, path: &str) -> Result<(), Error> {
        std::fs::remove_dir(path).with_context(|| format!("removing {path}"))
    }

    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error> {
        qodify_plugin_sdk::fs::set_mode(path, mode)
    }

    fn sync_dir(&self, path: &str) -> Result<(), Error> {
        qodify_plugin_sdk::fs::sync_dir(path)
    }
}

/// `std` file operations on host paths, for native tests of code written against [`Fs`].
#[cfg(unix)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeFs;

#[cfg(unix)]
impl Fs for NativeFs {
    fn stat(&self, path: &str) -> Result<Option<Metadata>, Error> {
        use std::os::unix::fs::MetadataExt as _;
        let m = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::from(e).context(format!("stat {path}"))),
        };
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            qodify_plugin_sdk::fs::FileKind::Symlink
        } else if ft.is_dir() {
            qodify_plugin_sdk::fs::FileKind::Directory
        } else if ft.is_file() {
            qodify_plugin_sdk::fs::FileKind::File
        } else {
            qodify_plugin_sdk::fs::FileKind::Other
        };
        let symlink_target = if ft.is_symlink() {
            Some(
                std::fs::read_link(path)
                    .with_context(|| format!("reading the link {path}"))?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            None
        };
        Ok(Some(Metadata {
            kind,
            mode: m.mode() & 0o7777,
            size: m.size(),
            mtime: qodify_plugin_sdk::fs::Timestamp {
                seconds: m.mtime(),
                nanos: m.mtime_nsec() as u32,
            },
            uid: m.uid(),
            gid: m.gid(),
            symlink_target,
        }))
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path).with_context(|| format!("listing {path}"))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            let metadata = self
                .stat(&format!("{path}/{name}"))?
                .ok_or_else(|| Error::not_found(format!("{path}/{name} vanished")))?;
            out.push(DirEntry { name, metadata });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn symlink(&self, target: &str, path: &str) -> Result<(), Error> {
        std::os::unix::fs::symlink(target, path).with_context(|| format!("creating {path}"))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        std::fs::rename(from, to).with_context(|| format!("renaming {from} to {to}"))
    }

    fn remove_file(&self, path: &str) -> Result<(), Error> {
        std::fs::remove_file(path).with_context(|| format!("removing {path}"))
    }

    fn remove_dir(&self, path: &str) -> Result<(), Error> {
        std::fs::remove_dir(path).with_context(|| format!("removing {path}"))
    }

    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {path}"))
    }

    fn sync_dir(&self, path: &str) -> Result<(), Error> {
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {path}"))
    }
}
