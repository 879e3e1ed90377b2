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
//! reload alone would never switch; tests/fixtures/upgrade/PM2-NOTES.md). Each of the two new
//! processes must listen before the process it replaces is deleted: `pm2 start` returns when a
//! process starts, and a NestJS or Next.js app listens 0.4–1.2 s later. The handover waits
//! through PM2's own reload, at most `listen_timeout_ms` (30 s) each time, and an app that does
//! not listen by then fails the step with nothing serving deleted ([`handover`]). A fork-mode
//! app owns its port, so no copy can join it: it is deleted and started again, with a warning.
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
//! - `listen_timeout_ms`: how long each new PM2 process of a handover may take to listen
//!   (default 30000, 1000 to 120000); also the `listen_timeout` the re-registered apps keep.
//!
//! Grants: the customer folder read-write; `pm2` (with `inherit = ["PM2_HOME"]`) with `start`,
//! `delete`, `reload`, `jlist`, `--only`, `--name`, `-i`, `1`, `--no-autorestart`,
//! `--listen-timeout=<listen_timeout_ms>`, app names, `ecosystem.config.js` and the script paths
//! `<service>/server.js` (a revert hands the apps back to them, also the one a failed migration
//! runs at once) and, to migrate, `current/<service>/server.js`.
//!
//! Outputs: `version`, `moved` (services), `uploads` (`moved` or `none`), `pm2` (apps
//! re-registered); on revert `rolled-back` (what was undone).

use std::time::{Duration, Instant};

use qodify_plugin_sdk::fs;
use qodify_plugin_sdk::prelude::*;
use serde::Serialize;
use upgrade_kit::layout::{self, CURRENT, RELEASES, SHARED, SHARED_UPLOADS, UPLOADS_LINK};
use upgrade_kit::marker::{Marker, Status};
use upgrade_kit::pm2;

/// The journal's file name in the customer folder.
pub const JOURNAL: &str = ".migrate-layout.json";

/// The `listen_timeout_ms` a step may set: long enough for an app that loads for a minute or
/// two, short enough that a wait that fails (the migration stops at the first), and the waits
/// of the revert after it, fit the step's 10 minutes.
pub const LISTEN_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=120_000;

/// What a `pm2 reload` may take beyond its listen bound: the CLI's own start and PM2 stopping
/// the replaced process (up to its `kill_timeout`).
const RELOAD_SLACK: Duration = Duration::from_secs(60);

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
    /// How long (ms) each new PM2 process of a handover may take to listen.
    #[serde(default = "default_listen_timeout")]
    pub listen_timeout_ms: u64,
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
fn default_listen_timeout() -> u64 {
    30_000
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
        if !LISTEN_TIMEOUT_MS.contains(&config.listen_timeout_ms) {
            return Err(Error::invalid_config(format!(
                "listen_timeout_ms = {} is out of range: give {} to {} (ms)",
                config.listen_timeout_ms,
                LISTEN_TIMEOUT_MS.start(),
                LISTEN_TIMEOUT_MS.end()
            )));
        }
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
                ctx,
                c,
                &app,
                &config.ecosystem,
                &format!("{CURRENT}/{}", app.service),
                bound(config),
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

fn bound(config: &Config) -> Duration {
    Duration::from_millis(config.listen_timeout_ms)
}

/// Whether PM2 runs `app` (a process of `service`) through `current/`.
fn through_current(app: &pm2::App, service: &str) -> bool {
    app.exec_path.contains(&format!("/{CURRENT}/{service}/"))
}

/// Re-registers `app` so that PM2 runs it from `dir` (`current/<service>` when migrating,
/// `<service>` when reverting) without a moment in which its port has no listener
/// (PM2-NOTES.md, zero-downtime layout migration):
///
/// 1. a cluster copy `<app>-handover` of `dir/server.js` joins the app's port (the PM2 daemon
///    owns cluster sockets, so both serve), and the handover waits until the copy listens;
/// 2. only then is the app deleted and started again from the ecosystem file, and the handover
///    waits until that process listens;
/// 3. only then is the copy deleted.
///
/// Each wait is bounded by `bound` ([`wait_listening`]). A wait that ends without a listener
/// fails the handover, and nothing that serves is deleted: in 1 the copy goes and the app keeps
/// serving; in 2 the new process goes and the copy keeps serving until a revert hands the app
/// back from it (the case of an app missing from PM2 while its copy runs, below).
///
/// A fork-mode app owns its port (Node cannot share it with a cluster copy, which would only
/// crash-loop on it), so it is deleted and started again: its port answers nothing until the new
/// process listens, and a warning says so.
fn handover(
    ctx: &Context,
    c: &str,
    app: &App,
    ecosystem: &str,
    dir: &str,
    bound: Duration,
) -> Result<(), Error> {
    let copy = format!("{}-handover", app.name);
    let list = pm2::jlist(c)?;
    let old: Vec<&pm2::App> = list.iter().filter(|a| a.name == app.name).collect();
    let copy_runs = list.iter().any(|a| a.name == copy);

    if old.is_empty() {
        // Nothing to replace; a copy left by a handover that failed in step 2 holds the port
        // and goes once the app listens.
        if let Err(e) = start_from_ecosystem(ctx, c, app, ecosystem, bound) {
            if !copy_runs {
                return Err(e);
            }
            let _ = pm2::delete_if_present(c, &app.name);
            return Err(and(
                e,
                format!("it was deleted, and `{copy}` keeps serving in its place"),
            ));
        }
        if copy_runs {
            pm2::delete_if_present(c, &copy)?;
        }
        return Ok(());
    }
    // A copy next to the app is left from an interrupted handover: the app serves.
    if copy_runs {
        pm2::run(c, &["delete", &copy], &[])?;
    }
    if old.iter().any(|a| a.is_fork_mode()) {
        ctx.warn(format!(
            "{} runs in PM2 fork mode, where no handover copy can share its port: it is deleted \
             and started again, so its port answers nothing until the new process listens \
             (cluster mode hands over without a gap: docs/upgrades.md)",
            app.name
        ));
        pm2::run(c, &["delete", &app.name], &[])?;
        return start_from_ecosystem(ctx, c, app, ecosystem, bound);
    }

    let script = format!("{dir}/server.js");
    // No autorestart: a copy whose process exits stays stopped, which the wait tells apart.
    pm2::run(
        c,
        &[
            "start",
            &script,
            "--name",
            &copy,
            "-i",
            "1",
            "--no-autorestart",
        ],
        &[],
    )?;
    if let Err(e) = wait_listening(c, &copy, bound) {
        let _ = pm2::delete_if_present(c, &copy);
        return Err(and(
            e,
            format!(
                "this copy of `{}` from {script} was deleted, and `{}` keeps serving from where \
                 it ran: make the app listen sooner or give it longer (param listenTimeoutMs)",
                app.name, app.name
            ),
        ));
    }
    pm2::run(c, &["delete", &app.name], &[])?;
    if let Err(e) = start_from_ecosystem(ctx, c, app, ecosystem, bound) {
        let _ = pm2::delete_if_present(c, &app.name);
        return Err(and(
            e,
            format!(
                "it was deleted again, and its copy `{copy}` from {script} serves in its place \
                 until the revert hands the app back"
            ),
        ));
    }
    pm2::run(c, &["delete", &copy], &[])?;
    Ok(())
}

/// `error; what`: what a failure left behind, after what failed.
fn and(error: Error, what: String) -> Error {
    Error::new(error.kind(), format!("{}; {what}", error.message()))
}

/// `pm2 start <ecosystem> --only <app>`, then [`wait_listening`]; a fork-mode app is not waited
/// for (its reload would be a restart, which waits for nothing), with a warning.
fn start_from_ecosystem(
    ctx: &Context,
    c: &str,
    app: &App,
    ecosystem: &str,
    bound: Duration,
) -> Result<(), Error> {
    pm2::run(c, &["start", ecosystem, "--only", &app.name], &[])?;
    let fork = pm2::jlist(c)?
        .iter()
        .any(|a| a.name == app.name && a.is_fork_mode());
    if fork {
        ctx.warn(format!(
            "{} runs in PM2 fork mode: PM2 cannot tell when it listens, so it was not waited for",
            app.name
        ));
        return Ok(());
    }
    wait_listening(c, &app.name, bound)
}

/// Waits until the cluster app `name`, just started, has a process that listens: at most
/// `bound`, else an error naming the app, the wait and why.
///
/// `pm2 start` returns when the process starts, not when it listens. Nothing outside PM2 can
/// see which process behind a cluster port answers: an HTTP probe of the port would be answered
/// by the process being replaced as well. PM2's daemon can: a `pm2 reload` of an online cluster
/// app starts a new process and returns only when that one emits `listening` (or PM2's `ready`
/// message, for an app with `wait_ready`), or when the app's `listen_timeout` elapses
/// (`lib/God/Reload.js`; the process it replaces stops only then). It exits 0 either way, so
/// whether the new process listened is read from the reload's time and what it left behind
/// ([`listened`]). The reload sets `listen_timeout` to `bound` with `--listen-timeout`, and the
/// app keeps it: later reloads (an upgrade's swap) wait as long for a new process.
fn wait_listening(c: &str, name: &str, bound: Duration) -> Result<(), Error> {
    let arg = format!("--listen-timeout={}", bound.as_millis());
    let started = Instant::now();
    pm2::run_for(c, &["reload", name, &arg], &[], bound + RELOAD_SLACK)?;
    let took = started.elapsed();
    let list = pm2::jlist(c)?;
    let procs: Vec<&pm2::App> = list.iter().filter(|a| a.name == name).collect();
    listened(&procs, took, bound).map_err(|why| {
        Error::command_failed(format!(
            "`{name}` did not listen within {}: {why}",
            seconds(bound)
        ))
    })
}

/// Whether the `pm2 reload` of a freshly started cluster app, which took `took`, proves that the
/// app's processes (`procs`, from `pm2 jlist` after it) listen; else why not. Each point closes
/// a way the reload could end without a listener and still exit 0:
/// - no process of the app exited (`exit_code` is set once one did), and each is `online`;
/// - each runs in cluster mode: a fork-mode reload is a restart, which waits for nothing;
/// - each was started exactly once again (`restart_time` 1, from 0 at `pm2 start`): the reload
///   of an app whose process had stopped is a plain start, which waits for nothing and does
///   not count;
/// - each has `listen_timeout` = `bound`: the timer the reload ran was ours;
/// - the reload took less than `bound`: PM2 arms that timer after the reload began, so a reload
///   ended by it takes at least `bound` (one whose process listened only in the last moments
///   before the bound counts as too slow: the safe side).
pub fn listened(procs: &[&pm2::App], took: Duration, bound: Duration) -> Result<(), String> {
    if procs.is_empty() {
        return Err("it is no longer in PM2".into());
    }
    for p in procs {
        if let Some(code) = p.exit_code {
            return Err(format!(
                "a process of it exited (code {code}); PM2 shows it {}",
                p.status
            ));
        }
        if p.status != "online" {
            return Err(format!("PM2 shows it {}", p.status));
        }
        if p.is_fork_mode() {
            return Err(
                "it runs in fork mode, where a reload does not wait for the process to listen"
                    .into(),
            );
        }
        if p.restart_time != 1 {
            return Err(format!(
                "PM2 started it {} times again instead of once, so the reload did not wait for it",
                p.restart_time
            ));
        }
        if p.listen_timeout != Some(bound.as_millis() as u64) {
            return Err(format!(
                "PM2 did not take --listen-timeout={} (its listen_timeout: {:?})",
                bound.as_millis(),
                p.listen_timeout
            ));
        }
    }
    if took >= bound {
        return Err(format!(
            "`pm2 reload` waited {} for a process that listens, and gave up",
            seconds(took)
        ));
    }
    Ok(())
}

/// `5 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
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
    // Apps go back to the service folders' own paths once the folders are back (below); the
    // journal keeps listing each until it is handed back, so a revert that stops before then
    // (or a crash) leaves that work to the next one.
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
    let to_restart = j.pm2.clone();
    if config.pm2 && !to_restart.is_empty() {
        let list = pm2::jlist(c)?;
        for app in apps(ctx, config)
            .into_iter()
            .filter(|a| to_restart.contains(&a.name))
        {
            // An app whose handover failed before it was deleted still runs from the old paths
            // (and its copy is gone): nothing to hand back.
            let copy = format!("{}-handover", app.name);
            let procs: Vec<&pm2::App> = list.iter().filter(|a| a.name == app.name).collect();
            let on_old_paths = !procs.is_empty()
                && !procs.iter().any(|p| through_current(p, &app.service))
                && !list.iter().any(|a| a.name == copy);
            if !on_old_paths {
                handover(ctx, c, &app, &config.ecosystem, &app.service, bound(config))?;
            }
            j.pm2.retain(|n| *n != app.name);
            write_journal(c, &j)?;
        }
        undone.push(format!(
            "PM2 apps {} run from the old paths",
            to_restart.join(", ")
        ));
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

    fn process(status: &str, mode: &str, restart_time: u64) -> pm2::App {
        pm2::App {
            name: "shop.test-admin-handover".into(),
            pid: 7,
            status: status.into(),
            cwd: "/c".into(),
            exec_path: "/c/current/admin/server.js".into(),
            exec_mode: mode.into(),
            restart_time,
            exit_code: None,
            listen_timeout: Some(5000),
        }
    }

    #[test]
    fn a_reload_proves_a_listener_only_when_nothing_else_can_have_ended_it() {
        let bound = Duration::from_secs(5);
        let fast = Duration::from_millis(1300);
        let ok = process("online", "cluster_mode", 1);
        assert_eq!(listened(&[&ok, &ok], fast, bound), Ok(()));

        let exited = pm2::App {
            exit_code: Some(1),
            ..process("stopped", "cluster_mode", 0)
        };
        let other_timer = pm2::App {
            listen_timeout: None,
            ..ok.clone()
        };
        let stopped = process("stopped", "cluster_mode", 1);
        let fork = process("online", "fork_mode", 1);
        let not_reloaded = process("online", "cluster_mode", 0);
        let crashed_and_restarted = process("online", "cluster_mode", 2);
        for (procs, took, why) in [
            (vec![&ok], bound, "gave up"),
            (
                vec![&ok],
                bound + Duration::from_millis(400),
                "waited 5.4 s",
            ),
            (vec![], fast, "no longer in PM2"),
            (vec![&exited], fast, "exited (code 1)"),
            (vec![&ok, &stopped], fast, "shows it stopped"),
            (vec![&fork], fast, "fork mode"),
            (vec![&not_reloaded], fast, "0 times"),
            (vec![&crashed_and_restarted], fast, "2 times"),
            (vec![&other_timer], fast, "--listen-timeout=5000"),
        ] {
            let err = listened(&procs, took, bound).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn bounds_read_as_seconds() {
        assert_eq!(seconds(Duration::from_secs(30)), "30 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
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
