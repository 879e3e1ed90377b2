//! `symlink-swap` step plugin (upgrade step 6 of plan §8): points the customer's `current` at
//! the new release and makes PM2 run it, checked from the processes themselves.
//!
//! 1. Reads where `current` points (the previous release) and the upgrade journal
//!    (`releases/.upgrade.json`); refuses when there is no journal, when the journal's target is
//!    not `target`, when `current` points at neither the journal's `from` nor `to`, or when
//!    `releases/<target>` is missing, has no marker or a `failed` one.
//! 2. Sets `swapped` in the journal, before touching anything, so a rollback (also one after a
//!    host crash) knows `current` may point at the new release.
//! 3. Makes `current.swap-<run id>` → `releases/<target>` and renames it over `current`: one
//!    atomic `rename`, never `ln -sfn` (capistrano#1097); then syncs the customer folder.
//! 4. One app at a time: `pm2 reload <app>` (cluster mode: no dropped requests), then checks it:
//!    `pm2 jlist` → each process `online` → its working folder, which the host tells as a guest
//!    path (`files.process-cwd`), must be exactly `<customer>/releases/<target>/<service>`. An
//!    app still running another folder (PM2 cached a resolved path, pm2#1663, or a folder outside
//!    the mounts) is deleted and started again from the ecosystem file, then checked again;
//!    `errored` or `stopped` end the checks at once. All of it lives in [`upgrade_kit::swap`],
//!    which the rollback reuses.
//!
//! A failed check fails the step with the app's state and the apps not reloaded yet (they keep
//! the old release); `current` then already points at the new release and the pipeline's
//! `upgrade-rollback` swaps it back.
//!
//! Config (see [`Config`]):
//! - `customer`: guest path of the customer folder, read-write (default `/customer`); it is also
//!   pm2's working folder — never a folder inside `current`.
//! - `target`: the release to go live, e.g. `"{{params.targetVersion}}"`.
//! - `releases`: guest path of `<customer>/releases` (default `/customer/releases`).
//! - `apps`: `[{name = "{{customer.domain}}-backend", service = "backend"}, …]`.
//! - `ecosystem`: the PM2 ecosystem file inside the customer folder (default
//!   `/customer/ecosystem.config.js`); pm2 gets it relative to the customer folder.
//! - `verify_attempts` (default 10) and `verify_interval_ms` (default 1000): how long to wait for
//!   the apps to come up after the reload.
//!
//! Grants: a read-write mount of the customer folder (`path = ""`); `pm2` with `inherit =
//! ["PM2_HOME"]` and the arguments `jlist`, `reload`, `delete`, `start`, `--only`,
//! `ecosystem.config.js` and the app names. No `readlink`: the host answers which folder a
//! process runs in.
//!
//! Outputs: `previous` and `current` (versions), and `cwd.<app>` per app (the real folder its
//! processes run in, a guest path such as `/customer/releases/v1.1.0/backend`).

use std::time::Duration;

use qodify_plugin_sdk::fs::{FileSystem as _, HostFs};
use qodify_plugin_sdk::prelude::*;
use upgrade_kit::journal::Journal;
use upgrade_kit::layout;
use upgrade_kit::marker::{Marker, MarkerFile, Status};
use upgrade_kit::swap::{self, AppSpec, LiveApps};

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the customer folder (read-write; pm2's working folder).
    #[serde(default = "default_customer")]
    pub customer: String,
    /// The release to go live.
    pub target: String,
    /// Guest path of the releases folder, `<customer>/releases`.
    #[serde(default = "default_releases")]
    pub releases: String,
    /// The customer's PM2 apps.
    pub apps: Vec<AppSpec>,
    /// The PM2 ecosystem file, inside the customer folder.
    #[serde(default = "default_ecosystem")]
    pub ecosystem: String,
    /// Checks after the reload.
    #[serde(default = "default_attempts")]
    pub verify_attempts: u32,
    /// Pause between checks, in milliseconds.
    #[serde(default = "default_interval")]
    pub verify_interval_ms: u64,
}

fn default_customer() -> String {
    "/customer".into()
}
fn default_releases() -> String {
    "/customer/releases".into()
}
fn default_ecosystem() -> String {
    "/customer/ecosystem.config.js".into()
}
fn default_attempts() -> u32 {
    swap::DEFAULT_VERIFY_ATTEMPTS
}
fn default_interval() -> u64 {
    swap::DEFAULT_VERIFY_INTERVAL_MS
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The customer folder and its apps.
    pub live: LiveApps,
    /// The releases folder.
    pub releases: String,
    /// The release to go live.
    pub target: String,
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let live = LiveApps::new(&config.customer, &config.ecosystem, config.apps)?.with_verify(
            config.verify_attempts,
            Duration::from_millis(config.verify_interval_ms),
        );
        let releases = releases_of(&live.customer, &config.releases)?;
        if !layout::is_version_name(&config.target) {
            return Err(Error::invalid_config(format!(
                "target `{}` is not a release name such as v1.1.0",
                config.target
            )));
        }
        Ok(Plan {
            live,
            releases,
            target: config.target,
        })
    }
}

/// Checks that `releases` is `<customer>/releases`: `current` links to it relatively.
pub fn releases_of(customer: &str, releases: &str) -> Result<String, Error> {
    let releases =
        qodify_plugin_sdk::path::normalize(releases).map_err(|e| e.context("releases"))?;
    let expected = format!("{}/{}", customer.trim_end_matches('/'), layout::RELEASES);
    if releases != expected {
        return Err(Error::invalid_config(format!(
            "releases is `{releases}` but must be `{expected}`: `current` links to \
             releases/<version> inside the customer folder"
        )));
    }
    Ok(releases)
}

/// Whether `current` may be swapped to `target`, given the journal and where `current` points.
pub fn check_state(journal: &Journal, target: &str, previous: &str) -> Result<(), Error> {
    if journal.to != target {
        return Err(Error::invalid_config(format!(
            "the upgrade in progress (run {}) goes to {}, not to {target}; check the step's target",
            journal.run, journal.to
        )));
    }
    if previous != journal.from && previous != journal.to {
        return Err(Error::invalid_config(format!(
            "current points at releases/{previous}, but the upgrade started from {}; someone \
             changed it during the upgrade: check the customer folder (docs/upgrades.md)",
            journal.from
        )));
    }
    Ok(())
}

/// Whether the release's marker allows it to go live.
pub fn check_marker(release_dir: &str, marker: &MarkerFile) -> Result<(), Error> {
    match marker {
        MarkerFile::Valid(m) if m.status != Status::Failed => Ok(()),
        MarkerFile::Valid(_) => Err(Error::invalid_config(format!(
            "{release_dir} is marked failed; it cannot go live (upgrade again to reinstall it)"
        ))),
        MarkerFile::Missing => Err(Error::not_found(format!(
            "{release_dir} has no {}: it was not installed by release-unpack (or that step did \
             not finish); current was not changed",
            upgrade_kit::marker::FILE
        ))),
        MarkerFile::Damaged(why) => Err(Error::invalid_config(format!(
            "the marker of {release_dir} is damaged ({why}); current was not changed"
        ))),
    }
}

struct SymlinkSwap;

impl Step for SymlinkSwap {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        let target = &plan.target;
        let journal = Journal::read(&plan.releases)?.ok_or_else(|| {
            Error::not_found(format!(
                "no upgrade in progress ({}/{} is missing): symlink-swap runs inside the upgrade \
                 pipeline, after release-unpack",
                plan.releases,
                upgrade_kit::journal::FILE
            ))
        })?;
        let previous = swap::current_version(&HostFs, &plan.live.customer)?.ok_or_else(|| {
            Error::not_found(format!(
                "{}/current does not exist: the customer is not in the blue/green layout; run \
                 migrate-layout first",
                plan.live.customer
            ))
        })?;
        check_state(&journal, target, &previous)?;
        let release_dir = format!("{}/{target}", plan.releases);
        if !is_folder(&release_dir)? {
            return Err(Error::not_found(format!(
                "{release_dir} does not exist or is not a folder; current was not changed"
            )));
        }
        check_marker(&release_dir, &Marker::inspect(&release_dir)?)?;
        if previous == *target {
            ctx.warn(format!(
                "current already points at releases/{target}; reloading and checking PM2 again"
            ));
        }
        ctx.progress(
            10.0,
            format!("swapping current: releases/{previous} → releases/{target}"),
        );
        Journal::update(&HostFs, &plan.releases, |j| j.swapped = true)?;
        swap::swap_current(&HostFs, &plan.live.customer, target, ctx.run_id())?;
        ctx.info(format!(
            "current → releases/{target} (was releases/{previous})"
        ));
        ctx.progress(30.0, format!("reloading {} PM2 apps", plan.live.apps.len()));
        let verified = swap::reload_and_verify(ctx, &plan.live, target).map_err(|e| {
            e.context(format!(
                "current points at releases/{target} now, but PM2 does not run it (the \
                 upgrade's rollback swaps back to releases/{previous})"
            ))
        })?;
        let mut out = Output::new()
            .value("previous", &previous)
            .value("current", target);
        for v in &verified {
            ctx.info(format!(
                "{} runs {} (pid {}){}",
                v.app,
                v.cwd,
                v.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if v.restarted {
                    "; it was deleted and started again: PM2 had cached a resolved path"
                } else {
                    ""
                }
            ));
            out.push_value(format!("cwd.{}", v.app), &v.cwd);
        }
        ctx.progress(100.0, format!("live on releases/{target}"));
        Ok(out)
    }
}

/// True when `path` is a real folder (not reached through a symlink).
fn is_folder(path: &str) -> Result<bool, Error> {
    Ok(HostFs.stat_opt(path)?.is_some_and(|m| m.is_dir()))
}

export_step!(SymlinkSwap);

#[cfg(test)]
mod tests {
    use super::*;
    use upgrade_kit::journal::{DbPolicy, Migrate};

    fn plan(json: serde_json::Value) -> Result<Plan, Error> {
        let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
        Plan::new(config)
    }

    fn apps() -> serde_json::Value {
        serde_json::json!([
            {"name": "shop.test-backend", "service": "backend"},
            {"name": "shop.test-admin", "service": "admin"},
            {"name": "shop.test-store", "service": "store"}
        ])
    }

    fn journal() -> Journal {
        Journal {
            run: "r1".into(),
            from: "v1.0.0".into(),
            to: "v1.1.0".into(),
            backup: Some("20250101-000000".into()),
            db_policy: DbPolicy::Restore,
            unpacked: true,
            migrate: Migrate::Done,
            swapped: false,
            started: "20250101-000000".into(),
        }
    }

    #[test]
    fn config_defaults() {
        let p = plan(serde_json::json!({"target": "v1.1.0", "apps": apps()})).unwrap();
        assert_eq!(p.live.customer, "/customer");
        assert_eq!(p.live.ecosystem, "ecosystem.config.js");
        assert_eq!(p.releases, "/customer/releases");
        assert_eq!(p.live.attempts, 10);
        assert_eq!(p.live.apps.len(), 3);
    }

    #[test]
    fn bad_configs_are_refused() {
        for (json, needle) in [
            (
                serde_json::json!({"target": "../v1", "apps": apps()}),
                "release name",
            ),
            (
                serde_json::json!({"target": "v1", "apps": apps(), "releases": "/r"}),
                "must be `/customer/releases`",
            ),
            (
                serde_json::json!({"target": "v1", "apps": []}),
                "apps is empty",
            ),
            (
                serde_json::json!({"target": "v1", "apps": apps(), "ecosystem": "/customer/current/e.js"}),
                "inside `current`",
            ),
            (
                serde_json::json!({"target": "v1", "apps": [{"name": "a", "service": "backend", "x": 1}]}),
                "unknown field",
            ),
        ] {
            let e = plan(json.clone()).expect_err(&json.to_string());
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert!(e.message().contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn swap_only_inside_the_journal_s_upgrade() {
        let j = journal();
        check_state(&j, "v1.1.0", "v1.0.0").unwrap();
        check_state(&j, "v1.1.0", "v1.1.0").unwrap(); // re-run after a swap
        assert!(
            check_state(&j, "v1.2.0", "v1.0.0")
                .unwrap_err()
                .message()
                .contains("goes to v1.1.0")
        );
        assert!(
            check_state(&j, "v1.1.0", "v0.9.0")
                .unwrap_err()
                .message()
                .contains("someone changed it")
        );
    }

    #[test]
    fn only_an_installed_release_goes_live() {
        let m = |status| {
            MarkerFile::Valid(Marker {
                version: "v1.1.0".into(),
                status,
                from: Some("v1.0.0".into()),
                run: "r1".into(),
                at: "20250101-000000".into(),
                pre_upgrade_backup: None,
            })
        };
        check_marker("/c/releases/v1.1.0", &m(Status::Installing)).unwrap();
        check_marker("/c/releases/v1.1.0", &m(Status::Succeeded)).unwrap();
        assert!(check_marker("/c/releases/v1.1.0", &m(Status::Failed)).is_err());
        let e = check_marker("/c/releases/v1.1.0", &MarkerFile::Missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(check_marker("/c/r", &MarkerFile::Damaged("x".into())).is_err());
    }
}
