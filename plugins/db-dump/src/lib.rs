//! `db-dump` step plugin: dumps the customer's PostgreSQL database with `pg_dump -Fc` (plan §6
//! step 3), reads the server and pg_dump versions back with `pg_restore --list`, and returns the
//! dump as the artifact `db`.
//!
//! The connection URL comes from a `.env` file (`DATABASE_URL=postgres://user:pw@host:port/db`);
//! the password goes to pg_dump only through `PGPASSWORD`. Neither the password nor the URL is
//! ever logged or put in an error.
//!
//! Config (see [`Config`]): `env_file` (guest path of the `.env`), `variable` (default
//! `DATABASE_URL`), `output` (guest path of the dump, e.g. `/out/db.dump`), `compress` (0-9,
//! default 9).
//!
//! Host commands it runs (grant them in the pipeline), with the output's folder as working folder:
//! - `pg_dump -Fc -Z<compress> -f <file name> --no-password --host=<host> --port=<port>
//!   --username=<user> --dbname=<database>`, env `PGPASSWORD` (when the URL has a password) and
//!   `PGSSLMODE` (when it has `?sslmode=`);
//! - `pg_restore --list <file name>`.
//!
//! Outputs: artifact `db` (the dump) and values `pg-server-version`, `pg-dump-version` (e.g.
//! `15.20`), `database` (the name only) and `db-bytes`.

pub use pg_conn::dotenv;
pub use pg_conn::url;

use std::io::Read as _;
use std::time::Duration;

use qodify_plugin_sdk::prelude::*;
use sha2::{Digest, Sha256};

use crate::url::DbTarget;

/// Read size: WASI moves file data in 64 KiB pieces, fewer, bigger calls are faster.
const BUF_BYTES: usize = 1 << 20;
/// Listing a dump's table of contents is quick; a hang is a bug.
const LIST_TIMEOUT: Duration = Duration::from_secs(300);
/// pg_dump warnings (stderr of a successful dump) logged at most.
const MAX_WARNING_LINES: usize = 20;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the `.env` file holding the database URL, e.g. `/backend/.env`.
    pub env_file: String,
    /// The variable holding the URL.
    #[serde(default = "default_variable")]
    pub variable: String,
    /// Guest path of the dump to write, e.g. `/out/db.dump`, in a writable mount.
    pub output: String,
    /// pg_dump's compression level, 0-9.
    #[serde(default = "default_compress")]
    pub compress: u32,
}

fn default_variable() -> String {
    "DATABASE_URL".to_string()
}

fn default_compress() -> u32 {
    9
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Guest path of the `.env` file.
    pub env_file: String,
    /// The variable holding the URL.
    pub variable: String,
    /// Guest path of the dump.
    pub output: String,
    /// The dump's folder: pg_dump's working folder.
    pub dir: String,
    /// The dump's file name, passed to `-f`.
    pub file_name: String,
    /// Compression level.
    pub compress: u32,
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        if !config.env_file.starts_with('/') {
            return Err(Error::invalid_config(format!(
                "env_file `{}` must be an absolute guest path, e.g. /backend/.env",
                config.env_file
            )));
        }
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-';
        if config.variable.is_empty() || !config.variable.chars().all(name_ok) {
            return Err(Error::invalid_config(format!(
                "variable `{}` is not an environment variable name, e.g. DATABASE_URL",
                config.variable
            )));
        }
        if config.compress > 9 {
            return Err(Error::invalid_config(format!(
                "compress {} is out of range; use 0 (none) to 9 (smallest)",
                config.compress
            )));
        }
        let (dir, file_name) = config
            .output
            .rsplit_once('/')
            .filter(|(dir, name)| {
                dir.starts_with('/')
                    && !name.is_empty()
                    && *name != "."
                    && *name != ".."
                    && !dir.split('/').any(|c| c == "..")
            })
            .ok_or_else(|| {
                Error::invalid_config(format!(
                    "output `{}` must be a file in a mounted folder, e.g. /out/db.dump",
                    config.output
                ))
            })?;
        Ok(Plan {
            dir: dir.to_string(),
            file_name: file_name.to_string(),
            env_file: config.env_file,
            variable: config.variable,
            output: config.output,
            compress: config.compress,
        })
    }
}

/// Finds and parses the URL in the `.env` text; errors name the file and variable, never the
/// value.
pub fn target_from_env(text: &str, env_file: &str, variable: &str) -> Result<DbTarget, Error> {
    let value = dotenv::lookup(text, variable).ok_or_else(|| {
        Error::not_found(format!(
            "{variable} is not set in {env_file}; add the database URL there, or set `variable` \
             to the name that holds it"
        ))
    })?;
    if value.trim().is_empty() {
        return Err(Error::invalid_config(format!(
            "{variable} in {env_file} is empty; set it to the database URL"
        )));
    }
    url::parse(&value).map_err(|e| {
        Error::invalid_config(format!(
            "{variable} in {env_file} is not a usable PostgreSQL URL: {e}"
        ))
    })
}

/// pg_dump's arguments, in the exact forms pipelines grant.
pub fn pg_dump_args(plan: &Plan, target: &DbTarget) -> Vec<String> {
    vec![
        "-Fc".to_string(),
        format!("-Z{}", plan.compress),
        "-f".to_string(),
        plan.file_name.clone(),
        "--no-password".to_string(),
        format!("--host={}", target.host),
        format!("--port={}", target.port),
        format!("--username={}", target.user),
        format!("--dbname={}", target.database),
    ]
}

/// pg_dump's environment: the password and the SSL mode, when given.
pub fn pg_dump_env(target: &DbTarget) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(pw) = &target.password {
        env.push(("PGPASSWORD", pw.clone()));
    }
    if let Some(mode) = &target.sslmode {
        env.push(("PGSSLMODE", mode.clone()));
    }
    env
}

/// Versions a custom-format dump records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// `Dumped from database version: 15.20 (…)` → `15.20`.
    pub server: Option<String>,
    /// `Dumped by pg_dump version: 15.20 (…)` → `15.20`.
    pub pg_dump: Option<String>,
}

/// Reads the versions from `pg_restore --list` output.
pub fn parse_versions(list: &str) -> Versions {
    let find = |label: &str| {
        list.lines().find_map(|line| {
            let (_, rest) = line.split_once(label)?;
            rest.split_whitespace().next().map(str::to_string)
        })
    };
    Versions {
        server: find("Dumped from database version:"),
        pg_dump: find("Dumped by pg_dump version:"),
    }
}

/// Size and lowercase hex SHA-256 of a file, read once in 1 MiB pieces; `on_read` gets the
/// bytes read so far.
pub fn hash_file(path: &str, mut on_read: impl FnMut(u64)) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; BUF_BYTES];
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        on_read(size);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Where the server is, for messages (no secrets).
fn server(target: &DbTarget) -> String {
    if target.host.starts_with('/') {
        format!("socket {} port {}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

struct DbDump;

impl Step for DbDump {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        let text = match std::fs::read(&plan.env_file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(format!(
                    "the env file {} does not exist; check `env_file` and the step's mount",
                    plan.env_file
                )));
            }
            Err(e) => return Err(Error::from(e).context(format!("reading {}", plan.env_file))),
        };
        let target = target_from_env(&text, &plan.env_file, &plan.variable)?;
        drop(text);
        for name in &target.ignored_params {
            ctx.debug(format!("ignoring the URL parameter `{name}`"));
        }
        let where_ = server(&target);
        ctx.info(format!(
            "dumping database {} on {where_} as {}",
            target.database, target.user
        ));
        ctx.progress(0.0, format!("dumping database {}", target.database));

        let mut cmd = Command::new("pg_dump")
            .args(pg_dump_args(&plan, &target))
            .cwd(&plan.dir)
            .stdout(Stdio::Log)
            .stderr(Stdio::Capture);
        for (name, value) in pg_dump_env(&target) {
            cmd = cmd.env(name, value);
        }
        let dumped = cmd.run().and_then(|out| {
            out.check().map_err(|e| {
                Error::command_failed(format!(
                    "dumping database {} on {where_} failed; check that PostgreSQL is running and \
                     that {} in {} is right: {}",
                    target.database,
                    plan.variable,
                    plan.env_file,
                    e.message()
                ))
            })
        });
        let dumped = match dumped {
            Ok(out) => out,
            Err(e) => {
                // A partial dump must not look like a result.
                let _ = std::fs::remove_file(&plan.output);
                return Err(e);
            }
        };
        let warnings = dumped.stderr_text();
        for line in warnings
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(MAX_WARNING_LINES)
        {
            ctx.warn(format!("pg_dump: {line}"));
        }
        ctx.check_cancelled()?;
        let written = std::fs::metadata(&plan.output)
            .with_context(|| format!("pg_dump succeeded but {} is missing", plan.output))?
            .len();
        ctx.progress(
            50.0,
            format!("dump written: {}; reading its versions", mib(written)),
        );

        let listed = Command::new("pg_restore")
            .args(["--list", plan.file_name.as_str()])
            .cwd(&plan.dir)
            .capture_stdout()
            .timeout(LIST_TIMEOUT)
            .run()
            .and_then(CommandOutput::check);
        let listed = match listed {
            Ok(out) => out,
            Err(e) => {
                let _ = std::fs::remove_file(&plan.output);
                return Err(e.context(format!(
                    "pg_dump wrote {} but pg_restore cannot read it back",
                    plan.file_name
                )));
            }
        };
        let versions = parse_versions(&listed.stdout_text());
        if versions.server.is_none() || versions.pg_dump.is_none() {
            ctx.warn("pg_restore --list did not show the server and pg_dump versions");
        }

        let (size, sha256) = hash_file(&plan.output, |done| {
            let pct = if written == 0 {
                100.0
            } else {
                50.0 + 50.0 * done as f64 / written as f64
            };
            ctx.progress(pct as f32, format!("hashing the dump: {}", mib(done)));
        })
        .with_context(|| format!("reading {} back", plan.output))?;
        ctx.progress(100.0, format!("dump ready: {}", mib(size)));
        ctx.info(format!(
            "dumped database {} ({}; server {}, pg_dump {})",
            target.database,
            mib(size),
            versions.server.as_deref().unwrap_or("unknown"),
            versions.pg_dump.as_deref().unwrap_or("unknown"),
        ));

        let mut out = Output::new().artifact("db", &plan.output, size, sha256);
        if let Some(v) = &versions.server {
            out.push_value("pg-server-version", v);
        }
        if let Some(v) = &versions.pg_dump {
            out.push_value("pg-dump-version", v);
        }
        Ok(out
            .value("database", &target.database)
            .value("db-bytes", size))
    }
}

export_step!(DbDump);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Result<Plan, Error> {
        Plan::new(serde_json::from_str(json).map_err(|e| Error::invalid_config(e.to_string()))?)
    }

    #[test]
    fn config_defaults_and_output_split() {
        let p = plan(r#"{"env_file":"/backend/.env","output":"/out/db.dump"}"#).unwrap();
        assert_eq!(p.variable, "DATABASE_URL");
        assert_eq!(p.compress, 9);
        assert_eq!((p.dir.as_str(), p.file_name.as_str()), ("/out", "db.dump"));
        for bad in [
            r#"{"env_file":"/e","output":"db.dump"}"#,
            r#"{"env_file":"/e","output":"/out/"}"#,
            r#"{"env_file":"/e","output":"/db.dump"}"#,
            r#"{"env_file":"/e","output":"/out/../x/db.dump"}"#,
            r#"{"env_file":"e","output":"/out/db.dump"}"#,
            r#"{"env_file":"/e","output":"/out/db.dump","compress":10}"#,
            r#"{"env_file":"/e","output":"/out/db.dump","variable":"A B"}"#,
            r#"{"env_file":"/e","output":"/out/db.dump","level":1}"#,
        ] {
            assert_eq!(
                plan(bad).unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{bad}"
            );
        }
    }

    #[test]
    fn pg_dump_command_line_and_env() {
        let p = plan(r#"{"env_file":"/b/.env","output":"/out/db.dump","compress":6}"#).unwrap();
        let env = "DATABASE_URL=\"postgresql://shop:s%3Acret@db:6000/shop_prod?sslmode=require&schema=public\"\n";
        let t = target_from_env(env, &p.env_file, &p.variable).unwrap();
        assert_eq!(
            pg_dump_args(&p, &t),
            [
                "-Fc",
                "-Z6",
                "-f",
                "db.dump",
                "--no-password",
                "--host=db",
                "--port=6000",
                "--username=shop",
                "--dbname=shop_prod"
            ]
        );
        assert_eq!(
            pg_dump_env(&t),
            [
                ("PGPASSWORD", "s:cret".to_string()),
                ("PGSSLMODE", "require".to_string())
            ]
        );
        let t = target_from_env("DATABASE_URL=postgres://u@h/d", "/e", "DATABASE_URL").unwrap();
        assert!(pg_dump_env(&t).is_empty());
        assert!(pg_dump_args(&p, &t).contains(&"--port=5432".to_string()));
    }

    #[test]
    fn env_errors_name_file_and_variable_never_the_value() {
        let err = target_from_env("OTHER=1\n", "/backend/.env", "DATABASE_URL").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message()
                .starts_with("DATABASE_URL is not set in /backend/.env"),
            "{err}"
        );
        let err = target_from_env("DATABASE_URL=\n", "/b/.env", "DATABASE_URL").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        let err = target_from_env(
            "DATABASE_URL=mysql://root:hunter2@h/db\n",
            "/b/.env",
            "DATABASE_URL",
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(
            err.message()
                .starts_with("DATABASE_URL in /b/.env is not a usable PostgreSQL URL"),
            "{err}"
        );
        assert!(
            !err.message().contains("hunter2") && !err.message().contains("root"),
            "{err}"
        );
    }

    #[test]
    fn versions_from_pg_restore_list() {
        let list = ";\n; Archive created at 2026-11-26 10:15:02 UTC\n;     dbname: shop\n\
;     TOC Entries: 215\n;     Compression: gzip\n;     Dump Version: 1.15-0\n;     Format: CUSTOM\n\
;     Dumped from database version: 15.20 (Debian 15.20-1.pgdg120+1)\n\
;     Dumped by pg_dump version: 16.4 (Ubuntu 16.4-1)\n;\n;\n; Selected TOC Entries:\n";
        assert_eq!(
            parse_versions(list),
            Versions {
                server: Some("15.20".into()),
                pg_dump: Some("16.4".into())
            }
        );
        assert_eq!(parse_versions("garbage"), Versions::default());
    }

    #[test]
    fn hashing_matches_sha256() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db.dump");
        let data = vec![1u8; BUF_BYTES + 3];
        std::fs::write(&path, &data).unwrap();
        let mut last = 0;
        let (size, sha) = hash_file(path.to_str().unwrap(), |n| last = n).unwrap();
        assert_eq!((size, last), (data.len() as u64, data.len() as u64));
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
    }
}
