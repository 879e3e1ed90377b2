//! Grant resolution: turns a step's planned mounts into folders opened inside the customer's (or
//! the run's work) folder, and maps guest paths (and host paths the kernel reports, such as a
//! process's working folder) back onto them.
//!
//! Every folder is opened with cap-std relative to a root that was opened once, so `..`, absolute
//! paths and symlinks that lead out of the root are refused by construction. wasmtime-wasi is then
//! handed `/proc/self/fd/<n>` of the already-open folder, so nothing can be swapped in between the
//! check and the preopen.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::pipeline::{MountRoot, PlannedMount};

/// Why a grant could not be resolved or a guest path is refused.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The customer has no folder.
    #[error(
        "customer folder {path} does not exist (check the domain, or set QODIFY_CUSTOMERS_ROOT / --customers-root)"
    )]
    NoCustomerFolder {
        /// The folder that was looked for.
        path: PathBuf,
    },
    /// A mount's folder is missing and neither `create` nor `optional` is set.
    #[error(
        "mount {guest}: {root}/{path} does not exist (create it, or mark the mount `optional = true` to skip the step, or `create = true` with access = \"rw\")"
    )]
    Missing {
        /// Guest path of the mount.
        guest: String,
        /// `customer` or `work`.
        root: &'static str,
        /// The relative path.
        path: String,
    },
    /// The mount would leave its root (through a symlink, usually).
    #[error(
        "mount {guest}: {root}/{path} leads outside the {root} folder ({source}); grants never reach outside it"
    )]
    Escape {
        /// Guest path of the mount.
        guest: String,
        /// `customer` or `work`.
        root: &'static str,
        /// The relative path.
        path: String,
        /// What the OS or cap-std said.
        source: std::io::Error,
    },
    /// The path is not a folder.
    #[error("mount {guest}: {root}/{path} is not a folder; mounts must be folders")]
    NotADir {
        /// Guest path of the mount.
        guest: String,
        /// `customer` or `work`.
        root: &'static str,
        /// The relative path.
        path: String,
    },
    /// Any other I/O error while opening a mount.
    #[error("mount {guest}: cannot open {root}/{path}: {source}")]
    Io {
        /// Guest path of the mount.
        guest: String,
        /// `customer` or `work`.
        root: &'static str,
        /// The relative path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The two roots a mount may start from.
pub struct Roots {
    /// The customer's folder.
    pub customer: Dir,
    /// Its path, for messages and the preopen label.
    pub customer_path: PathBuf,
    /// The run's private work folder.
    pub work: Dir,
    /// Its path.
    pub work_path: PathBuf,
    /// The run's new backup folder (still hidden) when the pipeline has `output = "backup"`.
    pub backup: Option<(Dir, PathBuf)>,
    /// Earlier backups' files to be linked into the new backup when it completes.
    pub links: Option<std::sync::Arc<crate::backups::Links>>,
    /// The release catalog, when it exists (mounts from it are always read-only).
    pub releases: Option<(Dir, PathBuf)>,
}

/// Opens `<customers_root>/<domain>` (a validated DNS name: one plain component; cap-std refuses
/// a `<domain>` symlink that leads out of the customers root).
pub fn open_customer(customers_root: &Path, domain: &str) -> Result<Dir, SandboxError> {
    let missing = || SandboxError::NoCustomerFolder {
        path: customers_root.join(domain),
    };
    let root = Dir::open_ambient_dir(customers_root, ambient_authority()).map_err(|_| missing())?;
    root.open_dir(domain).map_err(|_| missing())
}

impl Roots {
    /// Opens `<customers_root>/<domain>` and the run's work folder.
    pub fn open(
        customers_root: &Path,
        domain: &str,
        work_path: &Path,
    ) -> Result<Self, SandboxError> {
        let customer = open_customer(customers_root, domain)?;
        Self::with_customer(customer, customers_root.join(domain), work_path)
    }

    /// Opens `folder` as the customer's folder (`qodify-host step`'s fixture) and the run's
    /// work folder.
    pub fn open_folder(folder: &Path, work_path: &Path) -> Result<Self, SandboxError> {
        let customer = Dir::open_ambient_dir(folder, ambient_authority()).map_err(|_| {
            SandboxError::NoCustomerFolder {
                path: folder.to_path_buf(),
            }
        })?;
        Self::with_customer(customer, folder.to_path_buf(), work_path)
    }

    fn with_customer(
        customer: Dir,
        customer_path: PathBuf,
        work_path: &Path,
    ) -> Result<Self, SandboxError> {
        let work = Dir::open_ambient_dir(work_path, ambient_authority()).map_err(|source| {
            SandboxError::Io {
                guest: "(work folder)".into(),
                root: "work",
                path: work_path.display().to_string(),
                source,
            }
        })?;
        Ok(Self {
            customer,
            customer_path,
            work,
            work_path: work_path.to_path_buf(),
            backup: None,
            links: None,
            releases: None,
        })
    }
}

/// One granted folder, open.
#[derive(Debug)]
pub struct Mount {
    /// Absolute guest path, normalised (`/src`).
    pub guest: String,
    /// The open folder.
    pub dir: Dir,
    /// Whether the step may change things inside it.
    pub writable: bool,
    /// Which root it hangs off.
    pub root: MountRoot,
    /// Its path relative to that root.
    pub rel: PathBuf,
    /// Its host path, for messages only (never used to open anything).
    pub display: PathBuf,
}

impl Mount {
    /// A path through which the OS reopens exactly this open folder (Linux `/proc/self/fd`).
    pub fn reopen_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
    }

    /// Where this open folder is now, as the kernel names it: absolute, every symlink resolved
    /// (also those in the customers root). For comparing with other paths the kernel reports;
    /// never used to open anything.
    pub fn canonical_path(&self) -> std::io::Result<PathBuf> {
        std::fs::read_link(self.reopen_path())
    }
}

/// The name of a mount root, as pipelines write it.
pub fn root_name(r: MountRoot) -> &'static str {
    match r {
        MountRoot::Customer => "customer",
        MountRoot::Work => "work",
        MountRoot::Backup => "backup",
        MountRoot::Releases => "releases",
    }
}

/// The folders one step was granted.
#[derive(Debug, Default)]
pub struct MountTable {
    mounts: Vec<Mount>,
}

/// A guest path, checked and split onto its mount.
pub struct Located<'a> {
    /// The mount holding the path.
    pub mount: &'a Mount,
    /// The path inside the mount; empty for the mount's root.
    pub rel: PathBuf,
}

impl MountTable {
    /// Opens every planned mount. `Ok(None)` means an `optional` mount is missing, so the step is
    /// skipped.
    pub fn resolve(planned: &[PlannedMount], roots: &Roots) -> Result<Option<Self>, SandboxError> {
        let mut mounts = Vec::with_capacity(planned.len());
        for m in planned {
            let (base, base_path) = match m.from {
                MountRoot::Customer => (&roots.customer, &roots.customer_path),
                MountRoot::Work => (&roots.work, &roots.work_path),
                MountRoot::Releases => match &roots.releases {
                    Some((dir, path)) => (dir, path),
                    None => {
                        return Err(SandboxError::Missing {
                            guest: m.guest.clone(),
                            root: "releases",
                            path: m.path.display().to_string(),
                        });
                    }
                },
                MountRoot::Backup => match &roots.backup {
                    Some((dir, path)) => (dir, path),
                    None => {
                        return Err(SandboxError::Io {
                            guest: m.guest.clone(),
                            root: "backup",
                            path: m.path.display().to_string(),
                            source: std::io::Error::other(
                                "the pipeline has no `output = \"backup\"`",
                            ),
                        });
                    }
                },
            };
            let root = root_name(m.from);
            let path_str = m.path.display().to_string();
            // The loader already refuses these; checked again because grants are the boundary.
            if m.path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(SandboxError::Escape {
                    guest: m.guest.clone(),
                    root,
                    path: path_str,
                    source: std::io::Error::other(
                        "only plain folder names are allowed in grant paths",
                    ),
                });
            }
            let opened = if m.path.as_os_str().is_empty() {
                base.try_clone()
            } else {
                match base.open_dir(&m.path) {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound && m.create && m.writable =>
                    {
                        base.create_dir_all(&m.path)
                            .and_then(|()| base.open_dir(&m.path))
                    }
                    other => other,
                }
            };
            let dir = match opened {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if m.optional {
                        return Ok(None);
                    }
                    return Err(SandboxError::Missing {
                        guest: m.guest.clone(),
                        root,
                        path: path_str,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    return Err(SandboxError::NotADir {
                        guest: m.guest.clone(),
                        root,
                        path: path_str,
                    });
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        || e.to_string().contains("outside") =>
                {
                    return Err(SandboxError::Escape {
                        guest: m.guest.clone(),
                        root,
                        path: path_str,
                        source: e,
                    });
                }
                Err(source) => {
                    return Err(SandboxError::Io {
                        guest: m.guest.clone(),
                        root,
                        path: path_str,
                        source,
                    });
                }
            };
            mounts.push(Mount {
                guest: m.guest.clone(),
                dir,
                // The catalog is shared by every customer: never writable, whatever the plan says.
                writable: m.writable && m.from != MountRoot::Releases,
                root: m.from,
                rel: m.path.clone(),
                display: base_path.join(&m.path),
            });
        }
        Ok(Some(Self { mounts }))
    }

    /// The mounts, in pipeline order.
    pub fn iter(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter()
    }

    /// Maps a guest path onto its mount. Refuses relative paths, `..` anywhere, NUL, and paths
    /// outside every mount. A trailing slash is dropped: callers never follow a final symlink.
    pub fn locate(&self, guest: &str) -> Result<Located<'_>, String> {
        if !guest.starts_with('/') {
            return Err(format!("`{guest}` is not an absolute guest path"));
        }
        if guest.contains('\0') {
            return Err("paths cannot contain NUL".into());
        }
        let mut parts = Vec::new();
        for c in guest.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(format!("`{guest}`: `..` is not allowed in paths")),
                c => parts.push(c),
            }
        }
        for m in &self.mounts {
            let mparts: Vec<&str> = m.guest.split('/').filter(|c| !c.is_empty()).collect();
            if parts.len() >= mparts.len() && parts[..mparts.len()] == mparts[..] {
                let rel: PathBuf = parts[mparts.len()..].iter().collect();
                return Ok(Located { mount: m, rel });
            }
        }
        Err(format!("`{guest}` is outside the step's mounts"))
    }

    /// Maps a canonical host path (one the kernel reports, such as `/proc/<pid>/cwd`) onto the
    /// mount whose folder holds it, by whole components against each mount's
    /// [`Mount::canonical_path`]. When host folders of two mounts nest, the inner one wins.
    /// Compares names only: a caller that must be sure the path is the same folder checks the
    /// inode through the mount.
    pub fn locate_host(&self, host: &Path) -> Option<Located<'_>> {
        let mut best: Option<(usize, Located<'_>)> = None;
        for m in &self.mounts {
            let Ok(base) = m.canonical_path() else {
                continue;
            };
            let Ok(rel) = host.strip_prefix(&base) else {
                continue;
            };
            let depth = base.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth > *d) {
                let rel = rel.to_path_buf();
                best = Some((depth, Located { mount: m, rel }));
            }
        }
        best.map(|(_, loc)| loc)
    }
}

impl Located<'_> {
    /// The guest path of this location (`/customer/releases/v1`); `None` when the path inside
    /// the mount is not UTF-8 and cannot be told to a guest.
    pub fn guest_path(&self) -> Option<String> {
        let rel = self.rel.to_str()?;
        let base = self.mount.guest.trim_end_matches('/');
        Some(if rel.is_empty() {
            self.mount.guest.clone()
        } else {
            format!("{base}/{rel}")
        })
    }

    /// Opens the folder holding the entry and returns it with the entry's name; for the mount's
    /// root, the root itself and `.`. Symlinks inside the mount are followed only while they stay
    /// inside it.
    pub fn parent(&self) -> std::io::Result<(Dir, std::ffi::OsString)> {
        match (self.rel.parent(), self.rel.file_name()) {
            (Some(parent), Some(name)) => {
                let dir = if parent.as_os_str().is_empty() {
                    self.mount.dir.try_clone()?
                } else {
                    self.mount.dir.open_dir(parent)?
                };
                Ok((dir, name.to_owned()))
            }
            _ => Ok((self.mount.dir.try_clone()?, ".".into())),
        }
    }
}
