//! The marker of an installed release, `releases/<version>/.qodify-release.json`. Cleanup counts
//! only releases whose marker says `succeeded` (failed releases never push good ones out of
//! `keep`: capistrano#1907); a release folder without a marker is one being installed or left by
//! a crash, and is never counted.

use qodify_plugin_sdk::{Error, ResultExt as _};
use serde::{Deserialize, Serialize};

use crate::journal::write_synced;

/// The marker's file name inside `releases/<version>/`.
pub const FILE: &str = ".qodify-release.json";

/// A release's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Unpacked by an upgrade still in progress.
    Installing,
    /// Went live with a successful upgrade (or was the release the layout migration made).
    Succeeded,
    /// Its upgrade failed; it is removed by the rollback.
    Failed,
}

/// The marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    /// The release's version (its folder name).
    pub version: String,
    /// Its state.
    pub status: Status,
    /// The release it replaced (its rollback target), if any.
    pub from: Option<String>,
    /// The run that installed it.
    pub run: String,
    /// When the status was last set (`YYYYMMDD-HHMMSS`, UTC, from the run).
    pub at: String,
    /// The backup taken before it went live, if any.
    pub pre_upgrade_backup: Option<String>,
}

/// What [`Marker::inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerFile {
    /// No marker: a release being unpacked, or one a crash left.
    Missing,
    /// A marker that does not parse (the text says why).
    Damaged(String),
    /// A marker.
    Valid(Marker),
}

impl Marker {
    /// Reads the marker of the release folder `release_dir` (a guest path).
    pub fn read(release_dir: &str) -> Result<Option<Marker>, Error> {
        let path = format!("{}/{FILE}", release_dir.trim_end_matches('/'));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {path}: {e}"))),
        }
    }

    /// Reads the marker of `release_dir` and tells a missing marker from a damaged one (which
    /// [`Marker::read`] reports alike as `None`): cleanup never deletes what it cannot read.
    pub fn inspect(release_dir: &str) -> Result<MarkerFile, Error> {
        let path = format!("{}/{FILE}", release_dir.trim_end_matches('/'));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(match serde_json::from_slice(&bytes) {
                Ok(m) => MarkerFile::Valid(m),
                Err(e) => MarkerFile::Damaged(format!("{path}: {e}")),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MarkerFile::Missing),
            Err(e) => Err(Error::io(format!("reading {path}: {e}"))),
        }
    }

    /// Writes the marker into `release_dir` (temp file, then rename).
    pub fn write(&self, release_dir: &str) -> Result<(), Error> {
        let dir = release_dir.trim_end_matches('/');
        let tmp = format!("{dir}/{FILE}.tmp");
        let path = format!("{dir}/{FILE}");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        write_synced(&tmp, &text).with_context(|| format!("writing {tmp}"))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming {tmp} to {path}"))?;
        Ok(())
    }
}
