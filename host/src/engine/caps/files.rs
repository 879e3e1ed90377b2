//! `files`: what WASI does not tell a guest (modes, owners, exact symlink targets, free space,
//! change times and inodes), for paths inside the step's mounts only. Nothing here follows a final
//! symlink, and every folder on the way is opened with cap-std, which refuses to leave the mount.
//! `process-cwd` answers for a process what confined programs may not ask (`/proc/<pid>/cwd`),
//! only with a guest path. `hard-link` notes that an earlier backup's file is to be linked into
//! the new backup when it completes, and nothing else: a link made at once would give every step
//! that may write the new backup a writable path to the earlier file (WASI's `link-at` would
//! need both folders writable besides).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Component;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use super::StepHost;
use crate::engine::bindings::files::{
    DirEntry, EntryIdentity, EntryKind, FilesError, FsSpace, Host, Metadata,
};
use crate::engine::sandbox::{Located, MountTable};
use crate::pipeline::MountRoot;

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

/// The working folder of process `pid` as a guest path, when it is a folder inside one of the
/// `mounts`. The kernel's name for it is mapped onto the mount holding it, then the guest path is
/// opened through that mount and must be the very folder the process has (same device and
/// inode): a deleted folder, a path renamed in between or a look-alike name is refused. Every
/// refusal says only that the folder is outside the mounts; no host path is ever returned.
pub fn process_cwd(mounts: &MountTable, pid: u32) -> Result<String, FilesError> {
    let proc_cwd = format!("/proc/{pid}/cwd");
    let outside = || {
        FilesError::NotPermitted(format!(
            "process {pid} runs in a folder outside the step's mounts (or in a deleted one); \
             its path is not shown"
        ))
    };
    let unreadable = |e: io::Error| match e.kind() {
        // pid 0, a pid never used, a process that exited (also a zombie).
        io::ErrorKind::NotFound => {
            FilesError::NotFound(format!("process {pid} does not exist (it may have exited)"))
        }
        _ => FilesError::Io(format!(
            "process {pid}: the host cannot read its working folder: {e}"
        )),
    };
    // The host is not confined, so it may read any process's link of its own user.
    let host_path = std::fs::read_link(&proc_cwd).map_err(unreadable)?;
    let process_dir = rustix::fs::stat(proc_cwd.as_str()).map_err(|e| unreadable(e.into()))?;
    let loc = mounts.locate_host(&host_path).ok_or_else(outside)?;
    let dir = if loc.rel.as_os_str().is_empty() {
        loc.mount.dir.try_clone()
    } else {
        loc.mount.dir.open_dir(&loc.rel)
    }
    .map_err(|_| outside())?;
    let found = rustix::fs::fstat(dir.as_fd()).map_err(|_| outside())?;
    if (found.st_dev, found.st_ino) != (process_dir.st_dev, process_dir.st_ino) {
        return Err(outside());
    }
    loc.guest_path().ok_or_else(|| {
        FilesError::Io(format!(
            "process {pid}: its working folder's name is not valid UTF-8 and cannot be handled"
        ))
    })
}

/// Opens the folder holding `loc`'s entry one component at a time from the mount, following no
/// symlink on the way, and returns it with the entry's name.
fn open_parent_nofollow(loc: &Located<'_>) -> io::Result<(OwnedFd, OsString)> {
    let parts: Vec<&OsStr> = loc.rel.iter().collect();
    let Some((name, dirs)) = parts.split_last() else {
        return Err(io::Error::other("a mount's root is not a file"));
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::openat(loc.mount.dir.as_fd(), ".", flags, Mode::empty())?;
    for part in dirs {
        dir = rustix::fs::openat(&dir, *part, flags, Mode::empty())?;
    }
    Ok((dir, (*name).to_owned()))
}

/// The backup id when `loc` names `backups/<backup id>/<artifact file>` of the customer's folder
/// through a mount of the customer folder itself or of its `backups` folder: the only files
/// `hard-link` may link from.
fn earlier_backup_of(loc: &Located<'_>) -> Option<String> {
    let full = loc.mount.rel.join(&loc.rel);
    let parts: Vec<&str> = full
        .components()
        .map(|c| match c {
            Component::Normal(p) => p.to_str().unwrap_or("/"),
            _ => "/",
        })
        .collect();
    let mount_rel = loc.mount.rel.as_os_str();
    (loc.mount.root == MountRoot::Customer
        && (mount_rel.is_empty() || mount_rel == backup_rules::BACKUPS)
        && parts.len() == 3
        && parts[0] == backup_rules::BACKUPS
        && backup_rules::is_backup_id(parts[1])
        && backup_rules::is_artifact_file(parts[2]))
    .then(|| parts[1].to_owned())
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
                    "{path}: not a regular file or folder (a FIFO, socket or device); special files are refused"
                )));
            }
        }
        // Permission bits only: a step never makes a setuid/setgid program or a sticky folder.
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777)).map_err(|e| rx(&path, e))
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

    fn process_cwd(&mut self, pid: u32) -> Result<String, FilesError> {
        process_cwd(&self.mounts, pid)
    }

    fn list_identities(&mut self, path: String) -> Result<Vec<EntryIdentity>, FilesError> {
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
                return Err(FilesError::Io(format!(
                    "{path}: entry {name:?} is not valid UTF-8 and cannot be handled"
                )));
            };
            match rustix::fs::statat(dir.as_fd(), &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => out.push(EntryIdentity {
                    name: name_str.to_owned(),
                    ctime_seconds: st.st_ctime,
                    ctime_nanos: st.st_ctime_nsec as u32,
                    device: st.st_dev,
                    inode: st.st_ino,
                }),
                // Vanished between listing and stat, as in `list-dir`.
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(rx(&path, e)),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn hard_link(&mut self, existing: String, new: String) -> Result<(), FilesError> {
        let src = self.locate(&existing)?;
        let Some(from) = earlier_backup_of(&src) else {
            return Err(FilesError::NotPermitted(format!(
                "{existing}: only a file of an earlier backup (backups/<YYYYMMDD-HHMMSS>/<file> \
                 through a mount of the customer folder or of backups) can be linked"
            )));
        };
        let dst = self.locate_writable(&new)?;
        let file = dst.mount.rel.join(&dst.rel);
        let file = file.to_str().filter(|f| backup_rules::is_artifact_file(f));
        let (Some(file), MountRoot::Backup, Some(links)) = (file, dst.mount.root, &self.links)
        else {
            return Err(FilesError::NotPermitted(format!(
                "{new}: links are made only as a file directly in the run's new backup (a mount \
                 with from = \"backup\")"
            )));
        };
        let (src_dir, src_name) =
            open_parent_nofollow(&src).map_err(|e| match e.raw_os_error() {
                Some(code)
                    if code == rustix::io::Errno::LOOP.raw_os_error()
                        || code == rustix::io::Errno::NOTDIR.raw_os_error() =>
                {
                    FilesError::NotPermitted(format!(
                        "{existing}: a folder on the way is a symlink"
                    ))
                }
                _ => io_err(&existing, e),
            })?;
        let src_dir = Dir::from_std_file(std::fs::File::from(src_dir));
        let src_name = src_name.to_str().unwrap_or_default().to_owned();
        // Noted only: the link is made when the backup completes (`backups::Links`).
        links
            .add(file, &dst.mount.dir, &from, src_dir, &src_name)
            .map_err(|e| match e {
                crate::backups::LinkError::Refused(why) => FilesError::NotPermitted(why),
                crate::backups::LinkError::Io(path, e) => io_err(&path, e),
                e => FilesError::Io(e.to_string()),
            })
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Child, Command};

    use super::*;
    use crate::engine::sandbox::Roots;
    use crate::pipeline::{MountRoot, PlannedMount};

    /// A `sleep` working in `dir`, killed and reaped when dropped.
    struct Sleeper(Child);

    impl Sleeper {
        fn in_dir(dir: &Path) -> Self {
            let child = Command::new("sleep")
                .arg("60")
                .current_dir(dir)
                .spawn()
                .expect("spawning sleep");
            Sleeper(child)
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Customers under `<tmp>/real`, reached through the symlink `<tmp>/customers` (so the
    /// kernel's names differ from the configured root), and the customer `shop.test` open.
    fn fixture() -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        for dir in [
            "shop.test/releases/v1/backend",
            "shop.test/backups/b1",
            "other.test/releases/v1/backend",
        ] {
            std::fs::create_dir_all(real.join(dir)).unwrap();
        }
        std::fs::create_dir(tmp.path().join("work")).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("customers")).unwrap();
        let roots = Roots::open(
            &tmp.path().join("customers"),
            "shop.test",
            &tmp.path().join("work"),
        )
        .unwrap();
        (tmp, roots)
    }

    fn mounts(roots: &Roots, grants: &[(&str, &str)]) -> MountTable {
        let planned: Vec<PlannedMount> = grants
            .iter()
            .map(|(guest, path)| PlannedMount {
                guest: (*guest).into(),
                from: MountRoot::Customer,
                path: (*path).into(),
                writable: false,
                create: false,
                optional: false,
                reason: None,
            })
            .collect();
        MountTable::resolve(&planned, roots).unwrap().unwrap()
    }

    /// The error for `pid`, checked to name no host path.
    fn refusal(mounts: &MountTable, pid: u32, tmp: &Path) -> FilesError {
        let err = process_cwd(mounts, pid).unwrap_err();
        let text = format!("{err:?}");
        let real = tmp.canonicalize().unwrap();
        for host in [tmp, real.as_path()] {
            assert!(
                !text.contains(host.to_str().unwrap()),
                "host path leaked: {text}"
            );
        }
        err
    }

    #[test]
    fn set_mode_never_sets_setuid_setgid_or_sticky() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = tempfile::tempdir().unwrap();
        let (mut host, _) = super::super::test_host(&t, vec![]);
        let file = t.path().join("customers/shop.example.com/tool");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        Host::set_mode(&mut host, "/data/tool".into(), 0o6755).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        let dir = t.path().join("customers/shop.example.com/shared");
        std::fs::create_dir(&dir).unwrap();
        Host::set_mode(&mut host, "/data/shared".into(), 0o1777).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
            0o777
        );
    }

    #[test]
    fn a_process_working_in_a_mount_is_told_its_guest_path() {
        let (tmp, roots) = fixture();
        let customer = tmp.path().join("customers/shop.test");
        let table = mounts(&roots, &[("/customer", ""), ("/backups", "backups")]);
        for (dir, guest) in [
            ("releases/v1/backend", "/customer/releases/v1/backend"),
            ("", "/customer"),
            // The host folders nest: the inner mount answers.
            ("backups/b1", "/backups/b1"),
        ] {
            let p = Sleeper::in_dir(&customer.join(dir));
            assert_eq!(process_cwd(&table, p.pid()).unwrap(), guest, "{dir}");
        }
    }

    #[test]
    fn a_process_working_outside_the_mounts_is_refused_without_its_path() {
        let (tmp, roots) = fixture();
        let table = mounts(&roots, &[("/releases", "releases")]);
        for dir in [
            "customers/other.test/releases/v1/backend",
            "customers/shop.test",
            "customers/shop.test/backups",
            "work",
            "",
        ] {
            let p = Sleeper::in_dir(&tmp.path().join(dir));
            assert!(
                matches!(refusal(&table, p.pid(), tmp.path()), FilesError::NotPermitted(m) if m.contains("outside the step's mounts")),
                "{dir}"
            );
        }
    }

    #[test]
    fn a_deleted_working_folder_is_refused_even_when_its_name_is_back() {
        let (tmp, roots) = fixture();
        let table = mounts(&roots, &[("/customer", "")]);
        let dir = tmp.path().join("customers/shop.test/releases/v0");
        std::fs::create_dir(&dir).unwrap();
        let p = Sleeper::in_dir(&dir);
        std::fs::remove_dir(&dir).unwrap();
        assert!(matches!(
            refusal(&table, p.pid(), tmp.path()),
            FilesError::NotPermitted(_)
        ));
        // Neither a new folder of the same name nor one named as the kernel shows a deleted
        // folder (`v0 (deleted)`) is the one the process works in.
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.with_file_name("v0 (deleted)")).unwrap();
        assert!(matches!(
            refusal(&table, p.pid(), tmp.path()),
            FilesError::NotPermitted(_)
        ));
    }

    #[test]
    fn a_process_that_does_not_exist_is_not_found() {
        let (tmp, roots) = fixture();
        let table = mounts(&roots, &[("/customer", "")]);
        for pid in [0, u32::MAX, i32::MAX as u32] {
            assert!(
                matches!(
                    refusal(&table, pid, tmp.path()),
                    FilesError::NotFound(m) if m.contains("does not exist")
                ),
                "{pid}"
            );
        }
    }

    /// `shop.test` with an earlier backup, a run's new backup folder as the `backup` root, and
    /// mounts: `/customer` (ro), `/backups` (ro), `/out` (the new backup, rw), `/live` (rw).
    fn backup_fixture() -> ((tempfile::TempDir, tempfile::TempDir), StepHost) {
        let (tmp, mut roots) = fixture();
        let customer = tmp.path().join("real/shop.test");
        std::fs::create_dir_all(customer.join("backups/20260101-000000")).unwrap();
        std::fs::create_dir_all(customer.join("backups/.partial-run1")).unwrap();
        std::fs::create_dir_all(customer.join("backups/.partial-old")).unwrap();
        std::fs::write(
            customer.join("backups/20260101-000000/uploads.tar.gz"),
            "old",
        )
        .unwrap();
        std::fs::write(
            customer.join("backups/.partial-old/uploads.tar.gz"),
            "partial",
        )
        .unwrap();
        std::fs::write(customer.join("releases/v1/backend/.env"), "SECRET=1").unwrap();
        std::os::unix::fs::symlink("20260101-000000", customer.join("backups/20260102-000000"))
            .unwrap();
        let new_backup = roots.customer.open_dir("backups/.partial-run1").unwrap();
        roots.backup = Some((new_backup, customer.join("backups/.partial-run1")));
        let planned: Vec<PlannedMount> = [
            ("/customer", MountRoot::Customer, "", false),
            ("/backups", MountRoot::Customer, "backups", false),
            ("/out", MountRoot::Backup, "", true),
            ("/live", MountRoot::Customer, "releases", true),
        ]
        .into_iter()
        .map(|(guest, from, path, writable)| PlannedMount {
            guest: guest.into(),
            from,
            path: path.into(),
            writable,
            create: false,
            optional: false,
            reason: None,
        })
        .collect();
        let table = MountTable::resolve(&planned, &roots).unwrap().unwrap();
        let t = tempfile::tempdir().unwrap();
        let (mut host, _) = super::super::test_host(&t, vec![]);
        host.mounts = table;
        host.links = Some(Default::default());
        ((tmp, t), host)
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    #[test]
    fn hard_link_notes_an_earlier_backups_file_for_the_new_backup_and_links_nothing_yet() {
        let ((tmp, _t), mut host) = backup_fixture();
        let links = host.links.clone().unwrap();
        let backups = tmp.path().join("real/shop.test/backups");
        std::fs::write(backups.join("20260101-000000/db.dump"), "dump").unwrap();
        for (i, from) in [
            "/backups/20260101-000000/uploads.tar.gz",
            "/customer/backups/20260101-000000/db.dump",
        ]
        .into_iter()
        .enumerate()
        {
            let to = format!("/out/u{i}.tar.gz");
            Host::hard_link(&mut host, from.into(), to).unwrap();
            // No step can reach the earlier file through the new backup before it completes.
            assert!(!backups.join(format!(".partial-run1/u{i}.tar.gz")).exists());
            assert!(links.contains(&format!("u{i}.tar.gz")));
        }
        let (size, _) = links
            .hash("u0.tar.gz", Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(size, 3);
        // Nothing is replaced, and a file is linked once.
        for (from, to) in [
            ("/backups/20260101-000000/db.dump", "/out/u0.tar.gz"),
            ("/backups/20260101-000000/uploads.tar.gz", "/out/u9.tar.gz"),
        ] {
            let err = Host::hard_link(&mut host, from.into(), to.into()).unwrap_err();
            assert!(
                matches!(err, FilesError::Io(_) | FilesError::NotPermitted(_)),
                "{err:?}"
            );
        }
        assert!(!links.contains("u9.tar.gz"));
    }

    #[test]
    fn hard_link_refuses_anything_but_an_earlier_backups_file_into_the_new_backup() {
        let ((tmp, _t), mut host) = backup_fixture();
        let cases = [
            // A live file of the customer: a writable link would let the step change it.
            ("/customer/releases/v1/backend/.env", "/out/env"),
            ("/live/v1/backend/.env", "/out/env"),
            // A partial backup, and a backup id that is a symlink.
            ("/backups/.partial-old/uploads.tar.gz", "/out/p"),
            ("/backups/20260102-000000/uploads.tar.gz", "/out/s"),
            // Not into the new backup, not into a read-only mount, not into a folder of it.
            (
                "/backups/20260101-000000/uploads.tar.gz",
                "/out/sub/u.tar.gz",
            ),
            ("/backups/20260101-000000/uploads.tar.gz", "/live/u.tar.gz"),
            (
                "/backups/20260101-000000/uploads.tar.gz",
                "/backups/u.tar.gz",
            ),
            // Outside every mount.
            ("/etc/passwd", "/out/passwd"),
        ];
        for (from, to) in cases {
            let err = Host::hard_link(&mut host, from.into(), to.into()).unwrap_err();
            assert!(
                matches!(err, FilesError::NotPermitted(_)),
                "{from} -> {to}: {err:?}"
            );
        }
        let out = tmp.path().join("real/shop.test/backups/.partial-run1");
        assert_eq!(std::fs::read_dir(out).unwrap().count(), 0);
        assert!(!tmp.path().join("real/shop.test/releases/u.tar.gz").exists());
    }

    #[test]
    fn identities_change_with_the_inode_and_any_status_change() {
        use std::os::unix::fs::PermissionsExt as _;
        let ((tmp, _t), mut host) = backup_fixture();
        let dir = tmp.path().join("real/shop.test/releases/v1/backend");
        let ids = |host: &mut StepHost| {
            Host::list_identities(host, "/customer/releases/v1/backend".into()).unwrap()
        };
        let first = ids(&mut host);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].name, ".env");
        assert_eq!(first[0].inode, inode(&dir.join(".env")));
        // chmod keeps the mtime but not the ctime.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::set_permissions(dir.join(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let second = ids(&mut host);
        assert_ne!(
            (first[0].ctime_seconds, first[0].ctime_nanos),
            (second[0].ctime_seconds, second[0].ctime_nanos)
        );
        // A file replaced by a copy is another inode.
        std::fs::copy(dir.join(".env"), dir.join(".env.new")).unwrap();
        std::fs::rename(dir.join(".env.new"), dir.join(".env")).unwrap();
        assert_ne!(ids(&mut host)[0].inode, second[0].inode);
    }
}
