//! `db-restore` step plugin: restores a backup's `db.dump` (`pg_dump -Fc`) into PostgreSQL.
//!
//! The connection comes from the service's `.env` (`DATABASE_URL` by default, read by
//! [`dotenv::lookup`] and parsed by [`url::parse`]); the host runs
//! `pg_restore --single-transaction --clean --if-exists --no-owner --no-password --host=H --port=P --username=U
//! --dbname=D <file>` in the dump's folder, with `PGPASSWORD` (and `PGSSLMODE` when the URL sets
//! `sslmode`) in its environment, and the exit status is checked: any failure is a
//! `command-failed` error quoting the end of pg_restore's stderr. The password and the raw URL
//! are never logged or returned.
//!
//! Config (see [`Config`]):
//! - `dump`: guest path of the dump, e.g. `/backup/db.dump`.
//! - `env_file`: guest path of the `.env` holding the connection, e.g. `/backend/.env`.
//! - `variable`: the variable to read, default `DATABASE_URL`.
//! - `target_db`: restore into this database (it must exist) instead of the URL's; default `""`
//!   (the URL's). A plain identifier, `[A-Za-z0-9_]+`.
//! - `single_transaction` (default true): `--single-transaction`, so the database ends exactly as
//!   the dump or unchanged, also when pg_restore is killed.
//! - `journal`: a file written (synced) before pg_restore starts, saying this run changes the
//!   database; removed again when a single-transaction restore fails (nothing changed).
//! - `undo` (needs `journal`): restore `dump` (the run's safety dump) only when `journal` exists,
//!   then remove it; otherwise skip ("this run did not change the database").
//!
//! Grants the step needs: program `pg_restore` with the argument patterns `--single-transaction`, `--clean`,
//! `--if-exists`, `--no-owner`, `--no-password`, `--host={{customer.db.host}}`,
//! `--port={{customer.db.port}}`, `--username={{customer.db.user}}`,
//! `--dbname={{customer.db.name}}` (the host fills them in from the customer's `DATABASE_URL`;
//! `--dbname={{params.targetDb}}` for another database), `db.dump`, and env `PGPASSWORD`, `PGSSLMODE`.
//!
//! Output: `database` (the name restored into).

// `dotenv.rs` and `url.rs` are copies of db-dump's: keep the files identical, so a backup and
// its restore read a `.env` and a URL the same way.
pub use pg_conn::dotenv;
pub use pg_conn::url;

use std::fs::File;
use std::io::Read;

use qodify_plugin_sdk::command::Command;
use qodify_plugin_sdk::prelude::*;

use crate::url::DbTarget;
use qodify_plugin_sdk::path::normalize;

/// Largest `.env` file read.
const MAX_ENV_BYTES: u64 = 1 << 20;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the `pg_dump -Fc` file.
    pub dump: String,
    /// Guest path of the `.env` file holding the connection URL.
    pub env_file: String,
    /// The variable holding the URL.
    #[serde(default = "default_variable")]
    pub variable: String,
    /// Database to restore into instead of the URL's (must exist); empty: the URL's.
    #[serde(default)]
    pub target_db: String,
    /// Restore in one transaction (`--single-transaction`): the database ends either exactly
    /// as the dump or unchanged, also when pg_restore is killed. Default true.
    #[serde(default = "default_true")]
    pub single_transaction: bool,
    /// Guest path of a journal file written (durably) before pg_restore starts, saying the
    /// run is changing the database; the run's `undo` step reads it.
    #[serde(default)]
    pub journal: Option<String>,
    /// Undo mode: restore `dump` (the run's safety dump) only when `journal` exists, i.e. when
    /// this run started changing the database; then remove the journal.
    #[serde(default)]
    pub undo: bool,
}

fn default_true() -> bool {
    true
}

/// What `journal` holds; `restore-files`' undo leaves a folder holding it alone.
pub const JOURNAL_TEXT: &str = r#"{"mode":"db","state":"started"}"#;

fn default_variable() -> String {
    "DATABASE_URL".into()
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Normalised guest path of the dump.
    pub dump: String,
    /// The folder holding it (pg_restore's working folder).
    pub dump_dir: String,
    /// Its file name (pg_restore's argument).
    pub dump_file: String,
    /// Normalised guest path of the `.env` file.
    pub env_file: String,
    /// The variable holding the URL.
    pub variable: String,
    /// Database override; empty: the URL's.
    pub target_db: String,
    /// `--single-transaction`.
    pub single_transaction: bool,
    /// Normalised guest path of the journal file, when set.
    pub journal: Option<String>,
    /// Undo mode.
    pub undo: bool,
}

impl Plan {
    /// Validates `config` (pure: no host calls).
    pub fn new(config: Config) -> Result<Plan, Error> {
        let dump = normalize(&config.dump).map_err(|e| e.context("dump"))?;
        let env_file = normalize(&config.env_file).map_err(|e| e.context("env_file"))?;
        let (dump_dir, dump_file) = match dump.rsplit_once('/') {
            Some((_, "")) | None => {
                return Err(Error::invalid_config(format!(
                    "dump `{dump}` names no file; point it at the backup's db.dump"
                )));
            }
            Some(("", file)) => ("/".to_string(), file.to_string()),
            Some((dir, file)) => (dir.to_string(), file.to_string()),
        };
        if dump_file.starts_with('-') {
            return Err(Error::invalid_config(format!(
                "dump file name `{dump_file}` starts with `-`, which pg_restore would read as an \
                 option; rename the file"
            )));
        }
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
        let target_db = config.target_db;
        if !target_db.is_empty()
            && !target_db
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::invalid_config(format!(
                "target_db `{target_db}` must be a plain database name ([A-Za-z0-9_]+), or empty \
                 for the database of {variable}"
            )));
        }
        let journal = config
            .journal
            .as_deref()
            .map(|j| normalize(j).map_err(|e| e.context("journal")))
            .transpose()?;
        if config.undo && journal.is_none() {
            return Err(Error::invalid_config(
                "undo needs journal: the file that says this run changed the database",
            ));
        }
        Ok(Plan {
            dump,
            dump_dir,
            dump_file,
            env_file,
            variable,
            target_db,
            single_transaction: config.single_transaction,
            journal,
            undo: config.undo,
        })
    }

    /// The database to restore into: `target_db`, else the URL's.
    pub fn database<'a>(&'a self, url: &'a DbTarget) -> Result<&'a str, Error> {
        if !self.target_db.is_empty() {
            return Ok(&self.target_db);
        }
        // libpq reads a `--dbname` holding `=` (or a URI) as a whole connection string.
        let name = url.database.as_str();
        if name.contains('=') || name.contains("://") || name.chars().any(char::is_control) {
            return Err(Error::invalid_config(format!(
                "the database name in {} of {} holds `=`, `://` or control characters, which \
                 pg_restore would read as connection settings; set target_db",
                self.variable, self.env_file
            )));
        }
        Ok(name)
    }
}

/// pg_restore's arguments (no secrets: the password goes in the environment).
pub fn pg_restore_args(plan: &Plan, url: &DbTarget, database: &str) -> Vec<String> {
    let mut args = restore_args(url, database, &plan.dump_file);
    if plan.single_transaction {
        args.insert(0, "--single-transaction".into());
    }
    args
}

fn restore_args(url: &DbTarget, database: &str, dump_file: &str) -> Vec<String> {
    vec![
        "--clean".into(),
        "--if-exists".into(),
        "--no-owner".into(),
        "--no-password".into(),
        format!("--host={}", url.host),
        format!("--port={}", url.port),
        format!("--username={}", url.user),
        format!("--dbname={database}"),
        dump_file.to_string(),
    ]
}

/// pg_restore's environment: `PGPASSWORD` when the URL has a password, `PGSSLMODE` when it sets
/// `sslmode`.
pub fn pg_restore_env(url: &DbTarget) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(password) = url.password.as_ref().filter(|p| !p.is_empty()) {
        env.push(("PGPASSWORD", password.clone()));
    }
    if let Some(mode) = &url.sslmode {
        env.push(("PGSSLMODE", mode.clone()));
    }
    env
}

/// Reads the connection URL from the `.env` file.
pub fn read_url(plan: &Plan) -> Result<DbTarget, Error> {
    let file = match File::open(&plan.env_file) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "the env file {} does not exist; check env_file and the step's mount",
                plan.env_file
            )));
        }
        Err(e) => return Err(Error::from(e).context(format!("reading {}", plan.env_file))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", plan.env_file))?;
    if bytes.len() as u64 > MAX_ENV_BYTES {
        return Err(Error::invalid_config(format!(
            "env file {} is over 1 MiB; point env_file at the service's .env",
            plan.env_file
        )));
    }
    url_from_env(&String::from_utf8_lossy(&bytes), plan)
}

/// Finds and parses the connection URL in `.env` text; errors name the file and variable,
/// never the value.
pub fn url_from_env(text: &str, plan: &Plan) -> Result<DbTarget, Error> {
    let (variable, env_file) = (&plan.variable, &plan.env_file);
    let value = dotenv::lookup(text, variable).ok_or_else(|| {
        Error::not_found(format!(
            "{variable} is not set in {env_file}; point env_file at the .env holding the \
             database URL, or set variable to the name that holds it"
        ))
    })?;
    if value.trim().is_empty() {
        return Err(Error::invalid_config(format!(
            "{variable} in {env_file} is empty; set it to the database URL"
        )));
    }
    if value.contains("${") {
        return Err(Error::invalid_config(format!(
            "{variable} in {env_file} uses ${{…}} expansion, which is not supported; write the \
             URL out"
        )));
    }
    url::parse(&value).map_err(|e| {
        Error::invalid_config(format!(
            "{variable} in {env_file} is not a usable PostgreSQL URL: {e}"
        ))
    })
}

/// Replaces the password in a message, should a program echo it.
fn redact(message: &str, url: &DbTarget) -> String {
    match url.password.as_deref() {
        Some(pw) if pw.len() >= 4 => message.replace(pw, "<redacted>"),
        _ => message.to_string(),
    }
}

struct DbRestore;

impl Step for DbRestore {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        if plan.undo {
            let journal = plan.journal.as_deref().unwrap_or_default();
            if std::fs::symlink_metadata(journal).is_err() {
                ctx.info("this run did not change the database; nothing to put back");
                return Ok(Output::new().value("skipped", true));
            }
            ctx.info(format!(
                "this run started changing the database: putting it back from {}",
                plan.dump
            ));
        }
        let url = read_url(&plan)?;
        for name in &url.ignored_params {
            ctx.debug(format!("ignoring the URL parameter `{name}`"));
        }
        let database = plan.database(&url)?.to_string();
        let meta = std::fs::metadata(&plan.dump).map_err(|e| {
            Error::from(e).context(format!(
                "reading the dump {} (does this backup include the database?)",
                plan.dump
            ))
        })?;
        if !meta.is_file() {
            return Err(Error::invalid_config(format!(
                "dump {} is not a file; point it at the backup's db.dump",
                plan.dump
            )));
        }
        ctx.info(format!(
            "restoring {} ({:.1} MiB) into database {database} on {}:{} as {}",
            plan.dump,
            meta.len() as f64 / 1048576.0,
            url.host,
            url.port,
            url.user
        ));
        ctx.progress(0.0, format!("restoring database {database}"));
        let mut cmd = Command::new("pg_restore")
            .args(pg_restore_args(&plan, &url, &database))
            .cwd(plan.dump_dir.clone());
        for (name, value) in pg_restore_env(&url) {
            cmd = cmd.env(name, value);
        }
        if let (Some(journal), false) = (&plan.journal, plan.undo) {
            write_journal(journal)?;
        }
        let restored = cmd
            .run()
            .and_then(|out| out.check())
            .map_err(|e| Error::new(e.kind(), redact(e.message(), &url)));
        if let Some(journal) = &plan.journal
            && (plan.undo == restored.is_ok())
            && (plan.single_transaction || plan.undo)
        {
            // Undo done, or a failed single-transaction restore: the database is as before.
            remove_journal(journal)?;
        }
        restored?;
        ctx.progress(100.0, format!("restored database {database}"));
        Ok(Output::new().value("database", database))
    }
}

export_step!(DbRestore);

/// Writes the journal durably before the database is touched.
fn write_journal(path: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut file = File::create(path).with_context(|| format!("writing the journal {path}"))?;
    file.write_all(JOURNAL_TEXT.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the journal {path}"))?;
    if let Some((dir, _)) = path.rsplit_once('/') {
        qodify_plugin_sdk::fs::sync_dir(if dir.is_empty() { "/" } else { dir })?;
    }
    Ok(())
}

fn remove_journal(path: &str) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::from(e).context(format!("removing the journal {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> Result<Plan, Error> {
        let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
        Plan::new(config)
    }

    fn default_plan() -> Plan {
        plan(serde_json::json!({"dump": "/backup/db.dump", "env_file": "/backend/.env"})).unwrap()
    }

    #[test]
    fn config_defaults_and_dump_split() {
        let p = default_plan();
        assert_eq!(p.variable, "DATABASE_URL");
        assert_eq!(p.target_db, "");
        assert_eq!(
            (p.dump_dir.as_str(), p.dump_file.as_str()),
            ("/backup", "db.dump")
        );
        let p = plan(serde_json::json!({"dump": "/db.dump", "env_file": "/e/.env"})).unwrap();
        assert_eq!(
            (p.dump_dir.as_str(), p.dump_file.as_str()),
            ("/", "db.dump")
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        for (json, needle) in [
            (
                serde_json::json!({"dump": "db.dump", "env_file": "/e"}),
                "absolute",
            ),
            (
                serde_json::json!({"dump": "/", "env_file": "/e"}),
                "names no file",
            ),
            (
                serde_json::json!({"dump": "/b/-x.dump", "env_file": "/e"}),
                "starts with `-`",
            ),
            (
                serde_json::json!({"dump": "/b/db.dump", "env_file": "/e", "target_db": "a;drop"}),
                "target_db",
            ),
            (
                serde_json::json!({"dump": "/b/db.dump", "env_file": "/e", "target_db": "x y"}),
                "target_db",
            ),
            (
                serde_json::json!({"dump": "/b/db.dump", "env_file": "/e", "variable": "A-B"}),
                "variable",
            ),
            (
                serde_json::json!({"dump": "/b/db.dump", "env_file": "/e", "dbname": "x"}),
                "dbname",
            ),
        ] {
            let err = plan(json.clone()).expect_err(&json.to_string());
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(err.message().contains(needle), "{json}: {err}");
        }
        plan(serde_json::json!({"dump": "/b/db.dump", "env_file": "/e", "target_db": "Shop_2"}))
            .unwrap();
    }

    #[test]
    fn arguments_and_environment() {
        let p = default_plan();
        let env = "DATABASE_URL=postgresql://shop:hunter2@db:6432/shop_prod?sslmode=require\n";
        let url = url_from_env(env, &p).unwrap();
        let db = p.database(&url).unwrap();
        let args = pg_restore_args(&p, &url, db);
        assert_eq!(
            args,
            [
                "--single-transaction",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-password",
                "--host=db",
                "--port=6432",
                "--username=shop",
                "--dbname=shop_prod",
                "db.dump"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("hunter2")));
        assert_eq!(
            pg_restore_env(&url),
            [
                ("PGPASSWORD", "hunter2".to_string()),
                ("PGSSLMODE", "require".to_string())
            ]
        );
        let no_pw = url::parse("postgres://shop@db/shop").unwrap();
        assert!(pg_restore_env(&no_pw).is_empty());
    }

    #[test]
    fn single_transaction_is_the_default_and_undo_needs_a_journal() {
        let p = plan(serde_json::json!({
            "dump": "/b/db.dump", "env_file": "/e", "single_transaction": false
        }))
        .unwrap();
        let url = url::parse("postgres://u:p@h/shop").unwrap();
        assert!(!pg_restore_args(&p, &url, "shop").contains(&"--single-transaction".to_string()));
        let err = plan(serde_json::json!({"dump": "/b/db.dump", "env_file": "/e", "undo": true}))
            .unwrap_err();
        assert!(err.message().contains("journal"), "{err}");
        let p = plan(serde_json::json!({
            "dump": "/s/safety.dump", "env_file": "/e", "undo": true, "journal": "/s/journal.json"
        }))
        .unwrap();
        assert_eq!(p.journal.as_deref(), Some("/s/journal.json"));
    }

    #[test]
    fn target_db_overrides_the_url_database() {
        let p = plan(serde_json::json!({
            "dump": "/backup/db.dump", "env_file": "/backend/.env", "target_db": "shop_restore"
        }))
        .unwrap();
        let url = url::parse("postgres://u:p@h/shop").unwrap();
        assert_eq!(p.database(&url).unwrap(), "shop_restore");
        let args = pg_restore_args(&p, &url, p.database(&url).unwrap());
        assert!(args.contains(&"--dbname=shop_restore".to_string()));
    }

    #[test]
    fn a_database_name_that_libpq_would_read_as_settings_is_refused() {
        let p = default_plan();
        let url = url::parse("postgres://u:p@h/postgres://evil/x").unwrap();
        let err = p.database(&url).unwrap_err();
        assert!(err.message().contains("target_db"), "{err}");
    }

    #[test]
    fn env_errors_say_what_to_do_and_never_quote_the_url() {
        let p = default_plan();
        let err = url_from_env("OTHER=1\n", &p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message()
                .contains("DATABASE_URL is not set in /backend/.env"),
            "{err}"
        );
        let err = url_from_env("DATABASE_URL=mysql://u:hunter2@h/d\n", &p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(!err.message().contains("hunter2"), "{err}");
        assert!(
            err.message().contains("not a usable PostgreSQL URL"),
            "{err}"
        );
    }

    #[test]
    fn messages_are_redacted() {
        let url = url::parse("postgres://u:hunter2@h/d").unwrap();
        assert_eq!(
            redact("FATAL: password hunter2 rejected", &url),
            "FATAL: password <redacted> rejected"
        );
    }
}
