//! `files`: what WASI does not tell a guest (modes, owners, exact symlink targets, free space), for
//! paths inside the step's mounts only. Nothing here follows a final symlink, and every folder on
//! the way is opened with cap-std, which refuses to leave the mount.

use std::io;
use std::os::fd::AsFd;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use super::StepHost;
use crate::bindings::files::{DirEntry, EntryKind, FilesError, FsSpace, Host, Metadata};
use crate::sandbox::Located;

fn io_err(path: &str, e: io::Error) -> FilesError {
    match e.kind() {
        io::ErrorKind::NotFound => FilesError::NotFound(path.to_owned()),
        io::ErrorKind::PermissionDenied => FilesError::NotPermitted(format!("{path}: {e}")),
        _ if e.to_string().contains("outside") => {
            FilesError::NotPermitted(format!("{path}: leads outside the mount"))
        }
        _ => FilesError::Io(format!("{path}: {e}")),
    }
}

fn rx(path: &str, e: rustix::io::Errno) -> FilesError {
    io_err(path, io::Error::from(e))
}

fn kind_of(mode: u32) -> EntryKind {
    match mode & libc_mode::S_IFMT {
        libc_mode::S_IFREG => EntryKind::File,
        libc_mode::S_IFDIR => EntryKind::Directory,
        libc_mode::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

/// File-type bits of `st_mode` (POSIX values, stable on Linux).
mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFLNK: u32 = 0o120000;
}

/// `lstat` of `name` inside `dir`, with the symlink target read verbatim.
fn stat_at(dir: &Dir, name: &std::ffi::OsStr, path: &str) -> Result<Metadata, FilesError> {
    let st = rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| rx(path, e))?;
    let mode = st.st_mode;
    let kind = kind_of(mode);
    let symlink_target = if kind == EntryKind::Symlink {
        let target =
            rustix::fs::readlinkat(dir.as_fd(), name, Vec::new()).map_err(|e| rx(path, e))?;
        Some(String::from_utf8_lossy(target.as_bytes()).into_owned())
    } else {
        None
    };
    Ok(Metadata {
        kind,
        mode: mode & 0o7777,
        size: st.st_size as u64,
        mtime_seconds: st.st_mtime,
        mtime_nanos: st.st_mtime_nsec as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        symlink_target,
    })
}

impl StepHost {
    fn locate(&self, path: &str) -> Result<Located<'_>, FilesError> {
        self.mounts.locate(path).map_err(FilesError::NotPermitted)
    }

    fn locate_writable(&self, path: &str) -> Result<Located<'_>, FilesError> {
        let loc = self.locate(path)?;
        if !loc.mount.writable {
            return Err(FilesError::NotPermitted(format!(
                "{path}: mount {} is read-only for this step",
                loc.mount.guest
            )));
        }
        if loc.rel.as_os_str().is_empty() {
            return Err(FilesError::NotPermitted(format!(
                "{path}: a mount's root cannot be changed"
            )));
        }
        Ok(loc)
    }
}

impl Host for StepHost {
    fn stat(&mut self, path: String) -> Result<Metadata, FilesError> {
        let loc = self.locate(&path)?;
        let (dir, name) = loc.parent().map_err(|e| io_err(&path, e))?;
        stat_at(&dir, &name, &path)
    }

    fn list_dir(&mut self, path: String) -> Result<Vec<DirEntry>, FilesError> {
        let loc = self.locate(&path)?;
        let dir = if loc.rel.as_os_str().is_empty() {
            loc.mount.dir.try_clone()
        } else {
            loc.mount.dir.open_dir(&loc.rel)
        }
        .map_err(|e| io_err(&path, e))?;
        let mut out = Vec::new();
        for entry in dir.entries().map_err(|e| io_err(&path, e))? {
            let entry = entry.map_err(|e| io_err(&path, e))?;
            let name = entry.file_name();
            let Some(name_str) = name.to_str() else {
                // Non-UTF-8 names cannot cross WIT strings intact; say so rather than mangle them.
                return Err(FilesError::Io(format!(
                    "{path}: entry {name:?} is not valid UTF-8 and cannot be handled"
                )));
            };
            let full = format!("{}/{name_str}", path.trim_end_matches('/'));
            match stat_at(&dir, &name, &full) {
                Ok(metadata) => out.push(DirEntry {
                    name: name_str.to_owned(),
                    metadata,
                }),
                // Vanished between listing and stat: not an error for a listing.
                Err(FilesError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn set_mode(&mut self, path: String, mode: u32) -> Result<(), FilesError> {
        let loc = self.locate_writable(&path)?;
        let (dir, name) = loc.parent().map_err(|e| io_err(&path, e))?;
        // Open without following, then check what was opened: a symlink or device never gets
        // chmod-ed, even if it was swapped in after a stat.
        let fd = rustix::fs::openat(
            dir.as_fd(),
            &name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP => FilesError::NotPermitted(format!(
                "{path}: is a symlink; modes of symlinks are not set"
            )),
            e => rx(&path, e),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| rx(&path, e))?;
        match kind_of(st.st_mode) {
            EntryKind::File | EntryKind::Directory => {}
            _ => {
                return Err(FilesError::NotPermitted(format!(
                    "{path}: not a file or folder"
                )));
            }
        }
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(|e| rx(&path, e))
    }

    fn set_mtime(&mut self, path: String, seconds: i64, nanos: u32) -> Result<(), FilesError> {
        let loc = self.locate_writable(&path)?;
        let (dir, name) = loc.parent().map_err(|e| io_err(&path, e))?;
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: seconds,
                tv_nsec: i64::from(nanos.min(999_999_999)) as _,
            },
        };
        rustix::fs::utimensat(dir.as_fd(), &name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| rx(&path, e))
    }

    fn symlink(&mut self, target: String, path: String) -> Result<(), FilesError> {
        if target.is_empty() || target.contains('\0') {
            return Err(FilesError::Io(format!("{path}: invalid symlink target")));
        }
        let loc = self.locate_writable(&path)?;
        let (dir, name) = loc.parent().map_err(|e| io_err(&path, e))?;
        rustix::fs::symlinkat(target.as_str(), dir.as_fd(), &name).map_err(|e| rx(&path, e))
    }

    fn sync_dir(&mut self, path: String) -> Result<(), FilesError> {
        let loc = self.locate(&path)?;
        if !loc.mount.writable {
            return Err(FilesError::NotPermitted(format!(
                "{path}: mount {} is read-only for this step",
                loc.mount.guest
            )));
        }
        let dir = if loc.rel.as_os_str().is_empty() {
            loc.mount.dir.try_clone()
        } else {
            loc.mount.dir.open_dir(&loc.rel)
        }
        .map_err(|e| io_err(&path, e))?;
        // cap-std opens folders `O_PATH`, which cannot be fsynced: open `.` for reading.
        let fd = rustix::fs::openat(
            dir.as_fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| rx(&path, e))?;
        rustix::fs::fsync(&fd).map_err(|e| rx(&path, e))
    }

    fn space(&mut self, path: String) -> Result<FsSpace, FilesError> {
        let loc = self.locate(&path)?;
        let st = rustix::fs::fstatvfs(loc.mount.dir.as_fd()).map_err(|e| rx(&path, e))?;
        Ok(FsSpace {
            available_bytes: st.f_bavail.saturating_mul(st.f_frsize),
            total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        })
    }
}
