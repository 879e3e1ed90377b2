//! Earlier backups' files to be hard-linked into a run's new backup, linked only when the backup
//! completes.
//!
//! A hard link shares the file. Made at once, it would give every step that may write the new
//! backup (the dump, the manifest, another team's plugin, the programs they run) a writable path
//! to an earlier backup's archive, which none of them was granted. So `files.hard-link` only
//! notes the link here; the host hashes the earlier file when a step returns it as an artifact,
//! and [`super::Partial::finalize`] makes the link after every step has ended, checking that the
//! file is still the one hashed (device, inode, size, mtime and ctime). Until then no step sees
//! the name in the new backup.

use std::collections::BTreeMap;
use std::os::fd::AsFd as _;
use std::sync::Mutex;

use anyhow::{Result, bail};
use cap_std::fs::Dir;
use rustix::fs::AtFlags;

use crate::files::{HashBounds, hash_file_at};

/// Why a link cannot be noted.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The name is taken in the new backup, by a file or by another link.
    #[error("{0} is already in the new backup; a link never replaces a file")]
    Exists(String),
    /// The earlier file is on another file system than the new backup.
    #[error("{0} is on another file system than the new backup (EXDEV); write the file instead")]
    CrossDevice(String),
    /// Not a regular file, or linked already under another name.
    #[error("{0}")]
    Refused(String),
    /// Reading the file's status failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// What identifies a file's content without reading it: a write, truncation, chmod or rename
/// over it changes one of these (ctime cannot be set by a program).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, u64),
    ctime: (i64, u64),
}

fn identity(dir: &Dir, name: &str) -> std::io::Result<(Identity, u32)> {
    let st = rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((
        Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec as u64),
            ctime: (st.st_ctime, st.st_ctime_nsec as u64),
        },
        st.st_mode,
    ))
}

/// One noted link.
#[derive(Debug)]
struct Link {
    /// The backup lending the file (its id), for messages.
    from: String,
    /// That backup's folder.
    dir: Dir,
    /// The file's name in it.
    name: String,
    /// The file when the link was noted.
    identity: Identity,
    /// Its size and sha256, once a step returned it as an artifact.
    hashed: Option<(u64, String)>,
}

/// The links noted for one new backup, by their file name in it.
#[derive(Debug, Default)]
pub struct Links {
    pending: Mutex<BTreeMap<String, Link>>,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Link>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `file` of the new backup (`new_backup`) is to be `name` of backup `from`
    /// (whose folder is `dir`). The caller has checked that `name` is an artifact of a backup
    /// folder reached without symlinks; this checks that it is a regular file on the new
    /// backup's file system and that `file` is free.
    pub fn add(
        &self,
        file: &str,
        new_backup: &Dir,
        from: &str,
        dir: Dir,
        name: &str,
    ) -> Result<(), LinkError> {
        let mut pending = self.lock();
        if pending.contains_key(file) {
            return Err(LinkError::Exists(file.to_owned()));
        }
        match rustix::fs::statat(new_backup.as_fd(), file, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => {}
            Ok(_) => return Err(LinkError::Exists(file.to_owned())),
            Err(e) => return Err(LinkError::Io(file.to_owned(), e.into())),
        }
        let shown = format!("backups/{from}/{name}");
        let (identity, mode) = identity(&dir, name).map_err(|e| LinkError::Io(shown.clone(), e))?;
        if mode & 0o170000 != 0o100000 {
            return Err(LinkError::Refused(format!(
                "{shown}: not a regular file; only files are linked"
            )));
        }
        let here = rustix::fs::fstat(new_backup.as_fd())
            .map_err(|e| LinkError::Io(file.to_owned(), e.into()))?;
        if here.st_dev != identity.dev {
            return Err(LinkError::CrossDevice(shown));
        }
        if let Some((other, _)) = pending
            .iter()
            .find(|(_, l)| (l.identity.dev, l.identity.ino) == (identity.dev, identity.ino))
        {
            return Err(LinkError::Refused(format!(
                "{shown} is to be linked as {other} already; a file is linked once"
            )));
        }
        pending.insert(
            file.to_owned(),
            Link {
                from: from.to_owned(),
                dir,
                name: name.to_owned(),
                identity,
                hashed: None,
            },
        );
        Ok(())
    }

    /// True when `file` is a noted link.
    pub fn contains(&self, file: &str) -> bool {
        self.lock().contains_key(file)
    }

    /// Size and sha256 of the file `file` is to be linked to, within `bounds`; `None` when no
    /// link of that name was noted. The file must still be the one noted, before and after.
    pub fn hash(&self, file: &str, bounds: HashBounds) -> Option<std::io::Result<(u64, String)>> {
        // Hash outside the lock: other steps of the group note their links meanwhile.
        let (dir, name, from, noted) = {
            let pending = self.lock();
            let link = pending.get(file)?;
            (
                link.dir.try_clone(),
                link.name.clone(),
                link.from.clone(),
                link.identity,
            )
        };
        let result = (|| {
            let dir = dir?;
            let unchanged = |when: &str| -> std::io::Result<()> {
                if identity(&dir, &name)?.0 != noted {
                    return Err(std::io::Error::other(format!(
                        "backups/{from}/{name} changed {when}; it is not linked"
                    )));
                }
                Ok(())
            };
            unchanged("after the link was asked for")?;
            let hashed = hash_file_at(&dir, name.as_ref(), bounds)?;
            unchanged("while it was hashed")?;
            Ok(hashed)
        })();
        if let Ok(hashed) = &result
            && let Some(link) = self.lock().get_mut(file)
        {
            link.hashed = Some(hashed.clone());
        }
        Some(result)
    }

    /// Makes every noted link in `new_backup`, each only when its file is still the one noted
    /// (and hashed); returns the size and sha256 of those a step returned as artifacts, by name.
    pub(super) fn make(&self, new_backup: &Dir) -> Result<BTreeMap<String, (u64, String)>> {
        let pending = self.lock();
        let mut hashed = BTreeMap::new();
        for (file, link) in pending.iter() {
            let shown = format!("backups/{}/{}", link.from, link.name);
            let now =
                identity(&link.dir, &link.name).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
            if now.0 != link.identity {
                bail!(
                    "{shown} changed during the run, so {file} cannot be linked to it; run the \
                     backup again (or with full=true)"
                );
            }
            rustix::fs::linkat(
                link.dir.as_fd(),
                link.name.as_str(),
                new_backup.as_fd(),
                file.as_str(),
                AtFlags::empty(),
            )
            .map_err(|e| match e {
                rustix::io::Errno::EXIST => anyhow::anyhow!(
                    "{file}: a step wrote this file into the new backup after another asked to \
                     link it from {shown}; a backup holds one or the other"
                ),
                e => anyhow::anyhow!("linking {shown} as {file}: {e}"),
            })?;
            // What was linked must be the file checked above, not one renamed over it meanwhile.
            let (linked, _) =
                identity(new_backup, file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            if (linked.dev, linked.ino) != (link.identity.dev, link.identity.ino) {
                let _ = rustix::fs::unlinkat(new_backup.as_fd(), file.as_str(), AtFlags::empty());
                bail!("{shown} was replaced while it was being linked; nothing was linked");
            }
            if let Some(h) = &link.hashed {
                hashed.insert(file.clone(), h.clone());
            }
        }
        Ok(hashed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An earlier backup holding `a.tar.gz` and a new one, with no link noted yet.
    struct Fx {
        tmp: tempfile::TempDir,
        old: Dir,
        new: Dir,
        links: Links,
    }

    impl Fx {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(tmp.path().join("20260101-000000")).unwrap();
            std::fs::create_dir_all(tmp.path().join(".partial-r")).unwrap();
            std::fs::write(tmp.path().join("20260101-000000/a.tar.gz"), "old archive").unwrap();
            let open = |p: &str| {
                Dir::open_ambient_dir(tmp.path().join(p), cap_std::ambient_authority()).unwrap()
            };
            let (old, new) = (open("20260101-000000"), open(".partial-r"));
            Fx {
                tmp,
                old,
                new,
                links: Links::default(),
            }
        }

        /// Notes `file` of the new backup as a link to the earlier backup's `name`.
        fn note(&self, file: &str, name: &str) -> Result<(), LinkError> {
            let old = self.old.try_clone().unwrap();
            self.links
                .add(file, &self.new, "20260101-000000", old, name)
        }

        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.tmp.path().join(rel)
        }
    }

    fn inode(path: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    #[test]
    fn a_noted_link_is_invisible_until_made_and_then_shares_the_file() {
        let fx = Fx::new();
        fx.note("a.tar.gz", "a.tar.gz").unwrap();
        assert!(!fx.path(".partial-r/a.tar.gz").exists());
        let (size, sha) = fx
            .links
            .hash("a.tar.gz", HashBounds::default())
            .unwrap()
            .unwrap();
        assert_eq!(size, 11);
        assert!(fx.links.hash("b.tar.gz", HashBounds::default()).is_none());
        let made = fx.links.make(&fx.new).unwrap();
        assert_eq!(made["a.tar.gz"], (size, sha));
        assert_eq!(
            inode(&fx.path(".partial-r/a.tar.gz")),
            inode(&fx.path("20260101-000000/a.tar.gz"))
        );
    }

    #[test]
    fn a_name_is_linked_once_and_never_over_a_file() {
        let fx = Fx::new();
        fx.note("a.tar.gz", "a.tar.gz").unwrap();
        let again = fx.note("a.tar.gz", "a.tar.gz");
        assert!(matches!(again, Err(LinkError::Exists(_))), "{again:?}");
        // The same earlier file under a second name.
        let second = fx.note("b.tar.gz", "a.tar.gz");
        assert!(matches!(second, Err(LinkError::Refused(_))), "{second:?}");
        fx.new.write("c.tar.gz", "written").unwrap();
        let over = fx.note("c.tar.gz", "a.tar.gz");
        assert!(matches!(over, Err(LinkError::Exists(_))), "{over:?}");
        let folder = fx.note("d.tar.gz", ".");
        assert!(matches!(folder, Err(LinkError::Refused(_))), "{folder:?}");
    }

    #[test]
    fn a_file_written_after_the_link_was_noted_fails_the_backup() {
        let fx = Fx::new();
        fx.note("a.tar.gz", "a.tar.gz").unwrap();
        fx.new.write("a.tar.gz", "a step's own file").unwrap();
        let err = fx.links.make(&fx.new).unwrap_err().to_string();
        assert!(err.contains("a step wrote this file"), "{err}");
        let earlier = std::fs::read_to_string(fx.path("20260101-000000/a.tar.gz")).unwrap();
        assert_eq!(earlier, "old archive");
    }

    #[test]
    fn an_earlier_file_that_changed_is_not_linked() {
        let fx = Fx::new();
        fx.note("a.tar.gz", "a.tar.gz").unwrap();
        fx.links
            .hash("a.tar.gz", HashBounds::default())
            .unwrap()
            .unwrap();
        // Same size, so only the times tell.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(fx.path("20260101-000000/a.tar.gz"), "OLD ARCHIVE").unwrap();
        let err = fx.links.make(&fx.new).unwrap_err().to_string();
        assert!(err.contains("changed during the run"), "{err}");
        assert!(!fx.path(".partial-r/a.tar.gz").exists());
        let err = fx
            .links
            .hash("a.tar.gz", HashBounds::default())
            .unwrap()
            .unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("changed after the link was asked for"),
            "{err}"
        );
    }
}
