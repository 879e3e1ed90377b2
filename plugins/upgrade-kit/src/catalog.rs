//! The release catalog, `releases.json` in the host's `releases_dir` (mounted read-only with
//! `from = "releases"`): each release's version, package (a `.tar.gz` with `backend/`, `admin/`,
//! `store/` at the top, path relative to the catalog, and its sha256) and compatibility matrix.
//! `qodify-host validate` checks the file against `templates/releases.schema.json`; the types
//! here are the same shape.

use std::collections::BTreeMap;

use qodify_plugin_sdk::Error;
use serde::{Deserialize, Serialize};

/// `releases.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Catalog {
    /// The schema, for editors.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The releases.
    pub releases: Vec<Release>,
    /// Versions customers may run that have no package here, each with a note (they may appear
    /// in `upgradeFrom`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_versions: BTreeMap<String, String>,
}

/// One release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// The version, also the release folder's name, e.g. `v1.1.0`.
    pub version: String,
    /// Where its files come from.
    pub package: Package,
    /// What it runs on and what may upgrade to it.
    pub compat: Compat,
    /// `.env` changes the release makes on purpose, per service; they need approval.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvChanges>,
    /// Release notes for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A release package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Package {
    /// Path of the `.tar.gz`, relative to the catalog folder.
    pub path: String,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

/// The compatibility matrix of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Compat {
    /// Node.js versions it runs on, a semver range such as `>=18.17 <21`.
    pub node: String,
    /// PostgreSQL server versions it supports, a semver range such as `>=13 <17`.
    pub postgres: String,
    /// Versions that may upgrade to it directly.
    pub upgrade_from: Vec<String>,
}

/// Deliberate `.env` changes of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvChanges {
    /// Keys whose value the release sets (existing values change: approval needed).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys the release removes (approval needed).
    #[serde(default)]
    pub remove: Vec<String>,
}

impl Catalog {
    /// Reads and parses the catalog at `path` (a guest path).
    pub fn read(path: &str) -> Result<Catalog, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::not_found(format!("reading the release catalog {path}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid_config(format!(
                "{path}:{}:{}: {e}; check it with `qodify-host validate`",
                e.line(),
                e.column()
            ))
        })
    }

    /// The release named `version`; an error that lists the known ones otherwise.
    pub fn release(&self, version: &str) -> Result<&Release, Error> {
        self.releases
            .iter()
            .find(|r| r.version == version)
            .ok_or_else(|| {
                let known: Vec<&str> = self.releases.iter().map(|r| r.version.as_str()).collect();
                Error::invalid_config(format!(
                    "unknown release `{version}`; the catalog has: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }
}

/// Parses a version as semver, leniently: a leading `v` is dropped and missing minor/patch are
/// zero (`v20` → `20.0.0`, `15.4` → `15.4.0`).
pub fn lenient_version(v: &str) -> Option<semver::Version> {
    let v = v.trim().trim_start_matches(['v', 'V']);
    // Drop a distribution suffix such as `15.4 (Debian 15.4-1)`.
    let v = v.split_whitespace().next()?;
    let mut parts: Vec<&str> = v.splitn(3, '.').collect();
    while parts.len() < 3 {
        parts.push("0");
    }
    semver::Version::parse(&parts.join(".")).ok()
}

/// True when `version` satisfies the range (`>=13 <17`, `^20`, …; spaces or commas separate).
pub fn satisfies(range: &str, version: &semver::Version) -> Result<bool, String> {
    let normalised = range
        .split([',', ' '])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let req = semver::VersionReq::parse(&normalised)
        .map_err(|e| format!("invalid version range `{range}`: {e}"))?;
    // Pre-release-free comparison: `20.1.0-nightly` counts as 20.1.0.
    let plain = semver::Version::new(version.major, version.minor, version.patch);
    Ok(req.matches(&plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lenient_versions() {
        let v = |s| lenient_version(s).unwrap();
        assert_eq!(v("v20.20.2"), semver::Version::new(20, 20, 2));
        assert_eq!(
            v("15.4 (Debian 15.4-1.pgdg120+1)"),
            semver::Version::new(15, 4, 0)
        );
        assert_eq!(v("16"), semver::Version::new(16, 0, 0));
        assert!(satisfies(">=18.17 <21", &v("v20.20.2")).unwrap());
        assert!(!satisfies(">=18.17 <21", &v("v22.1.0")).unwrap());
        assert!(satisfies(">=13, <17", &v("15.4")).unwrap());
        assert!(satisfies("not a range", &v("1")).is_err());
    }
}
