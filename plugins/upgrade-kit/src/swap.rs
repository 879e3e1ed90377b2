//! Pointing `current` at a release and making PM2 run it: shared by `symlink-swap` (upgrade),
//! `upgrade-rollback` (back to the old release) and the layout migration.
//!
//! [`swap_current`] makes `current.swap-<tag>` → `releases/<version>` beside `current` and renames
//! it over `current`: one `rename(2)`, so `current` always names a whole release, never nothing
//! (capistrano#1097; never `ln -sfn`, which unlinks first). The customer folder is then synced.
//!
//! [`reload_and_verify`] takes the apps one at a time: an app already running the release is
//! left alone; the others get `pm2 reload <app>` (zero downtime in cluster mode, PM2-NOTES §c; an
//! app PM2 does not know is started from the ecosystem file) and are then checked from the
//! process itself, since a reload that exits 0 proves nothing (PM2-NOTES §b, §5):
//! `pm2 jlist` → every process of the app `online` with a pid → the host's answer for the pid's
//! working folder ([`fs::process_cwd`](qodify_plugin_sdk::fs::process_cwd), a guest path: the
//! step needs no `readlink` grant and no access to other processes) is exactly
//! `<customer>/releases/<version>/<service>`. An app that runs another folder (or one outside the
//! step's mounts, which the host does not name) was started with a resolved path (pm2#1663) and
//! gets `pm2 delete` + `pm2 start <ecosystem> --only <app>` once, then is checked again. Checks repeat while an app is starting; `errored` or `stopped` end
//! them at once. The first app that fails stops the whole call, so the apps after it keep their
//! old release. `pm2` always runs with the customer folder as its working folder, never one
//! inside `current`.
//!
//! ```no_run
//! use qodify_plugin_sdk::fs::HostFs;
//! use qodify_plugin_sdk::prelude::*;
//! use upgrade_kit::swap::{AppSpec, LiveApps, reload_and_verify, swap_current};
//!
//! # fn f(ctx: &Context) -> Result<(), Error> {
//! let apps = vec![AppSpec { name: "shop.example.com-backend".into(), service: "backend".into() }];
//! let live = LiveApps::new("/customer", "/customer/ecosystem.config.js", apps)?;
//! swap_current(&HostFs, "/customer", "v1.1.0", ctx.run_id())?;
//! for app in reload_and_verify(ctx, &live, "v1.1.0")? {
//!     ctx.info(format!("{} runs {}", app.app, app.cwd));
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use qodify_plugin_sdk::fs::{FileKind, FileSystem};
use qodify_plugin_sdk::{Context, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::layout::{self, CURRENT};
use crate::pm2;

/// Prefix of the temporary link made beside `current`.
pub const SWAP_PREFIX: &str = "current.swap-";
/// Default number of `pm2 jlist` checks after a reload.
pub const DEFAULT_VERIFY_ATTEMPTS: u32 = 10;
/// Default pause between two checks, in milliseconds.
pub const DEFAULT_VERIFY_INTERVAL_MS: u64 = 1000;

/// One PM2 app of the customer and the service folder of a release it runs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// The PM2 app name, e.g. `shop.example.com-backend`.
    pub name: String,
    /// The service folder inside a release: `backend`, `admin` or `store`.
    pub service: String,
}

/// The customer's live PM2 apps and how to talk to PM2 about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveApps {
    /// Guest path of the customer folder: `pm2`'s working folder (never inside `current`).
    pub customer: String,
    /// The ecosystem file relative to the customer folder, as `pm2 start` gets it.
    pub ecosystem: String,
    /// The apps, handled in this order.
    pub apps: Vec<AppSpec>,
    /// How many times to check after a reload.
    pub attempts: u32,
    /// Pause between checks.
    pub interval: Duration,
}

impl LiveApps {
    /// Checks the config: `customer` an absolute guest path, `ecosystem` a file below it (not in
    /// `current`), app names and services plain names. Pure.
    pub fn new(customer: &str, ecosystem: &str, apps: Vec<AppSpec>) -> Result<LiveApps, Error> {
        let customer =
            qodify_plugin_sdk::path::normalize(customer).map_err(|e| e.context("customer"))?;
        let eco =
            qodify_plugin_sdk::path::normalize(ecosystem).map_err(|e| e.context("ecosystem"))?;
        let rel = eco
            .strip_prefix(&customer)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Error::invalid_config(format!(
                    "ecosystem `{eco}` must be a file inside the customer folder {customer}, \
                     e.g. {customer}/ecosystem.config.js"
                ))
            })?
            .to_string();
        if rel == CURRENT || rel.starts_with(&format!("{CURRENT}/")) || rel.starts_with('-') {
            return Err(Error::invalid_config(format!(
                "ecosystem `{eco}` must not be inside `current` (PM2 would store resolved \
                 release paths, pm2#1663) nor start with `-`; keep it in the customer folder"
            )));
        }
        if apps.is_empty() {
            return Err(Error::invalid_config(
                "apps is empty; list the customer's PM2 apps, e.g. \
                 {name = \"{{customer.domain}}-backend\", service = \"backend\"}",
            ));
        }
        let mut names = BTreeSet::new();
        for app in &apps {
            if !is_app_name(&app.name) {
                return Err(Error::invalid_config(format!(
                    "app name `{}` is not a plain PM2 app name ([A-Za-z0-9._-], not starting \
                     with `-` or `.`)",
                    app.name
                )));
            }
            if !names.insert(app.name.as_str()) {
                return Err(Error::invalid_config(format!(
                    "app `{}` is listed twice",
                    app.name
                )));
            }
            if !layout::is_version_name(&app.service) {
                return Err(Error::invalid_config(format!(
                    "service `{}` of app `{}` is not a folder name such as backend",
                    app.service, app.name
                )));
            }
        }
        Ok(LiveApps {
            customer,
            ecosystem: rel,
            apps,
            attempts: DEFAULT_VERIFY_ATTEMPTS,
            interval: Duration::from_millis(DEFAULT_VERIFY_INTERVAL_MS),
        })
    }

    /// Sets how often and how long to check after a reload (at least one check).
    pub fn with_verify(mut self, attempts: u32, interval: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.interval = interval;
        self
    }
}

/// A PM2 app name we are willing to pass as an argument.
pub fn is_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The release `current` points at: `None` when there is no `current`; an error when it is not a
/// symlink of the form `releases/<version>`.
pub fn current_version(fs: &impl FileSystem, customer: &str) -> Result<Option<String>, Error> {
    let path = format!("{}/{CURRENT}", customer.trim_end_matches('/'));
    let Some(meta) = fs.stat_opt(&path)? else {
        return Ok(None);
    };
    if meta.kind != FileKind::Symlink {
        return Err(Error::invalid_config(format!(
            "{path} is not a symlink: the customer is not in the blue/green layout; run the \
             migrate-layout pipeline first"
        )));
    }
    let target = meta.symlink_target.unwrap_or_default();
    layout::version_of_target(&target)
        .map(|v| Some(v.to_string()))
        .ok_or_else(|| {
            Error::invalid_config(format!(
                "{path} points at `{target}`, not at releases/<version>; fix the link by hand \
                 (see docs/upgrades.md)"
            ))
        })
}

/// Points `current` at `releases/<version>` atomically: a new link `current.swap-<tag>` renamed
/// over `current`, then the customer folder is synced. Refuses a release folder that is missing.
/// Links left by an interrupted swap are removed first. Idempotent.
pub fn swap_current(
    fs: &impl FileSystem,
    customer: &str,
    version: &str,
    tag: &str,
) -> Result<(), Error> {
    let customer = customer.trim_end_matches('/');
    if !layout::is_version_name(version) {
        return Err(Error::invalid_config(format!(
            "`{version}` is not a release folder name"
        )));
    }
    let release = format!("{customer}/{}", layout::current_target(version));
    match fs.stat_opt(&release)? {
        Some(m) if m.is_dir() => {}
        Some(_) => {
            return Err(Error::invalid_config(format!(
                "{release} is not a folder; current was not changed"
            )));
        }
        None => {
            return Err(Error::not_found(format!(
                "{release} does not exist; current was not changed"
            )));
        }
    }
    let current = format!("{customer}/{CURRENT}");
    if let Some(m) = fs.stat_opt(&current)?
        && m.kind != FileKind::Symlink
    {
        return Err(Error::invalid_config(format!(
            "{current} is not a symlink; current was not changed (run migrate-layout first)"
        )));
    }
    for entry in fs.list_dir(customer)? {
        if entry.name.starts_with(SWAP_PREFIX) && entry.metadata.is_symlink() {
            fs.remove_file(&format!("{customer}/{}", entry.name))?;
        }
    }
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = format!("{customer}/{SWAP_PREFIX}{tag}");
    fs.symlink(&layout::current_target(version), &tmp)?;
    if let Err(e) = fs.rename(&tmp, &current) {
        let _ = fs.remove_file(&tmp);
        return Err(e.context("swapping current; it was not changed"));
    }
    fs.sync_dir(customer)?;
    match current_version(fs, customer)? {
        Some(v) if v == version => Ok(()),
        other => Err(Error::internal(format!(
            "after the swap {current} points at {other:?}, not {version}"
        ))),
    }
}

/// An app checked after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The PM2 app name.
    pub app: String,
    /// The pids of its processes.
    pub pids: Vec<u32>,
    /// The real working folder of its processes, a guest path:
    /// `<customer>/releases/<version>/<service>`.
    pub cwd: String,
    /// True when it had to be deleted and started again from the ecosystem file.
    pub restarted: bool,
}

/// What PM2 is asked to do, so the reload-and-verify logic is tested without PM2.
pub trait Pm2 {
    /// `pm2 jlist`.
    fn jlist(&self) -> Result<Vec<pm2::App>, Error>;
    /// The real working folder of process `pid` as a guest path; a `PermissionDenied` error when
    /// it is outside the step's mounts (see [`fs::process_cwd`](qodify_plugin_sdk::fs::process_cwd)).
    fn process_cwd(&self, pid: u32) -> Result<String, Error>;
    /// `pm2 reload <app>`.
    fn reload(&self, app: &str) -> Result<(), Error>;
    /// `pm2 delete <app>`.
    fn delete(&self, app: &str) -> Result<(), Error>;
    /// `pm2 start <ecosystem> --only <app>`.
    fn start(&self, app: &str) -> Result<(), Error>;
    /// Waits between checks; an error (cancelled) stops the wait.
    fn pause(&self, interval: Duration) -> Result<(), Error>;
    /// Reports what is being done.
    fn note(&self, message: &str);
    /// Reports something people should change.
    fn warn(&self, message: &str) {
        self.note(message);
    }
}

/// [`Pm2`] over the host: `pm2` through the command grants (with `PM2_HOME` inherited), process
/// working folders through the host's `files` interface.
pub struct HostPm2<'a> {
    ctx: &'a Context,
    cwd: String,
    ecosystem: String,
}

impl<'a> HostPm2<'a> {
    /// PM2 for `live`'s customer folder and ecosystem file.
    pub fn new(ctx: &'a Context, live: &LiveApps) -> Self {
        HostPm2 {
            ctx,
            cwd: live.customer.clone(),
            ecosystem: live.ecosystem.clone(),
        }
    }
}

impl Pm2 for HostPm2<'_> {
    fn jlist(&self) -> Result<Vec<pm2::App>, Error> {
        pm2::jlist(&self.cwd)
    }

    fn process_cwd(&self, pid: u32) -> Result<String, Error> {
        qodify_plugin_sdk::fs::process_cwd(pid)
    }

    fn reload(&self, app: &str) -> Result<(), Error> {
        pm2::run(&self.cwd, &["reload", app], &[])
            .map(drop)
            .map_err(|e| e.context(format!("pm2 reload {app}")))
    }

    fn delete(&self, app: &str) -> Result<(), Error> {
        pm2::delete_if_present(&self.cwd, app).map_err(|e| e.context(format!("pm2 delete {app}")))
    }

    fn start(&self, app: &str) -> Result<(), Error> {
        pm2::run(&self.cwd, &["start", &self.ecosystem, "--only", app], &[])
            .map(drop)
            .map_err(|e| e.context(format!("pm2 start {} --only {app}", self.ecosystem)))
    }

    fn pause(&self, interval: Duration) -> Result<(), Error> {
        self.ctx.check_cancelled()?;
        std::thread::sleep(interval);
        self.ctx.check_cancelled()
    }

    fn note(&self, message: &str) {
        self.ctx.info(message);
    }

    fn warn(&self, message: &str) {
        self.ctx.warn(message);
    }
}

/// Reloads every app of `live` and verifies it runs `releases/<version>` (see the module docs),
/// through the host's PM2.
pub fn reload_and_verify(
    ctx: &Context,
    live: &LiveApps,
    version: &str,
) -> Result<Vec<Verified>, Error> {
    reload_and_verify_with(&HostPm2::new(ctx, live), live, version)
}

/// Verifies without reloading first (e.g. to see whether a rollback is still needed).
pub fn verify(ctx: &Context, live: &LiveApps, version: &str) -> Result<Vec<Verified>, Error> {
    verify_with(&HostPm2::new(ctx, live), live, version)
}

/// One look at every app, without reloading, restarting or waiting: each app's state.
pub fn check(
    ctx: &Context,
    live: &LiveApps,
    version: &str,
) -> Result<Vec<(String, AppState)>, Error> {
    check_with(&HostPm2::new(ctx, live), live, version)
}

/// [`check`] over any [`Pm2`].
pub fn check_with(
    pm2: &impl Pm2,
    live: &LiveApps,
    version: &str,
) -> Result<Vec<(String, AppState)>, Error> {
    let list = pm2.jlist()?;
    Ok(live
        .apps
        .iter()
        .map(|app| (app.name.clone(), app_state(pm2, &list, live, app, version)))
        .collect())
}

/// [`reload_and_verify`] over any [`Pm2`].
pub fn reload_and_verify_with(
    pm2: &impl Pm2,
    live: &LiveApps,
    version: &str,
) -> Result<Vec<Verified>, Error> {
    let list = pm2.jlist()?;
    let mut verified = Vec::new();
    // One app at a time: a release that does not come up stops at its first app, and the
    // others keep running what they ran.
    for (i, app) in live.apps.iter().enumerate() {
        // Already there (e.g. the apps a failed swap never reached, when rolling back): a reload
        // would only cost fork-mode apps a moment of downtime.
        if let AppState::Runs { pids, cwd } = app_state(pm2, &list, live, app, version) {
            pm2.note(&format!("{} already runs {cwd}", app.name));
            verified.push(Verified {
                app: app.name.clone(),
                pids,
                cwd,
                restarted: false,
            });
            continue;
        }
        let known = list.iter().find(|a| a.name == app.name);
        if known.is_some_and(pm2::App::is_fork_mode) {
            pm2.warn(&format!(
                "{} runs in PM2 fork mode: `pm2 reload` stops it, then starts it, so its port \
                 answers nothing while it starts; cluster mode (exec_mode: 'cluster', \
                 instances: 1) reloads without a gap",
                app.name
            ));
        }
        let result = if known.is_some() {
            pm2.note(&format!("pm2 reload {}", app.name));
            pm2.reload(&app.name)
        } else {
            pm2.note(&format!(
                "{} is not in PM2; starting it from {}",
                app.name, live.ecosystem
            ));
            pm2.start(&app.name)
        }
        .and_then(|()| verify_apps(pm2, live, std::slice::from_ref(app), version));
        match result {
            Ok(mut v) => verified.append(&mut v),
            Err(e) => {
                let untouched: Vec<&str> =
                    live.apps[i + 1..].iter().map(|a| a.name.as_str()).collect();
                return Err(if untouched.is_empty() {
                    e
                } else {
                    Error::new(
                        e.kind(),
                        format!(
                            "{}; not reloaded, still on their old release: {}",
                            e.message(),
                            untouched.join(", ")
                        ),
                    )
                });
            }
        }
    }
    Ok(verified)
}

/// [`verify`] over any [`Pm2`].
pub fn verify_with(pm2: &impl Pm2, live: &LiveApps, version: &str) -> Result<Vec<Verified>, Error> {
    verify_apps(pm2, live, &live.apps, version)
}

fn verify_apps(
    pm2: &impl Pm2,
    live: &LiveApps,
    apps: &[AppSpec],
    version: &str,
) -> Result<Vec<Verified>, Error> {
    let mut restarted: BTreeSet<String> = BTreeSet::new();
    let mut last: Vec<(String, AppState)> = Vec::new();
    for attempt in 1..=live.attempts {
        if attempt > 1 {
            pm2.pause(live.interval)?;
        }
        let list = pm2.jlist()?;
        let mut done = Vec::new();
        last.clear();
        for app in apps {
            let state = app_state(pm2, &list, live, app, version);
            match state {
                AppState::Runs { pids, cwd } => done.push(Verified {
                    app: app.name.clone(),
                    pids,
                    cwd,
                    restarted: restarted.contains(&app.name),
                }),
                AppState::WrongRelease { .. } | AppState::OutsideMounts | AppState::Missing
                    if !restarted.contains(&app.name) =>
                {
                    pm2.note(&format!(
                        "{}: {}; deleting it and starting it again from {}",
                        app.name,
                        state.describe(version, &app.service),
                        live.ecosystem
                    ));
                    restarted.insert(app.name.clone());
                    pm2.delete(&app.name)?;
                    pm2.start(&app.name)?;
                    last.push((app.name.clone(), state));
                }
                other => last.push((app.name.clone(), other)),
            }
        }
        if last.is_empty() {
            return Ok(done);
        }
        // `errored` and `stopped` are final: PM2 gave up restarting. Waiting only prolongs the
        // outage (cluster reload already killed the old worker, PM2-NOTES §c).
        if last.iter().any(|(_, s)| s.is_final()) {
            break;
        }
    }
    let details: Vec<String> = last
        .iter()
        .map(|(name, state)| {
            let service = live
                .apps
                .iter()
                .find(|a| &a.name == name)
                .map_or("", |a| a.service.as_str());
            format!("{name}: {}", state.describe(version, service))
        })
        .collect();
    Err(Error::command_failed(format!(
        "PM2 apps do not run releases/{version} (checked for up to {} × {} ms): {}",
        live.attempts,
        live.interval.as_millis(),
        details.join("; ")
    )))
}

/// What one check found for an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppState {
    /// Every process is online in the expected folder.
    Runs {
        /// Their pids.
        pids: Vec<u32>,
        /// Their real working folder.
        cwd: String,
    },
    /// PM2 does not know the app.
    Missing,
    /// A process is not online (`errored`, `stopped`, `launching`, …) or has no pid.
    NotOnline {
        /// Its PM2 status.
        status: String,
    },
    /// A process runs another folder (an old release, or a path PM2 cached).
    WrongRelease {
        /// Its real working folder.
        cwd: String,
    },
    /// A process runs in a folder outside the step's mounts, or in a deleted one (an old release
    /// removed while it ran); the host does not say where.
    OutsideMounts,
    /// Its working folder could not be read (it may have just exited).
    Unreadable {
        /// Why.
        error: String,
    },
}

impl AppState {
    /// True for states PM2 does not leave by itself (`errored`, `stopped`).
    pub fn is_final(&self) -> bool {
        matches!(self, AppState::NotOnline { status } if status == "errored" || status == "stopped")
    }

    /// One line for people.
    pub fn describe(&self, version: &str, service: &str) -> String {
        match self {
            AppState::Runs { cwd, .. } => format!("runs {cwd}"),
            AppState::Missing => "not in PM2".into(),
            AppState::NotOnline { status } => format!(
                "status `{}`, not online",
                if status.is_empty() { "unknown" } else { status }
            ),
            AppState::WrongRelease { cwd } => {
                format!("runs {cwd}, not releases/{version}/{service}")
            }
            AppState::OutsideMounts => format!(
                "runs a folder outside the step's mounts (or a deleted one), not \
                 releases/{version}/{service}"
            ),
            AppState::Unreadable { error } => format!("working folder unreadable: {error}"),
        }
    }
}

/// True when a process's real working folder `cwd` (a guest path) is exactly the release's
/// service folder `<customer>/releases/<version>/<service>`, compared by whole components.
pub fn runs_release(cwd: &str, customer: &str, version: &str, service: &str) -> bool {
    fn components(path: &str) -> impl Iterator<Item = &str> {
        path.split('/').filter(|c| !c.is_empty())
    }
    let expected = format!("{customer}/{}/{version}/{service}", layout::RELEASES);
    cwd.starts_with('/') && components(cwd).eq(components(&expected))
}

fn app_state(
    pm2: &impl Pm2,
    list: &[pm2::App],
    live: &LiveApps,
    app: &AppSpec,
    version: &str,
) -> AppState {
    let procs: Vec<&pm2::App> = list.iter().filter(|a| a.name == app.name).collect();
    if procs.is_empty() {
        return AppState::Missing;
    }
    if let Some(p) = procs.iter().find(|p| p.status != "online" || p.pid == 0) {
        return AppState::NotOnline {
            status: p.status.clone(),
        };
    }
    let mut cwd = String::new();
    for p in &procs {
        match pm2.process_cwd(p.pid) {
            Ok(c) if runs_release(&c, &live.customer, version, &app.service) => cwd = c,
            Ok(c) => return AppState::WrongRelease { cwd: c },
            Err(e) if e.kind() == ErrorKind::PermissionDenied => return AppState::OutsideMounts,
            Err(e) => {
                return AppState::Unreadable {
                    error: e.to_string(),
                };
            }
        }
    }
    AppState::Runs {
        pids: procs.iter().map(|p| p.pid).collect(),
        cwd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn apps() -> Vec<AppSpec> {
        ["backend", "admin"]
            .iter()
            .map(|s| AppSpec {
                name: format!("shop.test-{s}"),
                service: (*s).to_string(),
            })
            .collect()
    }

    #[test]
    fn live_apps_config_is_checked() {
        let live = LiveApps::new("/customer/", "/customer/ecosystem.config.js", apps()).unwrap();
        assert_eq!(live.customer, "/customer");
        assert_eq!(live.ecosystem, "ecosystem.config.js");
        for (eco, needle) in [
            ("/elsewhere/eco.js", "inside the customer folder"),
            ("/customer", "inside the customer folder"),
            ("/customer/current/eco.js", "inside `current`"),
            ("/customer/-x.js", "start with `-`"),
            ("eco.js", "absolute"),
        ] {
            let e = LiveApps::new("/customer", eco, apps()).unwrap_err();
            assert!(e.message().contains(needle), "{eco}: {e}");
        }
        let mut bad = apps();
        bad[0].name = "-x".into();
        assert!(LiveApps::new("/customer", "/customer/e.js", bad).is_err());
        let mut bad = apps();
        bad[1].name = bad[0].name.clone();
        assert!(
            LiveApps::new("/customer", "/customer/e.js", bad)
                .unwrap_err()
                .message()
                .contains("twice")
        );
        let mut bad = apps();
        bad[0].service = "../x".into();
        assert!(LiveApps::new("/customer", "/customer/e.js", bad).is_err());
        assert!(LiveApps::new("/customer", "/customer/e.js", vec![]).is_err());
        let live = live.with_verify(0, Duration::ZERO);
        assert_eq!(live.attempts, 1);
    }

    #[test]
    fn release_cwd_match_is_exact_by_whole_components() {
        let runs = |cwd| runs_release(cwd, "/customer", "v2", "backend");
        assert!(runs("/customer/releases/v2/backend"));
        assert!(runs("/customer/releases/v2/backend/"));
        for other in [
            "/customer/releases/v1/backend",
            "/customer/releases/xv2/backend",
            "/customer/releases/v2/backendx",
            "/customer/releases/v2/backend/sub",
            "/customer/current/backend",
            "/customer/releases/v2/backend (deleted)",
            // Another mount (or another customer) holding a folder of the same names.
            "/other/customer/releases/v2/backend",
            "/work/releases/v2/backend",
            "/customerx/releases/v2/backend",
            "customer/releases/v2/backend",
            "",
        ] {
            assert!(!runs(other), "{other}");
        }
    }

    /// A fake PM2: apps with a pid and the folder each runs; `cached` apps keep their folder on
    /// reload (started with a resolved path, pm2#1663) until deleted and started again.
    struct FakePm2 {
        current: String,
        procs: RefCell<Vec<(String, u32, String, String)>>, // name, pid, status, cwd
        cached: RefCell<BTreeSet<String>>,
        crash: BTreeSet<String>,
        slow: BTreeSet<String>,
        calls: RefCell<Vec<String>>,
        next_pid: RefCell<u32>,
        fork: BTreeSet<String>,
        /// Apps the ecosystem file starts from a folder outside the customer's.
        elsewhere: BTreeSet<String>,
        warnings: RefCell<Vec<String>>,
    }

    impl FakePm2 {
        fn new(current: &str) -> Self {
            FakePm2 {
                current: current.into(),
                procs: RefCell::new(Vec::new()),
                cached: RefCell::new(BTreeSet::new()),
                crash: BTreeSet::new(),
                slow: BTreeSet::new(),
                calls: RefCell::new(Vec::new()),
                next_pid: RefCell::new(100),
                fork: BTreeSet::new(),
                elsewhere: BTreeSet::new(),
                warnings: RefCell::new(Vec::new()),
            }
        }
        fn running(self, name: &str, cwd: &str) -> Self {
            let pid = self.pid();
            self.procs
                .borrow_mut()
                .push((name.into(), pid, "online".into(), cwd.into()));
            self
        }
        fn pid(&self) -> u32 {
            let mut p = self.next_pid.borrow_mut();
            *p += 1;
            *p
        }
        fn launch(&self, name: &str) {
            let service = name.rsplit('-').next().unwrap();
            let cwd = if self.elsewhere.contains(name) {
                format!("/srv/copy/{service}")
            } else {
                format!("/customer/releases/{}/{service}", self.current)
            };
            let status = if self.crash.contains(name) {
                "errored"
            } else if self.slow.contains(name) {
                "launching"
            } else {
                "online"
            };
            let pid = if status == "online" { self.pid() } else { 0 };
            let mut procs = self.procs.borrow_mut();
            procs.retain(|p| p.0 != name);
            procs.push((name.into(), pid, status.into(), cwd));
        }
    }

    impl Pm2 for FakePm2 {
        fn jlist(&self) -> Result<Vec<pm2::App>, Error> {
            Ok(self
                .procs
                .borrow()
                .iter()
                .map(|(name, pid, status, _)| pm2::App {
                    name: name.clone(),
                    pid: *pid,
                    status: status.clone(),
                    cwd: String::new(),
                    exec_path: String::new(),
                    exec_mode: if self.fork.contains(name) {
                        "fork_mode"
                    } else {
                        "cluster_mode"
                    }
                    .into(),
                    restart_time: 0,
                    exit_code: None,
                    listen_timeout: None,
                })
                .collect())
        }
        /// As the host answers with `/customer` mounted: a guest path inside the mount, else a
        /// refusal that names no path.
        fn process_cwd(&self, pid: u32) -> Result<String, Error> {
            let procs = self.procs.borrow();
            let cwd = procs
                .iter()
                .find(|p| p.1 == pid)
                .map(|p| p.3.as_str())
                .ok_or_else(|| Error::not_found(format!("process {pid} does not exist")))?;
            if cwd == "/customer" || cwd.starts_with("/customer/") {
                Ok(cwd.to_owned())
            } else {
                Err(Error::permission_denied(format!(
                    "process {pid} runs in a folder outside the step's mounts"
                )))
            }
        }
        fn reload(&self, app: &str) -> Result<(), Error> {
            self.calls.borrow_mut().push(format!("reload {app}"));
            if self.cached.borrow().contains(app) {
                let pid = self.pid();
                for p in self.procs.borrow_mut().iter_mut().filter(|p| p.0 == app) {
                    p.1 = pid;
                }
                Ok(())
            } else {
                self.launch(app);
                Ok(())
            }
        }
        fn delete(&self, app: &str) -> Result<(), Error> {
            self.calls.borrow_mut().push(format!("delete {app}"));
            self.procs.borrow_mut().retain(|p| p.0 != app);
            self.cached.borrow_mut().remove(app);
            Ok(())
        }
        fn start(&self, app: &str) -> Result<(), Error> {
            self.calls.borrow_mut().push(format!("start {app}"));
            self.launch(app);
            Ok(())
        }
        fn pause(&self, _: Duration) -> Result<(), Error> {
            self.calls.borrow_mut().push("pause".into());
            // Launching apps come up while we wait.
            let mut procs = self.procs.borrow_mut();
            for p in procs.iter_mut().filter(|p| p.2 == "launching") {
                p.2 = "online".into();
                p.1 = 900;
            }
            Ok(())
        }
        fn note(&self, _: &str) {}
        fn warn(&self, message: &str) {
            self.warnings.borrow_mut().push(message.into());
        }
    }

    fn live() -> LiveApps {
        LiveApps::new("/customer", "/customer/ecosystem.config.js", apps())
            .unwrap()
            .with_verify(3, Duration::ZERO)
    }

    #[test]
    fn reload_then_verify_from_the_process() {
        let pm2 = FakePm2::new("v2")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        let v = reload_and_verify_with(&pm2, &live(), "v2").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].cwd, "/customer/releases/v2/backend");
        assert!(!v[0].restarted);
        assert_eq!(
            *pm2.calls.borrow(),
            ["reload shop.test-backend", "reload shop.test-admin"]
        );
    }

    #[test]
    fn a_fork_mode_app_is_reloaded_with_a_warning() {
        let mut pm2 = FakePm2::new("v2")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        pm2.fork.insert("shop.test-admin".into());
        reload_and_verify_with(&pm2, &live(), "v2").unwrap();
        let warnings = pm2.warnings.borrow();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("shop.test-admin runs in PM2 fork mode"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn an_app_on_a_cached_path_is_deleted_and_started_again() {
        let pm2 = FakePm2::new("v2")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        pm2.cached.borrow_mut().insert("shop.test-admin".into());
        let v = reload_and_verify_with(&pm2, &live(), "v2").unwrap();
        assert!(v[1].restarted && v[1].cwd.ends_with("releases/v2/admin"));
        assert_eq!(
            *pm2.calls.borrow(),
            [
                "reload shop.test-backend",
                "reload shop.test-admin",
                "delete shop.test-admin",
                "start shop.test-admin",
                "pause"
            ]
        );
    }

    #[test]
    fn an_app_outside_the_mounts_is_deleted_and_started_again() {
        // PM2 runs it from a folder the step cannot see; the host does not say which.
        let pm2 = FakePm2::new("v2")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/srv/copy/admin");
        pm2.cached.borrow_mut().insert("shop.test-admin".into());
        assert_eq!(
            check_with(&pm2, &live(), "v2").unwrap()[1].1,
            AppState::OutsideMounts
        );
        let v = reload_and_verify_with(&pm2, &live(), "v2").unwrap();
        assert!(v[1].restarted);
        assert_eq!(v[1].cwd, "/customer/releases/v2/admin");
        assert!(
            pm2.calls
                .borrow()
                .contains(&"delete shop.test-admin".to_string())
        );
    }

    #[test]
    fn an_app_that_stays_outside_the_mounts_fails_without_a_path() {
        let mut pm2 = FakePm2::new("v1")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/srv/copy/admin");
        // Started again, it still runs elsewhere.
        pm2.elsewhere.insert("shop.test-admin".into());
        let e = verify_with(&pm2, &live(), "v1").unwrap_err();
        assert!(
            e.message().contains(
                "shop.test-admin: runs a folder outside the step's mounts (or a deleted one), \
                 not releases/v1/admin"
            ),
            "{e}"
        );
    }

    #[test]
    fn apps_already_on_the_release_are_not_reloaded() {
        let pm2 = FakePm2::new("v1")
            .running("shop.test-backend", "/customer/releases/v2/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        let v = reload_and_verify_with(&pm2, &live(), "v1").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(*pm2.calls.borrow(), ["reload shop.test-backend"]);
    }

    #[test]
    fn an_app_still_launching_is_waited_for() {
        let mut pm2 = FakePm2::new("v2")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        pm2.slow.insert("shop.test-admin".into());
        let v = reload_and_verify_with(&pm2, &live(), "v2").unwrap();
        assert_eq!(v[1].pids, [900]);
        assert_eq!(pm2.calls.borrow().last().unwrap(), "pause");
    }

    #[test]
    fn a_missing_app_is_started_from_the_ecosystem() {
        let pm2 = FakePm2::new("v2").running("shop.test-backend", "/customer/releases/v1/backend");
        let v = reload_and_verify_with(&pm2, &live(), "v2").unwrap();
        assert_eq!(v.len(), 2);
        assert!(
            pm2.calls
                .borrow()
                .contains(&"start shop.test-admin".to_string())
        );
    }

    #[test]
    fn a_crashing_release_fails_verification_with_the_state_of_each_app() {
        let mut pm2 = FakePm2::new("v2")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        pm2.crash.insert("shop.test-backend".into());
        let e = reload_and_verify_with(&pm2, &live(), "v2").unwrap_err();
        assert!(
            e.message()
                .contains("shop.test-backend: status `errored`, not online"),
            "{e}"
        );
        // `errored` is final: no waiting; the apps after it keep their old release.
        assert_eq!(*pm2.calls.borrow(), ["reload shop.test-backend"]);
        assert!(
            e.message()
                .contains("not reloaded, still on their old release: shop.test-admin"),
            "{e}"
        );
        // Errored apps are not deleted: that cannot help and would lose PM2's logs.
        assert!(!pm2.calls.borrow().iter().any(|c| c.starts_with("delete")));
    }

    #[test]
    fn check_only_looks() {
        let pm2 = FakePm2::new("v1")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v0/admin");
        let states = check_with(&pm2, &live(), "v1").unwrap();
        assert!(matches!(states[0].1, AppState::Runs { .. }));
        assert_eq!(
            states[1].1,
            AppState::WrongRelease {
                cwd: "/customer/releases/v0/admin".into()
            }
        );
        assert!(pm2.calls.borrow().is_empty());
    }

    #[test]
    fn an_app_that_stays_on_the_wrong_release_fails_after_one_restart() {
        let pm2 = FakePm2::new("v1")
            .running("shop.test-backend", "/customer/releases/v1/backend")
            .running("shop.test-admin", "/customer/releases/v1/admin");
        let e = verify_with(&pm2, &live(), "v2").unwrap_err();
        assert!(
            e.message()
                .contains("runs /customer/releases/v1/admin, not releases/v2/admin"),
            "{e}"
        );
        let deletes = pm2
            .calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("delete"))
            .count();
        assert_eq!(deletes, 2, "{:?}", pm2.calls.borrow());
    }

    #[cfg(unix)]
    mod files {
        use super::super::*;
        use qodify_plugin_sdk::fs::StdFs;
        use std::os::unix::fs::symlink;

        #[test]
        fn swap_replaces_the_link_atomically_and_cleans_leftovers() {
            let t = tempfile::tempdir().unwrap();
            let c = t.path();
            let cs = c.to_str().unwrap();
            std::fs::create_dir_all(c.join("releases/v1/backend")).unwrap();
            std::fs::create_dir_all(c.join("releases/v2/backend")).unwrap();
            symlink("releases/v1", c.join("current")).unwrap();
            symlink("releases/v1", c.join("current.swap-old-run")).unwrap();
            assert_eq!(
                current_version(&StdFs::new(), cs).unwrap().as_deref(),
                Some("v1")
            );
            swap_current(&StdFs::new(), cs, "v2", "run/1").unwrap();
            assert_eq!(
                std::fs::read_link(c.join("current")).unwrap(),
                std::path::Path::new("releases/v2")
            );
            let names: Vec<String> = std::fs::read_dir(c)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(
                !names.iter().any(|n| n.starts_with(SWAP_PREFIX)),
                "{names:?}"
            );
            // Again: idempotent.
            swap_current(&StdFs::new(), cs, "v2", "run-1").unwrap();
            let e = swap_current(&StdFs::new(), cs, "v3", "r").unwrap_err();
            assert!(e.message().contains("does not exist"), "{e}");
            assert_eq!(
                current_version(&StdFs::new(), cs).unwrap().as_deref(),
                Some("v2")
            );
        }

        #[test]
        fn a_current_that_is_not_a_release_link_is_refused() {
            let t = tempfile::tempdir().unwrap();
            let c = t.path();
            let cs = c.to_str().unwrap();
            assert_eq!(current_version(&StdFs::new(), cs).unwrap(), None);
            std::fs::create_dir_all(c.join("releases/v1")).unwrap();
            symlink("/etc", c.join("current")).unwrap();
            assert!(current_version(&StdFs::new(), cs).is_err());
            std::fs::remove_file(c.join("current")).unwrap();
            std::fs::create_dir(c.join("current")).unwrap();
            let e = swap_current(&StdFs::new(), cs, "v1", "r").unwrap_err();
            assert!(e.message().contains("not a symlink"), "{e}");
            assert!(c.join("current").is_dir());
        }
    }
}
