//! `preflight` step plugin: the checks before a backup (plan §6 step 1, §12). It estimates the
//! backup's size, fails when the disk holding the backups lacks room for it, warns which backups
//! retention will delete after this run, and estimates how long the backup will take.
//!
//! - Estimate: the sizes of the files under `sources` (minus `exclude`, by the archive plugin's
//!   glob rules: the [`glob_rules`] library both share; symlinks inside are not followed, a
//!   source that is itself a symlink is, within the customer folder) plus the size of the
//!   database dump of the newest earlier backup that has one (from its `backup.json`).
//! - Space: fails (`io`) when the free space where `backups` lives is below estimate × `margin`.
//! - `backups` must be a real folder, not a symlink.
//! - Retention: the same rules as the `retention` plugin (the [`backup_list`] library both
//!   share); one warning per backup it will delete once this run's backup exists.
//! - ETA: estimate ÷ the median write rate (`stats.totalBytes / stats.durationSeconds`) of the
//!   newest five earlier backups that record one; none without history.
//!
//! - Low space: a warning when, after this run, less than one more backup of this size would fit.
//! - More than a backup: `also_needs` folders are measured whole and must fit too (an upgrade's
//!   new release is about as big as the current one with its `node_modules`).
//! - Weights: for each step in `weigh`, the bytes it will move (its sources as measured, `db` as
//!   the newest earlier dump), so the host weighs the run's percent by bytes.
//!
//! Config (see [`Config`]): `customer` (guest path of a read-only mount of the customer folder),
//! `backups` (guest path of the backups folder; read-only is enough), `sources` (folders inside
//! the customer folder, e.g. `["backend", "admin", "store"]`), `exclude` (anchored globs, default
//! `**/node_modules/**`, `**/.next/**`, `**/dist/**`, `**/logs/**`), `keep` (retention N, default
//! 5), `retention` (default true: false when no retention step follows, as in an upgrade),
//! `margin` (default 1.2), `weigh` (step id → sources or `"db"`), `also_needs` (folders).
//! Outputs: `estimate-bytes`, `needed-bytes` (what must be free: the estimate plus `also_needs`,
//! times the margin), `free-bytes`, `eta-seconds` (when known), `step-bytes.<step>`.
//! Warnings (retention, low space) are `warn` log lines, which the host shows as run warnings.
//! No host commands.

pub mod walk;

use std::collections::BTreeMap;
use std::io::Read as _;

use backup_list::{Backup, Listed, decide, is_backup_id, may_be_backup, pin_reason, scan_in};
use glob_rules::{GlobSet, glob_set};
use qodify_plugin_sdk::fs::{self, DirEntry, Metadata};
use qodify_plugin_sdk::prelude::*;

use crate::walk::{Hooks, Tree, measure, resolve_source};

/// Earlier backups whose write rate makes the ETA.
const ETA_HISTORY: usize = 5;
/// A `backup.json` above this size is not one we wrote.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Pin files hold a short reason.
const MAX_PIN_BYTES: u64 = 64 << 10;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the customer folder (read-only mount).
    pub customer: String,
    /// Guest path of the customer's backups folder.
    pub backups: String,
    /// Folders inside the customer folder whose files the backup will archive.
    pub sources: Vec<String>,
    /// Anchored globs, relative to each source, of what the backup leaves out.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
    /// Retention's N.
    #[serde(default = "default_keep")]
    pub keep: i64,
    /// Whether a retention step follows this run (an upgrade's pinned pre-upgrade backup has
    /// none): without one, no retention warnings.
    #[serde(default = "default_true")]
    pub retention: bool,
    /// Free space needed, as a multiple of the estimate.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Which step moves which bytes, for the run's byte-weighted progress: step id → entries of
    /// `sources` it archives, or `"db"` for the database dump. Each becomes an output
    /// `step-bytes.<id>`.
    #[serde(default)]
    pub weigh: BTreeMap<String, Vec<String>>,
    /// Folders inside the customer folder the run needs room for besides the backup, measured
    /// whole (nothing excluded): an upgrade's new release is about as big as the current one
    /// with its `node_modules`. A missing one counts 0.
    #[serde(default)]
    pub also_needs: Vec<String>,
}

fn default_exclude() -> Vec<String> {
    [
        "**/node_modules/**",
        "**/.next/**",
        "**/dist/**",
        "**/logs/**",
    ]
    .map(String::from)
    .to_vec()
}

fn default_true() -> bool {
    true
}

fn default_keep() -> i64 {
    5
}

fn default_margin() -> f64 {
    1.2
}

/// A checked config.
#[derive(Debug)]
pub struct Plan {
    /// The customer folder, no trailing slash.
    pub customer: String,
    /// The backups folder, no trailing slash.
    pub backups: String,
    /// Source folders, relative, normalised.
    pub sources: Vec<String>,
    /// The exclude matcher.
    pub exclude: Option<GlobSet>,
    /// Retention's N.
    pub keep: usize,
    /// A retention step follows.
    pub retention: bool,
    /// The margin.
    pub margin: f64,
    /// Step id → normalised sources (or `db`) it moves.
    pub weigh: BTreeMap<String, Vec<String>>,
    /// Folders, relative, normalised, measured whole on top of the backup.
    pub also_needs: Vec<String>,
}

/// `raw` as a folder inside the customer folder, relative and normalised.
fn inside(field: &str, raw: &str) -> Result<String, Error> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if raw.starts_with('/') || parts.is_empty() || parts.contains(&"..") {
        return Err(Error::invalid_config(format!(
            "{field} `{raw}` must be a folder inside the customer folder, like backend or \
             shared/uploads"
        )));
    }
    Ok(parts.join("/"))
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let folder = |field: &str, path: &str| {
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return Err(Error::invalid_config(format!(
                    "{field} `{path}` must be an absolute guest path like /{field}"
                )));
            }
            Ok(match path.trim_end_matches('/') {
                "" => "/".to_string(),
                p => p.to_string(),
            })
        };
        let customer = folder("customer", &config.customer)?;
        let backups = folder("backups", &config.backups)?;
        let sources = config
            .sources
            .iter()
            .map(|raw| inside("source", raw))
            .collect::<Result<Vec<_>, _>>()?;
        let also_needs = config
            .also_needs
            .iter()
            .map(|raw| inside("also_needs entry", raw))
            .collect::<Result<Vec<_>, _>>()?;
        let mut weigh = BTreeMap::new();
        for (step, parts) in &config.weigh {
            let mut list = Vec::new();
            for raw in parts {
                if raw == "db" {
                    list.push("db".to_owned());
                    continue;
                }
                let part = inside("weigh entry", raw)?;
                if !sources.contains(&part) {
                    return Err(Error::invalid_config(format!(
                        "weigh.{step} names `{raw}`, which is not one of the sources; name a \
                         source or \"db\""
                    )));
                }
                list.push(part);
            }
            weigh.insert(step.clone(), list);
        }
        if config.keep < 1 {
            return Err(Error::invalid_config(format!(
                "keep is {}; retention keeps at least 1 backup",
                config.keep
            )));
        }
        if !config.margin.is_finite() || config.margin < 1.0 {
            return Err(Error::invalid_config(format!(
                "margin {} must be at least 1.0 (1.2 = 20% more free space than the estimate)",
                config.margin
            )));
        }
        Ok(Plan {
            customer,
            backups,
            sources,
            exclude: glob_set("exclude", &config.exclude)?,
            keep: usize::try_from(config.keep).unwrap_or(usize::MAX),
            retention: config.retention,
            margin: config.margin,
            weigh,
            also_needs,
        })
    }
}

/// What the checks found, before deciding (pure inputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Bytes the backup is expected to take.
    pub estimate: u64,
    /// The database part of it and the backup it comes from.
    pub db: Option<(String, u64)>,
    /// Free bytes where the backups live.
    pub free: u64,
    /// estimate × margin.
    pub needed: u64,
    /// Median write rate of recent backups, bytes per second.
    pub rate: Option<f64>,
    /// Backups the rate comes from.
    pub rate_samples: usize,
    /// Estimated duration, seconds.
    pub eta_seconds: Option<u64>,
    /// Backups retention will delete after this run, newest first.
    pub doomed: Vec<String>,
}

/// Combines the measured source size, earlier backups (newest first), pins and free space.
pub fn assess(
    source_bytes: u64,
    history: &[Backup],
    pins: &BTreeMap<String, String>,
    plan: &Plan,
    free: u64,
    run_id: &str,
) -> Assessment {
    let earlier: Vec<&Backup> = history.iter().filter(|b| b.id != run_id).collect();
    let db = earlier
        .iter()
        .find_map(|b| Some((b.id.clone(), b.summary.db_dump_bytes()?)));
    let estimate = source_bytes.saturating_add(db.as_ref().map_or(0, |(_, n)| *n));
    let needed = (estimate as f64 * plan.margin).ceil() as u64;
    let mut rates: Vec<f64> = earlier
        .iter()
        .filter_map(|b| b.summary.bytes_per_second())
        .take(ETA_HISTORY)
        .collect();
    let rate_samples = rates.len();
    let rate = median(&mut rates);
    let eta_seconds = rate.map(|r| (estimate as f64 / r).ceil() as u64);
    let mut ids: Vec<&str> = earlier.iter().map(|b| b.id.as_str()).collect();
    ids.push(run_id);
    let doomed = if !plan.retention {
        Vec::new()
    } else {
        decide(&ids, pins, plan.keep, Some(run_id))
            .into_iter()
            .filter(|d| !d.keep)
            .map(|d| d.id)
            .collect()
    };
    Assessment {
        estimate,
        db,
        free,
        needed,
        rate,
        rate_samples,
        eta_seconds,
        doomed,
    }
}

impl Assessment {
    /// Adds `bytes` the run needs besides the backup (an upgrade's new release) to what must be
    /// free.
    pub fn also_needs(&mut self, bytes: u64, plan: &Plan) {
        self.needed = (self.estimate.saturating_add(bytes) as f64 * plan.margin).ceil() as u64;
    }

    /// A warning when, after this run, less than one more backup of this size would fit.
    pub fn low_space_warning(&self) -> Option<String> {
        let after = self.free.saturating_sub(self.needed);
        (self.free >= self.needed && after < self.estimate).then(|| {
            format!(
                "free space low: after this run about {} remains where the backups are stored, \
                 less than one more backup ({}); free disk space or lower retention",
                human(after),
                human(self.estimate)
            )
        })
    }

    /// The bytes each step in `plan.weigh` moves: its sources as measured, `db` as the newest
    /// earlier dump (a step with nothing known is left out).
    pub fn step_bytes(&self, plan: &Plan, measured: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
        plan.weigh
            .iter()
            .filter_map(|(step, parts)| {
                let mut known = false;
                let mut sum = 0u64;
                for part in parts {
                    let n = if part == "db" {
                        self.db.as_ref().map(|(_, n)| *n)
                    } else {
                        measured.get(part).copied()
                    };
                    if let Some(n) = n {
                        known = true;
                        sum = sum.saturating_add(n);
                    }
                }
                known.then(|| (step.clone(), sum))
            })
            .collect()
    }

    /// The failure when there is not enough room, saying what to do.
    pub fn space_error(&self, plan: &Plan) -> Option<Error> {
        (self.free < self.needed).then(|| {
            Error::io(format!(
                "not enough free space for this backup: it needs about {} (estimated {} × margin \
                 {}) but only {} is free where the backups are stored; free disk space, or lower \
                 retention (keep, now {}) so fewer old backups are kept",
                human(self.needed),
                human(self.estimate),
                plan.margin,
                human(self.free),
                plan.keep
            ))
        })
    }
}

/// Median of `values` (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// `512 B`, `3.4 KiB`, `120.0 MiB`, `1.25 GiB`.
pub fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / KIB / KIB)
    } else {
        format!("{:.2} GiB", b / KIB / KIB / KIB)
    }
}

/// `45 s`, `3 min 20 s`, `2 h 5 min`.
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

struct Preflight;

impl Step for Preflight {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        check_backups_folder(&plan.backups)?;

        let mut source_bytes = 0u64;
        let mut measured = BTreeMap::new();
        let mut hooks = CtxHooks(ctx);
        for (i, source) in plan.sources.iter().enumerate() {
            ctx.progress(
                i as f32 * 80.0 / plan.sources.len() as f32,
                format!("measuring {source}"),
            );
            let path = format!("{}/{source}", plan.customer.trim_end_matches('/'));
            let root = match resolve_source(&HostTree, &plan.customer, &path)? {
                Ok(root) => root,
                Err(why) => {
                    ctx.warn(format!("source {source} is not counted: {why}"));
                    continue;
                }
            };
            let sized = measure(&HostTree, &root, plan.exclude.as_ref(), &mut hooks)?;
            ctx.info(format!(
                "{source}: {} in {} files ({} excluded entries)",
                human(sized.bytes),
                sized.files,
                sized.excluded
            ));
            source_bytes = source_bytes.saturating_add(sized.bytes);
            measured.insert(source.clone(), sized.bytes);
        }
        let mut also = 0u64;
        for folder in &plan.also_needs {
            let path = format!("{}/{folder}", plan.customer.trim_end_matches('/'));
            let root = match resolve_source(&HostTree, &plan.customer, &path)? {
                Ok(root) => root,
                Err(why) => {
                    ctx.info(format!("{folder} is not counted: {why}"));
                    continue;
                }
            };
            let sized = measure(&HostTree, &root, None, &mut hooks)?;
            ctx.info(format!(
                "{folder}: {} in {} files, needed again by this run",
                human(sized.bytes),
                sized.files
            ));
            also = also.saturating_add(sized.bytes);
        }

        ctx.progress(80.0, "reading earlier backups");
        let history = read_history(ctx, &plan.backups)?;
        let pins = read_pins(
            ctx,
            &format!("{}/.pins", plan.backups.trim_end_matches('/')),
        );
        let free = fs::space(&plan.backups)?.available_bytes;
        let mut a = assess(
            source_bytes,
            &history,
            &pins,
            &plan,
            free,
            ctx.run_timestamp(),
        );

        if also > 0 {
            a.also_needs(also, &plan);
        }
        if let Some((id, bytes)) = &a.db {
            ctx.info(format!(
                "database dump: about {} (as in backup {id})",
                human(*bytes)
            ));
        }
        ctx.info(format!(
            "estimated backup size {}, {} needed with margin {}, {} free",
            human(a.estimate),
            human(a.needed),
            plan.margin,
            human(a.free)
        ));
        for id in &a.doomed {
            ctx.warn(format!(
                "retention will delete backup {id} after this run (it keeps the newest {})",
                plan.keep
            ));
        }
        match (a.eta_seconds, a.rate) {
            (Some(eta), Some(rate)) => ctx.info(format!(
                "estimated duration about {} (median {}/s over the last {} backups)",
                human_duration(eta),
                human(rate as u64),
                a.rate_samples
            )),
            _ => ctx.info("no earlier backup with timing: no duration estimate"),
        }
        if let Some(e) = a.space_error(&plan) {
            return Err(e);
        }
        if let Some(w) = a.low_space_warning() {
            ctx.warn(w);
        }
        ctx.progress(100.0, "preflight checks passed");
        let mut out = Output::new()
            .value("estimate-bytes", a.estimate)
            .value("needed-bytes", a.needed)
            .value("free-bytes", a.free);
        if let Some(eta) = a.eta_seconds {
            out.push_value("eta-seconds", eta);
        }
        for (step, bytes) in a.step_bytes(&plan, &measured) {
            out.push_value(format!("step-bytes.{step}"), bytes);
        }
        Ok(out)
    }
}

export_step!(Preflight);

/// The backups folder must be a real folder, not a symlink to somewhere else.
fn check_backups_folder(path: &str) -> Result<(), Error> {
    let meta = fs::stat(path).map_err(|e| e.context("checking the backups folder"))?;
    if meta.is_symlink() {
        return Err(Error::invalid_config(format!(
            "the backups folder {path} is a symlink; backups must go to a real folder in the \
             customer folder"
        )));
    }
    if !meta.is_dir() {
        return Err(Error::invalid_config(format!(
            "the backups folder {path} is not a folder; move it away so backups can be stored"
        )));
    }
    Ok(())
}

/// Successful earlier backups, newest first.
fn read_history(ctx: &Context, dir: &str) -> Result<Vec<Backup>, Error> {
    let dir = dir.trim_end_matches('/');
    let mut listing = Vec::new();
    for entry in fs::list_dir(dir)? {
        ctx.check_cancelled()?;
        let is_dir = entry.metadata.is_dir();
        let manifest = may_be_backup(&entry.name, is_dir)
            .then(|| {
                read_limited(
                    &format!("{dir}/{}/backup.json", entry.name),
                    MAX_MANIFEST_BYTES,
                )
            })
            .flatten();
        listing.push(Listed {
            name: entry.name,
            is_dir,
            manifest,
        });
    }
    let (backups, _ignored) = scan_in(dir, listing);
    Ok(backups)
}

/// Pins by backup id; a `.pins` folder that cannot be read only costs accuracy of a warning.
fn read_pins(ctx: &Context, dir: &str) -> BTreeMap<String, String> {
    let entries = match fs::list_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            ctx.warn(format!("pins unknown: {e}"));
            return BTreeMap::new();
        }
    };
    entries
        .into_iter()
        .filter(|e| is_backup_id(&e.name))
        .map(|e| {
            let text = read_limited(&format!("{dir}/{}", e.name), MAX_PIN_BYTES);
            let reason = text.map_or_else(|| "pin file unreadable".to_string(), |t| pin_reason(&t));
            (e.name, reason)
        })
        .collect()
}

/// A text file's content, `None` when missing, unreadable or over `limit` bytes.
fn read_limited(path: &str, limit: u64) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text).ok()?;
    (text.len() as u64 <= limit).then_some(text)
}

struct HostTree;

impl Tree for HostTree {
    fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        fs::list_dir(path)
    }

    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        fs::stat(path)
    }
}

struct CtxHooks<'a>(&'a Context);

impl Hooks for CtxHooks<'_> {
    fn cancelled(&mut self) -> bool {
        self.0.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_list::parse_summary;

    fn plan(json: &str) -> Result<Plan, Error> {
        Plan::new(serde_json::from_str(json).map_err(|e| Error::invalid_config(e.to_string()))?)
    }

    fn default_plan() -> Plan {
        plan(r#"{"customer":"/customer","backups":"/backups","sources":["backend","admin","store"]}"#)
            .unwrap()
    }

    fn backup(id: &str, db: Option<u64>, total: u64, seconds: f64) -> Backup {
        let mut artifacts =
            vec![serde_json::json!({"name":"backend","file":"backend.tar.gz","size":10})];
        if let Some(n) = db {
            artifacts.push(serde_json::json!({"name":"db","file":"db.dump","size":n}));
        }
        let text = serde_json::json!({
            "artifacts": artifacts,
            "stats": {"totalBytes": total, "durationSeconds": seconds}
        })
        .to_string();
        Backup {
            id: id.into(),
            summary: parse_summary(&text).unwrap(),
        }
    }

    const RUN: &str = "20250110-000000";

    #[test]
    fn config_defaults_and_checks() {
        let p = default_plan();
        assert_eq!((p.keep, p.margin), (5, 1.2));
        assert!(p.exclude.as_ref().unwrap().is_match("a/node_modules/b"));
        let p = plan(
            r#"{"customer":"/c/","backups":"/b","sources":["./shared//uploads/"],"exclude":[]}"#,
        )
        .unwrap();
        assert_eq!(
            (p.customer.as_str(), p.sources[0].as_str()),
            ("/c", "shared/uploads")
        );
        assert!(p.exclude.is_none());
        for bad in [
            r#"{"customer":"c","backups":"/b","sources":[]}"#,
            r#"{"customer":"/c","backups":"/b/../x","sources":[]}"#,
            r#"{"customer":"/c","backups":"/b","sources":["../other"]}"#,
            r#"{"customer":"/c","backups":"/b","sources":["/etc"]}"#,
            r#"{"customer":"/c","backups":"/b","sources":["."]}"#,
            r#"{"customer":"/c","backups":"/b","sources":[],"keep":0}"#,
            r#"{"customer":"/c","backups":"/b","sources":[],"margin":0.9}"#,
            r#"{"customer":"/c","backups":"/b","sources":[],"exclude":["a["]}"#,
            r#"{"customer":"/c","backups":"/b"}"#,
            r#"{"customer":"/c","backups":"/b","sources":[],"keep_last":3}"#,
        ] {
            assert_eq!(
                plan(bad).unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{bad}"
            );
        }
    }

    #[test]
    fn estimate_adds_the_newest_db_dump_and_checks_space() {
        let history = vec![
            backup("20250109-000000", None, 0, 0.0),
            backup("20250108-000000", Some(300 << 20), 0, 0.0),
            backup("20250107-000000", Some(100 << 20), 0, 0.0),
        ];
        let p = default_plan();
        let a = assess(700 << 20, &history, &BTreeMap::new(), &p, 1 << 30, RUN);
        assert_eq!(a.db, Some(("20250108-000000".into(), 300 << 20)));
        assert_eq!(a.estimate, 1000 << 20);
        assert_eq!(a.needed, 1200 << 20);
        let err = a.space_error(&p).unwrap();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.message(),
            "not enough free space for this backup: it needs about 1.17 GiB (estimated 1000.0 \
             MiB × margin 1.2) but only 1.00 GiB is free where the backups are stored; free disk \
             space, or lower retention (keep, now 5) so fewer old backups are kept"
        );
        let ok = assess(700 << 20, &history, &BTreeMap::new(), &p, 2 << 30, RUN);
        assert!(ok.space_error(&p).is_none());
        assert_eq!(ok.eta_seconds, None, "no timing in history");
        assert!(ok.doomed.is_empty(), "3 backups + this run fit in 5");
    }

    #[test]
    fn first_backup_has_no_history() {
        let a = assess(5, &[], &BTreeMap::new(), &default_plan(), 100, RUN);
        assert_eq!((a.estimate, a.needed, a.db.clone()), (5, 6, None));
        assert_eq!((a.rate, a.eta_seconds), (None, None));
        assert!(a.doomed.is_empty());
        assert!(a.space_error(&default_plan()).is_none());
    }

    #[test]
    fn retention_warning_names_what_goes_after_this_run() {
        let history: Vec<Backup> = (1..=6)
            .map(|d| backup(&format!("2025010{d}-000000"), None, 0, 0.0))
            .collect();
        let pins = BTreeMap::from([("20250101-000000".to_string(), "audit".to_string())]);
        let a = assess(0, &history, &pins, &default_plan(), 1 << 40, RUN);
        // This run and 06..03 are the newest 5; 01 is pinned.
        assert_eq!(a.doomed, ["20250102-000000"]);
        let a = assess(0, &history, &BTreeMap::new(), &default_plan(), 1 << 40, RUN);
        assert_eq!(a.doomed, ["20250102-000000", "20250101-000000"]);
    }

    #[test]
    fn eta_from_the_median_rate_of_the_newest_five() {
        let history = vec![
            backup("20250109-000000", None, 100, 1.0),  // 100 B/s
            backup("20250108-000000", None, 300, 1.0),  // 300
            backup("20250107-000000", None, 200, 0.0),  // no rate
            backup("20250106-000000", None, 200, 1.0),  // 200
            backup("20250105-000000", None, 1000, 1.0), // 1000
            backup("20250104-000000", None, 50, 1.0),   // 50
            backup("20250103-000000", None, 9, 1.0),    // beyond five
        ];
        let a = assess(
            1000,
            &history,
            &BTreeMap::new(),
            &default_plan(),
            1 << 40,
            RUN,
        );
        assert_eq!(a.rate_samples, 5);
        assert_eq!(a.rate, Some(200.0));
        assert_eq!(a.eta_seconds, Some(5));
    }

    #[test]
    fn helpers() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 4.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 10), "3.0 KiB");
        assert_eq!(human(120 << 20), "120.0 MiB");
        assert_eq!(human(5 << 29), "2.50 GiB");
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(200), "3 min 20 s");
        assert_eq!(human_duration(7500), "2 h 5 min");
    }

    #[test]
    fn weigh_gives_each_step_the_bytes_it_moves() {
        let p = plan(
            r#"{"customer":"/c","backups":"/b","sources":["releases/v1/backend","shared/uploads"],
                "weigh":{"db-dump":["db"],"archive-backend":["releases/v1/backend/"],
                         "archive-uploads":["shared/uploads"],"archive-env":["releases/v1/backend"]}}"#,
        )
        .unwrap();
        let measured = BTreeMap::from([
            ("releases/v1/backend".to_owned(), 700u64),
            ("shared/uploads".to_owned(), 300u64),
        ]);
        let history = vec![backup("20250109-000000", Some(50), 0, 0.0)];
        let a = assess(1000, &history, &BTreeMap::new(), &p, 1 << 40, RUN);
        assert_eq!(
            a.step_bytes(&p, &measured),
            vec![
                ("archive-backend".to_owned(), 700),
                ("archive-env".to_owned(), 700),
                ("archive-uploads".to_owned(), 300),
                ("db-dump".to_owned(), 50),
            ]
        );
        // No earlier dump: the dump's step is left out (the host gives it a small default).
        let a = assess(1000, &[], &BTreeMap::new(), &p, 1 << 40, RUN);
        assert!(
            !a.step_bytes(&p, &measured)
                .iter()
                .any(|(s, _)| s == "db-dump")
        );
        for bad in [
            r#"{"customer":"/c","backups":"/b","sources":["backend"],"weigh":{"x":["admin"]}}"#,
            r#"{"customer":"/c","backups":"/b","sources":["backend"],"weigh":{"x":["../backend"]}}"#,
            r#"{"customer":"/c","backups":"/b","sources":[],"also_needs":["/etc"]}"#,
        ] {
            let err = plan(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn what_else_the_run_needs_counts_against_free_space() {
        let p = default_plan();
        // 100 MiB backup, 300 MiB more for a new release, margin 1.2: 480 MiB needed.
        let mut a = assess(100 << 20, &[], &BTreeMap::new(), &p, 450 << 20, RUN);
        assert!(a.space_error(&p).is_none());
        a.also_needs(300 << 20, &p);
        assert_eq!(a.needed, 480 << 20);
        let err = a.space_error(&p).unwrap();
        assert!(err.to_string().contains("480.0 MiB"), "{err}");
    }

    #[test]
    fn little_room_left_after_the_run_is_a_warning() {
        let p = default_plan();
        // Needs 120 MiB; 200 MiB free leaves 80 MiB, less than one more 100 MiB backup.
        let a = assess(100 << 20, &[], &BTreeMap::new(), &p, 200 << 20, RUN);
        let w = a.low_space_warning().unwrap();
        assert!(
            w.contains("free space low") && w.contains("80.0 MiB"),
            "{w}"
        );
        let a = assess(100 << 20, &[], &BTreeMap::new(), &p, 1 << 30, RUN);
        assert_eq!(a.low_space_warning(), None);
        // Not enough room at all is the error, not a warning.
        let a = assess(100 << 20, &[], &BTreeMap::new(), &p, 100 << 20, RUN);
        assert_eq!(a.low_space_warning(), None);
    }

    #[test]
    fn without_a_retention_step_nothing_is_said_about_retention() {
        let p = plan(
            r#"{"customer":"/c","backups":"/b","sources":["backend"],"keep":1,"retention":false}"#,
        )
        .unwrap();
        let history = vec![backup("20250109-000000", None, 0, 0.0)];
        let a = assess(0, &history, &BTreeMap::new(), &p, 1 << 40, RUN);
        assert!(a.doomed.is_empty(), "{:?}", a.doomed);
    }
}
