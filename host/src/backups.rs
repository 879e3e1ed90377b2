//! Backups on the local disk: the hidden partial folder a run writes into, atomic completion,
//! listing, verification, pins and deletion. This is the one storage seam: external storage would
//! implement the same operations.
//!
//! Layout (fixed): `<customer>/backups/<YYYYMMDD-HHMMSS>/` holding the artifacts and `backup.json`;
//! folder mode 700, files 600. A run writes into `backups/.partial-<run-id>/`; only a complete
//! folder whose manifest matches its files is renamed into place, and only such folders are
//! listed. `backups/.pins/<id>` pins a backup (its content says why): it is never deleted. The
//! names, the id format and what "complete" means are [`backup_rules`]', shared with the
//! `retention` and `preflight` plugins so they count exactly the backups listed here.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cap_std::fs::{Dir, Permissions, PermissionsExt as _};
use rustix::fs::{Mode, OFlags, RenameFlags};
use serde::{Deserialize, Serialize};

use crate::events::VerifiedArtifact;

mod links;
pub use links::{LinkError, Links};

pub use backup_rules::{BACKUPS, MANIFEST, PARTIAL_PREFIX, PINS, is_backup_id};
use backup_rules::{BackupId, DELETING_PREFIX, FORMAT_VERSION, MAX_MANIFEST_BYTES};

/// The id for a run starting `now`: that second as `YYYYMMDD-HHMMSS` (UTC), or one second
/// after the customer's newest backup when that is not older (two runs in the same second,
/// queued back to back on a small shop; a clock set back). Ids thus never repeat and always
/// sort by age. Reads only the names in `backups/`; no folder means no backups yet.
pub fn next_id(customer_dir: &Path, now: time::OffsetDateTime) -> String {
    let newest = std::fs::read_dir(customer_dir.join(BACKUPS))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| BackupId::parse(e.file_name().to_str()?))
        .max();
    let now = now.to_offset(time::UtcOffset::UTC);
    let Some(candidate) = BackupId::new(
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    ) else {
        // Past year 9999: no id fits, and `begin` says so.
        return now.to_string();
    };
    match newest {
        Some(newest) if newest >= candidate => newest.next().unwrap_or(newest),
        _ => candidate,
    }
    .to_string()
}

/// One artifact as `backup.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestArtifact {
    /// Label (`db`, `backend`, …).
    pub name: String,
    /// File name inside the backup folder.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// The parts of `backup.json` the host relies on; the rest is kept as it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Format version (1).
    pub format_version: u32,
    /// The backup id.
    pub id: String,
    /// The artifacts.
    pub artifacts: Vec<ManifestArtifact>,
    /// Every other field, as written.
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// A complete backup.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// Its id (folder name).
    pub id: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Sum of artifact sizes.
    pub size: u64,
    /// Why it is pinned, when it is.
    pub pinned: Option<String>,
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{path}: {e}")
}

fn fsync_dir(dir: &Dir) -> std::io::Result<()> {
    let fd = rustix::fs::openat(
        dir.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Opens (creating it, mode 700) the customer's backups folder.
pub fn open_backups(customer: &Dir) -> Result<Dir> {
    match customer.create_dir(BACKUPS) {
        Ok(()) => customer
            .set_permissions(BACKUPS, Permissions::from_mode(0o700))
            .map_err(io(BACKUPS))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(BACKUPS)(e)),
    }
    customer.open_dir(BACKUPS).map_err(io(BACKUPS))
}

/// A run's backup folder while it is being written.
#[derive(Debug)]
pub struct Partial {
    /// The backups folder.
    backups: Dir,
    /// `.partial-<run-id>`.
    name: String,
    /// The id it will get (`YYYYMMDD-HHMMSS`).
    pub id: String,
    /// The partial folder itself.
    pub dir: Dir,
    /// Earlier backups' files to link into it when it completes.
    links: std::sync::Arc<Links>,
}

/// Starts a backup: removes what crashed runs left behind (partial and half-deleted folders;
/// the caller holds the customer's lock, so none of them is in use) and creates
/// `backups/.partial-<run-id>/` (mode 700).
pub fn begin(customer: &Dir, run_id: &str, id: &str) -> Result<Partial> {
    anyhow::ensure!(
        is_backup_id(id),
        "`{id}` is not a backup id (YYYYMMDD-HHMMSS)"
    );
    let backups = open_backups(customer)?;
    for entry in backups.entries().map_err(io(BACKUPS))? {
        let entry = entry.map_err(io(BACKUPS))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PARTIAL_PREFIX) || name.starts_with(DELETING_PREFIX) {
            tracing::info!("removing {name} left behind by an interrupted run");
            backups.remove_dir_all(&name).map_err(io(&name))?;
        }
    }
    if backups.exists(id) {
        bail!("backup {id} already exists; start the run again in a second");
    }
    let name = backup_rules::partial_name(run_id);
    backups.create_dir(&name).map_err(io(&name))?;
    backups
        .set_permissions(&name, Permissions::from_mode(0o700))
        .map_err(io(&name))?;
    let dir = backups.open_dir(&name).map_err(io(&name))?;
    Ok(Partial {
        backups,
        name,
        id: id.to_owned(),
        dir,
        links: Default::default(),
    })
}

impl Partial {
    /// Removes the partial folder (failed or cancelled run).
    pub fn abort(self) {
        if let Err(e) = self.backups.remove_dir_all(&self.name) {
            tracing::warn!("cannot remove {}: {e}", self.name);
        }
    }

    /// The links of earlier backups' files steps asked for (`files.hard-link`), made by
    /// [`Partial::finalize`].
    pub fn links(&self) -> std::sync::Arc<Links> {
        self.links.clone()
    }

    /// Completes the backup: makes the noted links to earlier backups' files, checks
    /// `backup.json` against the files (using what the host already hashed when steps returned
    /// them, hashing the rest), sets modes 600/700, fsyncs every file and the folder, renames it
    /// to `backups/<id>/` without replacing anything, and fsyncs `backups/`. On error the
    /// partial folder stays for [`Partial::abort`].
    pub fn finalize(&self, verified: &[VerifiedArtifact]) -> Result<Manifest> {
        let manifest = read_manifest(&self.dir).context("the run wrote no valid backup.json")?;
        let linked = self.links.make(&self.dir)?;
        anyhow::ensure!(
            manifest.id == self.id,
            "backup.json names backup {}, but this run writes {}",
            manifest.id,
            self.id
        );
        let mut listed: BTreeMap<&str, &ManifestArtifact> = BTreeMap::new();
        for a in &manifest.artifacts {
            anyhow::ensure!(
                backup_rules::is_artifact_file(&a.file),
                "backup.json lists `{}`, which is not a plain artifact file name",
                a.file
            );
            anyhow::ensure!(
                listed.insert(&a.file, a).is_none(),
                "backup.json lists `{}` twice",
                a.file
            );
        }
        let known: BTreeMap<String, (u64, &str)> = verified
            .iter()
            .filter_map(|v| {
                Path::new(&v.path).file_name().map(|f| {
                    (
                        f.to_string_lossy().into_owned(),
                        (v.size, v.sha256.as_str()),
                    )
                })
            })
            .chain(
                linked
                    .iter()
                    .map(|(f, (size, sha))| (f.clone(), (*size, sha.as_str()))),
            )
            .collect();
        for entry in self.dir.entries().map_err(io(&self.name))? {
            let entry = entry.map_err(io(&self.name))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(io(&name))?;
            anyhow::ensure!(
                ft.is_file(),
                "{name} in the backup folder is not a regular file"
            );
            if name != MANIFEST {
                let a = listed.remove(name.as_str()).with_context(|| {
                    format!("{name} is in the backup folder but not in backup.json")
                })?;
                let (size, sha) = match known.get(&name) {
                    Some((size, sha)) => (*size, (*sha).to_owned()),
                    None => crate::files::hash_file_at(
                        &self.dir,
                        entry.file_name().as_os_str(),
                        crate::files::HashBounds {
                            expect_size: Some(a.size),
                            deadline: None,
                        },
                    )
                    .map_err(io(&name))?,
                };
                anyhow::ensure!(
                    size == a.size && sha.eq_ignore_ascii_case(&a.sha256),
                    "{name}: backup.json says {} bytes, sha256 {}, but the file has {size} bytes, sha256 {sha}",
                    a.size,
                    a.sha256
                );
            }
            self.dir
                .set_permissions(&name, Permissions::from_mode(0o600))
                .map_err(io(&name))?;
            let file = self.dir.open(&name).map_err(io(&name))?;
            file.sync_all().map_err(io(&name))?;
        }
        if let Some(missing) = listed.keys().next() {
            bail!("backup.json lists {missing}, which the run did not write");
        }
        fsync_dir(&self.dir).map_err(io(&self.name))?;
        rustix::fs::renameat_with(
            self.backups.as_fd(),
            &self.name,
            self.backups.as_fd(),
            &self.id,
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| anyhow::anyhow!("renaming {} to {}: {e}", self.name, self.id))?;
        fsync_dir(&self.backups).map_err(io(BACKUPS))?;
        Ok(manifest)
    }
}

/// A pin file's reason is at most this long.
const MAX_PIN: u64 = 4 << 10;

/// Reads a small file the customer could have written: a regular file (a FIFO never blocks the
/// host, a link never leads out of `dir`) of at most `cap` bytes.
fn read_small(dir: &Dir, path: &Path, cap: u64) -> std::io::Result<String> {
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true);
    cap_std::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NONBLOCK);
    let file = dir.open_with(path, &opts)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > cap {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {} a host reads",
            meta.len(),
            crate::pipeline::units::human_bytes(cap)
        )));
    }
    let mut text = String::new();
    file.take(cap).read_to_string(&mut text)?;
    Ok(text)
}

/// Reads and parses `backup.json` in `dir` (at most 16 MiB, a regular file).
pub fn read_manifest(dir: &Dir) -> Result<Manifest> {
    let text = read_small(dir, Path::new(MANIFEST), MAX_MANIFEST_BYTES).map_err(io(MANIFEST))?;
    let m: Manifest =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{MANIFEST}: {e}"))?;
    anyhow::ensure!(
        m.format_version == FORMAT_VERSION,
        "{MANIFEST}: unknown formatVersion {}",
        m.format_version
    );
    Ok(m)
}

fn pin_reason(backups: &Dir, id: &str) -> Option<String> {
    let path = backup_rules::pin_path(id);
    let s = match read_small(backups, Path::new(&path), MAX_PIN) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        // A pin file that cannot be read still pins: never delete what someone meant to keep.
        Err(e) => return Some(format!("pinned (the pin file cannot be read: {e})")),
    };
    Some(if s.trim().is_empty() {
        "pinned".into()
    } else {
        s.trim().to_owned()
    })
}

/// The customer's complete backups, newest first: the folders [`backup_rules::complete`] accepts
/// (a real folder named by a backup id, its `backup.json` of format 1 naming that id, every
/// artifact it lists there with the listed size; `verify` checks the hashes too). Partial,
/// half-deleted, damaged and foreign folders never are.
pub fn list(customer: &Dir) -> Result<Vec<Backup>> {
    let backups = match customer.open_dir(BACKUPS) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(BACKUPS)(e)),
    };
    let mut out = Vec::new();
    for entry in backups.entries().map_err(io(BACKUPS))? {
        let entry = entry.map_err(io(BACKUPS))?;
        let id = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        // Only a folder that may be a backup is opened and its manifest read.
        let candidate = is_dir && is_backup_id(&id);
        let dir = candidate.then(|| backups.open_dir(&id).ok()).flatten();
        let manifest = dir.as_ref().and_then(|d| read_manifest(d).ok());
        let rules = manifest.as_ref().map(|m| backup_rules::Manifest {
            format_version: u64::from(m.format_version),
            id: &m.id,
            artifacts: m
                .artifacts
                .iter()
                .map(|a| backup_rules::Artifact {
                    name: &a.name,
                    file: &a.file,
                    size: a.size,
                    sha256: &a.sha256,
                })
                .collect(),
        });
        let complete = backup_rules::complete(&id, is_dir, rules.as_ref(), |file| {
            let dir = dir.as_ref()?;
            let meta = dir.symlink_metadata(file).ok()?;
            meta.is_file().then(|| meta.len())
        });
        if let Err(why) = complete {
            if candidate {
                tracing::debug!("{id}: {why}; not listed");
            }
            continue;
        }
        let Some(manifest) = manifest else { continue };
        let size = manifest.artifacts.iter().map(|a| a.size).sum();
        out.push(Backup {
            pinned: pin_reason(&backups, &id),
            id,
            manifest,
            size,
        });
    }
    out.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(out)
}

/// What `verify` found wrong with one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The artifact's file.
    pub file: String,
    /// What is wrong.
    pub problem: String,
}

/// Re-hashes every artifact of backup `id` against its manifest.
pub fn verify(customer: &Dir, id: &str) -> Result<Vec<Problem>> {
    anyhow::ensure!(
        is_backup_id(id),
        "`{id}` is not a backup id (YYYYMMDD-HHMMSS)"
    );
    let dir = customer
        .open_dir(Path::new(BACKUPS).join(id))
        .with_context(|| format!("no backup {id}"))?;
    let manifest = read_manifest(&dir)?;
    let mut problems = Vec::new();
    for a in &manifest.artifacts {
        let bounds = crate::files::HashBounds {
            expect_size: Some(a.size),
            deadline: None,
        };
        match crate::files::hash_file_at(&dir, std::ffi::OsStr::new(&a.file), bounds) {
            Ok((size, sha)) => {
                if size != a.size {
                    problems.push(Problem {
                        file: a.file.clone(),
                        problem: format!("size {size}, backup.json says {}", a.size),
                    });
                } else if !sha.eq_ignore_ascii_case(&a.sha256) {
                    problems.push(Problem {
                        file: a.file.clone(),
                        problem: format!("sha256 {sha}, backup.json says {}", a.sha256),
                    });
                }
            }
            Err(e) => problems.push(Problem {
                file: a.file.clone(),
                problem: e.to_string(),
            }),
        }
    }
    Ok(problems)
}

/// Deletes backup `id`, unless it is pinned. The folder is first renamed to a hidden name, so a
/// crash half-way never leaves a half-deleted backup listed.
pub fn delete(customer: &Dir, id: &str) -> Result<()> {
    anyhow::ensure!(
        is_backup_id(id),
        "`{id}` is not a backup id (YYYYMMDD-HHMMSS)"
    );
    let backups = customer
        .open_dir(BACKUPS)
        .with_context(|| format!("no backup {id}"))?;
    anyhow::ensure!(backups.is_dir(id), "no backup {id}");
    if let Some(reason) = pin_reason(&backups, id) {
        bail!(
            "backup {id} is pinned ({reason}) and cannot be deleted; remove backups/{PINS}/{id} first if it is no longer needed"
        );
    }
    let hidden = format!("{DELETING_PREFIX}{id}");
    backups.rename(id, &backups, &hidden).map_err(io(id))?;
    fsync_dir(&backups).map_err(io(BACKUPS))?;
    backups.remove_dir_all(&hidden).map_err(io(&hidden))?;
    Ok(())
}

/// Pins backup `id` with a reason (e.g. `pre-upgrade v1.1.0`).
pub fn pin(customer: &Dir, id: &str, reason: &str) -> Result<()> {
    let backups = open_backups(customer)?;
    anyhow::ensure!(backups.is_dir(id), "no backup {id}");
    match backups.create_dir(PINS) {
        Ok(()) | Err(_) => {}
    }
    let mut f = backups
        .create(backup_rules::pin_path(id))
        .map_err(io(PINS))?;
    f.write_all(reason.as_bytes()).map_err(io(PINS))?;
    Ok(())
}

/// The folder of backup `id`, for messages.
pub fn display_path(customer_path: &Path, id: &str) -> PathBuf {
    customer_path.join(BACKUPS).join(id)
}

#[cfg(test)]
mod next_id_tests {
    use super::*;

    #[test]
    fn a_second_run_in_the_same_second_takes_the_next_free_id() {
        let tmp = tempfile::tempdir().unwrap();
        let now = time::macros::datetime!(2026-12-06 10:15:59 UTC);
        assert_eq!(
            next_id(tmp.path(), now),
            "20261206-101559",
            "no backups folder"
        );
        std::fs::create_dir_all(tmp.path().join("backups/20261206-101559")).unwrap();
        // Same second: the next one, across a minute, an hour, a day and a year.
        assert_eq!(next_id(tmp.path(), now), "20261206-101600");
        std::fs::create_dir_all(tmp.path().join("backups/20261231-235959")).unwrap();
        assert_eq!(next_id(tmp.path(), now), "20270101-000000");
        // Names that are not ids (partials, pins, junk) do not count.
        let tmp = tempfile::tempdir().unwrap();
        for n in [".partial-x", ".pins", "99999999-999999", "zzz"] {
            std::fs::create_dir_all(tmp.path().join("backups").join(n)).unwrap();
        }
        assert_eq!(next_id(tmp.path(), now), "20261206-101559");
        // An older newest backup leaves the current time alone.
        std::fs::create_dir_all(tmp.path().join("backups/20261206-101558")).unwrap();
        assert_eq!(next_id(tmp.path(), now), "20261206-101559");
        // Id-shaped junk (`99999999-999999` sorts last) does not hide the newest real backup.
        std::fs::create_dir_all(tmp.path().join("backups/20261206-101559")).unwrap();
        assert_eq!(next_id(tmp.path(), now), "20261206-101600");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
    }

    /// A customer folder with one complete backup holding a 4-byte `db.dump`.
    fn customer_with_backup(root: &Path, id: &str) -> Dir {
        let b = root.join("backups").join(id);
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("db.dump"), b"dump").unwrap();
        let sha = hex::encode(Sha256::digest(b"dump"));
        std::fs::write(
            b.join(MANIFEST),
            format!(
                r#"{{"formatVersion":1,"id":"{id}","artifacts":[{{"name":"db","file":"db.dump","size":4,"sha256":"{sha}"}}]}}"#
            ),
        )
        .unwrap();
        Dir::open_ambient_dir(root, cap_std::ambient_authority()).unwrap()
    }

    #[test]
    fn files_a_customer_can_write_never_block_or_flood_the_host() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let customer = customer_with_backup(root, "20261205-010000");
        assert_eq!(list(&customer).unwrap().len(), 1);

        // A FIFO as backup.json: not listed, at once.
        let m = root.join("backups/20261205-010000").join(MANIFEST);
        let text = std::fs::read(&m).unwrap();
        std::fs::remove_file(&m).unwrap();
        mkfifo(&m);
        let started = Instant::now();
        assert!(list(&customer).unwrap().is_empty());
        let err = verify(&customer, "20261205-010000").unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        assert!(started.elapsed() < Duration::from_secs(2));

        // A 17 MiB backup.json: not read.
        std::fs::remove_file(&m).unwrap();
        let mut big = text.clone();
        big.truncate(big.len() - 1);
        big.extend(std::iter::repeat_n(b' ', 17 << 20));
        big.push(b'}');
        std::fs::write(&m, &big).unwrap();
        assert!(list(&customer).unwrap().is_empty());
        let err = verify(&customer, "20261205-010000").unwrap_err();
        assert!(
            format!("{err:#}").contains("more than the 16 MiB"),
            "{err:#}"
        );

        // A FIFO as pin file: still pinned (never deleted), and listing does not block.
        std::fs::write(&m, &text).unwrap();
        std::fs::create_dir_all(root.join("backups").join(PINS)).unwrap();
        mkfifo(&root.join("backups").join(PINS).join("20261205-010000"));
        let listed = list(&customer).unwrap();
        assert!(
            listed[0]
                .pinned
                .as_deref()
                .unwrap()
                .contains("cannot be read"),
            "{:?}",
            listed[0].pinned
        );
        assert!(delete(&customer, "20261205-010000").is_err());
    }

    #[test]
    fn only_complete_backups_are_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let customer = customer_with_backup(root, "20261205-010000");
        let manifest = root.join("backups/20261205-010000").join(MANIFEST);
        let good = std::fs::read_to_string(&manifest).unwrap();
        assert_eq!(list(&customer).unwrap().len(), 1);
        // What retention's old rules counted and the host never listed, or listed wrongly.
        for (bad, why) in [
            (
                good.replace(r#""id":"20261205-010000""#, r#""id":"20261205-010001""#),
                "another id",
            ),
            (
                good.replace(r#""formatVersion":1"#, r#""formatVersion":2"#),
                "format 2",
            ),
            (
                good.replace(r#""file":"db.dump""#, r#""file":"../db.dump""#),
                "not a plain name",
            ),
            (good.replace(r#""size":4"#, r#""size":5"#), "another size"),
        ] {
            assert_ne!(bad, good, "{why}");
            std::fs::write(&manifest, &bad).unwrap();
            assert!(list(&customer).unwrap().is_empty(), "{why}");
        }
        std::fs::write(&manifest, &good).unwrap();
        // Not a calendar time: not a backup id, whatever is inside.
        std::fs::rename(
            root.join("backups/20261205-010000"),
            root.join("backups/20261305-010000"),
        )
        .unwrap();
        assert!(list(&customer).unwrap().is_empty());
    }

    #[test]
    fn hashing_a_huge_sparse_file_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(tmp.path().join("a.tar.gz")).unwrap();
        f.set_len(1 << 40).unwrap(); // 1 TiB, sparse
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        let name = std::ffi::OsStr::new("a.tar.gz");
        let started = Instant::now();
        // Claimed to be small: refused from its size alone.
        let bounds = crate::files::HashBounds {
            expect_size: Some(10),
            deadline: None,
        };
        let err = crate::files::hash_file_at(&dir, name, bounds).unwrap_err();
        assert!(err.to_string().contains("not the 10 expected"), "{err}");
        // Claimed at its real size: stopped at the deadline.
        let bounds = crate::files::HashBounds {
            expect_size: Some(1 << 40),
            deadline: Some(Instant::now() + Duration::from_millis(300)),
        };
        let err = crate::files::hash_file_at(&dir, name, bounds).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("of 1 TiB"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
