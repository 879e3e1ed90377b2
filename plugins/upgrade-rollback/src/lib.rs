//! `upgrade-rollback` step plugin: undoes an upgrade from its journal
//! (`releases/.upgrade.json`). It is the upgrade's `on_failure` step and also runs alone, with no
//! outputs of earlier steps, when the host restarts after a crash (`recover = "on_failure"`):
//! everything it needs comes from the journal, and every part is idempotent.
//!
//! No journal, or (without `any_run`) a journal of another run: nothing to undo (output `rollback`
//! says so; no `rolled-back`). Otherwise,
//! in this order:
//! 1. PM2 candidate apps `<candidates_prefix>-*-candidate` left by the health check are deleted.
//! 2. Code: when the journal says `swapped` or `current` points at the new release, `current`
//!    is swapped back to `releases/<from>` (atomic rename), every app is reloaded and checked to
//!    run `releases/<from>/<service>` (see [`upgrade_kit::swap`]); otherwise the apps are only
//!    checked, and reloaded if one does not run the old release. If this fails, the step stops
//!    here: nothing destructive runs, the journal stays, and the error says where `current`
//!    points and which app is wrong.
//! 3. Database, when migrations started: tier policy `keep` leaves it as migrated; `restore`
//!    (default) puts the pre-upgrade backup's `db.dump` back in **one transaction**: the schemas
//!    the dump holds (and `public`) are dropped with everything in them, `public` is created
//!    again as initdb makes it (pg_restore never creates it), then the dump's SQL
//!    (`pg_restore --clean --if-exists --no-owner --file=-`, written to the work folder) runs,
//!    all inside `psql --single-transaction`. A plain `pg_restore --clean` cannot do this: it
//!    fails on objects the migrations added that depend on restored ones (a new table with a
//!    foreign key to an old one), and it would leave new tables behind. Any error rolls the
//!    whole transaction back, so the database is either the backup or untouched. The URL comes
//!    from `releases/<from>/<db.env_file>`. A missing backup or dump fails loudly
//!    (docs/upgrades.md, "When a rollback fails").
//! 4. When the upgrade unpacked the new release: its marker is set `failed`, then the folder is
//!    removed — never when `current` points at it, never the `from` release.
//! 5. The journal is removed.
//!
//! Config (see [`Config`]): `customer` (default `/customer`, read-write; pm2's working folder),
//! `releases` (default `/customer/releases`), `apps`, `ecosystem`, `verify_attempts`,
//! `verify_interval_ms` (as for `symlink-swap`), `candidates_prefix` (e.g.
//! `"{{customer.domain}}"`), and `db`: `backups` (guest path of the customer's `backups`
//! folder, default `/backups`), `env_file` (relative to the old release folder, default
//! `backend/.env`), `variable` (default `DATABASE_URL`), `work` (a writable scratch folder,
//! default `/work`).
//!
//! Grants: mounts `/customer` (rw, `path = ""`), `/backups` (ro, `path = "backups"`), `/work`
//! (rw, `from = "work"`); `pm2` (`inherit = ["PM2_HOME"]`; `jlist`, `reload`, `delete`, `start`,
//! `--only`, `ecosystem.config.js`, the app names, `*-candidate`); `pg_restore` (`--list`,
//! `--clean`, `--if-exists`, `--no-owner`, `--file=-`, `db.dump`); `psql` (`-X`, `-q`, `-1`,
//! `-v`, `ON_ERROR_STOP=1`, `--no-password`, `--host={{customer.db.host}}`,
//! `--port={{customer.db.port}}`, `--username={{customer.db.user}}`, `--dbname={{customer.db.name}}`, `-f`, `restore-public.sql`,
//! `restore-db.sql`; env `PGPASSWORD`, `PGSSLMODE`). No `readlink`: the host answers which
//! folder an app process runs in.
//!
//! Outputs: one `rolled-back` per thing undone, in order (the host lists them with the run's
//! error), e.g. `code: current back to releases/v1.0.0, PM2 apps verified on it`,
//! `database: restored from pre-upgrade backup 20250101-000000`, `release v1.1.0 removed`.

pub mod db;

use std::time::Duration;

use qodify_plugin_sdk::fs::{FileSystem as _, HostFs};
use qodify_plugin_sdk::prelude::*;
use upgrade_kit::journal::{DbPolicy, Journal, Migrate};
use upgrade_kit::marker::{Marker, MarkerFile, Status};
use upgrade_kit::swap::{self, AppSpec, AppState, LiveApps};
use upgrade_kit::{layout, pm2, tree};

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the customer folder (read-write; pm2's working folder).
    #[serde(default = "default_customer")]
    pub customer: String,
    /// Guest path of `<customer>/releases`.
    #[serde(default = "default_releases")]
    pub releases: String,
    /// The customer's PM2 apps.
    pub apps: Vec<AppSpec>,
    /// The PM2 ecosystem file, inside the customer folder.
    #[serde(default = "default_ecosystem")]
    pub ecosystem: String,
    /// PM2 apps named `<candidates_prefix>-*-candidate` are deleted.
    pub candidates_prefix: String,
    /// Database restore settings.
    #[serde(default)]
    pub db: db::DbConfig,
    /// Checks after the reload.
    #[serde(default = "default_attempts")]
    pub verify_attempts: u32,
    /// Pause between checks, in milliseconds.
    #[serde(default = "default_interval")]
    pub verify_interval_ms: u64,
    /// Roll back a journal of any run (the `upgrade-rollback` pipeline ops run by hand after a
    /// crash of `qodify-host run`). Default: only this run's own upgrade, so a refused upgrade
    /// never rolls back another one still in progress.
    #[serde(default)]
    pub any_run: bool,
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
    /// Candidate apps' prefix.
    pub candidates_prefix: String,
    /// Database settings.
    pub db: db::DbPlan,
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let live = LiveApps::new(&config.customer, &config.ecosystem, config.apps)?.with_verify(
            config.verify_attempts,
            Duration::from_millis(config.verify_interval_ms),
        );
        let releases = qodify_plugin_sdk::path::normalize(&config.releases)
            .map_err(|e| e.context("releases"))?;
        let expected = format!("{}/{}", live.customer, layout::RELEASES);
        if releases != expected {
            return Err(Error::invalid_config(format!(
                "releases is `{releases}` but must be `{expected}`: `current` links to \
                 releases/<version> inside the customer folder"
            )));
        }
        if !swap::is_app_name(&config.candidates_prefix) {
            return Err(Error::invalid_config(format!(
                "candidates_prefix `{}` is not a plain PM2 app name prefix; use \
                 \"{{{{customer.domain}}}}\"",
                config.candidates_prefix
            )));
        }
        Ok(Plan {
            live,
            releases,
            candidates_prefix: config.candidates_prefix,
            db: db::DbPlan::new(config.db)?,
        })
    }
}

/// What the code part of the rollback has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeAction {
    /// `current` may point at the new release: swap back, reload, verify.
    SwapBack,
    /// `current` still points at the old release: check the apps (reload if needed).
    Check,
}

/// What the database part has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAction {
    /// Migrations never started.
    Nothing,
    /// Tier policy `keep`.
    Keep,
    /// Restore this backup.
    Restore(String),
    /// Restore is needed but impossible (why).
    Impossible(String),
}

/// The rollback's plan, from the journal and where `current` points (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    /// Code.
    pub code: CodeAction,
    /// Database.
    pub db: DbAction,
    /// Remove `releases/<to>` (after checking again that `current` does not point at it).
    pub remove_release: bool,
}

/// Decides what to undo. An error when `current` points at neither release of the journal:
/// then nothing is touched.
pub fn actions(journal: &Journal, current: Option<&str>) -> Result<Actions, Error> {
    let code = match current {
        Some(c) if c == journal.to => CodeAction::SwapBack,
        Some(c) if c == journal.from && journal.swapped => CodeAction::SwapBack,
        Some(c) if c == journal.from => CodeAction::Check,
        Some(c) => {
            return Err(Error::invalid_config(format!(
                "current points at releases/{c}, neither the upgrade's old release {} nor its \
                 new one {}; nothing was changed. Point current at the right release by hand \
                 (docs/upgrades.md, \"When a rollback fails\")",
                journal.from, journal.to
            )));
        }
        None => {
            return Err(Error::not_found(format!(
                "the customer folder has no `current`; nothing was changed. Recreate it as a \
                 symlink to releases/{} (docs/upgrades.md, \"When a rollback fails\")",
                journal.from
            )));
        }
    };
    let db = match (journal.migrate, journal.db_policy) {
        (Migrate::None, _) => DbAction::Nothing,
        (_, DbPolicy::Keep) => DbAction::Keep,
        (_, DbPolicy::Restore) => match &journal.backup {
            Some(id) if db::is_backup_id(id) => DbAction::Restore(id.clone()),
            Some(id) => DbAction::Impossible(format!(
                "the journal names the pre-upgrade backup `{id}`, which is not a backup id"
            )),
            None => DbAction::Impossible(
                "the journal names no pre-upgrade backup (it did not complete before the \
                 migrations started)"
                    .into(),
            ),
        },
    };
    Ok(Actions {
        code,
        db,
        remove_release: journal.unpacked && journal.to != journal.from,
    })
}

/// PM2 apps left by the health check: `<prefix>-…-candidate`.
pub fn candidate_names(apps: &[pm2::App], prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = apps
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| {
            n.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| r.ends_with("-candidate") && swap::is_app_name(n))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What has been undone so far, for outputs and for the error of a rollback that stops.
#[derive(Debug, Default)]
struct Progress {
    undone: Vec<String>,
}

impl Progress {
    /// The error of a rollback that stops at `stage`, saying where the customer is.
    fn stop(&self, journal: &Journal, releases: &str, error: Error, state: &str) -> Error {
        let done = if self.undone.is_empty() {
            "nothing yet".to_string()
        } else {
            self.undone.join("; ")
        };
        Error::new(
            error.kind(),
            format!(
                "rollback of the upgrade {} → {} stopped: {}. State: {state}. Undone so far: \
                 {done}. The journal {releases}/{} is kept: fix the cause, then run the \
                 rollback again (docs/upgrades.md, \"When a rollback fails\")",
                journal.from,
                journal.to,
                error.message(),
                upgrade_kit::journal::FILE
            ),
        )
    }
}

struct UpgradeRollback;

impl Step for UpgradeRollback {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let any_run = config.any_run;
        let plan = Plan::new(config)?;
        let Some(journal) = Journal::read(&plan.releases)? else {
            ctx.info("no upgrade journal: nothing to roll back");
            return Ok(Output::new().value("rollback", "nothing: no upgrade in progress"));
        };
        if journal.run != ctx.run_id() {
            if !any_run {
                ctx.info(format!(
                    "the journal belongs to run {} ({} → {}), not this run: left alone",
                    journal.run, journal.from, journal.to
                ));
                return Ok(Output::new().value("rollback", "nothing: this run changed nothing"));
            }
            ctx.warn(format!(
                "the journal belongs to run {}, not this run: rolling back that upgrade ({} → {})",
                journal.run, journal.from, journal.to
            ));
        }
        let (from, to) = (journal.from.clone(), journal.to.clone());
        if !layout::is_version_name(&from) || !layout::is_version_name(&to) {
            return Err(Error::invalid_config(format!(
                "the journal names releases `{from}` and `{to}`, which are not release names; \
                 see docs/upgrades.md, \"When a rollback fails\""
            )));
        }
        let mut progress = Progress::default();
        ctx.progress(0.0, format!("rolling back {to} → {from}"));

        // 1. Candidate apps: harmless to keep, so a PM2 failure here only warns.
        match pm2::jlist(&plan.live.customer) {
            Ok(list) => {
                let names = candidate_names(&list, &plan.candidates_prefix);
                for name in &names {
                    if let Err(e) = pm2::delete_if_present(&plan.live.customer, name) {
                        ctx.warn(format!("deleting the PM2 candidate {name}: {e}"));
                    }
                }
                if !names.is_empty() {
                    progress
                        .undone
                        .push(format!("pm2: candidate apps {} deleted", names.join(", ")));
                }
            }
            Err(e) => ctx.warn(format!("listing PM2 apps for candidates: {e}")),
        }

        // 2. Code.
        let current = swap::current_version(&HostFs, &plan.live.customer)?;
        let acts = actions(&journal, current.as_deref())?;
        ctx.progress(10.0, format!("code: back to releases/{from}"));
        match acts.code {
            CodeAction::SwapBack => {
                let result = swap::swap_current(&HostFs, &plan.live.customer, &from, ctx.run_id())
                    .and_then(|()| swap::reload_and_verify(ctx, &plan.live, &from));
                if let Err(e) = result {
                    let now = swap::current_version(&HostFs, &plan.live.customer)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "nothing".into());
                    return Err(progress.stop(
                        &journal,
                        &plan.releases,
                        e,
                        &format!(
                            "current points at releases/{now}; PM2 apps are not verified on \
                             releases/{from}; the database and releases/{to} were not touched"
                        ),
                    ));
                }
                Journal::update(&HostFs, &plan.releases, |j| j.swapped = false)?;
                progress.undone.push(format!(
                    "code: current back to releases/{from}, PM2 apps verified on it"
                ));
            }
            CodeAction::Check => {
                let states = swap::check(ctx, &plan.live, &from).unwrap_or_default();
                let all_run = !states.is_empty()
                    && states
                        .iter()
                        .all(|(_, s)| matches!(s, AppState::Runs { .. }));
                if all_run {
                    ctx.info(format!(
                        "current still points at releases/{from} and every PM2 app runs it"
                    ));
                } else {
                    ctx.warn(format!(
                        "current points at releases/{from} but not every PM2 app runs it; \
                         reloading"
                    ));
                    if let Err(e) = swap::reload_and_verify(ctx, &plan.live, &from) {
                        return Err(progress.stop(
                            &journal,
                            &plan.releases,
                            e,
                            &format!(
                                "current points at releases/{from}; PM2 apps are not verified \
                                 on it; the database and releases/{to} were not touched"
                            ),
                        ));
                    }
                    progress.undone.push(format!(
                        "code: PM2 apps reloaded on releases/{from} and verified"
                    ));
                }
            }
        }

        // 3. Database.
        ctx.progress(40.0, "database");
        match &acts.db {
            DbAction::Nothing => ctx.info("database: migrations never started, nothing to undo"),
            DbAction::Keep => progress
                .undone
                .push("database: kept as migrated (tier policy keep)".into()),
            DbAction::Restore(id) => {
                let env_file = format!("{}/{from}/{}", plan.releases, plan.db.env_file);
                if let Err(e) = db::restore(ctx, &plan.db, id, &env_file) {
                    return Err(progress.stop(
                        &journal,
                        &plan.releases,
                        e,
                        &format!(
                            "the code runs releases/{from}, but the database is still as the \
                             failed upgrade's migrations left it (the restore runs as one \
                             transaction, so none of it was applied); releases/{to} was kept"
                        ),
                    ));
                }
                Journal::update(&HostFs, &plan.releases, |j| j.migrate = Migrate::None)?;
                progress
                    .undone
                    .push(format!("database: restored from pre-upgrade backup {id}"));
            }
            DbAction::Impossible(why) => {
                return Err(progress.stop(
                    &journal,
                    &plan.releases,
                    Error::not_found(format!("the database cannot be restored: {why}")),
                    &format!(
                        "the code runs releases/{from}, but the database is still as the failed \
                         upgrade's migrations left it; releases/{to} was kept"
                    ),
                ));
            }
        }

        // 4. The new release.
        ctx.progress(80.0, format!("removing releases/{to}"));
        if acts.remove_release {
            let now = swap::current_version(&HostFs, &plan.live.customer)?;
            if now.as_deref() == Some(to.as_str()) {
                return Err(progress.stop(
                    &journal,
                    &plan.releases,
                    Error::internal(format!("current points at releases/{to} again")),
                    &format!("releases/{to} was kept"),
                ));
            }
            let dir = format!("{}/{to}", plan.releases);
            let failed = match Marker::inspect(&dir) {
                Ok(MarkerFile::Valid(mut m)) => {
                    m.status = Status::Failed;
                    m.at = ctx.run_timestamp().to_string();
                    Some(m)
                }
                Ok(MarkerFile::Missing | MarkerFile::Damaged(_)) => Some(Marker {
                    version: to.clone(),
                    status: Status::Failed,
                    from: Some(from.clone()),
                    run: journal.run.clone(),
                    at: ctx.run_timestamp().to_string(),
                    pre_upgrade_backup: journal.backup.clone(),
                }),
                Err(e) => {
                    ctx.warn(format!("reading the marker of {dir}: {e}"));
                    None
                }
            };
            if HostFs.stat_opt(&dir)?.is_some_and(|m| m.is_dir())
                && let Some(m) = failed
                && let Err(e) = m.write(&dir)
            {
                ctx.warn(format!("marking {dir} failed: {e}"));
            }
            let removed = tree::remove_release(&HostFs, &plan.releases, &to).map_err(|e| {
                progress.stop(
                    &journal,
                    &plan.releases,
                    e,
                    &format!(
                        "code and database are rolled back; releases/{to} is marked failed but \
                         not (fully) removed"
                    ),
                )
            })?;
            if removed {
                progress.undone.push(format!("release {to} removed"));
            }
            Journal::update(&HostFs, &plan.releases, |j| j.unpacked = false)?;
        }

        // 5. Done.
        Journal::remove(&HostFs, &plan.releases)?;
        ctx.progress(100.0, format!("rolled back to {from}"));
        if progress.undone.is_empty() {
            progress.undone.push(format!(
                "nothing: the upgrade to {to} had changed nothing yet"
            ));
        }
        let mut out = Output::new();
        for line in &progress.undone {
            ctx.info(format!("rolled back: {line}"));
            out.push_value("rolled-back", line);
        }
        Ok(out)
    }
}

export_step!(UpgradeRollback);

#[cfg(test)]
mod tests;
