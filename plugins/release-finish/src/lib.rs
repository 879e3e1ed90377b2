//! `release-finish` step plugin: the upgrade's `on_success` step. It ends the upgrade and
//! cleans up old releases.
//!
//! 1. With the upgrade journal (`releases/.upgrade.json`) of this run: checks that `current`
//!    points at the journal's target, marks that release `succeeded` in its marker (with `from`,
//!    the run, the run's timestamp as `at`, and the pre-upgrade backup), then removes the
//!    journal: from here on the upgrade is over and no rollback will undo it. A journal of
//!    another run is refused. Without a journal it only cleans up.
//! 2. Cleanup (rules in [`cleanup`]): keeps the newest `keep` releases marked `succeeded`
//!    (ordered by the marker's `at`); never removes the release `current` points at, its
//!    rollback target (its marker's `from`), a release a pinned backup was taken for, or one
//!    whose marker is damaged; releases marked `failed`/`installing` or without a marker never
//!    count toward `keep` (capistrano#1907) and go unless protected. Removal renames a release to
//!    `releases/.removing-<version>` first and never follows the `uploads` symlink.
//! 3. Pins: the pre-upgrade backup of an upgrade is pinned by the host as
//!    `backups/.pins/<backup id>` ("pre-upgrade to <version>"); its pin is removed once that
//!    upgrade can no longer be rolled back (the release it could roll back to is gone), so
//!    backup retention may then count it. Pins that name no release are never touched.
//!
//! Cleanup problems (a folder that cannot be removed) are warnings: the upgrade itself succeeded.
//!
//! Config (see [`Config`]): `customer` (default `/customer`), `releases` (default
//! `/customer/releases`), `backups` (default `/customer/backups`), `keep` (default 3, at least
//! 1; per tier through overlays).
//!
//! Grants: a read-write mount of the customer folder (`path = ""`); no commands.
//!
//! Outputs: `finished` (`<to> succeeded (from <from>)`, or `nothing: no upgrade in progress`),
//! `kept`, `removed` (releases) and `unpinned` (backup ids), each comma-separated (empty when
//! none).

pub mod cleanup;

use std::io::Read as _;

use qodify_plugin_sdk::fs::{FileSystem as _, HostFs};
use qodify_plugin_sdk::prelude::*;
use upgrade_kit::journal::Journal;
use upgrade_kit::marker::{Marker, MarkerFile, Status};
use upgrade_kit::{layout, swap, tree};

use crate::cleanup::{Pin, Release};

/// The pins folder inside `backups`, as the host and retention know it.
pub use backup_rules::PINS;
/// Pin files hold a short reason; read no more than this.
const MAX_PIN_BYTES: u64 = 64 << 10;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the customer folder (read-write).
    #[serde(default = "default_customer")]
    pub customer: String,
    /// Guest path of `<customer>/releases`.
    #[serde(default = "default_releases")]
    pub releases: String,
    /// Guest path of the customer's `backups` folder (read-write, for pins).
    #[serde(default = "default_backups")]
    pub backups: String,
    /// Successful releases to keep, at least 1.
    #[serde(default = "default_keep")]
    pub keep: i64,
}

fn default_customer() -> String {
    "/customer".into()
}
fn default_releases() -> String {
    "/customer/releases".into()
}
fn default_backups() -> String {
    "/customer/backups".into()
}
fn default_keep() -> i64 {
    3
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The customer folder.
    pub customer: String,
    /// The releases folder.
    pub releases: String,
    /// The backups folder.
    pub backups: String,
    /// N.
    pub keep: usize,
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let norm = |p: &str, what: &str| {
            qodify_plugin_sdk::path::normalize(p).map_err(|e| e.context(what.to_string()))
        };
        let customer = norm(&config.customer, "customer")?;
        let releases = norm(&config.releases, "releases")?;
        let backups = norm(&config.backups, "backups")?;
        let expected = format!("{customer}/{}", layout::RELEASES);
        if releases != expected {
            return Err(Error::invalid_config(format!(
                "releases is `{releases}` but must be `{expected}`"
            )));
        }
        if config.keep < 1 {
            return Err(Error::invalid_config(format!(
                "keep is {}; it must be at least 1",
                config.keep
            )));
        }
        Ok(Plan {
            customer,
            releases,
            backups,
            keep: config.keep as usize,
        })
    }
}

/// The marker a finished upgrade leaves on its release.
pub fn succeeded_marker(journal: &Journal, old: MarkerFile, at: &str) -> Marker {
    let base = match old {
        MarkerFile::Valid(m) => m,
        MarkerFile::Missing | MarkerFile::Damaged(_) => Marker {
            version: journal.to.clone(),
            status: Status::Installing,
            from: None,
            run: journal.run.clone(),
            at: at.to_string(),
            pre_upgrade_backup: None,
        },
    };
    Marker {
        version: journal.to.clone(),
        status: Status::Succeeded,
        from: Some(journal.from.clone()),
        run: journal.run.clone(),
        at: at.to_string(),
        pre_upgrade_backup: journal.backup.clone().or(base.pre_upgrade_backup),
    }
}

/// Lists the release folders with their markers (dot names, files and symlinks are not releases).
fn list_releases(plan: &Plan) -> Result<Vec<Release>, Error> {
    let mut out = Vec::new();
    for entry in HostFs.list_dir(&plan.releases)? {
        if !entry.metadata.is_dir() || !layout::is_version_name(&entry.name) {
            continue;
        }
        let marker = Marker::inspect(&format!("{}/{}", plan.releases, entry.name))?;
        out.push(Release {
            version: entry.name,
            marker,
        });
    }
    Ok(out)
}

/// Lists `backups/.pins` (missing: no pins).
fn list_pins(plan: &Plan) -> Result<Vec<Pin>, Error> {
    let dir = format!("{}/{PINS}", plan.backups);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from(e).context(format!("listing {dir}"))),
    };
    let mut pins = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {dir}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut reason = String::new();
        if let Ok(f) = std::fs::File::open(format!("{dir}/{name}")) {
            let _ = f.take(MAX_PIN_BYTES).read_to_string(&mut reason);
        }
        pins.push(Pin {
            backup: name,
            reason,
        });
    }
    pins.sort_by(|a, b| a.backup.cmp(&b.backup));
    Ok(pins)
}

struct ReleaseFinish;

impl Step for ReleaseFinish {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        let current = swap::current_version(&HostFs, &plan.customer)?;

        // 1. End the upgrade.
        let finished = match Journal::read(&plan.releases)? {
            Some(j) => {
                if j.run != ctx.run_id() {
                    return Err(Error::invalid_config(format!(
                        "the upgrade journal belongs to run {} ({} → {}), not this run; it must \
                         be rolled back or finished by its own run (docs/upgrades.md)",
                        j.run, j.from, j.to
                    )));
                }
                if current.as_deref() != Some(j.to.as_str()) {
                    return Err(Error::invalid_config(format!(
                        "current points at {}, not at releases/{}: the upgrade did not go live; \
                         the journal is kept for the rollback",
                        current
                            .as_deref()
                            .map_or("nothing".into(), |c| format!("releases/{c}")),
                        j.to
                    )));
                }
                let dir = format!("{}/{}", plan.releases, j.to);
                let marker = succeeded_marker(&j, Marker::inspect(&dir)?, ctx.run_timestamp());
                marker.write(&dir)?;
                qodify_plugin_sdk::fs::sync_dir(&dir)?;
                Journal::remove(&HostFs, &plan.releases)?;
                ctx.info(format!(
                    "releases/{} marked succeeded (from {}); the upgrade is finished",
                    j.to, j.from
                ));
                format!("{} succeeded (from {})", j.to, j.from)
            }
            None => {
                ctx.info("no upgrade journal: only cleaning up old releases");
                "nothing: no upgrade in progress".to_string()
            }
        };
        ctx.progress(30.0, "cleaning up old releases");

        // 2. Cleanup.
        for name in tree::remove_leftovers(&HostFs, &plan.releases)? {
            ctx.info(format!("removed {name}, left by an interrupted removal"));
        }
        let releases = list_releases(&plan)?;
        let pins = list_pins(&plan)?;
        let verdicts = cleanup::decide(&releases, current.as_deref(), &pins, plan.keep);
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for v in &verdicts {
            ctx.check_cancelled()?;
            if v.keep {
                ctx.info(format!("keeping {}: {}", v.version, v.why));
                kept.push(v.version.clone());
                continue;
            }
            ctx.info(format!("removing {}: {}", v.version, v.why));
            match tree::remove_release(&HostFs, &plan.releases, &v.version) {
                Ok(_) => removed.push(v.version.clone()),
                Err(e) => {
                    ctx.warn(format!("could not remove releases/{}: {e}", v.version));
                    kept.push(v.version.clone());
                }
            }
        }
        ctx.progress(80.0, "pins");

        // 3. Pins, against what really remains.
        let remaining: Vec<Release> = releases
            .into_iter()
            .filter(|r| !removed.contains(&r.version))
            .collect();
        let mut unpinned = Vec::new();
        let pins_dir = format!("{}/{PINS}", plan.backups);
        for (backup, why) in cleanup::stale_pins(&remaining, &pins) {
            match std::fs::remove_file(format!("{pins_dir}/{backup}")) {
                Ok(()) => {
                    ctx.info(format!("unpinned backup {backup}: {why}"));
                    unpinned.push(backup);
                }
                Err(e) => ctx.warn(format!("could not unpin backup {backup}: {e}")),
            }
        }
        if !unpinned.is_empty()
            && let Err(e) = qodify_plugin_sdk::fs::sync_dir(&pins_dir)
        {
            ctx.warn(format!("syncing {pins_dir}: {e}"));
        }
        ctx.progress(
            100.0,
            format!("kept {}, removed {}", kept.len(), removed.len()),
        );
        Ok(Output::new()
            .value("finished", finished)
            .value("kept", kept.join(","))
            .value("removed", removed.join(","))
            .value("unpinned", unpinned.join(",")))
    }
}

export_step!(ReleaseFinish);

#[cfg(test)]
mod tests {
    use super::*;
    use upgrade_kit::journal::{DbPolicy, Migrate};

    fn plan(json: serde_json::Value) -> Result<Plan, Error> {
        let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
        Plan::new(config)
    }

    #[test]
    fn config_defaults_and_refusals() {
        let p = plan(serde_json::json!({})).unwrap();
        assert_eq!(
            (
                p.customer.as_str(),
                p.releases.as_str(),
                p.backups.as_str(),
                p.keep
            ),
            ("/customer", "/customer/releases", "/customer/backups", 3)
        );
        assert!(plan(serde_json::json!({"keep": 0})).is_err());
        assert!(plan(serde_json::json!({"releases": "/r"})).is_err());
        assert!(plan(serde_json::json!({"kep": 2})).is_err());
    }

    #[test]
    fn the_finished_release_is_marked_from_the_journal() {
        let j = Journal {
            run: "r2".into(),
            from: "v1".into(),
            to: "v2".into(),
            backup: Some("20250102-000000".into()),
            db_policy: DbPolicy::Restore,
            unpacked: true,
            migrate: Migrate::Done,
            swapped: true,
            started: "20250102-000000".into(),
        };
        let m = succeeded_marker(&j, MarkerFile::Missing, "20250102-000100");
        assert_eq!(m.status, Status::Succeeded);
        assert_eq!(m.from.as_deref(), Some("v1"));
        assert_eq!(m.pre_upgrade_backup.as_deref(), Some("20250102-000000"));
        assert_eq!(m.at, "20250102-000100");
        assert_eq!(m.run, "r2");
    }
}
