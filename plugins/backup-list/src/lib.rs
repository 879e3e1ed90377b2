//! Shared by the `retention`, `preflight` and `archive` plugins: which entries of a customer's
//! `backups` folder are complete backups ([`scan_in`], [`scan`]), what their `backup.json` says
//! ([`Summary`]), which of them retention keeps ([`decide`]), and which earlier archive an
//! unchanged source can reuse ([`reusable`]). Preflight's retention warning
//! uses the very rules retention deletes by. What "complete" means and what a backup id is come
//! from [`backup_rules`], which the host's listing goes by too, so retention counts exactly the
//! backups the host lists. No host calls, so the rules are unit-tested natively.
//!
//! A library, not a plugin: a plugin crate cannot depend on another plugin crate, whose `run`
//! export would clash with its own at link time.

use std::collections::BTreeMap;

pub use backup_rules::is_backup_id;
use backup_rules::{Artifact, Manifest};

/// The most of a pin file's reason that goes into a log line.
const MAX_REASON_CHARS: usize = 200;

/// True when `name` could be a backup, so its `backup.json` is worth reading: a real folder (not
/// a symlink) named like a backup id. Hidden entries never qualify.
pub fn may_be_backup(name: &str, is_dir: bool) -> bool {
    is_dir && is_backup_id(name)
}

/// What retention and preflight use from a backup's `backup.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The listed artifacts.
    artifacts: Vec<SummaryArtifact>,
    /// `stats.totalBytes`, when present.
    total_bytes: Option<u64>,
    /// `stats.durationSeconds`, when present.
    duration_seconds: Option<f64>,
}

/// One artifact of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct SummaryArtifact {
    /// Its label, e.g. `db` (empty when absent).
    name: String,
    /// Its path relative to the backup folder, e.g. `db.dump`.
    file: String,
    /// Its size in bytes.
    size: u64,
    /// Its sha256 (empty when absent).
    sha256: String,
    /// The fingerprint of the source it was made from (`archive`), when recorded.
    fingerprint: Option<String>,
}

/// An artifact of an earlier complete backup that an unchanged source can reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reusable {
    /// The backup's id.
    pub id: String,
    /// The artifact's file inside that backup's folder.
    pub file: String,
    /// Its size in bytes, as `backup.json` says (and the folder has: [`scan_in`] checked).
    pub size: u64,
    /// Its sha256, as `backup.json` says.
    pub sha256: String,
}

/// The newest of `backups` (complete ones, newest first as [`scan_in`] returns them) listing an
/// artifact `name` made from a source of this very `fingerprint`.
pub fn reusable(backups: &[Backup], name: &str, fingerprint: &str) -> Option<Reusable> {
    backups.iter().find_map(|b| {
        let a = b.summary.artifacts.iter().find(|a| {
            a.name == name
                && a.fingerprint.as_deref() == Some(fingerprint)
                && backup_rules::is_artifact_file(&a.file)
                && !a.sha256.is_empty()
        })?;
        Some(Reusable {
            id: b.id.clone(),
            file: a.file.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
        })
    })
}

impl Summary {
    /// Size of the database dump (`name` `db` or file `db.dump`), if the backup has one.
    pub fn db_dump_bytes(&self) -> Option<u64> {
        self.artifacts
            .iter()
            .find(|a| a.name == "db" || a.file == "db.dump")
            .map(|a| a.size)
    }

    /// Bytes written per second by that backup, when its stats say.
    pub fn bytes_per_second(&self) -> Option<f64> {
        let bytes = self.total_bytes? as f64;
        let seconds = self
            .duration_seconds
            .filter(|s| s.is_finite() && *s > 0.0)?;
        (bytes > 0.0).then(|| bytes / seconds)
    }
}

/// What retention and preflight use of `backup.json`: `None` unless it is JSON with an
/// `artifacts` list whose every entry has a `file` and a `size`. Stats are optional. Whether the
/// folder is a complete backup is [`scan`]'s question, not this one's.
pub fn parse_summary(json: &str) -> Option<Summary> {
    summary_of(&serde_json::from_str(json).ok()?)
}

fn summary_of(doc: &serde_json::Value) -> Option<Summary> {
    let artifacts = doc
        .get("artifacts")?
        .as_array()?
        .iter()
        .map(|a| {
            Some(SummaryArtifact {
                name: a
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                file: a.get("file")?.as_str()?.to_string(),
                size: a.get("size")?.as_u64()?,
                sha256: a
                    .get("sha256")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                fingerprint: a
                    .get("fingerprint")
                    .and_then(|n| n.as_str())
                    .map(str::to_string),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let stats = doc.get("stats");
    Some(Summary {
        artifacts,
        total_bytes: stats
            .and_then(|s| s.get("totalBytes"))
            .and_then(|v| v.as_u64()),
        duration_seconds: stats
            .and_then(|s| s.get("durationSeconds"))
            .and_then(|v| v.as_f64()),
    })
}

/// The parts of `backup.json` [`backup_rules::complete`] decides on; `None` when one is missing
/// or of the wrong type.
fn manifest_of(doc: &serde_json::Value) -> Option<Manifest<'_>> {
    let artifacts = doc
        .get("artifacts")?
        .as_array()?
        .iter()
        .map(|a| {
            Some(Artifact {
                name: a.get("name")?.as_str()?,
                file: a.get("file")?.as_str()?,
                size: a.get("size")?.as_u64()?,
                sha256: a.get("sha256")?.as_str()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Manifest {
        format_version: doc.get("formatVersion")?.as_u64()?,
        id: doc.get("id")?.as_str()?,
        artifacts,
    })
}

/// One entry of the `backups` folder as the caller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The entry's name.
    pub name: String,
    /// True for a real folder (a symlink is not one).
    pub is_dir: bool,
    /// The text of its `backup.json`, when [`may_be_backup`] and the file could be read.
    pub manifest: Option<String>,
}

/// A complete backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// Its id (folder name).
    pub id: String,
    /// What its manifest says.
    pub summary: Summary,
}

/// Splits a listing into complete backups (newest first) and everything else, with why each
/// other entry is not a backup. Nothing but a complete backup is ever deleted. Decides from the
/// listing and the manifests alone ([`backup_rules::check_listed`]): an artifact missing from
/// its folder goes unnoticed; [`scan_in`] looks.
pub fn scan(listing: Vec<Listed>) -> (Vec<Backup>, Vec<(String, &'static str)>) {
    split(listing, |_, _| Ok(()))
}

/// [`scan`], also looking into each backup folder of `backups_dir` for the artifacts its
/// manifest lists ([`backup_rules::complete`]), as the host's listing does.
pub fn scan_in(
    backups_dir: &str,
    listing: Vec<Listed>,
) -> (Vec<Backup>, Vec<(String, &'static str)>) {
    let dir = backups_dir.trim_end_matches('/');
    split(listing, |id, manifest| {
        backup_rules::check_artifacts(manifest, |file| {
            std::fs::symlink_metadata(format!("{dir}/{id}/{file}"))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len())
        })
    })
}

fn split(
    listing: Vec<Listed>,
    mut artifacts: impl FnMut(&str, &Manifest<'_>) -> Result<(), backup_rules::Incomplete>,
) -> (Vec<Backup>, Vec<(String, &'static str)>) {
    let mut backups = Vec::new();
    let mut ignored = Vec::new();
    for entry in listing {
        let doc = entry
            .manifest
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
        let manifest = doc.as_ref().and_then(manifest_of);
        let checked = backup_rules::check_listed(&entry.name, entry.is_dir, manifest.as_ref())
            .and_then(|()| match &manifest {
                Some(m) => artifacts(&entry.name, m),
                None => Ok(()),
            });
        // A manifest complete by the rules always has what a summary reads.
        let summary = doc.as_ref().and_then(summary_of);
        match (checked, summary) {
            (Ok(()), Some(summary)) => backups.push(Backup {
                id: entry.name,
                summary,
            }),
            (Err(why), _) => ignored.push((entry.name, why.as_str())),
            (Ok(()), None) => {
                ignored.push((entry.name, backup_rules::Incomplete::NoManifest.as_str()))
            }
        }
    }
    backups.sort_by(|a, b| b.id.cmp(&a.id));
    (backups, ignored)
}

/// The one-line reason stored in a pin file: whitespace collapsed, shortened.
pub fn pin_reason(text: &str) -> String {
    let reason = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if reason.is_empty() {
        return "no reason given".to_string();
    }
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    }
}

/// What retention does with one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The backup's id.
    pub id: String,
    /// True to keep it.
    pub keep: bool,
    /// Why, for the log: `among the newest 5`, `pinned: …`, `current run`, `older than the newest 5`.
    pub reason: String,
}

/// Decides, newest first, which backups to keep: every pinned one (they do not count toward
/// `keep`), the current run's, and the newest `keep` unpinned ones (the current run's included).
pub fn decide(
    ids: &[&str],
    pins: &BTreeMap<String, String>,
    keep: usize,
    current: Option<&str>,
) -> Vec<Decision> {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let mut slots = keep;
    ids.into_iter()
        .map(|id| {
            let (kept, reason) = if let Some(reason) = pins.get(id) {
                (true, format!("pinned: {reason}"))
            } else if Some(id) == current {
                // Kept even if a clock jump put newer-looking backups before it.
                slots = slots.saturating_sub(1);
                (true, "current run".to_string())
            } else if slots > 0 {
                slots -= 1;
                (true, format!("among the newest {keep}"))
            } else {
                (false, format!("older than the newest {keep}"))
            };
            Decision {
                id: id.to_string(),
                keep: kept,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `backup.json` the host completes as backup `id`.
    fn manifest(id: &str, db_bytes: u64) -> String {
        serde_json::json!({
            "formatVersion": 1,
            "id": id,
            "artifacts": [
                { "name": "db", "file": "db.dump", "size": db_bytes, "sha256": "00" },
                { "name": "backend", "file": "backend.tar.gz", "size": 10, "sha256": "11" },
            ],
            "stats": { "totalBytes": db_bytes + 10, "totalMB": 0.0, "durationSeconds": 2.0 },
        })
        .to_string()
    }

    /// A folder `name` whose backup.json is the one the host completes as `name`.
    fn backup(name: &str, db_bytes: u64) -> Listed {
        dir(name, Some(manifest(name, db_bytes)))
    }

    fn dir(name: &str, manifest: Option<String>) -> Listed {
        Listed {
            name: name.to_string(),
            is_dir: true,
            manifest,
        }
    }

    #[test]
    fn the_newest_backup_with_the_same_fingerprint_is_reused() {
        let with = |id: &str, fp: Option<&str>| {
            let mut doc: serde_json::Value = serde_json::from_str(&manifest(id, 1)).unwrap();
            if let Some(fp) = fp {
                doc["artifacts"][1]["fingerprint"] = fp.into();
            }
            dir(id, Some(doc.to_string()))
        };
        let (backups, _) = scan(vec![
            with("20250101-000000", Some("aa")),
            with("20250102-000000", Some("aa")),
            with("20250103-000000", Some("bb")),
            with("20250104-000000", None),
            dir("20250105-000000", None),
        ]);
        let found = reusable(&backups, "backend", "aa").unwrap();
        assert_eq!(found.id, "20250102-000000");
        assert_eq!((found.file.as_str(), found.size), ("backend.tar.gz", 10));
        assert_eq!(found.sha256, "11");
        assert_eq!(
            reusable(&backups, "backend", "bb").unwrap().id,
            "20250103-000000"
        );
        // Another artifact's name, or a fingerprint no backup has: nothing to reuse.
        assert_eq!(reusable(&backups, "db", "aa"), None);
        assert_eq!(reusable(&backups, "backend", "cc"), None);
    }

    #[test]
    fn backup_ids() {
        assert!(may_be_backup("20261126-101500", true));
        assert!(!may_be_backup("20261326-101500", true));
        assert!(!may_be_backup("20261126-101500", false));
    }

    #[test]
    fn summaries_need_a_complete_artifact_list_but_not_stats() {
        let s = parse_summary(&manifest("20250101-000000", 7)).unwrap();
        assert_eq!(s.db_dump_bytes(), Some(7));
        assert_eq!(s.total_bytes, Some(17));
        assert_eq!(s.bytes_per_second(), Some(8.5));
        let no_stats = parse_summary(r#"{"artifacts":[{"file":"a.tar.gz","size":3}]}"#).unwrap();
        assert_eq!(no_stats.db_dump_bytes(), None);
        assert_eq!(no_stats.bytes_per_second(), None);
        let odd_stats =
            parse_summary(r#"{"artifacts":[],"stats":{"durationSeconds":"x"}}"#).unwrap();
        assert_eq!(odd_stats.duration_seconds, None);
        assert_eq!(parse_summary("{"), None);
        assert_eq!(parse_summary("{}"), None);
        assert_eq!(parse_summary(r#"{"artifacts":{}}"#), None);
        assert_eq!(parse_summary(r#"{"artifacts":[{"file":"a"}]}"#), None);
        assert_eq!(parse_summary(r#"{"artifacts":[{"size":1}]}"#), None);
    }

    #[test]
    fn scan_keeps_only_finished_backups_newest_first() {
        let listing = vec![
            backup("20250101-000000", 1),
            backup("20250103-000000", 3),
            dir(".pins", None),
            dir(".20250104-000000", Some(manifest(".20250104-000000", 4))),
            dir("20250105-000000", None),
            dir("20250106-000000", Some("{\"artifacts\": [".into())),
            dir("notes", Some(manifest("notes", 1))),
            Listed {
                name: "20250107-000000".into(),
                is_dir: false,
                manifest: Some(manifest("20250107-000000", 1)),
            },
        ];
        let (backups, ignored) = scan(listing);
        let ids: Vec<&str> = backups.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["20250103-000000", "20250101-000000"]);
        let ignored: Vec<&str> = ignored.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            ignored,
            [
                ".pins",
                ".20250104-000000",
                "20250105-000000",
                "20250106-000000",
                "notes",
                "20250107-000000"
            ]
        );
    }

    #[test]
    fn seven_backups_one_pinned_and_garbage() {
        let mut listing: Vec<Listed> = (1..=7)
            .map(|d| backup(&format!("2025010{d}-120000"), d))
            .collect();
        // The pinned one is the oldest: it survives without taking a slot.
        listing.push(backup("20241231-235959", 9));
        listing.push(dir("20250108-120000", None)); // a failed run: no manifest
        listing.push(dir("20250109-120000", Some("garbage".into())));
        listing.push(dir("tmp", None));
        listing.push(dir(".trash", None));
        let (backups, ignored) = scan(listing);
        assert_eq!(backups.len(), 8);
        assert_eq!(ignored.len(), 4);
        let pins = BTreeMap::from([(
            "20241231-235959".to_string(),
            pin_reason("  before the\nv2 upgrade "),
        )]);
        let ids: Vec<&str> = backups.iter().map(|b| b.id.as_str()).collect();
        let decisions = decide(&ids, &pins, 5, Some("20250107-120000"));
        let got: Vec<(&str, bool, &str)> = decisions
            .iter()
            .map(|d| (d.id.as_str(), d.keep, d.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("20250107-120000", true, "current run"),
                ("20250106-120000", true, "among the newest 5"),
                ("20250105-120000", true, "among the newest 5"),
                ("20250104-120000", true, "among the newest 5"),
                ("20250103-120000", true, "among the newest 5"),
                ("20250102-120000", false, "older than the newest 5"),
                ("20250101-120000", false, "older than the newest 5"),
                ("20241231-235959", true, "pinned: before the v2 upgrade"),
            ]
        );
        // Garbage never reaches `decide`, so it is never deleted.
        assert!(decisions.iter().all(|d| is_backup_id(&d.id)));
    }

    #[test]
    fn pinned_backups_do_not_take_a_slot() {
        let ids = ["20250103-000000", "20250102-000000", "20250101-000000"];
        let pins = BTreeMap::from([("20250103-000000".to_string(), "x".to_string())]);
        let kept: Vec<String> = decide(&ids, &pins, 1, None)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect();
        assert_eq!(kept, ["20250103-000000", "20250102-000000"]);
    }

    #[test]
    fn current_run_survives_even_when_older_than_the_slots() {
        let ids = ["20250103-000000", "20250102-000000", "20250101-000000"];
        let d = decide(&ids, &BTreeMap::new(), 1, Some("20250101-000000"));
        let keep: Vec<bool> = d.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, false, true]);
        assert_eq!(d[2].reason, "current run");
    }

    #[test]
    fn fewer_backups_than_keep_are_all_kept() {
        let ids = ["20250101-000000", "20250102-000000"];
        assert!(
            decide(&ids, &BTreeMap::new(), 5, None)
                .iter()
                .all(|d| d.keep)
        );
        assert!(decide(&[], &BTreeMap::new(), 5, None).is_empty());
    }

    #[test]
    fn pin_reasons_are_one_short_line() {
        assert_eq!(pin_reason(""), "no reason given");
        assert_eq!(pin_reason(" \n "), "no reason given");
        assert_eq!(pin_reason("a\n b\tc\n"), "a b c");
        let long = "é".repeat(500);
        let r = pin_reason(&long);
        assert_eq!(r.chars().count(), MAX_REASON_CHARS + 1);
        assert!(r.ends_with('…'));
    }

    /// Where the guest's old rules and the host's disagreed, the host's hold now: these folders
    /// were counted by retention but never listed by the host (or, for the calendar, listed by
    /// neither but taken for ids).
    #[test]
    fn only_what_the_host_lists_is_counted() {
        let id = "20250101-000000";
        let good: serde_json::Value = serde_json::from_str(&manifest(id, 1)).unwrap();
        let with = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut m = good.clone();
            change(&mut m);
            dir(id, Some(m.to_string()))
        };
        for (listed, why) in [
            (
                with(&|m| drop(m.as_object_mut().unwrap().remove("formatVersion"))),
                "no valid backup.json",
            ),
            (
                with(&|m| m["formatVersion"] = 2.into()),
                "another formatVersion",
            ),
            (
                with(&|m| drop(m.as_object_mut().unwrap().remove("id"))),
                "no valid backup.json",
            ),
            (
                with(&|m| m["id"] = "20250102-000000".into()),
                "names another backup",
            ),
            (
                with(&|m| drop(m["artifacts"][0].as_object_mut().unwrap().remove("sha256"))),
                "no valid backup.json",
            ),
            (
                with(&|m| drop(m["artifacts"][0].as_object_mut().unwrap().remove("name"))),
                "no valid backup.json",
            ),
            (
                with(&|m| m["artifacts"][0]["file"] = "../other/db.dump".into()),
                "not a plain file name",
            ),
            (backup("20250229-000000", 1), "not named YYYYMMDD-HHMMSS"),
        ] {
            let name = listed.name.clone();
            let (backups, ignored) = scan(vec![listed]);
            assert!(backups.is_empty(), "{name}: {ignored:?}");
            assert!(ignored[0].1.contains(why), "{name}: {ignored:?}");
        }
        let (backups, _) = scan(vec![with(&|_| {})]);
        assert_eq!(backups.len(), 1);
    }

    #[test]
    fn scan_in_looks_for_the_artifacts_in_each_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for (id, db) in [
            ("20250101-000000", 4u64),
            ("20250102-000000", 4),
            ("20250103-000000", 4),
        ] {
            std::fs::create_dir(root.join(id)).unwrap();
            std::fs::write(root.join(id).join("backend.tar.gz"), [0u8; 10]).unwrap();
            std::fs::write(root.join(id).join("db.dump"), vec![0u8; db as usize]).unwrap();
        }
        // One lost its dump, one has a dump of another size.
        std::fs::remove_file(root.join("20250102-000000/db.dump")).unwrap();
        std::fs::write(root.join("20250103-000000/db.dump"), "xx").unwrap();
        let listing = || {
            ["20250101-000000", "20250102-000000", "20250103-000000"]
                .map(|id| backup(id, 4))
                .to_vec()
        };
        let (backups, ignored) = scan_in(root.to_str().unwrap(), listing());
        let ids: Vec<&str> = backups.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["20250101-000000"]);
        assert_eq!(ignored.len(), 2);
        assert!(
            ignored.iter().all(|(_, why)| why.contains("missing")),
            "{ignored:?}"
        );
        // Without looking, all three pass.
        assert_eq!(scan(listing()).0.len(), 3);
    }
}
