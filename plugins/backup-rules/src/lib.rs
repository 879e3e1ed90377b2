//! The backup folder rules, written once for both sides of the WIT boundary: the host
//! (`host/src/backups.rs`: completion, listing, deletion, the next id) and the guest plugins that
//! look at a customer's backups (`retention` and `preflight`, through `backup-list`). A backup the
//! host lists is the backup retention counts.
//!
//! ```text
//! <customer>/backups/<id>/             a complete backup: its artifacts and backup.json
//! <customer>/backups/.partial-<run>/   a run writing its backup (hidden, never listed)
//! <customer>/backups/.deleting-<id>/   a backup being deleted (hidden, never listed)
//! <customer>/backups/.pins/<id>        pins backup <id>; its text says why
//! ```
//!
//! A backup id is the run's start time in UTC, `YYYYMMDD-HHMMSS` ([`BackupId`]); two runs in the
//! same second get consecutive seconds, never a suffix. What makes a folder a complete backup is
//! [`complete`]. No dependencies: reading `backup.json` (JSON) stays with the callers, which hand
//! over what they read as a [`Manifest`].
//!
//! A library, not a plugin: the host links it, and so do the plugins through `backup-list`.

use std::fmt;

/// The backups folder inside a customer folder.
pub const BACKUPS: &str = "backups";
/// A backup's manifest, inside its folder.
pub const MANIFEST: &str = "backup.json";
/// The pins folder inside `backups/`: `.pins/<id>` pins backup `<id>`.
pub const PINS: &str = ".pins";
/// Prefix of a run's partial folder inside `backups/`: `.partial-<run id>`.
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Prefix of a backup being deleted inside `backups/`: `.deleting-<id>`.
pub const DELETING_PREFIX: &str = ".deleting-";
/// The `formatVersion` of `backup.json` this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// A `backup.json` larger than this is not read (the customer's apps can write the folder).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The name of run `run_id`'s partial folder inside `backups/`.
pub fn partial_name(run_id: &str) -> String {
    format!("{PARTIAL_PREFIX}{run_id}")
}

/// The path of backup `id`'s pin file, relative to `backups/`.
pub fn pin_path(id: &str) -> String {
    format!("{PINS}/{id}")
}

/// A backup id: a second in UTC, written `YYYYMMDD-HHMMSS`. Ids sort by age, as text and as
/// values.
///
/// ```
/// use backup_rules::BackupId;
///
/// let id = BackupId::parse("20261231-235959").unwrap();
/// assert_eq!(id.next().unwrap().to_string(), "20270101-000000");
/// assert!(BackupId::parse("20260230-120000").is_none()); // no 30 February
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId {
    // Field order is the sort order: oldest first.
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl BackupId {
    /// The id of a UTC time; `None` unless it is a real date (years 0 to 9999) and a time of day
    /// (seconds 0 to 59).
    pub fn new(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<Self> {
        let year = u16::try_from(year).ok().filter(|y| *y <= 9999)?;
        let valid = (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(BackupId {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Reads `YYYYMMDD-HHMMSS`: exactly 15 bytes, digits around one `-`, a real date and time.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let shaped = b.len() == 15
            && b.iter().enumerate().all(|(i, c)| {
                if i == 8 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            });
        if !shaped {
            return None;
        }
        let n = |from: usize, to: usize| {
            b[from..to]
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
        };
        let two = |from: usize| u8::try_from(n(from, from + 2)).ok();
        BackupId::new(
            i32::try_from(n(0, 4)).ok()?,
            two(4)?,
            two(6)?,
            two(9)?,
            two(11)?,
            two(13)?,
        )
    }

    /// The id one second later (across minutes, hours, days, months and years); `None` after
    /// 9999-12-31 23:59:59.
    pub fn next(self) -> Option<Self> {
        let mut id = self;
        id.second += 1;
        if id.second == 60 {
            id.second = 0;
            id.minute += 1;
        }
        if id.minute == 60 {
            id.minute = 0;
            id.hour += 1;
        }
        if id.hour == 24 {
            id.hour = 0;
            id.day += 1;
        }
        if id.day > days_in_month(id.year, id.month) {
            id.day = 1;
            id.month += 1;
        }
        if id.month == 13 {
            id.month = 1;
            id.year += 1;
        }
        (id.year <= 9999).then_some(id)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// True when `name` is a backup id (see [`BackupId::parse`]).
pub fn is_backup_id(name: &str) -> bool {
    BackupId::parse(name).is_some()
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// What `backup.json` says, as its reader parsed it: the document had `formatVersion`, `id` and
/// `artifacts`, each artifact with `name`, `file`, `size` and `sha256`. A document missing any of
/// them is no manifest at all (pass `None` to [`complete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest<'a> {
    /// `formatVersion`.
    pub format_version: u64,
    /// `id`: the backup it describes.
    pub id: &'a str,
    /// `artifacts`.
    pub artifacts: Vec<Artifact<'a>>,
}

/// One entry of a [`Manifest`]'s artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact<'a> {
    /// Its label (`db`, `backend`, …).
    pub name: &'a str,
    /// Its file inside the backup folder.
    pub file: &'a str,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256 in hex.
    pub sha256: &'a str,
}

/// True when `file` may be an artifact's file name: one plain name inside the backup folder, not
/// hidden and not the manifest itself.
pub fn is_artifact_file(file: &str) -> bool {
    !file.is_empty() && !file.contains('/') && !file.starts_with('.') && file != MANIFEST
}

/// Why an entry of `backups/` is not a complete backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Incomplete {
    /// A hidden name: a partial folder, one being deleted, the pins.
    Hidden,
    /// Not named like a backup id.
    NotAnId,
    /// Not a real folder (a file, or a symlink to anything).
    NotAFolder,
    /// No `backup.json` that could be read and parsed: an unfinished or failed run.
    NoManifest,
    /// `backup.json` of another format version.
    OtherFormat,
    /// `backup.json` names another backup id than its folder.
    OtherId,
    /// `backup.json` lists an artifact file that is not a plain name in the folder, or one file
    /// twice.
    BadArtifactName,
    /// An artifact `backup.json` lists is missing, not a regular file, or of another size.
    ArtifactMissing,
}

impl Incomplete {
    /// Why, in a few words, for a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Incomplete::Hidden => "hidden",
            Incomplete::NotAnId => "not named YYYYMMDD-HHMMSS",
            Incomplete::NotAFolder => "not a folder",
            Incomplete::NoManifest => "no valid backup.json (an unfinished or failed run)",
            Incomplete::OtherFormat => "backup.json has another formatVersion",
            Incomplete::OtherId => "backup.json names another backup",
            Incomplete::BadArtifactName => {
                "backup.json lists an artifact that is not a plain file name, or one twice"
            }
            Incomplete::ArtifactMissing => "an artifact is missing or of the wrong size",
        }
    }
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the entry `name` of `backups/` is a complete backup, the one definition both sides go
/// by: a real folder (`is_dir`, not a symlink) named by a backup id, holding a `backup.json` of
/// format version 1 that names this very id (`manifest`, `None` when there is none that parses),
/// whose artifacts are plain file names, each listed once, and each in the folder as a regular
/// file of the listed size (`artifact_size(file)`: that file's size, `None` when it is missing or
/// not a regular file). What the host completes is complete; anything else is never listed,
/// counted or deleted as a backup.
///
/// ```
/// use backup_rules::{Artifact, Incomplete, Manifest, complete};
///
/// let manifest = Manifest {
///     format_version: 1,
///     id: "20261206-101559",
///     artifacts: vec![Artifact { name: "db", file: "db.dump", size: 4, sha256: "…" }],
/// };
/// let on_disk = |file: &str| (file == "db.dump").then_some(4);
/// assert_eq!(complete("20261206-101559", true, Some(&manifest), on_disk), Ok(()));
/// assert_eq!(
///     complete("20261206-101600", true, Some(&manifest), on_disk),
///     Err(Incomplete::OtherId)
/// );
/// ```
pub fn complete(
    name: &str,
    is_dir: bool,
    manifest: Option<&Manifest<'_>>,
    artifact_size: impl FnMut(&str) -> Option<u64>,
) -> Result<(), Incomplete> {
    check_listed(name, is_dir, manifest)?;
    match manifest {
        Some(manifest) => check_artifacts(manifest, artifact_size),
        None => Err(Incomplete::NoManifest),
    }
}

/// [`complete`] short of looking at the artifact files: everything a listing of `backups/` and
/// the text of `backup.json` tell. For callers that cannot look into each backup folder.
pub fn check_listed(
    name: &str,
    is_dir: bool,
    manifest: Option<&Manifest<'_>>,
) -> Result<(), Incomplete> {
    if name.starts_with('.') {
        return Err(Incomplete::Hidden);
    }
    if !is_backup_id(name) {
        return Err(Incomplete::NotAnId);
    }
    if !is_dir {
        return Err(Incomplete::NotAFolder);
    }
    let manifest = manifest.ok_or(Incomplete::NoManifest)?;
    if manifest.format_version != u64::from(FORMAT_VERSION) {
        return Err(Incomplete::OtherFormat);
    }
    if manifest.id != name {
        return Err(Incomplete::OtherId);
    }
    let mut files: Vec<&str> = manifest.artifacts.iter().map(|a| a.file).collect();
    files.sort_unstable();
    let twice = files.windows(2).any(|w| w[0] == w[1]);
    if twice || !files.iter().all(|f| is_artifact_file(f)) {
        return Err(Incomplete::BadArtifactName);
    }
    Ok(())
}

/// The part of [`complete`] that looks at the folder: every artifact there, a regular file of the
/// listed size.
pub fn check_artifacts(
    manifest: &Manifest<'_>,
    mut artifact_size: impl FnMut(&str) -> Option<u64>,
) -> Result<(), Incomplete> {
    if manifest
        .artifacts
        .iter()
        .all(|a| artifact_size(a.file) == Some(a.size))
    {
        Ok(())
    } else {
        Err(Incomplete::ArtifactMissing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_are_real_utc_seconds() {
        for good in [
            "20261126-101500",
            "20240229-000000", // leap year
            "20000229-235959", // divisible by 400
            "00010101-000000",
            "99991231-235959",
        ] {
            let id = BackupId::parse(good).unwrap_or_else(|| panic!("{good}"));
            assert_eq!(id.to_string(), good);
            assert!(is_backup_id(good));
        }
        for bad in [
            "20261126-10150",   // short
            "20261126-1015000", // long
            "20261126_101500",  // separator
            "2026112a-101500",  // letter
            ".20261126-101500", // hidden
            "+2026112-101500",  // sign
            "20261126-101500\n",
            "20261326-101500",  // month 13
            "20261100-101500",  // day 0
            "20230229-101500",  // not a leap year
            "21000229-101500",  // divisible by 100
            "20261131-101500",  // 31 November
            "20261126-241500",  // hour 24
            "20261126-106000",  // minute 60
            "20261126-101560",  // second 60
            "99999999-999999",  // id-shaped junk
            "２0261126-101500", // a non-ASCII digit
        ] {
            assert_eq!(BackupId::parse(bad), None, "{bad}");
            assert!(!is_backup_id(bad), "{bad}");
        }
        assert_eq!(BackupId::new(10_000, 1, 1, 0, 0, 0), None);
        assert_eq!(BackupId::new(-1, 1, 1, 0, 0, 0), None);
    }

    #[test]
    fn the_next_id_is_one_second_later_across_every_boundary() {
        for (id, next) in [
            ("20261206-101559", "20261206-101600"),
            ("20261206-105959", "20261206-110000"),
            ("20261206-235959", "20261207-000000"),
            ("20261130-235959", "20261201-000000"),
            ("20240228-235959", "20240229-000000"),
            ("20240229-235959", "20240301-000000"),
            ("20230228-235959", "20230301-000000"),
            ("20261231-235959", "20270101-000000"),
        ] {
            let got = BackupId::parse(id).unwrap().next().unwrap();
            assert_eq!(got.to_string(), next, "after {id}");
            assert!(got > BackupId::parse(id).unwrap());
        }
        assert_eq!(BackupId::parse("99991231-235959").unwrap().next(), None);
    }

    #[test]
    fn ids_sort_by_age_as_values_and_as_text() {
        let mut texts = [
            "20270101-000000",
            "20261206-101600",
            "20261206-101559",
            "20251231-235959",
        ];
        let mut ids: Vec<BackupId> = texts.iter().map(|t| BackupId::parse(t).unwrap()).collect();
        ids.sort();
        texts.sort();
        let shown: Vec<String> = ids.iter().map(BackupId::to_string).collect();
        assert_eq!(shown, texts);
    }

    #[test]
    fn names_of_the_layout() {
        assert_eq!(partial_name("run-1"), ".partial-run-1");
        assert_eq!(pin_path("20261206-101559"), ".pins/20261206-101559");
        for hidden in [PARTIAL_PREFIX, DELETING_PREFIX, PINS] {
            assert_eq!(
                check_listed(hidden, true, None),
                Err(Incomplete::Hidden),
                "{hidden}"
            );
        }
    }

    const ID: &str = "20261206-101559";

    fn manifest() -> Manifest<'static> {
        Manifest {
            format_version: 1,
            id: ID,
            artifacts: vec![
                Artifact {
                    name: "db",
                    file: "db.dump",
                    size: 4,
                    sha256: "00",
                },
                Artifact {
                    name: "backend",
                    file: "backend.tar.gz",
                    size: 10,
                    sha256: "11",
                },
            ],
        }
    }

    /// The folder as the host completed it.
    fn on_disk(file: &str) -> Option<u64> {
        match file {
            "db.dump" => Some(4),
            "backend.tar.gz" => Some(10),
            _ => None,
        }
    }

    #[test]
    fn what_the_host_completes_is_complete() {
        assert_eq!(complete(ID, true, Some(&manifest()), on_disk), Ok(()));
        let empty = Manifest {
            artifacts: Vec::new(),
            ..manifest()
        };
        assert_eq!(complete(ID, true, Some(&empty), on_disk), Ok(()));
    }

    #[test]
    fn what_is_not_complete_and_why() {
        let m = manifest();
        let with = |change: &dyn Fn(&mut Manifest<'static>)| {
            let mut m = manifest();
            change(&mut m);
            m
        };
        let cases: Vec<(&str, bool, Option<Manifest<'static>>, Incomplete)> = vec![
            (".partial-run", true, Some(m.clone()), Incomplete::Hidden),
            ("latest", true, Some(m.clone()), Incomplete::NotAnId),
            (
                "20261306-101559",
                true,
                Some(m.clone()),
                Incomplete::NotAnId,
            ),
            (ID, false, Some(m.clone()), Incomplete::NotAFolder),
            (ID, true, None, Incomplete::NoManifest),
            (
                ID,
                true,
                Some(with(&|m| m.format_version = 2)),
                Incomplete::OtherFormat,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.id = "20261206-101600")),
                Incomplete::OtherId,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.artifacts[1].file = "../db.dump")),
                Incomplete::BadArtifactName,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.artifacts[1].file = ".hidden")),
                Incomplete::BadArtifactName,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.artifacts[1].file = MANIFEST)),
                Incomplete::BadArtifactName,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.artifacts[1].file = "db.dump")),
                Incomplete::BadArtifactName,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.artifacts[0].size = 5)),
                Incomplete::ArtifactMissing,
            ),
            (
                ID,
                true,
                Some(with(&|m| m.artifacts[1].file = "admin.tar.gz")),
                Incomplete::ArtifactMissing,
            ),
        ];
        for (name, is_dir, manifest, why) in cases {
            assert_eq!(
                complete(name, is_dir, manifest.as_ref(), on_disk),
                Err(why),
                "{name} {manifest:?}"
            );
            // Without looking at the files, only the artifacts' presence goes unchecked.
            let listed = check_listed(name, is_dir, manifest.as_ref());
            if why == Incomplete::ArtifactMissing {
                assert_eq!(listed, Ok(()));
            } else {
                assert_eq!(listed, Err(why));
            }
        }
    }

    #[test]
    fn artifact_file_names() {
        for good in ["db.dump", "backend.tar.gz", "a"] {
            assert!(is_artifact_file(good), "{good}");
        }
        for bad in ["", "a/b", "/etc/passwd", "..", ".env", MANIFEST] {
            assert!(!is_artifact_file(bad), "{bad}");
        }
    }
}
