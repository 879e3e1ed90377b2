//! `retention` step plugin: keeps a customer's newest N complete backups and deletes the older
//! ones (plan §6 step 8, product §3).
//!
//! A backup is what the host lists as one ([`backup_rules::complete`]): a real folder of
//! `backups` named `YYYYMMDD-HHMMSS` whose `backup.json` (format 1, naming that id) lists its
//! artifacts, each there with its size. Anything else (unfinished or failed runs, damaged
//! backups, hidden folders, stray files) is not a backup: it is ignored and never deleted. A backup is pinned when `<backups>/.pins/<id>`
//! exists (its text is the reason); pinned backups are never deleted and do not count toward N.
//! The current run's backup is never deleted. One log line per backup says why it is kept or
//! deleted.
//!
//! Config (see [`Config`]): `backups` (guest path of the customer's `backups` folder, read-write),
//! `keep` (N ≥ 1, default 5), `current` (id of the backup this run made; optional), `dry_run`
//! (default false: only log). Outputs: `kept` and `deleted` (comma-separated ids, newest first);
//! with `dry_run`, `deleted` is empty and `would-delete` lists what would go.
//!
//! The rules live in [`backup_list`] and [`backup_rules`], unit-tested, shared with `preflight`
//! and the host.

use std::collections::BTreeMap;
use std::io::Read as _;

use backup_list::{Listed, decide, is_backup_id, may_be_backup, pin_reason, scan_in};
use backup_rules::{MANIFEST, MAX_MANIFEST_BYTES, PINS};
use qodify_plugin_sdk::fs;
use qodify_plugin_sdk::prelude::*;
/// Pin files hold a short reason; read no more than this.
const MAX_PIN_BYTES: u64 = 64 << 10;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the customer's `backups` folder (a read-write mount).
    pub backups: String,
    /// How many unpinned backups to keep, at least 1.
    #[serde(default = "default_keep")]
    pub keep: i64,
    /// The id of the backup this run made; never deleted.
    #[serde(default)]
    pub current: Option<String>,
    /// Only log what would be deleted.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_keep() -> i64 {
    5
}

/// A checked config.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The `backups` folder, without a trailing slash.
    pub backups: String,
    /// N.
    pub keep: usize,
    /// The current run's backup id.
    pub current: Option<String>,
    /// Only log.
    pub dry_run: bool,
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        if !config.backups.starts_with('/') {
            return Err(Error::invalid_config(format!(
                "backups `{}` must be an absolute guest path, e.g. /backups",
                config.backups
            )));
        }
        if config.keep < 1 {
            return Err(Error::invalid_config(format!(
                "keep is {}; it must be at least 1 (retention never deletes every backup)",
                config.keep
            )));
        }
        if let Some(current) = &config.current
            && !is_backup_id(current)
        {
            return Err(Error::invalid_config(format!(
                "current `{current}` is not a backup id (YYYYMMDD-HHMMSS); pass {{{{run.timestamp}}}}"
            )));
        }
        let backups = match config.backups.trim_end_matches('/') {
            "" => "/".to_string(),
            path => path.to_string(),
        };
        Ok(Plan {
            backups,
            keep: usize::try_from(config.keep).unwrap_or(usize::MAX),
            current: config.current,
            dry_run: config.dry_run,
        })
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.backups.trim_end_matches('/'))
    }
}

struct Retention;

impl Step for Retention {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        check_folder(&plan.backups)?;
        let mut listing = Vec::new();
        for entry in fs::list_dir(&plan.backups)? {
            ctx.check_cancelled()?;
            let is_dir = entry.metadata.is_dir();
            let manifest = may_be_backup(&entry.name, is_dir)
                .then(|| read_manifest(&plan.path(&format!("{}/{MANIFEST}", entry.name))))
                .flatten();
            listing.push(Listed {
                name: entry.name,
                is_dir,
                manifest,
            });
        }
        let (found, ignored) = scan_in(&plan.backups, listing);
        for (name, why) in &ignored {
            ctx.debug(format!("not a backup, left alone: {name} ({why})"));
        }
        let pins = read_pins(&plan.path(PINS))?;
        let ids: Vec<&str> = found.iter().map(|b| b.id.as_str()).collect();
        if let Some(current) = plan.current.as_deref()
            && !ids.contains(&current)
        {
            ctx.warn(format!(
                "this run's backup {current} is not among the complete backups (no valid \
                 backup.json, or an artifact missing); it is not counted"
            ));
        }
        let decisions = decide(&ids, &pins, plan.keep, plan.current.as_deref());
        let mut kept = Vec::new();
        let mut doomed = Vec::new();
        for d in &decisions {
            if d.keep {
                ctx.info(format!("keeping {}: {}", d.id, d.reason));
                kept.push(d.id.as_str());
            } else {
                let verb = if plan.dry_run {
                    "would delete"
                } else {
                    "deleting"
                };
                ctx.info(format!("{verb} {}: {}", d.id, d.reason));
                doomed.push(d.id.as_str());
            }
        }
        let mut out = Output::new().value("kept", kept.join(","));
        if plan.dry_run {
            return Ok(out
                .value("deleted", "")
                .value("would-delete", doomed.join(",")));
        }
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        for (i, id) in doomed.iter().enumerate() {
            ctx.check_cancelled()?;
            ctx.progress(
                i as f32 * 100.0 / doomed.len() as f32,
                format!("deleting backup {id}"),
            );
            match delete_backup(&plan.path(id)) {
                Ok(()) => deleted.push(*id),
                Err(e) => failed.push(format!("{id}: {e}")),
            }
        }
        ctx.progress(100.0, format!("{} backups deleted", deleted.len()));
        if !failed.is_empty() {
            return Err(Error::io(format!(
                "could not delete {} old backups ({}); check the folders' permissions, then run \
                 retention again",
                failed.len(),
                failed.join("; ")
            )));
        }
        out.push_value("deleted", deleted.join(","));
        Ok(out)
    }
}

export_step!(Retention);

/// The `backups` folder must be a real folder: following a symlinked one could delete elsewhere.
fn check_folder(path: &str) -> Result<(), Error> {
    let meta = fs::stat(path).map_err(|e| e.context("checking the backups folder"))?;
    if meta.is_symlink() {
        return Err(Error::invalid_config(format!(
            "the backups folder {path} is a symlink; mount the real folder instead"
        )));
    }
    if !meta.is_dir() {
        return Err(Error::invalid_config(format!(
            "the backups folder {path} is not a folder"
        )));
    }
    Ok(())
}

/// The text of a `backup.json`, or `None` when it is missing, unreadable or implausibly big.
fn read_manifest(path: &str) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_MANIFEST_BYTES).then_some(text)
}

/// Pins by backup id. Any failure other than a missing `.pins` folder stops the step: not
/// knowing the pins could delete a pinned backup.
fn read_pins(dir: &str) -> Result<BTreeMap<String, String>, Error> {
    let entries = match fs::list_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(e.context(
                "reading the pins; fix or remove the .pins folder so pinned backups are known",
            ));
        }
    };
    let mut pins = BTreeMap::new();
    for entry in entries {
        if !is_backup_id(&entry.name) {
            continue;
        }
        let path = format!("{dir}/{}", entry.name);
        let mut text = String::new();
        let reason = match std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_PIN_BYTES).read_to_string(&mut text))
        {
            Ok(_) => pin_reason(&text),
            // Unreadable, but it exists: still pinned.
            Err(_) => "pin file unreadable".to_string(),
        };
        pins.insert(entry.name, reason);
    }
    Ok(pins)
}

/// Deletes one backup folder. `backup.json` goes first, so a deletion cut short leaves a folder
/// that is no longer listed as a backup rather than a backup with missing files.
fn delete_backup(path: &str) -> Result<(), Error> {
    let manifest = format!("{path}/{MANIFEST}");
    match std::fs::remove_file(&manifest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::from(e).context(format!("removing {manifest}"))),
    }
    std::fs::remove_dir_all(path).with_context(|| format!("removing {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Plan, Error> {
        Plan::new(serde_json::from_str(json).map_err(|e| Error::invalid_config(e.to_string()))?)
    }

    #[test]
    fn config_defaults_and_checks() {
        assert_eq!(
            config(r#"{"backups":"/backups/"}"#).unwrap(),
            Plan {
                backups: "/backups".into(),
                keep: 5,
                current: None,
                dry_run: false
            }
        );
        let p = config(r#"{"backups":"/b","keep":2,"current":"20250101-000000","dry_run":true}"#)
            .unwrap();
        assert_eq!((p.keep, p.dry_run), (2, true));
        for bad in [
            r#"{"backups":"b"}"#,
            r#"{"backups":"/b","keep":0}"#,
            r#"{"backups":"/b","keep":-3}"#,
            r#"{"backups":"/b","current":"latest"}"#,
            r#"{"backups":"/b","kep":3}"#,
        ] {
            assert_eq!(
                config(bad).unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{bad}"
            );
        }
    }

    #[test]
    fn deleting_removes_the_manifest_first_and_the_whole_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let backup = tmp.path().join("20250101-000000");
        std::fs::create_dir_all(backup.join("sub")).unwrap();
        std::fs::write(backup.join("backup.json"), "{}").unwrap();
        std::fs::write(backup.join("sub/x"), "x").unwrap();
        delete_backup(backup.to_str().unwrap()).unwrap();
        assert!(!backup.exists());
    }
}
