//! `drill` step plugin: a **restore drill**. It proves a backup can be restored without touching
//! the customer: the backup's `db.dump` goes into a scratch database, its archives into a
//! scratch folder, both are checked, and both are dropped. `pipelines/drill.toml` runs it as
//! four steps, one per `action`:
//!
//! - `prepare`: picks the backup (`backup`: an id, or `latest` for the newest complete one, by
//!   the rules retention and the host list backups by) and creates the scratch database
//!   `qodify_drill_<run id>` with `createdb`, owned by the customer's own role (from the
//!   backend's `.env`), as the host's drill role (`PGUSER`/`PGPASSFILE`, inherited). Outputs
//!   `backup`, `database`, `db` (whether the backup has a dump).
//! - `check`: as the customer's role, `pg_restore --single-transaction --no-owner` into the
//!   scratch database (a failure is the verdict, with pg_restore's own words), then the tables
//!   of the dump's catalog and each table's `COPY` rows against what the database holds
//!   ([`catalog`]), then the SQL `probe` (when set: it must succeed and return a row); then
//!   every `.tar.gz` of the backup unpacked into the scratch folder by the strict extractor
//!   restores use, its files and bytes compared with backup.json ([`archives`]), and removed
//!   again. Outputs `backup`, `restorable` (`true`/`false`), `reason` (empty when restorable),
//!   `tables`, `rows`, `archives`, `files`, `seconds`. Only a drill that could not run (no
//!   scratch folder, a program missing) fails the step: a backup that does not restore is a
//!   result, which the host stamps in the backup's history.
//! - `verdict`: fails the run with the reason when `check` found the backup not restorable, so
//!   a failed drill is a failed run (alerts, the console), its stamp already taken.
//! - `drop`: `dropdb --if-exists --force` of the scratch database and removal of the scratch
//!   folder; the pipeline runs it `finally`, and `recover = "on_failure"` runs it again after a
//!   crash, so nothing of a drill outlives it.
//!
//! `backup.json` is only read, never written.

pub mod archives;
pub mod catalog;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::time::Instant;

use pg_conn::url::DbTarget;
use qodify_plugin_sdk::command::{Command, CommandOutput};
use qodify_plugin_sdk::fs::FileSystem as _;
use qodify_plugin_sdk::path::normalize;
use qodify_plugin_sdk::prelude::*;
use tar_extract::extract::{Job, Limits, Wording, extract};

/// What every scratch database's name starts with; the run id follows.
pub const DB_PREFIX: &str = "qodify_drill_";
/// Largest `.env` file read.
const MAX_ENV_BYTES: u64 = 1 << 20;
/// How much of a reason is kept: enough for pg_restore's last lines.
const MAX_REASON_CHARS: usize = 1500;
/// How many of a failing program's last stderr lines a reason quotes.
const STDERR_LINES: usize = 6;

/// What one step of the drill does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pick the backup, create the scratch database.
    Prepare,
    /// Restore and compare.
    Check,
    /// Fail when the backup is not restorable.
    Verdict,
    /// Drop the scratch database and folder.
    Drop,
}

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What this step does.
    pub action: Action,
    /// Guest path of the customer's `backups` folder (`prepare`, `check`).
    #[serde(default)]
    pub backups: Option<String>,
    /// The backup id, or `latest` (`prepare`).
    #[serde(default)]
    pub backup: Option<String>,
    /// Guest path of the `.env` holding the connection URL.
    #[serde(default)]
    pub env_file: Option<String>,
    /// The variable holding the URL, default `DATABASE_URL`.
    #[serde(default = "default_variable")]
    pub variable: String,
    /// Guest path of the scratch folder (`check`, `drop`).
    #[serde(default)]
    pub scratch: Option<String>,
    /// SQL that must succeed and return a row in the restored database (`check`); empty: none.
    #[serde(default)]
    pub probe: String,
}

fn default_variable() -> String {
    "DATABASE_URL".into()
}

/// The scratch database of run `run_id`.
pub fn database_name(run_id: &str) -> String {
    format!("{DB_PREFIX}{run_id}")
}

fn required(value: &Option<String>, key: &str, action: &str) -> Result<String, Error> {
    let value = value.as_deref().ok_or_else(|| {
        Error::invalid_config(format!("`{key}` is required for action `{action}`"))
    })?;
    normalize(value).map_err(|e| e.context(key.to_string()))
}

/// Reads and parses the connection URL; errors name the file and variable, never the value.
fn read_url(env_file: &str, variable: &str) -> Result<DbTarget, Error> {
    let file = File::open(env_file).map_err(|e| {
        Error::from(e).context(format!(
            "reading {env_file}, the .env that names the customer's database"
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {env_file}"))?;
    if bytes.len() as u64 > MAX_ENV_BYTES {
        return Err(Error::invalid_config(format!(
            "{env_file} is over 1 MiB; point env_file at the service's .env"
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    let value = pg_conn::dotenv::lookup(&text, variable).ok_or_else(|| {
        Error::not_found(format!(
            "{variable} is not set in {env_file}; the drill restores as the customer's own role"
        ))
    })?;
    pg_conn::url::parse(&value).map_err(|e| {
        Error::invalid_config(format!(
            "{variable} in {env_file} is not a usable PostgreSQL URL: {e}"
        ))
    })
}

/// The connection arguments of the admin programs (`createdb`, `dropdb`): no user, so the
/// inherited `PGUSER` (or the host's user name) is the role.
fn admin_args(url: &DbTarget) -> Vec<String> {
    vec![
        "--no-password".into(),
        format!("--host={}", url.host),
        format!("--port={}", url.port),
    ]
}

/// The connection arguments of the customer's programs (`pg_restore`, `psql`) in the scratch
/// database.
fn customer_args(url: &DbTarget, database: &str) -> Vec<String> {
    vec![
        "--no-password".into(),
        format!("--host={}", url.host),
        format!("--port={}", url.port),
        format!("--username={}", url.user),
        format!("--dbname={database}"),
    ]
}

/// The password and `sslmode`, through the environment.
fn customer_env(cmd: Command, url: &DbTarget) -> Command {
    let mut cmd = cmd;
    if let Some(pw) = url.password.as_ref().filter(|p| !p.is_empty()) {
        cmd = cmd.env("PGPASSWORD", pw.clone());
    }
    if let Some(mode) = &url.sslmode {
        cmd = cmd.env("PGSSLMODE", mode.clone());
    }
    cmd
}

/// Replaces the password in a message, should a program echo it.
fn redact(message: &str, url: &DbTarget) -> String {
    match url.password.as_deref() {
        Some(pw) if pw.len() >= 4 => message.replace(pw, "<redacted>"),
        _ => message.to_string(),
    }
}

/// `program exited with code N: <its last stderr lines>`, for a reason.
fn failure(out: &CommandOutput, url: &DbTarget) -> String {
    let status = match out.exit_code {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".into(),
    };
    let stderr = out.stderr_text();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
    let text = if tail.is_empty() {
        format!("{} {status}", out.program)
    } else {
        format!("{} {status}: {tail}", out.program)
    };
    redact(&text, url)
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

struct Drill;

impl Step for Drill {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        match config.action {
            Action::Prepare => prepare(ctx, &config),
            Action::Check => check(ctx, &config),
            Action::Verdict => verdict(ctx),
            Action::Drop => drop_scratch(ctx, &config),
        }
    }
}

export_step!(Drill);

/// Reads a small `backup.json`, or `None`.
fn read_manifest(path: &str) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut text = String::new();
    file.take(backup_rules::MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= backup_rules::MAX_MANIFEST_BYTES).then_some(text)
}

/// The backup to drill: `wanted`, or the newest complete one for `latest` (or empty).
pub fn pick<'a>(complete: &'a [String], wanted: &str) -> Result<&'a str, Error> {
    if wanted.is_empty() || wanted == "latest" {
        return complete.first().map(String::as_str).ok_or_else(|| {
            Error::not_found("the customer has no complete backup to drill; take a backup first")
        });
    }
    complete
        .iter()
        .find(|id| *id == wanted)
        .map(String::as_str)
        .ok_or_else(|| {
            Error::not_found(format!(
                "backup {wanted} is not a complete backup of this customer; see \
                 `qodify-host backups list`"
            ))
        })
}

fn prepare(ctx: &Context, config: &Config) -> Result<Output, Error> {
    let backups = required(&config.backups, "backups", "prepare")?;
    let env_file = required(&config.env_file, "env_file", "prepare")?;
    let mut listing = Vec::new();
    for entry in fs::list_dir(&backups)? {
        let is_dir = entry.metadata.is_dir();
        let manifest = backup_list::may_be_backup(&entry.name, is_dir)
            .then(|| {
                read_manifest(&format!(
                    "{backups}/{}/{}",
                    entry.name,
                    backup_rules::MANIFEST
                ))
            })
            .flatten();
        listing.push(backup_list::Listed {
            name: entry.name,
            is_dir,
            manifest,
        });
    }
    let (found, _) = backup_list::scan_in(&backups, listing);
    let ids: Vec<String> = found.into_iter().map(|b| b.id).collect();
    let id = pick(&ids, config.backup.as_deref().unwrap_or("latest"))?.to_string();
    let manifest = read_manifest(&format!("{backups}/{id}/{}", backup_rules::MANIFEST))
        .ok_or_else(|| Error::io(format!("backup {id}: backup.json cannot be read")))?;
    let database = database_name(ctx.run_id());
    let has_db = archives::has_db_dump(&manifest);
    ctx.info(format!("drilling backup {id}"));
    if !has_db {
        ctx.info(format!(
            "backup {id} has no db.dump: only its archives are drilled"
        ));
        return Ok(Output::new()
            .value("backup", &id)
            .value("database", &database)
            .value("db", false));
    }
    let url = read_url(&env_file, &config.variable)?;
    let mut args = admin_args(&url);
    args.push(format!("--owner={}", url.user));
    args.push(database.clone());
    let out = Command::new("createdb").args(args).run()?;
    if !out.success() {
        return Err(Error::command_failed(format!(
            "the scratch database {database} could not be created ({}); the drill's role \
             (PGUSER in the host's environment, else the host's user) needs CREATEDB and \
             membership in role {}: see docs/operations.md, \"Restore drills\"",
            failure(&out, &url),
            url.user
        )));
    }
    ctx.info(format!(
        "created the scratch database {database} owned by {}",
        url.user
    ));
    Ok(Output::new()
        .value("backup", &id)
        .value("database", &database)
        .value("db", true))
}

/// What `check` found.
#[derive(Debug, Default)]
struct Findings {
    problems: Vec<String>,
    tables: u64,
    rows: u64,
    archives: u64,
    files: u64,
}

fn check(ctx: &Context, config: &Config) -> Result<Output, Error> {
    let started = Instant::now();
    let backups = required(&config.backups, "backups", "check")?;
    let scratch = required(&config.scratch, "scratch", "check")?;
    let prepared = ctx
        .previous()
        .iter()
        .rev()
        .find(|s| s.value("database").is_some() && s.value("backup").is_some())
        .ok_or_else(|| {
            Error::invalid_config("no earlier `prepare` step named the backup and database")
        })?;
    let id = prepared.value("backup").unwrap_or_default().to_string();
    let database = prepared.value("database").unwrap_or_default().to_string();
    let folder = format!("{backups}/{id}");
    let mut found = Findings::default();
    if prepared.value("db") == Some("true") {
        let env_file = required(&config.env_file, "env_file", "check")?;
        let url = read_url(&env_file, &config.variable)?;
        check_database(
            ctx,
            &folder,
            &scratch,
            &database,
            &url,
            &config.probe,
            &mut found,
        )?;
    }
    let manifest = read_manifest(&format!("{folder}/{}", backup_rules::MANIFEST))
        .ok_or_else(|| Error::io(format!("backup {id}: backup.json cannot be read")))?;
    match archives::listed(&manifest) {
        Ok(listed) => check_archives(ctx, &folder, &scratch, &listed, &mut found)?,
        Err(e) => found.problems.push(e),
    }
    let restorable = found.problems.is_empty();
    let reason = shorten(&found.problems.join("; "));
    let seconds = started.elapsed().as_secs_f64();
    if restorable {
        ctx.info(format!(
            "backup {id} is restorable: {} tables, {} rows, {} archives with {} files, in {seconds:.1} s",
            found.tables, found.rows, found.archives, found.files
        ));
    } else {
        ctx.error(format!("backup {id} is NOT restorable: {reason}"));
    }
    ctx.progress(100.0, "drill checked");
    Ok(Output::new()
        .value("backup", &id)
        .value("restorable", restorable)
        .value("reason", reason)
        .value("tables", found.tables)
        .value("rows", found.rows)
        .value("archives", found.archives)
        .value("files", found.files)
        .value("seconds", format!("{seconds:.1}")))
}

fn check_database(
    ctx: &Context,
    folder: &str,
    scratch: &str,
    database: &str,
    url: &DbTarget,
    probe: &str,
    found: &mut Findings,
) -> Result<(), Error> {
    ctx.progress(0.0, format!("restoring db.dump into {database}"));
    let mut args = vec!["--single-transaction".to_string(), "--no-owner".to_string()];
    args.extend(customer_args(url, database));
    args.push("db.dump".into());
    let out = customer_env(Command::new("pg_restore").args(args).cwd(folder), url).run()?;
    if !out.success() {
        found
            .problems
            .push(format!("db.dump does not restore: {}", failure(&out, url)));
        return Ok(());
    }
    ctx.progress(40.0, "reading the dump's catalog and data");
    let out = Command::new("pg_restore")
        .args(["--list", "db.dump"])
        .cwd(folder)
        .capture_stdout()
        .run()?;
    if !out.success() {
        found.problems.push(format!(
            "db.dump's catalog cannot be read: {}",
            failure(&out, url)
        ));
        return Ok(());
    }
    let toc = catalog::toc_tables(&out.stdout_text());
    let data_file = format!("{scratch}/data.sql");
    let out = Command::new("pg_restore")
        .args(["--data-only", "--file=-", "db.dump"])
        .cwd(folder)
        .stdout_to_file(data_file.clone())
        .run()?;
    let data = if out.success() {
        let file = File::open(&data_file).with_context(|| format!("reading {data_file}"))?;
        let rows = catalog::copy_rows(BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("reading {data_file}"))?;
        let _ = std::fs::remove_file(&data_file);
        rows
    } else {
        let _ = std::fs::remove_file(&data_file);
        found.problems.push(format!(
            "db.dump's data cannot be read: {}",
            failure(&out, url)
        ));
        return Ok(());
    };
    ctx.progress(55.0, "counting the restored rows");
    let psql = |sql: &str| -> Result<CommandOutput, Error> {
        let mut args = vec!["-X".to_string(), "-A".into(), "-t".into(), "-q".into()];
        args.extend(customer_args(url, database));
        args.extend([
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-c".into(),
            sql.into(),
        ]);
        customer_env(Command::new("psql").args(args).cwd(scratch), url)
            .capture_stdout()
            .run()
    };
    let out = psql(catalog::COUNT_QUERY)?;
    if !out.success() {
        found.problems.push(format!(
            "the restored tables cannot be counted: {}",
            failure(&out, url)
        ));
        return Ok(());
    }
    match catalog::db_rows(&out.stdout_text()) {
        Ok(db) => {
            found.tables = db.len() as u64;
            found.rows = db.values().sum();
            found.problems.extend(catalog::compare(&toc, &data, &db));
            log_counts(ctx, &data, &db);
        }
        Err(e) => found.problems.push(e),
    }
    if !probe.trim().is_empty() {
        let out = psql(probe)?;
        if !out.success() {
            found
                .problems
                .push(format!("the probe failed: {}", failure(&out, url)));
        } else if out.stdout_text().trim().is_empty() {
            found
                .problems
                .push(format!("the probe returned no row: {probe}"));
        } else {
            ctx.info("the probe returned a row");
        }
    }
    Ok(())
}

fn log_counts(
    ctx: &Context,
    data: &BTreeMap<catalog::Table, u64>,
    db: &BTreeMap<catalog::Table, u64>,
) {
    for ((schema, name), rows) in db {
        let dumped = data
            .get(&(schema.clone(), name.clone()))
            .map_or_else(|| "no data".to_string(), |n| format!("{n} rows"));
        ctx.debug(format!(
            "{schema}.{name}: {rows} rows restored, dump: {dumped}"
        ));
    }
}

const WORDING: Wording = Wording {
    doing: "drilling",
    done: "unpacked",
    folder: "the drill's scratch folder",
    jobs: "drills",
    if_rejected: "this archive cannot be restored as it is",
    if_damaged: "take a new backup",
};

fn check_archives(
    ctx: &Context,
    folder: &str,
    scratch: &str,
    listed: &[archives::Listed],
    found: &mut Findings,
) -> Result<(), Error> {
    let per = 40.0 / listed.len().max(1) as f32;
    for (i, archive) in listed.iter().enumerate() {
        ctx.check_cancelled()?;
        let label = archive.file.trim_end_matches(".tar.gz");
        let dest = format!("{scratch}/{label}");
        fs::HostFs.remove_tree(&dest)?;
        std::fs::create_dir(&dest).with_context(|| format!("creating {dest}"))?;
        let start = 60.0 + per * i as f32;
        let job = Job {
            archive: &format!("{folder}/{}", archive.file),
            dest: &dest,
            limits: Limits {
                max_entries: 2_000_000,
                max_total_bytes: 256 << 30,
                max_entry_bytes: 64 << 30,
            },
            wording: &WORDING,
            label,
            collect_files: false,
            progress: start..start + per,
        };
        let unpacked = extract(&fs::HostFs, ctx, &job);
        // The scratch copy goes at once: the next archive gets its space.
        fs::HostFs.remove_tree(&dest)?;
        match unpacked {
            Ok(x) => {
                found.archives += 1;
                found.files += x.files;
                found
                    .problems
                    .extend(archives::compare(archive, x.files, x.bytes));
                ctx.debug(format!(
                    "{}: {} files, {} bytes unpacked",
                    archive.file, x.files, x.bytes
                ));
            }
            Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
            Err(e) => {
                found
                    .problems
                    .push(format!("{} does not unpack: {}", archive.file, e.message()))
            }
        }
    }
    Ok(())
}

fn verdict(ctx: &Context) -> Result<Output, Error> {
    let checked = ctx
        .previous()
        .iter()
        .rev()
        .find(|s| s.value("restorable").is_some())
        .ok_or_else(|| Error::invalid_config("no earlier `check` step gave a verdict"))?;
    let id = checked.value("backup").unwrap_or_default();
    match checked.value("restorable") {
        Some("true") => {
            ctx.info(format!("backup {id} is restorable"));
            Ok(Output::new().value("restorable", true))
        }
        _ => Err(Error::io(format!(
            "backup {id} is not restorable: {}",
            checked.value("reason").unwrap_or_default()
        ))),
    }
}

fn drop_scratch(ctx: &Context, config: &Config) -> Result<Output, Error> {
    if let Some(scratch) = &config.scratch {
        let scratch = normalize(scratch).map_err(|e| e.context("scratch"))?;
        if ctx.mount_for(&scratch).is_some() {
            for entry in fs::list_dir(&scratch).unwrap_or_default() {
                fs::HostFs.remove_tree(&format!("{scratch}/{}", entry.name))?;
            }
        }
    }
    let env_file = required(&config.env_file, "env_file", "drop")?;
    let url = read_url(&env_file, &config.variable)?;
    let database = database_name(ctx.run_id());
    let mut args = admin_args(&url);
    args.extend(["--if-exists".into(), "--force".into(), database.clone()]);
    let out = Command::new("dropdb").args(args).run()?;
    if !out.success() {
        return Err(Error::command_failed(format!(
            "the scratch database {database} could not be dropped ({}); drop it by hand \
             (`dropdb --force {database}`), then `qodify-host recover`",
            failure(&out, &url)
        )));
    }
    ctx.info(format!(
        "the scratch database {database} is gone (if it was there)"
    ));
    Ok(Output::new().value("dropped", &database))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_the_newest_and_an_unknown_id_is_refused() {
        let ids = vec!["20261207-030000".to_string(), "20261206-030000".to_string()];
        assert_eq!(pick(&ids, "latest").unwrap(), "20261207-030000");
        assert_eq!(pick(&ids, "").unwrap(), "20261207-030000");
        assert_eq!(pick(&ids, "20261206-030000").unwrap(), "20261206-030000");
        let err = pick(&ids, "20261205-030000").unwrap_err();
        assert!(err.message().contains("not a complete backup"), "{err}");
        assert!(
            pick(&[], "latest")
                .unwrap_err()
                .message()
                .contains("no complete backup")
        );
    }

    #[test]
    fn the_count_query_is_the_one_the_pipeline_grants() {
        let pipeline = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/drill.toml"),
        )
        .unwrap();
        assert!(
            pipeline.contains(&format!("'''{}'''", catalog::COUNT_QUERY)),
            "pipelines/drill.toml must grant psql exactly catalog::COUNT_QUERY"
        );
        assert!(pipeline.contains(&format!("{DB_PREFIX}{{{{run.id}}}}")));
    }

    #[test]
    fn reasons_quote_the_end_of_stderr_without_the_password() {
        let url = pg_conn::url::parse("postgres://shop:hunter2@db/shop").unwrap();
        let out = CommandOutput {
            program: "pg_restore".into(),
            exit_code: Some(1),
            stdout: vec![],
            stderr: b"pg_restore: error: could not read from input file: end of file\nhunter2\n"
                .to_vec(),
        };
        let text = failure(&out, &url);
        assert_eq!(
            text,
            "pg_restore exited with code 1: pg_restore: error: could not read from input file: \
             end of file | <redacted>"
        );
        assert_eq!(
            shorten(&"x".repeat(2000)).chars().count(),
            MAX_REASON_CHARS + 1
        );
    }

    #[test]
    fn configs_are_checked() {
        let c: Config = serde_json::from_value(serde_json::json!({"action": "drop"})).unwrap();
        assert_eq!(c.action, Action::Drop);
        assert!(required(&c.env_file, "env_file", "drop").is_err());
        assert!(serde_json::from_value::<Config>(serde_json::json!({"action": "x"})).is_err());
        assert!(
            serde_json::from_value::<Config>(serde_json::json!({"action": "check", "nope": 1}))
                .is_err()
        );
    }
}
