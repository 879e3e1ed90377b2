//! Restoring the pre-upgrade database in one transaction: the dump's schemas (and `public`) are
//! dropped with everything the migrations put in them, then the dump's SQL runs, all inside
//! `psql --single-transaction` with `ON_ERROR_STOP`. The connection comes from the old release's
//! `.env` (`pg_conn`); the password goes to `PGPASSWORD` and never into a message.

use std::io::Read as _;

use pg_conn::url::DbTarget;
use qodify_plugin_sdk::command::{Command, Stdio};
use qodify_plugin_sdk::prelude::*;

/// Largest `.env` file read.
const MAX_ENV_BYTES: u64 = 1 << 20;
/// The dump's file name inside a backup folder.
pub const DUMP: &str = "db.dump";
/// The SQL script written into the work folder.
pub const SCRIPT: &str = "restore-db.sql";
/// The script that creates `public` again, written into the work folder, run before [`SCRIPT`].
pub const PUBLIC_SCRIPT: &str = "restore-public.sql";

/// `public` as initdb makes it (owner and privileges differ from PostgreSQL 15 on). pg_restore
/// never creates `public` ("initdb creates it"), even when the dump lists it, so after dropping
/// it the rollback must create it, and as the default: a schema created plainly would be owned
/// by whoever ran the rollback and dumped as such, and the next restore would trip over it.
/// The dump's own `COMMENT`/`ACL` entries for `public`, if it had any, run afterwards.
pub const PUBLIC_SQL: &str = "\
-- Written by qodify-host's upgrade-rollback: `public` was dropped, pg_restore never creates it.
DO $qodify$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    CREATE SCHEMA public AUTHORIZATION pg_database_owner;
    GRANT USAGE ON SCHEMA public TO PUBLIC;
  ELSE
    CREATE SCHEMA public;
    GRANT ALL ON SCHEMA public TO PUBLIC;
  END IF;
  COMMENT ON SCHEMA public IS 'standard public schema';
END
$qodify$;
";

/// `db` in the step's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// Guest path of the customer's `backups` folder.
    #[serde(default = "default_backups")]
    pub backups: String,
    /// The `.env` holding the URL, relative to the old release's folder.
    #[serde(default = "default_env_file")]
    pub env_file: String,
    /// The variable holding the URL.
    #[serde(default = "default_variable")]
    pub variable: String,
    /// Guest path of a writable scratch folder (the run's work folder).
    #[serde(default = "default_work")]
    pub work: String,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            backups: default_backups(),
            env_file: default_env_file(),
            variable: default_variable(),
            work: default_work(),
        }
    }
}

fn default_backups() -> String {
    "/backups".into()
}
fn default_env_file() -> String {
    "backend/.env".into()
}
fn default_variable() -> String {
    "DATABASE_URL".into()
}
fn default_work() -> String {
    "/work".into()
}

/// A checked `db` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPlan {
    /// The backups folder.
    pub backups: String,
    /// The `.env` path relative to a release folder.
    pub env_file: String,
    /// The variable.
    pub variable: String,
    /// The work folder.
    pub work: String,
}

impl DbPlan {
    /// Validates (pure).
    pub fn new(c: DbConfig) -> Result<DbPlan, Error> {
        let backups =
            qodify_plugin_sdk::path::normalize(&c.backups).map_err(|e| e.context("db.backups"))?;
        let work = qodify_plugin_sdk::path::normalize(&c.work).map_err(|e| e.context("db.work"))?;
        let env_ok = !c.env_file.is_empty()
            && !c.env_file.starts_with('/')
            && c.env_file
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        if !env_ok {
            return Err(Error::invalid_config(format!(
                "db.env_file `{}` must be a path inside the release folder, e.g. backend/.env",
                c.env_file
            )));
        }
        let mut chars = c.variable.chars();
        let plain = chars
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !plain {
            return Err(Error::invalid_config(format!(
                "db.variable `{}` is not an environment variable name like DATABASE_URL",
                c.variable
            )));
        }
        Ok(DbPlan {
            backups,
            env_file: c.env_file,
            variable: c.variable,
            work,
        })
    }
}

/// A backup id: `YYYYMMDD-HHMMSS`.
pub fn is_backup_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 15
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit())
}

/// The schemas a `pg_restore --list` table of contents creates.
pub fn toc_schemas(toc: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in toc.lines() {
        if line.trim_start().starts_with(';') {
            continue;
        }
        let Some((_, rest)) = line.split_once(';') else {
            continue;
        };
        // `<oid> <oid> SCHEMA - <name> <owner>`
        let tokens: Vec<&str> = rest.split_whitespace().collect();
        if tokens.len() >= 6 && tokens[2] == "SCHEMA" && tokens[3] == "-" {
            let name = tokens[4..tokens.len() - 1].join(" ");
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first script psql runs ([`PUBLIC_SCRIPT`]): drop `public` and the dump's schemas, then
/// create `public` again ([`PUBLIC_SQL`]). In a file, not in `-c` arguments: the step's grant
/// then names fixed arguments only, never SQL text a pattern would have to admit.
pub fn drop_and_public_sql(schemas: &[String]) -> String {
    let mut drop: Vec<&str> = vec!["public"];
    drop.extend(
        schemas
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "public"),
    );
    let mut out = String::new();
    for schema in drop {
        out.push_str(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE;\n",
            quote_ident(schema)
        ));
    }
    out.push_str(PUBLIC_SQL);
    out
}

/// psql's arguments: run [`PUBLIC_SCRIPT`] (drops the schemas, creates `public` again), then
/// the dump's script; one transaction, stop at the first error. No secrets.
pub fn psql_args(url: &DbTarget, database: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "--no-password"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    args.push(format!("--host={}", url.host));
    args.push(format!("--port={}", url.port));
    args.push(format!("--username={}", url.user));
    args.push(format!("--dbname={database}"));
    for script in [PUBLIC_SCRIPT, SCRIPT] {
        args.push("-f".into());
        args.push(script.into());
    }
    args
}

/// The environment for psql: `PGPASSWORD`, `PGSSLMODE` when set.
pub fn pg_env(url: &DbTarget) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(pw) = url.password.as_ref().filter(|p| !p.is_empty()) {
        env.push(("PGPASSWORD", pw.clone()));
    }
    if let Some(mode) = &url.sslmode {
        env.push(("PGSSLMODE", mode.clone()));
    }
    env
}

/// The database to restore into, refusing names libpq would read as connection settings.
pub fn database_of(url: &DbTarget, variable: &str, env_file: &str) -> Result<String, Error> {
    let name = url.database.as_str();
    if name.is_empty()
        || name.contains('=')
        || name.contains("://")
        || name.chars().any(char::is_control)
    {
        return Err(Error::invalid_config(format!(
            "the database name in {variable} of {env_file} is empty or holds `=`, `://` or \
             control characters; fix the URL"
        )));
    }
    Ok(name.to_string())
}

/// Reads and parses the URL in `env_file`; errors name the file and variable, never the value.
pub fn read_url(env_file: &str, variable: &str) -> Result<DbTarget, Error> {
    let file = std::fs::File::open(env_file).map_err(|e| {
        Error::from(e).context(format!(
            "reading {env_file} for the database URL of the old release"
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {env_file}"))?;
    if bytes.len() as u64 > MAX_ENV_BYTES {
        return Err(Error::invalid_config(format!("{env_file} is over 1 MiB")));
    }
    let value = pg_conn::dotenv::lookup(&String::from_utf8_lossy(&bytes), variable)
        .ok_or_else(|| Error::not_found(format!("{variable} is not set in {env_file}")))?;
    pg_conn::url::parse(&value).map_err(|e| {
        Error::invalid_config(format!(
            "{variable} in {env_file} is not a usable PostgreSQL URL: {e}"
        ))
    })
}

fn redact(message: &str, url: &DbTarget) -> String {
    match url.password.as_deref() {
        Some(pw) if pw.len() >= 4 => message.replace(pw, "<redacted>"),
        _ => message.to_string(),
    }
}

/// Restores backup `id`'s dump into the database of `env_file` (see the module docs).
pub fn restore(ctx: &Context, plan: &DbPlan, id: &str, env_file: &str) -> Result<(), Error> {
    let dir = format!("{}/{id}", plan.backups);
    let dump = format!("{dir}/{DUMP}");
    match std::fs::metadata(&dump) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(Error::invalid_config(format!("{dump} is not a file"))),
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                format!("cannot be read ({e})")
            };
            return Err(Error::not_found(format!(
                "the pre-upgrade backup's dump {dump} {why}; without it the database cannot be \
                 put back"
            )));
        }
    }
    let url = read_url(env_file, &plan.variable)?;
    let database = database_of(&url, &plan.variable, env_file)?;
    ctx.info(format!(
        "restoring database {database} on {}:{} as {} from backup {id}",
        url.host, url.port, url.user
    ));
    let toc = Command::new("pg_restore")
        .args(["--list", DUMP])
        .cwd(dir.clone())
        .stdout(Stdio::Capture)
        .run()?
        .check()
        .map_err(|e| e.context(format!("reading the table of contents of {dump}")))?;
    let schemas = toc_schemas(&toc.stdout_text());
    let script = format!("{}/{SCRIPT}", plan.work);
    let public_script = format!("{}/{PUBLIC_SCRIPT}", plan.work);
    std::fs::write(&public_script, drop_and_public_sql(&schemas))
        .map_err(|e| Error::io(format!("writing {public_script}: {e}")))?;
    Command::new("pg_restore")
        .args(["--clean", "--if-exists", "--no-owner", "--file=-", DUMP])
        .cwd(dir)
        .stdout_to_file(script.clone())
        .run()?
        .check()
        .map_err(|e| e.context(format!("turning {dump} into SQL")))?;
    let mut cmd = Command::new("psql")
        .args(psql_args(&url, &database))
        .cwd(plan.work.clone())
        .stdout(Stdio::Discard);
    for (name, value) in pg_env(&url) {
        cmd = cmd.env(name, value);
    }
    let result = cmd.run().and_then(|o| o.check());
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&public_script);
    result.map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "restoring database {database} (one transaction, rolled back): {}",
                redact(e.message(), &url)
            ),
        )
    })?;
    Ok(())
}
