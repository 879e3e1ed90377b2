//! Shared by the `retention` and `preflight` plugins: which entries of a customer's `backups`
//! folder are successful backups ([`scan`]), what their `backup.json` says ([`Summary`]), and
//! which of them retention keeps ([`decide`]). Preflight's retention warning uses the very rules
//! retention deletes by. Pure (no host calls), so the rules are unit-tested natively.
//!
//! A library, not a plugin: a plugin crate cannot depend on another plugin crate, whose `run`
//! export would clash with its own at link time.

use std::collections::BTreeMap;

/// The most of a pin file's reason that goes into a log line.
const MAX_REASON_CHARS: usize = 200;

/// True for a backup id: a folder name of the form `YYYYMMDD-HHMMSS`.
pub fn is_backup_id(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 15
        && b.iter().enumerate().all(|(i, c)| {
            if i == 8 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

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

/// Parses `backup.json`. `None` unless it is JSON with an `artifacts` list whose every entry has a
/// `file` and a `size`: only a finished manifest makes a folder a backup. Stats are optional and
/// never make a backup invalid.
pub fn parse_summary(json: &str) -> Option<Summary> {
    let doc: serde_json::Value = serde_json::from_str(json).ok()?;
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

/// A successful backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// Its id (folder name).
    pub id: String,
    /// What its manifest says.
    pub summary: Summary,
}

/// Splits a listing into successful backups (newest first) and everything else, with why each
/// other entry is not a backup. Nothing but a successful backup is ever deleted.
pub fn scan(listing: Vec<Listed>) -> (Vec<Backup>, Vec<(String, &'static str)>) {
    let mut backups = Vec::new();
    let mut ignored = Vec::new();
    for entry in listing {
        let why = if entry.name.starts_with('.') {
            "hidden"
        } else if !is_backup_id(&entry.name) {
            "not named YYYYMMDD-HHMMSS"
        } else if !entry.is_dir {
            "not a folder"
        } else {
            match entry.manifest.as_deref() {
                None => "no backup.json (an unfinished or failed run)",
                Some(text) => match parse_summary(text) {
                    Some(summary) => {
                        backups.push(Backup {
                            id: entry.name,
                            summary,
                        });
                        continue;
                    }
                    None => "backup.json does not parse or lists no artifacts",
                },
            }
        };
        ignored.push((entry.name, why));
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

    fn manifest(db_bytes: u64) -> String {
        serde_json::json!({
            "formatVersion": 1,
            "artifacts": [
                { "name": "db", "file": "db.dump", "size": db_bytes, "sha256": "00" },
                { "name": "backend", "file": "backend.tar.gz", "size": 10, "sha256": "11" },
            ],
            "stats": { "totalBytes": db_bytes + 10, "totalMB": 0.0, "durationSeconds": 2.0 },
        })
        .to_string()
    }

    fn dir(name: &str, manifest: Option<String>) -> Listed {
        Listed {
            name: name.to_string(),
            is_dir: true,
            manifest,
        }
    }

    #[test]
    fn backup_ids() {
        assert!(is_backup_id("20261126-101500"));
        assert!(!is_backup_id("20261126-10150"));
        assert!(!is_backup_id("20261126_101500"));
        assert!(!is_backup_id("2026112a-101500"));
        assert!(!is_backup_id(".20261126-10150"));
        assert!(!is_backup_id("20261126-1015000"));
        assert!(may_be_backup("20261126-101500", true));
        assert!(!may_be_backup("20261126-101500", false));
    }

    #[test]
    fn summaries_need_a_complete_artifact_list_but_not_stats() {
        let s = parse_summary(&manifest(7)).unwrap();
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
            dir("20250101-000000", Some(manifest(1))),
            dir("20250103-000000", Some(manifest(3))),
            dir(".pins", None),
            dir(".20250104-000000", Some(manifest(4))),
            dir("20250105-000000", None),
            dir("20250106-000000", Some("{\"artifacts\": [".into())),
            dir("notes", Some(manifest(1))),
            Listed {
                name: "20250107-000000".into(),
                is_dir: false,
                manifest: Some(manifest(1)),
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
            .map(|d| dir(&format!("2025010{d}-120000"), Some(manifest(d))))
            .collect();
        // The pinned one is the oldest: it survives without taking a slot.
        listing.push(dir("20241231-235959", Some(manifest(9))));
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
}
