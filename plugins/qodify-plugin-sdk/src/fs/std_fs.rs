//! [`StdFs`]: the [`FileSystem`] of native unit tests, on the build machine's disk, keeping the
//! host's rules: no final symlink is followed, modes lose setuid, setgid and sticky bits, only
//! files and folders get a mode. Renames can be made to fail on purpose, because the one step of
//! a swap a test needs to fail is a rename, and a real disk cannot be told to fail one.

use std::fmt;
use std::os::unix::fs::MetadataExt as _;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, Timespec, Timestamps};

use super::{DirEntry, FileKind, FileSystem, Identity, Metadata, Timestamp};
use crate::{Error, ResultExt as _};

/// `std::fs` and `*at` system calls on host paths, for native unit tests of code written against
/// [`FileSystem`] (and anything else that runs natively).
///
/// ```
/// use qodify_plugin_sdk::fs::{FileSystem, StdFs};
///
/// let dir = std::env::temp_dir().join(format!("sdk-stdfs-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let (a, b) = (dir.join("a"), dir.join("b"));
/// std::fs::write(&a, "x").unwrap();
/// let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
///
/// // Every rename into `…/b` fails, as a full disk or a lost mount would make it.
/// let fs = StdFs::failing_renames(|_from, to| to.ends_with("/b"));
/// let err = fs.rename(a, b).unwrap_err();
/// assert!(err.message().contains("injected failure"), "{err}");
/// StdFs::new().rename(a, b).unwrap();
/// StdFs::new().remove_tree(dir.to_str().unwrap()).unwrap();
/// ```
#[derive(Default)]
pub struct StdFs {
    fail_rename: Option<RenameFault>,
    fail_link: Option<RenameFault>,
}

/// Says which renames fail (`from`, `to`).
type RenameFault = Box<dyn Fn(&str, &str) -> bool>;

impl fmt::Debug for StdFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdFs")
            .field("fails_renames", &self.fail_rename.is_some())
            .field("fails_links", &self.fail_link.is_some())
            .finish()
    }
}

impl StdFs {
    /// The disk as it is.
    pub fn new() -> Self {
        StdFs::default()
    }

    /// The disk, except that a rename for which `fail(from, to)` is true fails with an `io`
    /// error saying `injected failure` (and changes nothing). To fail only the first one, keep a
    /// flag in the closure.
    pub fn failing_renames(fail: impl Fn(&str, &str) -> bool + 'static) -> Self {
        StdFs {
            fail_rename: Some(Box::new(fail)),
            fail_link: None,
        }
    }

    /// The disk, except that a hard link for which `fail(existing, new)` is true fails with an
    /// `io` error saying `EXDEV` and `injected failure`, as a link across file systems does.
    pub fn failing_links(fail: impl Fn(&str, &str) -> bool + 'static) -> Self {
        StdFs {
            fail_rename: None,
            fail_link: Some(Box::new(fail)),
        }
    }
}

impl FileSystem for StdFs {
    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        let m = std::fs::symlink_metadata(path).with_context(|| format!("stat {path}"))?;
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Directory
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        let symlink_target = if ft.is_symlink() {
            let target =
                std::fs::read_link(path).with_context(|| format!("reading the link {path}"))?;
            Some(target.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(Metadata {
            kind,
            mode: m.mode() & 0o7777,
            size: m.size(),
            mtime: Timestamp {
                seconds: m.mtime(),
                nanos: m.mtime_nsec() as u32,
            },
            uid: m.uid(),
            gid: m.gid(),
            symlink_target,
        })
    }

    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).with_context(|| format!("listing {path}"))? {
            let entry = entry.with_context(|| format!("listing {path}"))?;
            let Ok(name) = entry.file_name().into_string() else {
                // As the host: a name that is not UTF-8 cannot be handled intact.
                return Err(Error::io(format!(
                    "listing {path}: entry {:?} is not valid UTF-8 and cannot be handled",
                    entry.file_name()
                )));
            };
            let child = format!("{}/{name}", path.trim_end_matches('/'));
            match self.stat(&child) {
                Ok(metadata) => out.push(DirEntry { name, metadata }),
                // Vanished between listing and stat: not an error for a listing.
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn set_mode(&self, path: &str, mode: u32) -> Result<(), Error> {
        let doing = || format!("setting the mode of {path}");
        // Open without following, then check what was opened, as the host does: a symlink or a
        // device swapped in after a stat never gets chmod-ed.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = rustix::fs::openat(CWD, path, flags, Mode::empty()).map_err(|e| match e {
            rustix::io::Errno::LOOP => Error::permission_denied(format!(
                "{}: not permitted: is a symlink; modes of symlinks are not set",
                doing()
            )),
            e => Error::from(std::io::Error::from(e)).context(doing()),
        })?;
        let st = rustix::fs::fstat(&fd)
            .map_err(std::io::Error::from)
            .with_context(doing)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile | FileType::Directory => {}
            _ => {
                return Err(Error::permission_denied(format!(
                    "{}: not permitted: not a regular file or folder",
                    doing()
                )));
            }
        }
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
            .map_err(std::io::Error::from)
            .with_context(doing)
    }

    fn set_mtime(&self, path: &str, mtime: Timestamp) -> Result<(), Error> {
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: mtime.seconds,
                tv_nsec: i64::from(mtime.nanos.min(999_999_999)) as _,
            },
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(std::io::Error::from)
            .with_context(|| format!("setting the mtime of {path}"))
    }

    fn symlink(&self, target: &str, path: &str) -> Result<(), Error> {
        if target.is_empty() || target.contains('\0') {
            return Err(Error::io(format!(
                "creating the symlink {path}: invalid symlink target"
            )));
        }
        std::os::unix::fs::symlink(target, path)
            .with_context(|| format!("creating the symlink {path}"))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        if self.fail_rename.as_ref().is_some_and(|fail| fail(from, to)) {
            return Err(Error::io(format!(
                "renaming {from} to {to}: injected failure"
            )));
        }
        super::rename_std(from, to)
    }

    fn remove_file(&self, path: &str) -> Result<(), Error> {
        super::remove_file_std(path)
    }

    fn remove_dir(&self, path: &str) -> Result<(), Error> {
        super::remove_dir_std(path)
    }

    fn list_identities(&self, path: &str) -> Result<Vec<(String, Identity)>, Error> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path).with_context(|| format!("listing {path}"))? {
            let entry = entry.with_context(|| format!("listing {path}"))?;
            let Ok(name) = entry.file_name().into_string() else {
                return Err(Error::io(format!(
                    "listing {path}: entry {:?} is not valid UTF-8 and cannot be handled",
                    entry.file_name()
                )));
            };
            let m = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::from(e).context(format!("listing {path}"))),
            };
            let id = Identity {
                ctime: Timestamp {
                    seconds: m.ctime(),
                    nanos: m.ctime_nsec() as u32,
                },
                device: m.dev(),
                inode: m.ino(),
            };
            out.push((name, id));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn hard_link(&self, existing: &str, new: &str) -> Result<(), Error> {
        if self
            .fail_link
            .as_ref()
            .is_some_and(|fail| fail(existing, new))
        {
            return Err(Error::io(format!(
                "linking {existing} as {new}: different file systems (EXDEV): injected failure"
            )));
        }
        std::fs::hard_link(existing, new).with_context(|| format!("linking {existing} as {new}"))
    }

    fn sync_dir(&self, path: &str) -> Result<(), Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(CWD, path, flags, Mode::empty())
            .and_then(|fd| rustix::fs::fsync(&fd))
            .map_err(std::io::Error::from)
            .with_context(|| format!("syncing {path}"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;
    use crate::ErrorKind;

    fn tmp() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        (dir, path)
    }

    #[test]
    fn nothing_follows_a_final_symlink() {
        let (_t, d) = tmp();
        std::fs::write(format!("{d}/file"), "x").unwrap();
        std::fs::set_permissions(format!("{d}/file"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        symlink("file", format!("{d}/link")).unwrap();
        let fs = StdFs::new();

        let link = fs.stat(&format!("{d}/link")).unwrap();
        assert_eq!(link.kind, FileKind::Symlink);
        assert_eq!(link.symlink_target.as_deref(), Some("file"));

        let err = fs.set_mode(&format!("{d}/link"), 0o777).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(err.message().contains("is a symlink"), "{err}");
        assert_eq!(fs.stat(&format!("{d}/file")).unwrap().mode, 0o640);

        let t = Timestamp {
            seconds: 1_600_000_000,
            nanos: 5,
        };
        fs.set_mtime(&format!("{d}/link"), t).unwrap();
        assert_eq!(fs.stat(&format!("{d}/link")).unwrap().mtime, t);
        assert_ne!(fs.stat(&format!("{d}/file")).unwrap().mtime, t);

        // Removing a tree unlinks a link to a folder outside it, and keeps what it points at.
        std::fs::create_dir_all(format!("{d}/tree/sub")).unwrap();
        std::fs::create_dir(format!("{d}/kept")).unwrap();
        std::fs::write(format!("{d}/kept/a"), "keep").unwrap();
        symlink(format!("{d}/kept"), format!("{d}/tree/sub/out")).unwrap();
        std::fs::set_permissions(
            format!("{d}/tree/sub"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        fs.remove_tree(&format!("{d}/tree")).unwrap();
        assert!(fs.stat_opt(&format!("{d}/tree")).unwrap().is_none());
        assert_eq!(
            std::fs::read_to_string(format!("{d}/kept/a")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn modes_keep_permission_bits_only() {
        let (_t, d) = tmp();
        std::fs::create_dir(format!("{d}/dir")).unwrap();
        let fs = StdFs::new();
        fs.set_mode(&format!("{d}/dir"), 0o1750).unwrap();
        assert_eq!(fs.stat(&format!("{d}/dir")).unwrap().mode, 0o750);
        let err = fs.set_mode(&format!("{d}/none"), 0o700).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(
            err.message()
                .starts_with(&format!("setting the mode of {d}/none: ")),
            "{err}"
        );
    }

    #[test]
    fn listings_are_sorted_and_missing_is_not_found() {
        let (_t, d) = tmp();
        for name in ["b", "a", "c"] {
            std::fs::write(format!("{d}/{name}"), name).unwrap();
        }
        let fs = StdFs::new();
        let names: Vec<String> = fs
            .list_dir(&d)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(fs.stat_opt(&format!("{d}/x")).unwrap(), None);
        let err = fs.list_dir(&format!("{d}/x")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message().starts_with(&format!("listing {d}/x: ")),
            "{err}"
        );
        let err = fs.symlink("", &format!("{d}/l")).unwrap_err();
        assert!(err.message().contains("invalid symlink target"), "{err}");
        fs.sync_dir(&d).unwrap();
    }

    #[test]
    fn injected_rename_failures_change_nothing() {
        let (_t, d) = tmp();
        std::fs::write(format!("{d}/a"), "a").unwrap();
        let fs = StdFs::failing_renames(|from, _| from.ends_with("/a"));
        let err = fs.rename(&format!("{d}/a"), &format!("{d}/b")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.message().ends_with("injected failure"), "{err}");
        assert!(fs.stat_opt(&format!("{d}/a")).unwrap().is_some());
        assert!(fs.stat_opt(&format!("{d}/b")).unwrap().is_none());
    }
}
