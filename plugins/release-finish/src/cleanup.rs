//! Which releases stay, which go, and which pre-upgrade backups no longer need their pin. Pure:
//! the plugin lists the folder and the pins, these functions decide, the plugin acts.
//!
//! Rules, in order of precedence:
//! - never removed: the release `current` points at; its rollback target (the `from` of its
//!   marker); a release a pinned backup was taken for (`backups/.pins/<id>` saying
//!   `pre-upgrade to <version>`, or the release whose marker names `<id>` as its
//!   `preUpgradeBackup`); a release whose marker is damaged (nobody can tell what it is);
//! - releases marked `succeeded` are ordered by the marker's `at` (newest first) and the newest
//!   `keep` stay;
//! - releases marked `failed` or `installing`, or without a marker, never count toward `keep`
//!   (capistrano#1907) and go unless protected above; older `succeeded` ones go too.
//!
//! A pre-upgrade backup's pin goes once the upgrade it was taken for can no longer be rolled
//! back: the release it could roll back to (the `from` of the release it was taken for) is gone,
//! or the release it was taken for is gone (its upgrade failed and was rolled back). Pins that
//! name no release (set by people) are never touched.

use std::collections::{BTreeMap, BTreeSet};

use upgrade_kit::layout;
use upgrade_kit::marker::{MarkerFile, Status};

/// The text of a pin the upgrade pipeline sets on its pre-upgrade backup.
pub const PIN_PREFIX: &str = "pre-upgrade to ";

/// A release folder and its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its folder name.
    pub version: String,
    /// What its marker says.
    pub marker: MarkerFile,
}

/// A pinned backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The backup id.
    pub backup: String,
    /// The pin's text.
    pub reason: String,
}

/// What to do with one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The release.
    pub version: String,
    /// True when it stays.
    pub keep: bool,
    /// Why, for the log.
    pub why: String,
}

/// The release a pin's text names (`pre-upgrade to v1.1.0`), if any.
pub fn pin_release(reason: &str) -> Option<&str> {
    let v = reason.trim().strip_prefix(PIN_PREFIX)?.trim();
    layout::is_version_name(v).then_some(v)
}

/// The releases a pinned backup was taken for: by the pin's text, or by the marker that names
/// the backup.
fn pinned_releases(releases: &[Release], pins: &[Pin]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pin in pins {
        if let Some(v) = pin_release(&pin.reason) {
            out.entry(v.to_string())
                .or_insert_with(|| pin.backup.clone());
        }
        for r in releases {
            if let MarkerFile::Valid(m) = &r.marker
                && m.pre_upgrade_backup.as_deref() == Some(pin.backup.as_str())
            {
                out.entry(r.version.clone())
                    .or_insert_with(|| pin.backup.clone());
            }
        }
    }
    out
}

/// Decides every release's fate, newest first among the successful ones, then the rest by name.
pub fn decide(
    releases: &[Release],
    current: Option<&str>,
    pins: &[Pin],
    keep: usize,
) -> Vec<Verdict> {
    let by_name: BTreeMap<&str, &Release> =
        releases.iter().map(|r| (r.version.as_str(), r)).collect();
    let rollback_target = current
        .and_then(|c| by_name.get(c))
        .and_then(|r| match &r.marker {
            MarkerFile::Valid(m) => m.from.clone(),
            _ => None,
        });
    let pinned = pinned_releases(releases, pins);

    let mut succeeded: Vec<(&str, &str)> = releases
        .iter()
        .filter_map(|r| match &r.marker {
            MarkerFile::Valid(m) if m.status == Status::Succeeded => {
                Some((m.at.as_str(), r.version.as_str()))
            }
            _ => None,
        })
        .collect();
    succeeded.sort_by(|a, b| b.cmp(a));
    let newest: BTreeSet<&str> = succeeded.iter().take(keep).map(|(_, v)| *v).collect();

    let mut ordered: Vec<&Release> = succeeded.iter().map(|(_, v)| by_name[v]).collect();
    let mut rest: Vec<&Release> = releases
        .iter()
        .filter(|r| !succeeded.iter().any(|(_, v)| *v == r.version))
        .collect();
    rest.sort_by(|a, b| a.version.cmp(&b.version));
    ordered.extend(rest);

    ordered
        .into_iter()
        .map(|r| {
            let v = r.version.as_str();
            let (keep, why) = if Some(v) == current {
                (true, "current".to_string())
            } else if rollback_target.as_deref() == Some(v) {
                (true, "rollback target of the current release".to_string())
            } else if let Some(backup) = pinned.get(v) {
                (
                    true,
                    format!("pinned backup {backup} was taken before upgrading to it"),
                )
            } else {
                match &r.marker {
                    MarkerFile::Damaged(e) => (
                        true,
                        format!("its marker is damaged ({e}); check it by hand"),
                    ),
                    MarkerFile::Missing => (false, "no marker: an unfinished install".into()),
                    MarkerFile::Valid(m) => match m.status {
                        Status::Failed => (false, "marked failed".into()),
                        Status::Installing => (false, "marked installing: never went live".into()),
                        Status::Succeeded if newest.contains(v) => (
                            true,
                            format!("one of the newest {keep} successful releases"),
                        ),
                        Status::Succeeded => (
                            false,
                            format!("older than the newest {keep} successful releases"),
                        ),
                    },
                }
            };
            Verdict {
                version: v.to_string(),
                keep,
                why,
            }
        })
        .collect()
}

/// The pins to remove, given the releases that remain after cleanup: (backup id, why).
pub fn stale_pins(remaining: &[Release], pins: &[Pin]) -> Vec<(String, String)> {
    let by_name: BTreeMap<&str, &Release> =
        remaining.iter().map(|r| (r.version.as_str(), r)).collect();
    let mut out = Vec::new();
    for pin in pins {
        // The release it was taken for: its text, else a remaining marker naming it.
        let taken_for = pin_release(&pin.reason).map(str::to_string).or_else(|| {
            remaining.iter().find_map(|r| match &r.marker {
                MarkerFile::Valid(m) if m.pre_upgrade_backup.as_deref() == Some(&pin.backup) => {
                    Some(r.version.clone())
                }
                _ => None,
            })
        });
        let Some(x) = taken_for else {
            continue; // a pin set by people
        };
        match by_name.get(x.as_str()).map(|r| &r.marker) {
            None => out.push((
                pin.backup.clone(),
                format!("release {x} it was taken for is gone: that upgrade can no longer be rolled back"),
            )),
            Some(MarkerFile::Valid(m)) if m.status == Status::Succeeded => {
                if let Some(f) = &m.from
                    && !by_name.contains_key(f.as_str())
                {
                    out.push((
                        pin.backup.clone(),
                        format!(
                            "release {f}, which the upgrade to {x} could roll back to, is gone"
                        ),
                    ));
                }
            }
            // Failed, installing, unmarked or damaged: leave it to people.
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use upgrade_kit::marker::Marker;

    fn ok(v: &str, at: &str, from: Option<&str>, backup: Option<&str>) -> Release {
        rel(v, Status::Succeeded, at, from, backup)
    }

    fn rel(v: &str, status: Status, at: &str, from: Option<&str>, backup: Option<&str>) -> Release {
        Release {
            version: v.into(),
            marker: MarkerFile::Valid(Marker {
                version: v.into(),
                status,
                from: from.map(Into::into),
                run: "r".into(),
                at: at.into(),
                pre_upgrade_backup: backup.map(Into::into),
            }),
        }
    }

    fn unmarked(v: &str) -> Release {
        Release {
            version: v.into(),
            marker: MarkerFile::Missing,
        }
    }

    fn pin(backup: &str, to: &str) -> Pin {
        Pin {
            backup: backup.into(),
            reason: format!("pre-upgrade to {to}"),
        }
    }

    fn removed(v: &[Verdict]) -> Vec<&str> {
        let mut r: Vec<&str> = v
            .iter()
            .filter(|v| !v.keep)
            .map(|v| v.version.as_str())
            .collect();
        r.sort();
        r
    }

    fn remaining(releases: &[Release], verdicts: &[Verdict]) -> Vec<Release> {
        releases
            .iter()
            .filter(|r| verdicts.iter().any(|v| v.keep && v.version == r.version))
            .cloned()
            .collect()
    }

    /// v1 → v2 → … → vN, each upgrade pinning its pre-upgrade backup `bK` ("pre-upgrade to vK").
    fn chain(n: usize) -> (Vec<Release>, Vec<Pin>) {
        let mut releases = vec![ok("v1", "20250101-000000", None, None)];
        let mut pins = Vec::new();
        for k in 2..=n {
            let b = format!("b{k}");
            releases.push(ok(
                &format!("v{k}"),
                &format!("202501{k:02}-000000"),
                Some(&format!("v{}", k - 1)),
                Some(&b),
            ));
            pins.push(pin(&b, &format!("v{k}")));
        }
        (releases, pins)
    }

    #[test]
    fn keeps_the_newest_successful_releases_by_marker_time() {
        // Folder names sort differently from the upgrade order: `at` decides.
        let releases = vec![
            ok("v10", "20250105-000000", Some("v9"), None),
            ok("v9", "20250104-000000", Some("v2"), None),
            ok("v2", "20250103-000000", Some("v1"), None),
            ok("v1", "20250102-000000", None, None),
            ok("v0", "20250101-000000", None, None),
        ];
        let v = decide(&releases, Some("v10"), &[], 3);
        assert_eq!(removed(&v), ["v0", "v1"]);
        assert_eq!(v[0].why, "current");
        assert_eq!(v[1].why, "rollback target of the current release");
    }

    #[test]
    fn failed_and_unfinished_releases_never_count_toward_keep() {
        // capistrano#1907: with keep = 2, two failed releases must not push out the last good
        // one (the rollback target).
        let releases = vec![
            ok("v1", "20250101-000000", None, None),
            ok("v2", "20250102-000000", Some("v1"), None),
            ok("v3", "20250103-000000", Some("v2"), None),
            rel("v4", Status::Failed, "20250104-000000", Some("v3"), None),
            rel(
                "v5",
                Status::Installing,
                "20250105-000000",
                Some("v3"),
                None,
            ),
            unmarked("v6"),
        ];
        let v = decide(&releases, Some("v3"), &[], 2);
        assert_eq!(removed(&v), ["v1", "v4", "v5", "v6"]);
        assert!(v.iter().any(|v| v.version == "v2" && v.keep));
    }

    #[test]
    fn current_and_rollback_target_stay_even_when_old_or_failed() {
        // After a manual switch back to an old release, it is current: it stays even though
        // newer successful releases fill `keep`.
        let releases = vec![
            ok("v1", "20250101-000000", None, None),
            ok("v2", "20250102-000000", Some("v1"), None),
            ok("v3", "20250103-000000", Some("v2"), None),
        ];
        let v = decide(&releases, Some("v1"), &[], 1);
        assert_eq!(removed(&v), ["v2"]);
        // A current release without a marker (made by hand) stays; it has no rollback target.
        let releases = vec![unmarked("v1"), ok("v0", "20250101-000000", None, None)];
        let v = decide(&releases, Some("v1"), &[], 1);
        assert_eq!(removed(&v), Vec::<&str>::new());
        // A failed release that is current (someone pointed current at it) stays.
        let releases = vec![
            rel("v2", Status::Failed, "20250102-000000", Some("v1"), None),
            ok("v1", "20250101-000000", None, None),
        ];
        let v = decide(&releases, Some("v2"), &[], 1);
        assert_eq!(removed(&v), Vec::<&str>::new());
    }

    #[test]
    fn a_release_a_pinned_backup_was_taken_for_stays() {
        let releases = vec![
            ok("v1", "20250101-000000", None, None),
            ok("v2", "20250102-000000", Some("v1"), Some("b2")),
            ok("v3", "20250103-000000", Some("v2"), None),
            ok("v4", "20250104-000000", Some("v3"), None),
        ];
        // By the pin's text.
        let v = decide(&releases, Some("v4"), &[pin("b2", "v2")], 1);
        assert_eq!(removed(&v), ["v1"]);
        // By the marker naming the backup, whatever the pin says.
        let p = Pin {
            backup: "b2".into(),
            reason: "keep: audit".into(),
        };
        let v = decide(&releases, Some("v4"), &[p], 1);
        assert_eq!(removed(&v), ["v1"]);
        // A pin of people naming no release protects nothing.
        let p = Pin {
            backup: "bx".into(),
            reason: "legal hold".into(),
        };
        let v = decide(&releases, Some("v4"), &[p], 1);
        assert_eq!(removed(&v), ["v1", "v2"]);
    }

    #[test]
    fn damaged_markers_are_never_deleted() {
        let releases = vec![
            Release {
                version: "v0".into(),
                marker: MarkerFile::Damaged("bad json".into()),
            },
            ok("v1", "20250101-000000", None, None),
        ];
        let v = decide(&releases, Some("v1"), &[], 1);
        assert_eq!(removed(&v), Vec::<&str>::new());
        assert!(
            v.iter()
                .any(|v| v.version == "v0" && v.why.contains("damaged"))
        );
    }

    #[test]
    fn pins_are_released_along_a_chain_of_upgrades() {
        // Upgrades v1 → v2 → v3 → v4 → v5, keep 3, one cleanup after each.
        let mut state: Vec<Release> = Vec::new();
        let mut pins: Vec<Pin> = Vec::new();
        let (all, all_pins) = chain(5);
        let mut log = Vec::new();
        for n in 1..=5 {
            state.push(all[n - 1].clone());
            if n >= 2 {
                pins.push(all_pins[n - 2].clone());
            }
            let current = format!("v{n}");
            let v = decide(&state, Some(&current), &pins, 3);
            state = remaining(&state, &v);
            let stale = stale_pins(&state, &pins);
            pins.retain(|p| !stale.iter().any(|(b, _)| *b == p.backup));
            log.push((
                state.iter().map(|r| r.version.clone()).collect::<Vec<_>>(),
                pins.iter().map(|p| p.backup.clone()).collect::<Vec<_>>(),
            ));
        }
        let names = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(log[2], (names(&["v1", "v2", "v3"]), names(&["b2", "b3"])));
        // v4: v1 goes (not current, not v3 = rollback target, no pin was taken for it), so b2
        // (taken before upgrading v1 → v2) can no longer roll anything back.
        assert_eq!(log[3], (names(&["v2", "v3", "v4"]), names(&["b3", "b4"])));
        assert_eq!(log[4], (names(&["v3", "v4", "v5"]), names(&["b4", "b5"])));
    }

    #[test]
    fn keep_one_still_keeps_the_rollback_target_and_its_backup() {
        let (all, pins) = chain(3);
        let v = decide(&all, Some("v3"), &pins, 1);
        assert_eq!(removed(&v), ["v1"]);
        let left = remaining(&all, &v);
        let stale = stale_pins(&left, &pins);
        // b2 (for v2, from v1) goes with v1; b3 (for v3, from v2) stays: v3 → v2 can roll back.
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, "b2");
        assert!(stale[0].1.contains("v1"), "{}", stale[0].1);
    }

    #[test]
    fn the_pin_of_a_rolled_back_upgrade_goes() {
        // v2's upgrade failed and its release was removed by the rollback.
        let left = vec![
            ok("v1", "20250101-000000", None, None),
            ok("v3", "20250103-000000", Some("v1"), Some("b3")),
        ];
        let pins = vec![pin("b2", "v2"), pin("b3", "v3")];
        let stale = stale_pins(&left, &pins);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].0, "b2");
    }

    #[test]
    fn pins_of_people_and_of_unfinished_releases_stay() {
        let left = vec![
            ok("v1", "20250101-000000", None, None),
            rel(
                "v2",
                Status::Failed,
                "20250102-000000",
                Some("v0"),
                Some("b2"),
            ),
            unmarked("v3"),
        ];
        let pins = vec![
            Pin {
                backup: "bx".into(),
                reason: "legal hold".into(),
            },
            pin("b2", "v2"),
            pin("b3", "v3"),
            pin("b1", "v1"), // v1 has no `from`: nothing to roll back to, nothing to decide
        ];
        assert!(stale_pins(&left, &pins).is_empty());
    }

    #[test]
    fn pin_texts() {
        assert_eq!(pin_release("pre-upgrade to v1.1.0"), Some("v1.1.0"));
        assert_eq!(pin_release("  pre-upgrade to v1.1.0\n"), Some("v1.1.0"));
        assert_eq!(pin_release("pre-upgrade to ../x"), None);
        assert_eq!(pin_release("legal hold"), None);
    }
}
