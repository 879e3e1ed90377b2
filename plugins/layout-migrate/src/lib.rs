//! `layout-migrate` step plugin: moves a customer from the current layout
//! (`backend/`, `admin/`, `store/`, uploads in `backend/uploads/`) to the blue/green layout of
//! plan §3.2 (see [`upgrade_kit`]), or back (`mode = "revert"`).
//!
//! Downtime is kept to renames (plan §12): every move is a `rename` inside the customer folder,
//! and each old path becomes a relative symlink right after its folder moved, so running apps and
//! old paths keep working (`backend -> current/backend`, `backend/uploads ->
//! ../../../shared/uploads`). Then, when `pm2` is on, the PM2 ecosystem file is rewritten so
//! its paths go through `current/` and each app is re-registered without a gap: a cluster
//! "handover" copy joins the app's port, the old app is deleted and started again from the new
//! ecosystem file, and the copy is deleted (PM2 keeps the paths an app was started with, so a
//! reload alone would never switch; tests/fixtures/upgrade/PM2-NOTES.md).
//!
//! Every change is recorded first in `.migrate-layout.json` in the customer folder, so `revert`
//! (the pipeline's `on_failure` step, also run by the host after a crash) undoes exactly what
//! was done, in reverse; a successful migration removes the journal. A customer already in the
//! blue/green layout (`current` or `releases/` exists) is refused: the migration runs once.
//!
//! Config (see [`Config`]):
//! - `customer`: guest path of the customer folder, in a read-write mount (e.g. `/customer`).
//! - `mode`: `"migrate"` (default) or `"revert"`.
//! - `version`: the release name for the current code; default `v` + the `version` of
//!   `backend/package.json`.
//! - `services`: default `["backend", "admin", "store"]`.
//! - `pm2`: re-register the PM2 apps (default `true`); `apps`: the apps and their services,
//!   default `<domain>-<service>`; `ecosystem`: the ecosystem file, relative to the customer
//!   folder (default `ecosystem.config.js`); `ecosystem_rewrite`: exact text replacements that
//!   make its paths go through `current/` (each `from` must occur), default
//!   `[{from = "path.join(__dirname, service)", to = "path.join(__dirname, 'current', service)"}]`.
//!
//! Grants: the customer folder read-write; `pm2` (with `inherit = ["PM2_HOME"]`) with `start`,
//! `delete`, `jlist`, `--only`, `--name`, `-i`, `1`, app names, `ecosystem.config.js` and
//! `current/*/*` script paths.
//!
//! Outputs: `version`, `moved` (services), `uploads` (`moved` or `none`), `pm2` (apps
//! re-registered); on revert `rolled-back` (what was undone).

use qodify_plugin_sdk::fs;
use qodify_plugin_sdk::prelude::*;
use serde::Serialize;
use upgrade_kit::layout::{self, CURRENT, RELEASES, SHARED, SHARED_UPLOADS, UPLOADS_LINK};
use upgrade_kit::marker::{Marker, Status};
use upgrade_kit::pm2;

/// The journal's file name in the customer folder.
pub const JOURNAL: &str = ".migrate-layout.json";

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the customer folder (read-write mount).
    pub customer: String,
    /// `migrate` or `revert`.
    #[serde(default)]
    pub mode: Mode,
    /// Release name for the current code; default `v` + backend/package.json's version.
    #[serde(default)]
    pub version: Option<String>,
    /// The services.
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// Re-register the PM2 apps through `current/`.
    #[serde(default = "yes")]
    pub pm2: bool,
    /// PM2 apps; default `<domain>-<service>` for every service.
    #[serde(default)]
    pub apps: Vec<App>,
    /// The PM2 ecosystem file, relative to the customer folder.
    #[serde(default = "default_ecosystem")]
    pub ecosystem: String,
    /// Text replacements that make the ecosystem's paths go through `current/`.
    #[serde(default = "default_rewrite")]
    pub ecosystem_rewrite: Vec<Rewrite>,
}

/// `migrate` or `revert`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Current layout → blue/green.
    #[default]
    Migrate,
    /// Undo what the journal lists.
    Revert,
}

/// A PM2 app and the service it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The PM2 name.
    pub name: String,
    /// The service folder it runs.
    pub service: String,
}

/// One exact text replacement.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Text to find (must occur).
    pub from: String,
    /// Its replacement.
    pub to: String,
}

fn default_services() -> Vec<String> {
    layout::SERVICES.iter().map(|s| (*s).to_owned()).collect()
}
fn yes() -> bool {
    true
}
fn default_ecosystem() -> String {
    "ecosystem.config.js".into()
}
fn default_rewrite() -> Vec<Rewrite> {
    vec![Rewrite {
        from: "path.join(__dirname, service)".into(),
        to: "path.join(__dirname, 'current', service)".into(),
    }]
}

/// What the migration did so far; written before each change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// The release name.
    pub version: String,
    /// `releases/` and `shared/` were created by this migration.
    pub created_dirs: bool,
    /// `current` was created.
    pub current: bool,
    /// Services moved into the release (and replaced by symlinks).
    pub moved: Vec<String>,
    /// Uploads moved to `shared/uploads`.
    pub uploads: bool,
    /// The ecosystem file was rewritten (the original is kept beside it).
    pub ecosystem: bool,
    /// PM2 apps re-registered from the new ecosystem file.
    pub pm2: Vec<String>,
}

struct Migrate;

impl Step for Migrate {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let c = config.customer.trim_end_matches('/').to_owned();
        match config.mode {
            Mode::Migrate => {
                let result = migrate(ctx, &config, &c);
                if let Err(e) = &result
                    && read_journal(&c).is_ok_and(|j| j.is_some())
                {
                    // Put everything back at once; the on_failure step finds nothing left to do.
                    ctx.error(format!("migration failed: {}; reverting", e.message()));
                    if let Err(r) = revert(ctx, &config, &c) {
                        ctx.error(format!(
                            "reverting failed too: {}; {c}/{JOURNAL} lists what is still moved (docs/upgrades.md)",
                            r.message()
                        ));
                    }
                }
                result
            }
            Mode::Revert => revert(ctx, &config, &c),
        }
    }
}

export_step!(Migrate);

fn exists(path: &str) -> bool {
    fs::stat(path).is_ok()
}

fn read_journal(c: &str) -> Result<Option<Journal>, Error> {
    match std::fs::read(format!("{c}/{JOURNAL}")) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::io(format!("{c}/{JOURNAL} is damaged: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {c}/{JOURNAL}: {e}"))),
    }
}

fn write_journal(c: &str, j: &Journal) -> Result<(), Error> {
    let tmp = format!("{c}/{JOURNAL}.tmp");
    let text = serde_json::to_vec_pretty(j).map_err(|e| Error::internal(e.to_string()))?;
    upgrade_kit::journal::write_synced(&tmp, &text).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, format!("{c}/{JOURNAL}")).context("saving the migration journal")?;
    fs::sync_dir(c)
}

fn rename(from: &str, to: &str) -> Result<(), Error> {
    std::fs::rename(from, to).with_context(|| format!("moving {from} to {to}"))
}

/// The release name: configured, or `v` + backend/package.json's version.
fn release_name(config: &Config, c: &str) -> Result<String, Error> {
    if let Some(v) = &config.version {
        return Ok(v.clone());
    }
    let path = format!("{c}/backend/package.json");
    let text = std::fs::read(&path).with_context(|| format!("reading {path} for the version"))?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::invalid_config(format!("{path} is not JSON: {e}")))?;
    let version = v["version"].as_str().ok_or_else(|| {
        Error::invalid_config(format!(
            "{path} has no \"version\"; set `version` in the step config"
        ))
    })?;
    Ok(format!("v{}", version.trim_start_matches('v')))
}

fn apps(ctx: &Context, config: &Config) -> Vec<App> {
    if !config.apps.is_empty() {
        return config.apps.clone();
    }
    config
        .services
        .iter()
        .map(|s| App {
            name: format!("{}-{s}", ctx.customer_domain()),
            service: s.clone(),
        })
        .collect()
}

/// Replaces every `from` (each must occur) in `text`.
pub fn rewrite(text: &str, rules: &[Rewrite]) -> Result<String, String> {
    let mut out = text.to_owned();
    for r in rules {
        if !out.contains(&r.from) {
            return Err(format!(
                "`{}` does not occur in the ecosystem file; set `ecosystem_rewrite` for this file's shape",
                r.from
            ));
        }
        out = out.replace(&r.from, &r.to);
    }
    Ok(out)
}

fn migrate(ctx: &Context, config: &Config, c: &str) -> Result<Output, Error> {
    // Refuse twice, and refuse to start over a half migration: revert it first.
    if let Some(j) = read_journal(c)? {
        return Err(Error::invalid_config(format!(
            "an earlier migration to {} did not finish ({c}/{JOURNAL} exists): its revert runs as this pipeline's on_failure step; run `qodify-host run migrate-layout` again after it",
            j.version
        )));
    }
    for done in [CURRENT, RELEASES] {
        if exists(&format!("{c}/{done}")) {
            return Err(Error::invalid_config(format!(
                "the customer is already in the blue/green layout ({c}/{done} exists); migrate-layout runs once"
            )));
        }
    }
    for s in &config.services {
        let m = fs::stat(format!("{c}/{s}"))
            .map_err(|_| Error::not_found(format!("{c}/{s} is missing: nothing to migrate")))?;
        if !m.is_dir() {
            return Err(Error::invalid_config(format!(
                "{c}/{s} is not a folder (a symlink?): the customer is not in the current layout"
            )));
        }
    }
    let version = release_name(config, c)?;
    if !layout::is_version_name(&version) {
        return Err(Error::invalid_config(format!(
            "`{version}` cannot be a release folder name"
        )));
    }
    let release = format!("{c}/{RELEASES}/{version}");
    let mut j = Journal {
        version: version.clone(),
        ..Journal::default()
    };
    let total = config.services.len() as f32 + 3.0;
    let mut done = 0.0;
    let mut step = |ctx: &Context, what: &str| {
        done += 1.0;
        ctx.progress(done / total * 100.0, what);
    };

    j.created_dirs = true;
    write_journal(c, &j)?;
    std::fs::create_dir_all(&release).with_context(|| format!("creating {release}"))?;
    std::fs::create_dir_all(format!("{c}/{SHARED}")).context("creating shared/")?;
    j.current = true;
    write_journal(c, &j)?;
    fs::symlink(&layout::current_target(&version), format!("{c}/{CURRENT}"))?;
    step(ctx, "current -> releases/".to_owned().as_str());

    for s in &config.services {
        j.moved.push(s.clone());
        write_journal(c, &j)?;
        // The gap between these two lines is the only moment `<service>` does not resolve.
        rename(&format!("{c}/{s}"), &format!("{release}/{s}"))?;
        fs::symlink(&format!("{CURRENT}/{s}"), format!("{c}/{s}"))?;
        step(ctx, &format!("moved {s} into releases/{version}"));
    }

    let uploads = format!("{release}/backend/uploads");
    let uploads_moved = match fs::stat(&uploads) {
        Ok(m) if m.is_dir() => {
            j.uploads = true;
            write_journal(c, &j)?;
            rename(&uploads, &format!("{c}/{SHARED_UPLOADS}"))?;
            fs::symlink(UPLOADS_LINK, &uploads)?;
            true
        }
        Ok(_) => {
            return Err(Error::invalid_config(format!(
                "{uploads} is not a folder; move it by hand"
            )));
        }
        Err(_) => {
            std::fs::create_dir_all(format!("{c}/{SHARED_UPLOADS}"))
                .context("creating shared/uploads")?;
            if config.services.iter().any(|s| s == "backend") {
                fs::symlink(UPLOADS_LINK, &uploads)?;
            }
            false
        }
    };
    step(ctx, "uploads in shared/uploads");
    Marker {
        version: version.clone(),
        status: Status::Succeeded,
        from: None,
        run: ctx.run_id().to_owned(),
        at: ctx.run_timestamp().to_owned(),
        pre_upgrade_backup: None,
    }
    .write(&release)?;
    fs::sync_dir(&release)?;
    fs::sync_dir(format!("{c}/{RELEASES}"))?;
    fs::sync_dir(c)?;

    let mut registered = Vec::new();
    if config.pm2 {
        let eco = format!("{c}/{}", config.ecosystem);
        let text = std::fs::read_to_string(&eco).with_context(|| format!("reading {eco}"))?;
        let new = rewrite(&text, &config.ecosystem_rewrite).map_err(Error::invalid_config)?;
        j.ecosystem = true;
        write_journal(c, &j)?;
        let keep = format!("{eco}.pre-blue-green");
        std::fs::write(&keep, &text).with_context(|| format!("keeping {keep}"))?;
        let tmp = format!("{eco}.tmp");
        std::fs::write(&tmp, new).with_context(|| format!("writing {tmp}"))?;
        rename(&tmp, &eco)?;
        for app in apps(ctx, config) {
            j.pm2.push(app.name.clone());
            write_journal(c, &j)?;
            handover(
                c,
                &app,
                &config.ecosystem,
                &format!("current/{}", app.service),
            )?;
            registered.push(app.name);
        }
        step(ctx, "PM2 apps run through current/");
    }
    std::fs::remove_file(format!("{c}/{JOURNAL}")).context("removing the migration journal")?;
    fs::sync_dir(c)?;
    ctx.info(format!(
        "{c} is in the blue/green layout: current -> releases/{version}"
    ));
    Ok(Output::new()
        .value("version", &version)
        .value("moved", config.services.join(","))
        .value("uploads", if uploads_moved { "moved" } else { "none" })
        .value("pm2", registered.join(",")))
}

/// Re-registers `app` from the ecosystem file without a gap: a cluster copy joins its port while
/// the app is deleted and started again (PM2-NOTES.md, zero-downtime layout migration).
fn handover(c: &str, app: &App, ecosystem: &str, script_dir: &str) -> Result<(), Error> {
    let copy = format!("{}-handover", app.name);
    let running = pm2::jlist(c)?.into_iter().any(|a| a.name == app.name);
    if running {
        let script = format!("{script_dir}/server.js");
        pm2::delete_if_present(c, &copy)?;
        pm2::run(c, &["start", &script, "--name", &copy, "-i", "1"], &[])?;
        pm2::run(c, &["delete", &app.name], &[])?;
    }
    pm2::run(c, &["start", ecosystem, "--only", &app.name], &[])?;
    if running {
        pm2::delete_if_present(c, &copy)?;
    }
    Ok(())
}

fn revert(ctx: &Context, config: &Config, c: &str) -> Result<Output, Error> {
    let Some(mut j) = read_journal(c)? else {
        ctx.info("no migration journal: nothing to revert");
        return Ok(Output::new().value("revert", "nothing: no layout migration in progress"));
    };
    let release = format!("{c}/{RELEASES}/{}", j.version);
    let mut undone = Vec::new();
    if j.ecosystem {
        let eco = format!("{c}/{}", config.ecosystem);
        let keep = format!("{eco}.pre-blue-green");
        if exists(&keep) {
            rename(&keep, &eco)?;
        }
        j.ecosystem = false;
        write_journal(c, &j)?;
        undone.push("ecosystem file restored".to_owned());
    }
    // Apps go back to the service folders' own paths (after the moves below would be too
    // late for a handover: re-register them once the folders are back).
    let to_restart: Vec<String> = std::mem::take(&mut j.pm2);
    if j.uploads {
        let link = format!("{release}/backend/uploads");
        if fs::stat(&link).is_ok_and(|m| m.is_symlink()) {
            std::fs::remove_file(&link).with_context(|| format!("removing {link}"))?;
        }
        rename(&format!("{c}/{SHARED_UPLOADS}"), &link)?;
        j.uploads = false;
        write_journal(c, &j)?;
        undone.push("uploads back in backend/uploads".to_owned());
    }
    while let Some(s) = j.moved.last().cloned() {
        let link = format!("{c}/{s}");
        if fs::stat(&link).is_ok_and(|m| m.is_symlink()) {
            std::fs::remove_file(&link).with_context(|| format!("removing {link}"))?;
        }
        if exists(&format!("{release}/{s}")) {
            rename(&format!("{release}/{s}"), &link)?;
        }
        j.moved.pop();
        write_journal(c, &j)?;
        undone.push(format!("{s} back in place"));
    }
    if j.current {
        let cur = format!("{c}/{CURRENT}");
        if fs::stat(&cur).is_ok_and(|m| m.is_symlink()) {
            std::fs::remove_file(&cur).context("removing current")?;
        }
        j.current = false;
        write_journal(c, &j)?;
    }
    if j.created_dirs {
        let _ = std::fs::remove_file(format!("{release}/{}", upgrade_kit::marker::FILE));
        for d in [
            release.clone(),
            format!("{c}/{RELEASES}"),
            format!("{c}/{SHARED_UPLOADS}"),
            format!("{c}/{SHARED}"),
        ] {
            // Only empty folders: anything else there was not made by this migration.
            let _ = std::fs::remove_dir(&d);
        }
    }
    if config.pm2 {
        for app in apps(ctx, config)
            .into_iter()
            .filter(|a| to_restart.contains(&a.name))
        {
            handover(c, &app, &config.ecosystem, &app.service)?;
        }
        if !to_restart.is_empty() {
            undone.push(format!(
                "PM2 apps {} run from the old paths",
                to_restart.join(", ")
            ));
        }
    }
    std::fs::remove_file(format!("{c}/{JOURNAL}")).context("removing the migration journal")?;
    fs::sync_dir(c)?;
    let text = if undone.is_empty() {
        "layout migration: nothing had changed yet".to_owned()
    } else {
        format!("layout migration: {}", undone.join(", "))
    };
    ctx.info(&text);
    Ok(Output::new().value("rolled-back", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystem_rewrites_must_match() {
        let text = "const cwd = path.join(__dirname, service);\n";
        let out = rewrite(text, &default_rewrite()).unwrap();
        assert_eq!(
            out,
            "const cwd = path.join(__dirname, 'current', service);\n"
        );
        let err = rewrite("cwd: '/srv/x/backend'", &default_rewrite()).unwrap_err();
        assert!(err.contains("ecosystem_rewrite"), "{err}");
    }

    #[test]
    fn journal_round_trips() {
        let j = Journal {
            version: "v1.0.0".into(),
            created_dirs: true,
            current: true,
            moved: vec!["backend".into()],
            uploads: false,
            ecosystem: false,
            pm2: vec![],
        };
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.contains("\"createdDirs\":true"), "{text}");
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
    }
}
