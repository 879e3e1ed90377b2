//! File metadata WASI does not give a guest: Unix modes, owners, exact symlink targets (absolute
//! ones too) and free space, plus the changes a restore needs (mode, mtime, symlinks), and which
//! mounted folder a process works in ([`process_cwd`]).
//!
//! Paths are guest paths inside the step's mounts; anything else fails with
//! [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied). Nothing here follows a
//! final symlink. Read and write file contents with `std::fs` as usual.
//!
//! Logic that changes trees (unpacking, swapping folders, removing releases) is written once
//! against [`FileSystem`]: [`HostFs`] runs it on the step's mounts, [`StdFs`] on the build
//! machine's disk in native unit tests, with the same rules (no final symlink followed).
//!
//! ```no_run
//! use qodify_plugin_sdk::{Error, fs};
//!
//! // Copies modes and mtimes of a folder's entries onto a restored copy of it.
//! fn restore_modes(from: &str, to: &str) -> Result<(), Error> {
//!     for entry in fs::list_dir(from)? {
//!         let target = format!("{to}/{}", entry.name);
//!         match entry.metadata.kind {
//!             fs::FileKind::Symlink => {
//!                 fs::symlink(entry.metadata.symlink_target.as_deref().unwrap_or(""), &target)?
//!             }
//!             _ => {
//!                 fs::set_mode(&target, entry.metadata.mode)?;
//!                 fs::set_mtime(&target, entry.metadata.mtime)?;
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! ```

use std::path::Path;

use crate::__private::bindings::qodify::pipeline::files as wit;
use crate::{Error, ErrorKind, ResultExt as _};

#[cfg(unix)]
mod std_fs;
#[cfg(unix)]
pub use std_fs::StdFs;

/// Kinds of file-system entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// A modification time: seconds since the Unix epoch plus nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since the Unix epoch (negative before 1970).
    pub seconds: i64,
    /// Nanoseconds part, below 1_000_000_000.
    pub nanos: u32,
}

/// Metadata of one entry, as `lstat` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// What the entry is.
    pub kind: FileKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// The link's target exactly as stored, when `kind` is [`FileKind::Symlink`].
    pub symlink_target: Option<String>,
}

impl Metadata {
    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }

    /// True for a folder.
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// True for a symlink.
    pub fn is_symlink(&self) -> bool {
        self.kind == FileKind::Symlink
    }
}

/// What `lstat` says of an entry beyond [`Metadata`]: when its inode last changed (which nobody
/// can set) and which inode it is. With [`Metadata`], enough to tell that an entry is untouched
/// since an earlier look, as restic and borg tell unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Status change time (`st_ctime`).
    pub ctime: Timestamp,
    /// Device number (`st_dev`).
    pub device: u64,
    /// Inode number (`st_ino`).
    pub inode: u64,
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (one component).
    pub name: String,
    /// Its metadata.
    pub metadata: Metadata,
}

/// Space on the file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes available to the host's user.
    pub available_bytes: u64,
    /// Total size of the file system in bytes.
    pub total_bytes: u64,
}

/// Metadata of `path` without following a final symlink.
pub fn stat(path: impl AsRef<Path>) -> Result<Metadata, Error> {
    let path = guest_path(path.as_ref())?;
    wit::stat(path)
        .map(Metadata::from_wit)
        .map_err(|e| files_error("stat", path, e))
}

/// Lists a folder with every entry's metadata, sorted by name; one host call for the whole folder.
pub fn list_dir(path: impl AsRef<Path>) -> Result<Vec<DirEntry>, Error> {
    let path = guest_path(path.as_ref())?;
    let entries = wit::list_dir(path).map_err(|e| files_error("listing", path, e))?;
    Ok(entries
        .into_iter()
        .map(|e| DirEntry {
            name: e.name,
            metadata: Metadata::from_wit(e.metadata),
        })
        .collect())
}

/// The [`Identity`] of every entry of folder `path` with its name, sorted by name; one host call
/// for the whole folder.
pub fn list_identities(path: impl AsRef<Path>) -> Result<Vec<(String, Identity)>, Error> {
    let path = guest_path(path.as_ref())?;
    let entries = wit::list_identities(path).map_err(|e| files_error("listing", path, e))?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let id = Identity {
                ctime: Timestamp {
                    seconds: e.ctime_seconds,
                    nanos: e.ctime_nanos,
                },
                device: e.device,
                inode: e.inode,
            };
            (e.name, id)
        })
        .collect())
}

/// Makes `new` a hard link to `existing` when the run's backup completes. The host allows only a
/// file of an earlier backup (`backups/<id>/<file>` through a mount of the customer folder or of
/// `backups`) linked as a file of the run's new backup; across file systems it fails with an
/// `io` error naming `EXDEV`. Until the backup completes `new` does not exist for any step, so
/// none can change the earlier file through it: return it as an artifact with the earlier
/// file's size and sha256 (from its `backup.json`), and write nothing there yourself.
pub fn hard_link(existing: impl AsRef<Path>, new: impl AsRef<Path>) -> Result<(), Error> {
    let existing = guest_path(existing.as_ref())?;
    let new = guest_path(new.as_ref())?;
    wit::hard_link(existing, new)
        .map_err(|e| files_error(&format!("linking {existing} as"), new, e))
}

/// Sets the permission bits of `path` (needs a writable mount); symlinks are not followed.
pub fn set_mode(path: impl AsRef<Path>, mode: u32) -> Result<(), Error> {
    let path = guest_path(path.as_ref())?;
    wit::set_mode(path, mode).map_err(|e| files_error("setting the mode of", path, e))
}

/// Sets the modification time of `path` without following a final symlink (needs a writable
/// mount).
pub fn set_mtime(path: impl AsRef<Path>, mtime: Timestamp) -> Result<(), Error> {
    let path = guest_path(path.as_ref())?;
    wit::set_mtime(path, mtime.seconds, mtime.nanos)
        .map_err(|e| files_error("setting the mtime of", path, e))
}

/// Creates a symlink at `path` pointing to `target`, stored verbatim (needs a writable mount).
pub fn symlink(target: &str, path: impl AsRef<Path>) -> Result<(), Error> {
    let path = guest_path(path.as_ref())?;
    wit::symlink(target, path).map_err(|e| files_error("creating the symlink", path, e))
}

/// Free and total space of the file system holding `path`.
pub fn space(path: impl AsRef<Path>) -> Result<Space, Error> {
    let path = guest_path(path.as_ref())?;
    wit::space(path)
        .map(|s| Space {
            available_bytes: s.available_bytes,
            total_bytes: s.total_bytes,
        })
        .map_err(|e| files_error("checking free space of", path, e))
}

/// Flushes a folder's entries to disk, so a rename or symlink made in it is durable (needs a
/// writable mount).
pub fn sync_dir(path: impl AsRef<Path>) -> Result<(), Error> {
    let path = guest_path(path.as_ref())?;
    wit::sync_dir(path).map_err(|e| files_error("syncing", path, e))
}

/// The working folder of process `pid` as a guest path, when it is a folder inside one of the
/// step's mounts: e.g. `/customer/releases/v1.1.0/backend` when the customer folder is mounted at
/// `/customer`. Symlinks are resolved (a process started in `/customer/current/backend` shows the
/// release folder `current` pointed at), so this tells which folder a process really runs in.
///
/// Errors: [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied) when the folder
/// is outside every mount or was deleted (the host never says where it is);
/// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when there is no process `pid`.
///
/// ```no_run
/// use qodify_plugin_sdk::{Error, ErrorKind, fs};
///
/// // True when process `pid` runs in `/customer/releases/v2/backend`.
/// fn runs_v2_backend(pid: u32) -> Result<bool, Error> {
///     match fs::process_cwd(pid) {
///         Ok(cwd) => Ok(cwd == "/customer/releases/v2/backend"),
///         Err(e) if e.kind() == ErrorKind::PermissionDenied => Ok(false),
///         Err(e) => Err(e),
///     }
/// }
/// ```
pub fn process_cwd(pid: u32) -> Result<String, Error> {
    wit::process_cwd(pid).map_err(|e| match e {
        wit::FilesError::NotPermitted(m) => Error::permission_denied(m),
        wit::FilesError::NotFound(m) => Error::not_found(m),
        wit::FilesError::Io(m) => Error::io(m),
    })
}

/// The file operations tree-changing logic needs, on absolute paths; none of them follows a final
/// symlink. [`HostFs`] is the one plugins run with; [`StdFs`] is the one their native unit tests
/// run with.
///
/// ```
/// use qodify_plugin_sdk::Error;
/// use qodify_plugin_sdk::fs::FileSystem;
///
/// /// Moves `from` to `to` unless something is there already.
/// fn move_if_free(fs: &impl FileSystem, from: &str, to: &str) -> Result<bool, Error> {
///     if fs.stat_opt(to)?.is_some() {
///         return Ok(false);
///     }
///     fs.rename(from, to)?;
///     Ok(true)
/// }
///
/// # #[cfg(unix)] {
/// // Natively, on a temporary folder:
/// let dir = std::env::temp_dir().join(format!("sdk-fs-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let (a, b) = (dir.join("a"), dir.join("b"));
/// std::fs::write(&a, "x").unwrap();
/// let fs = qodify_plugin_sdk::fs::StdFs::new();
/// assert!(move_if_free(&fs, a.to_str().unwrap(), b.to_str().unwrap()).unwrap());
/// assert!(!move_if_free(&fs, a.to_str().unwrap(), b.to_str().unwrap()).unwrap());
/// fs.remove_tree(dir.to_str().unwrap()).unwrap();
/// # }
/// ```
pub trait FileSystem {
    /// Metadata of `path` without following a final symlink; a
    /// [`NotFound`](ErrorKind::NotFound) error when nothing is there.
    fn stat(&self, path: &str) -> Result<Metadata, Error>;
    /// The entries of folder `path` with their metadata, sorted by name; symlinks not followed.
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error>;
    /// Sets the permission bits of a file or folder (`mode & 0o777`); refuses a symlink.
    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error>;
    /// Sets the mtime of `path` without following a final symlink.
    fn set_mtime(&self, path: &str, mtime: Timestamp) -> Result<(), Error>;
    /// Creates a symlink at `path` whose target is `target`, stored verbatim; fails if `path`
    /// exists.
    fn symlink(&self, target: &str, path: &str) -> Result<(), Error>;
    /// Renames `from` to `to` atomically (same mount); replaces a file or symlink at `to`.
    fn rename(&self, from: &str, to: &str) -> Result<(), Error>;
    /// Removes a file or symlink.
    fn remove_file(&self, path: &str) -> Result<(), Error>;
    /// Removes an empty folder.
    fn remove_dir(&self, path: &str) -> Result<(), Error>;
    /// Flushes a folder's entries to disk, so a rename or symlink made in it is durable.
    fn sync_dir(&self, path: &str) -> Result<(), Error>;
    /// The [`Identity`] of every entry of folder `path` with its name, sorted by name.
    fn list_identities(&self, path: &str) -> Result<Vec<(String, Identity)>, Error>;
    /// Makes `new` a hard link to the file `existing` (see [`hard_link`] for what the host
    /// allows).
    fn hard_link(&self, existing: &str, new: &str) -> Result<(), Error>;

    /// Metadata of `path` without following a final symlink, or `None` when nothing is there.
    fn stat_opt(&self, path: &str) -> Result<Option<Metadata>, Error> {
        match self.stat(path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes `path` and everything below it without following symlinks: a symlink is unlinked,
    /// its target stays (a release's `uploads` link loses the link, never the uploads). Folders
    /// whose mode keeps their owner out (an unpacked `0555`) are opened up first. Nothing there
    /// is fine. Iterative: archives and `node_modules` nest deeper than a guest stack likes.
    fn remove_tree(&self, path: &str) -> Result<(), Error> {
        let Some(meta) = self.stat_opt(path)? else {
            return Ok(());
        };
        if !meta.is_dir() {
            return self.remove_file(path);
        }
        if meta.mode & 0o700 != 0o700 {
            self.set_mode(path, 0o700)?;
        }
        // (folder, listed): a folder is removed the second time it comes up, emptied.
        let mut stack = vec![(path.to_string(), false)];
        while let Some((dir, listed)) = stack.pop() {
            if listed {
                self.remove_dir(&dir)?;
                continue;
            }
            stack.push((dir.clone(), true));
            for entry in self.list_dir(&dir)? {
                let child = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
                if entry.metadata.is_dir() {
                    if entry.metadata.mode & 0o700 != 0o700 {
                        self.set_mode(&child, 0o700)?;
                    }
                    stack.push((child, false));
                } else {
                    self.remove_file(&child)?;
                }
            }
        }
        Ok(())
    }
}

/// The step's mounts: the host's `files` calls above, and WASI (`std::fs`) for renames and
/// removals. Natively (unit tests) its calls panic like the functions above: use [`StdFs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFs;

impl FileSystem for HostFs {
    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        stat(path)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        list_dir(path)
    }

    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error> {
        set_mode(path, mode)
    }

    fn set_mtime(&self, path: &str, mtime: Timestamp) -> Result<(), Error> {
        set_mtime(path, mtime)
    }

    fn symlink(&self, target: &str, path: &str) -> Result<(), Error> {
        symlink(target, path)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        rename_std(from, to)
    }

    fn remove_file(&self, path: &str) -> Result<(), Error> {
        remove_file_std(path)
    }

    fn remove_dir(&self, path: &str) -> Result<(), Error> {
        remove_dir_std(path)
    }

    fn sync_dir(&self, path: &str) -> Result<(), Error> {
        sync_dir(path)
    }

    fn list_identities(&self, path: &str) -> Result<Vec<(String, Identity)>, Error> {
        list_identities(path)
    }

    fn hard_link(&self, existing: &str, new: &str) -> Result<(), Error> {
        hard_link(existing, new)
    }
}

// Renames and removals need nothing WASI lacks: both file systems make them with `std::fs`.

fn rename_std(from: &str, to: &str) -> Result<(), Error> {
    std::fs::rename(from, to).with_context(|| format!("renaming {from} to {to}"))
}

fn remove_file_std(path: &str) -> Result<(), Error> {
    std::fs::remove_file(path).with_context(|| format!("removing {path}"))
}

fn remove_dir_std(path: &str) -> Result<(), Error> {
    std::fs::remove_dir(path).with_context(|| format!("removing {path}"))
}

fn guest_path(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| Error::invalid_config(format!("path {} is not UTF-8", path.display())))
}

fn files_error(doing: &str, path: &str, error: wit::FilesError) -> Error {
    match error {
        wit::FilesError::NotPermitted(m) => {
            Error::permission_denied(format!("{doing} {path}: not permitted: {m}"))
        }
        wit::FilesError::NotFound(m) => Error::not_found(format!("{doing} {path}: not found: {m}")),
        wit::FilesError::Io(m) => Error::io(format!("{doing} {path}: {m}")),
    }
}

impl Metadata {
    fn from_wit(m: wit::Metadata) -> Self {
        Metadata {
            kind: match m.kind {
                wit::EntryKind::File => FileKind::File,
                wit::EntryKind::Directory => FileKind::Directory,
                wit::EntryKind::Symlink => FileKind::Symlink,
                wit::EntryKind::Other => FileKind::Other,
            },
            mode: m.mode,
            size: m.size,
            mtime: Timestamp {
                seconds: m.mtime_seconds,
                nanos: m.mtime_nanos,
            },
            uid: m.uid,
            gid: m.gid,
            symlink_target: m.symlink_target,
        }
    }
}
