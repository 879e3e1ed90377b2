//! The upgrade journal, `releases/.upgrade.json`: what an upgrade in progress has changed so far,
//! written before each change (atomically: temp file, then rename). `upgrade-rollback` undoes
//! exactly what it lists, also when the host died in the middle (the pipeline's
//! `recover = "on_failure"` runs it at the next start); `release-finish` removes it when the
//! upgrade succeeded. While it exists no other upgrade starts.

use std::path::Path;

use qodify_plugin_sdk::fs::FileSystem;
use qodify_plugin_sdk::{Error, ResultExt as _};
use serde::{Deserialize, Serialize};

/// The journal's file name inside `releases/`.
pub const FILE: &str = ".upgrade.json";

/// How far the database migrations got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Migrate {
    /// Not started: the database is as before the upgrade.
    #[default]
    None,
    /// Started (maybe partly applied): the database may differ.
    Started,
    /// Applied.
    Done,
}

/// What to do with the database on rollback after migrations ran (per tier).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbPolicy {
    /// Restore the pre-upgrade dump.
    #[default]
    Restore,
    /// Keep the database as the migrations left it.
    Keep,
}

/// The journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// The upgrade's run id.
    pub run: String,
    /// The release `current` pointed at when the upgrade started (the rollback target).
    pub from: String,
    /// The target release.
    pub to: String,
    /// The pre-upgrade backup's id (`YYYYMMDD-HHMMSS`), once known.
    pub backup: Option<String>,
    /// Database policy on rollback.
    #[serde(default)]
    pub db_policy: DbPolicy,
    /// `releases/<to>` was created by this upgrade (so rollback removes it).
    #[serde(default)]
    pub unpacked: bool,
    /// Database migrations.
    #[serde(default)]
    pub migrate: Migrate,
    /// `current` may point at `to` (set just before the swap).
    #[serde(default)]
    pub swapped: bool,
    /// When the upgrade started (RFC 3339 or the run timestamp).
    pub started: String,
}

impl Journal {
    /// Reads the journal in `releases_dir` (a guest path); `None` when there is none.
    pub fn read(releases_dir: &str) -> Result<Option<Journal>, Error> {
        let path = format!("{}/{FILE}", releases_dir.trim_end_matches('/'));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::io(format!(
                    "{path} is damaged ({e}); see docs/upgrades.md, \"When a rollback fails\""
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {path}: {e}"))),
        }
    }

    /// Writes the journal atomically into `releases_dir` and syncs the folder through `fs`.
    pub fn write(&self, fs: &impl FileSystem, releases_dir: &str) -> Result<(), Error> {
        let dir = releases_dir.trim_end_matches('/');
        let tmp = format!("{dir}/{FILE}.tmp");
        let path = format!("{dir}/{FILE}");
        let mut text =
            serde_json::to_vec_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        text.push(b'\n');
        write_synced(&tmp, &text).with_context(|| format!("writing {tmp}"))?;
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir)
    }

    /// Removes the journal (the upgrade is over).
    pub fn remove(fs: &impl FileSystem, releases_dir: &str) -> Result<(), Error> {
        let dir = releases_dir.trim_end_matches('/');
        let path = format!("{dir}/{FILE}");
        match std::fs::remove_file(&path) {
            Ok(()) => fs.sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {path}: {e}"))),
        }
    }

    /// Reads, changes and writes the journal; an error when there is none.
    pub fn update(
        fs: &impl FileSystem,
        releases_dir: &str,
        change: impl FnOnce(&mut Journal),
    ) -> Result<Journal, Error> {
        let mut j = Self::read(releases_dir)?.ok_or_else(|| {
            Error::not_found(format!(
                "{releases_dir}/{FILE} is missing: this step runs only inside an upgrade, after release-check"
            ))
        })?;
        change(&mut j);
        j.write(fs, releases_dir)?;
        Ok(j)
    }
}

/// Writes `bytes` to `path` and fsyncs the file.
pub fn write_synced(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use qodify_plugin_sdk::ErrorKind;
    use qodify_plugin_sdk::fs::StdFs;

    use super::*;

    #[test]
    fn the_journal_is_written_updated_and_removed_in_place() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_str().unwrap();
        let fs = StdFs::new();
        let err = Journal::update(&fs, dir, |j| j.unpacked = true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("after release-check"), "{err}");

        let j = Journal {
            run: "run-1".into(),
            from: "v1".into(),
            to: "v2".into(),
            backup: None,
            db_policy: DbPolicy::Restore,
            unpacked: false,
            migrate: Migrate::None,
            swapped: false,
            started: "20260101-000000".into(),
        };
        j.write(&fs, dir).unwrap();
        let updated = Journal::update(&fs, dir, |j| j.unpacked = true).unwrap();
        assert_eq!(Journal::read(dir).unwrap(), Some(updated.clone()));
        assert!(updated.unpacked && !updated.swapped);
        // Only the journal is left: the temporary file was renamed over it.
        let names: Vec<String> = fs
            .list_dir(dir)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [FILE]);

        Journal::remove(&fs, dir).unwrap();
        assert_eq!(Journal::read(dir).unwrap(), None);
        Journal::remove(&fs, dir).unwrap();
    }
}
