//! `release-check` step plugin: the first step of a blue/green upgrade (plan §8). It refuses,
//! before anything changes, an upgrade that cannot go through, and otherwise writes the upgrade
//! journal (`releases/.upgrade.json`, [`upgrade_kit::journal`]) that every later step and the
//! rollback rely on.
//!
//! Checks, in order, each refusal saying what to do:
//! 1. the customer folder is in the blue/green layout: `current` is a symlink to
//!    `releases/<version>` and that folder exists (else: run the migrate-layout pipeline first);
//! 2. no journal exists (else an earlier upgrade did not finish: the host rolls it back when it
//!    starts);
//! 3. the target is in the catalog, is not the current release, and lists the current release in
//!    `compat.upgradeFrom` (else the error names a chain of releases that leads there, if any):
//!    the rule of `release-rules`, which the host shows upgrade targets by;
//! 4. the target's package file is in the catalog folder;
//! 5. `node --version` is inside `compat.node`;
//! 6. the PostgreSQL server of the backend's `DATABASE_URL` (`SHOW server_version` through
//!    `psql`) is inside `compat.postgres`.
//!
//! Then it writes the journal `{run, from, to, backup, dbPolicy, started}`.
//!
//! Config (see [`Config`]):
//! - `target`: the version to upgrade to, e.g. `"{{params.targetVersion}}"`.
//! - `catalog`: guest path of `releases.json`, default `/releases/releases.json` (mount
//!   `from = "releases"`).
//! - `customer`: guest path of the customer folder, read-write (the journal goes into its
//!   `releases/`), default `/customer`.
//! - `backup`: the pre-upgrade backup's id to record, e.g. `"{{run.timestamp}}"`; default none.
//! - `db_policy`: `"restore"` (default) or `"keep"`: what the rollback does with the database
//!   after migrations ran.
//! - `env_file`: the `.env` holding the database URL, default `/customer/current/backend/.env`;
//!   `variable`: its name, default `DATABASE_URL`.
//!
//! Host commands (grant them), run in the customer folder:
//! - `node --version`;
//! - `psql -X -A -t -q --no-password --host=H --port=P --username=U --dbname=D -c
//!   "SHOW server_version"`, env `PGPASSWORD` (when the URL has a password) and `PGSSLMODE`
//!   (when it sets `sslmode`). The password and the URL are never logged or put in an error.
//!
//! Outputs: `from`, `to`, `node` (as `node --version` prints it), `postgres` (e.g. `15.20`).

use std::io::Read as _;
use std::time::Duration;

use pg_conn::url::DbTarget;
use pg_conn::{dotenv, url};
use qodify_plugin_sdk::path::normalize;
use qodify_plugin_sdk::prelude::*;
use upgrade_kit::catalog::{Catalog, Release, lenient_version, satisfies};
use upgrade_kit::journal::{DbPolicy, Journal, Migrate};
use upgrade_kit::layout;

/// `node --version` and one query answer at once; a hang is a broken host.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest `.env` file read.
const MAX_ENV_BYTES: u64 = 1 << 20;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The version to upgrade to (a release folder name from the catalog).
    pub target: String,
    /// Guest path of `releases.json`.
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// Guest path of the customer folder (read-write).
    #[serde(default = "default_customer")]
    pub customer: String,
    /// The pre-upgrade backup's id to record; empty: none.
    #[serde(default)]
    pub backup: Option<String>,
    /// What the rollback does with the database after migrations ran.
    #[serde(default)]
    pub db_policy: DbPolicy,
    /// Guest path of the `.env` holding the database URL.
    #[serde(default = "default_env_file")]
    pub env_file: String,
    /// The variable holding the URL.
    #[serde(default = "default_variable")]
    pub variable: String,
}

fn default_catalog() -> String {
    "/releases/releases.json".into()
}

fn default_customer() -> String {
    "/customer".into()
}

fn default_env_file() -> String {
    "/customer/current/backend/.env".into()
}

fn default_variable() -> String {
    "DATABASE_URL".into()
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The target version.
    pub target: String,
    /// Normalised guest path of the catalog.
    pub catalog: String,
    /// The catalog's folder (package paths are relative to it).
    pub catalog_dir: String,
    /// Normalised guest path of the customer folder.
    pub customer: String,
    /// The backup id to record.
    pub backup: Option<String>,
    /// The database policy to record.
    pub db_policy: DbPolicy,
    /// Normalised guest path of the `.env` file.
    pub env_file: String,
    /// The variable holding the URL.
    pub variable: String,
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let target = config.target.trim().to_owned();
        if target.is_empty() {
            return Err(Error::invalid_config(
                "target is empty; pass the version to upgrade to, e.g. --param targetVersion=v1.1.0",
            ));
        }
        if !layout::is_version_name(&target) {
            return Err(Error::invalid_config(format!(
                "target `{target}` is not a release version name (letters, digits, `.`, `_`, `+`, \
                 `-`, not starting with `.`); use a version from releases.json, e.g. v1.1.0"
            )));
        }
        let catalog = normalize(&config.catalog).map_err(|e| e.context("catalog"))?;
        let catalog_dir = match catalog.rsplit_once('/') {
            Some((_, "")) | None => {
                return Err(Error::invalid_config(format!(
                    "catalog `{catalog}` names no file; point it at releases.json"
                )));
            }
            Some(("", _)) => "/".to_owned(),
            Some((dir, _)) => dir.to_owned(),
        };
        let customer = normalize(&config.customer).map_err(|e| e.context("customer"))?;
        if customer == "/" {
            return Err(Error::invalid_config(
                "customer must be the mount of the customer folder, e.g. /customer, not `/`",
            ));
        }
        let env_file = normalize(&config.env_file).map_err(|e| e.context("env_file"))?;
        let variable = config.variable;
        let mut chars = variable.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(Error::invalid_config(format!(
                "variable `{variable}` is not a plain environment variable name like DATABASE_URL"
            )));
        }
        let backup = config
            .backup
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty());
        Ok(Plan {
            target,
            catalog,
            catalog_dir,
            customer,
            backup,
            db_policy: config.db_policy,
            env_file,
            variable,
        })
    }

    /// `<customer>/releases`, where the journal lives.
    pub fn releases_dir(&self) -> String {
        format!("{}/{}", self.customer, layout::RELEASES)
    }
}

/// The current release from what `lstat` says about `<customer>/current` (`None`: missing).
pub fn current_version(current: Option<&fs::Metadata>) -> Result<String, Error> {
    const MIGRATE: &str = "run the migrate-layout pipeline first";
    let Some(meta) = current else {
        return Err(Error::invalid_config(format!(
            "the customer folder is not in the blue/green layout (it has no `current` symlink); \
             {MIGRATE}"
        )));
    };
    if !meta.is_symlink() {
        return Err(Error::invalid_config(format!(
            "the customer folder is not in the blue/green layout (`current` is not a symlink to \
             releases/<version>); {MIGRATE}"
        )));
    }
    let target = meta.symlink_target.as_deref().unwrap_or_default();
    layout::version_of_target(target)
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::invalid_config(format!(
                "`current` points at `{target}`, not at releases/<version>; point it back at the \
                 live release (ln -sfn releases/<version> current) or {MIGRATE}"
            ))
        })
}

/// The refusal when a journal is left over: the host finishes an interrupted upgrade before the
/// next run of the customer, so one left here was not rolled back (its rollback failed, or an
/// older host left it).
pub fn unfinished(journal: &Journal, releases_dir: &str, domain: &str) -> Error {
    Error::invalid_config(format!(
        "an earlier upgrade (run {}, from {} to {}) did not finish and was not rolled back: run \
         `qodify-host recover --customer {domain}`; if {releases_dir}/{} is still there \
         afterwards, the rollback failed: see docs/upgrades.md, \"When a rollback fails\"",
        journal.run,
        journal.from,
        journal.to,
        upgrade_kit::journal::FILE
    ))
}

/// The catalog as the shared upgrade rule ([`release_rules`]) reads it.
fn entries(catalog: &Catalog) -> Vec<release_rules::Entry<'_>> {
    catalog
        .releases
        .iter()
        .map(|r| release_rules::Entry {
            version: &r.version,
            upgrade_from: &r.compat.upgrade_from,
        })
        .collect()
}

/// Checks that `target` is a release that `current` may upgrade to; returns the release. The
/// rule is [`release_rules::check`], the one the host shows a customer's upgrade targets by.
pub fn check_upgrade<'c>(
    catalog: &'c Catalog,
    current: &str,
    target: &str,
) -> Result<&'c Release, Error> {
    release_rules::check(&entries(catalog), current, target)
        .map(|i| &catalog.releases[i])
        .map_err(|refusal| Error::invalid_config(refusal.to_string()))
}

/// The shortest chain of catalog upgrades from `from` to `to`, both ends included.
pub fn upgrade_path(catalog: &Catalog, from: &str, to: &str) -> Option<Vec<String>> {
    release_rules::upgrade_path(&entries(catalog), from, to)
}

/// Checks an engine version (as its program printed it) against the release's range; returns
/// the parsed version as `major.minor.patch`.
pub fn check_engine(
    engine: &str,
    printed: &str,
    range: &str,
    target: &str,
    fix: &str,
) -> Result<String, Error> {
    let version = lenient_version(printed).ok_or_else(|| {
        Error::internal(format!(
            "cannot read a version from the {engine} version `{}`",
            printed.trim()
        ))
    })?;
    let ok = satisfies(range, &version).map_err(|e| {
        Error::invalid_config(format!(
            "{target} in the catalog: {e}; fix releases.json (`qodify-host validate` checks it)"
        ))
    })?;
    if !ok {
        let shown = printed.split_whitespace().next().unwrap_or_default();
        return Err(Error::invalid_config(format!(
            "{engine} {shown} is outside what {target} supports (`{range}`); {fix}"
        )));
    }
    Ok(version.to_string())
}

/// psql's arguments: one query, unaligned, tuples only, no password prompt.
pub fn psql_args(db: &DbTarget) -> Vec<String> {
    vec![
        "-X".into(),
        "-A".into(),
        "-t".into(),
        "-q".into(),
        "--no-password".into(),
        format!("--host={}", db.host),
        format!("--port={}", db.port),
        format!("--username={}", db.user),
        format!("--dbname={}", db.database),
        "-c".into(),
        "SHOW server_version".into(),
    ]
}

/// psql's environment: `PGPASSWORD` when the URL has a password, `PGSSLMODE` when it sets one.
pub fn psql_env(db: &DbTarget) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(pw) = db.password.as_ref().filter(|p| !p.is_empty()) {
        env.push(("PGPASSWORD", pw.clone()));
    }
    if let Some(mode) = &db.sslmode {
        env.push(("PGSSLMODE", mode.clone()));
    }
    env
}

/// Finds and parses the URL in `.env` text; errors name the file and variable, never the value.
pub fn url_from_env(text: &str, env_file: &str, variable: &str) -> Result<DbTarget, Error> {
    let value = dotenv::lookup(text, variable).ok_or_else(|| {
        Error::not_found(format!(
            "{variable} is not set in {env_file}; point env_file at the backend's .env, or set \
             variable to the name that holds the database URL"
        ))
    })?;
    if value.trim().is_empty() {
        return Err(Error::invalid_config(format!(
            "{variable} in {env_file} is empty; set it to the database URL"
        )));
    }
    let db = url::parse(&value).map_err(|e| {
        Error::invalid_config(format!(
            "{variable} in {env_file} is not a usable PostgreSQL URL: {e}"
        ))
    })?;
    // libpq reads a `--dbname` holding a URI as a whole connection string (pg-conn already
    // refuses `=`).
    if db.database.contains("://") {
        return Err(Error::invalid_config(format!(
            "the database name in {variable} of {env_file} holds `://`, which psql would read as \
             connection settings; fix the URL"
        )));
    }
    Ok(db)
}

fn read_env(path: &str) -> Result<String, Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "the env file {path} does not exist; check env_file and the step's mounts"
            )));
        }
        Err(e) => return Err(Error::from(e).context(format!("reading {path}"))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {path}"))?;
    if bytes.len() as u64 > MAX_ENV_BYTES {
        return Err(Error::invalid_config(format!(
            "env file {path} is over 1 MiB; point env_file at the backend's .env"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Replaces the password in a message, should a program echo it.
fn redact(message: &str, db: &DbTarget) -> String {
    match db.password.as_deref() {
        Some(pw) if pw.len() >= 4 => message.replace(pw, "<redacted>"),
        _ => message.to_owned(),
    }
}

/// `lstat` of a guest path; `None` when nothing is there.
fn stat_opt(path: &str) -> Result<Option<fs::Metadata>, Error> {
    match fs::stat(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct ReleaseCheck;

impl Step for ReleaseCheck {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        if !ctx
            .mount_for(&plan.customer)
            .is_some_and(|m| m.writable && m.guest_path.trim_end_matches('/') == plan.customer)
        {
            return Err(Error::permission_denied(format!(
                "customer {} must be a read-write mount of the customer folder (path = \"\", \
                 access = \"rw\"): the journal is written into its releases/",
                plan.customer
            )));
        }
        ctx.progress(0.0, "checking the customer's layout");
        let current_link = format!("{}/{}", plan.customer, layout::CURRENT);
        let from = current_version(stat_opt(&current_link)?.as_ref())?;
        let releases_dir = plan.releases_dir();
        let from_dir = format!("{releases_dir}/{from}");
        if !std::fs::metadata(&from_dir).is_ok_and(|m| m.is_dir()) {
            return Err(Error::not_found(format!(
                "`current` points at releases/{from}, which is missing: the customer is down; \
                 restore it (see docs/restore.md) before upgrading"
            )));
        }
        if let Some(journal) = Journal::read(&releases_dir)? {
            return Err(unfinished(&journal, &releases_dir, ctx.customer_domain()));
        }

        ctx.progress(
            20.0,
            format!("checking {} in the release catalog", plan.target),
        );
        let catalog = Catalog::read(&plan.catalog)?;
        let release = check_upgrade(&catalog, &from, &plan.target)?;
        let package = format!("{}/{}", plan.catalog_dir, release.package.path);
        if !std::fs::metadata(&package).is_ok_and(|m| m.is_file()) {
            return Err(Error::not_found(format!(
                "the package of {} ({}) is not in the release catalog folder; copy it there and \
                 check the catalog with `qodify-host validate`",
                plan.target, release.package.path
            )));
        }

        ctx.progress(40.0, "checking the Node.js version");
        let node = Command::new("node")
            .arg("--version")
            .cwd(&plan.customer)
            .capture_stdout()
            .stderr(Stdio::Capture)
            .timeout(COMMAND_TIMEOUT)
            .run()
            .and_then(CommandOutput::check)
            .map_err(|e| e.context("asking Node.js for its version (`node --version`)"))?
            .stdout_text()
            .trim()
            .to_owned();
        check_engine(
            "Node.js",
            &node,
            &release.compat.node,
            &plan.target,
            "install a Node.js version in that range on this host, or pick another release",
        )?;

        ctx.progress(60.0, "checking the PostgreSQL server version");
        let db = url_from_env(&read_env(&plan.env_file)?, &plan.env_file, &plan.variable)?;
        let mut psql = Command::new("psql")
            .args(psql_args(&db))
            .cwd(&plan.customer)
            .capture_stdout()
            .stderr(Stdio::Capture)
            .timeout(COMMAND_TIMEOUT);
        for (name, value) in psql_env(&db) {
            psql = psql.env(name, value);
        }
        let printed = psql
            .run()
            .and_then(CommandOutput::check)
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "asking the PostgreSQL server of {} in {} for its version failed; check \
                         that it is running and that the URL is right: {}",
                        plan.variable,
                        plan.env_file,
                        redact(e.message(), &db)
                    ),
                )
            })?
            .stdout_text();
        let printed = printed.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let postgres = check_engine(
            "PostgreSQL",
            printed,
            &release.compat.postgres,
            &plan.target,
            "upgrade the database server first, or pick another release",
        )?;
        let postgres_shown = printed.split_whitespace().next().unwrap_or(&postgres);

        ctx.progress(90.0, "writing the upgrade journal");
        Journal {
            run: ctx.run_id().to_owned(),
            from: from.clone(),
            to: plan.target.clone(),
            backup: plan.backup.clone(),
            db_policy: plan.db_policy,
            unpacked: false,
            migrate: Migrate::None,
            swapped: false,
            started: ctx.run_timestamp().to_owned(),
        }
        .write(&fs::HostFs, &releases_dir)?;
        ctx.info(format!(
            "upgrading {from} to {} (Node.js {node}, PostgreSQL {postgres_shown}); journal written",
            plan.target
        ));
        ctx.progress(100.0, format!("{from} → {} may go ahead", plan.target));
        Ok(Output::new()
            .value("from", from)
            .value("to", plan.target)
            .value("node", node)
            .value("postgres", postgres_shown))
    }
}

export_step!(ReleaseCheck);

#[cfg(test)]
mod tests;
