//! `manifest` step plugin: writes a backup's `backup.json` (plan §6.2) next to the artifacts the
//! earlier steps produced, and returns it as the artifact `manifest`.
//!
//! The document, in this key order: `formatVersion` (1), `id` (the run timestamp, i.e. the backup
//! folder's name), `customer` {`domain`, `id`}, `timestamp` (ISO 8601 UTC), `type`, `include`,
//! `versions` {`backend`, `admin`, `store`}, `paths` {`uploadsPath`}, `engine` {`node`,
//! `packageManager`, `postgres`, `pgDump`}, `artifacts` [{`name`, `file`, `size`, `sha256`, and for
//! an archive `files` and `bytes`: what its step counted, which a restore drill checks; and
//! `fingerprint` and, for an archive linked from an earlier backup, `reusedFrom`}],
//! `stats` {`totalBytes`, `totalMB`, `durationSeconds`}, `run` {`id`}.
//!
//! Artifacts are those of earlier steps (as the host checked them) whose guest path lies in the
//! output's folder, named relative to it and sorted. Versions come from the services'
//! `package.json`, or from the release tag `current` points to in the blue/green layout; the
//! Postgres versions from an earlier step's `pg-server-version` / `pg-dump-version` outputs
//! (`db-dump`).
//!
//! Config (see [`Config`]): `output` (guest path of `backup.json`), `type` (`fast`|`custom`|`pre-upgrade`),
//! `include` {`db`, `uploads`, `envPm2`, `logs`, `artifacts`} (what the run included),
//! `customer_dir` (guest path of a read-only mount of the customer folder; without it `versions`
//! and `paths` are left out), `started` (the run timestamp `YYYYMMDD-HHMMSS`; default the run's),
//! `uploads_path` (`paths.uploadsPath` as the host found it, `{{customer.path.uploads}}`).
//!
//! Host commands it runs when granted (a missing grant only leaves the value null):
//! `node --version`, and `npm --version` when the backend's `package.json` has no
//! `packageManager`.

pub mod layout;
pub mod stamp;

use std::fs::File;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qodify_plugin_sdk::fs;
use qodify_plugin_sdk::prelude::*;
use serde::Serialize;

use crate::layout::{Facts, Paths, SERVICES, Versions};
use crate::stamp::Stamp;

/// The `formatVersion` this plugin writes: the one the host and retention accept.
pub use backup_rules::FORMAT_VERSION;
/// `node --version` and `npm --version` answer at once; a hang is a broken install.
const VERSION_TIMEOUT: Duration = Duration::from_secs(60);
/// A `package.json` bigger than this is not one to read a version from.
const MAX_PACKAGE_JSON: u64 = 4 << 20;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the manifest, e.g. `/out/backup.json`.
    pub output: String,
    /// The backup type.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// What the run actually included.
    pub include: Include,
    /// Guest path of a read-only mount of the customer folder, e.g. `/customer`.
    #[serde(default)]
    pub customer_dir: Option<String>,
    /// The run timestamp `YYYYMMDD-HHMMSS`; default the run's.
    #[serde(default)]
    pub started: Option<String>,
    /// `paths.uploadsPath` as the host found it (`{{customer.path.uploads}}`); without it the
    /// plugin tells `backend/uploads` from `shared/uploads` by whether the former is a link.
    #[serde(default)]
    pub uploads_path: Option<String>,
}

/// `type` of a backup (plan §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// The recommended set.
    Fast,
    /// Chosen with the include flags.
    Custom,
    /// The fast set, taken by an upgrade before it changes anything (kept while the upgrade can
    /// be rolled back).
    #[serde(rename = "pre-upgrade")]
    PreUpgrade,
}

/// `include` flags (plan §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Include {
    /// The database dump.
    pub db: bool,
    /// `backend/uploads`.
    pub uploads: bool,
    /// `.env` files and the PM2 ecosystem.
    pub env_pm2: bool,
    /// `logs/` folders.
    pub logs: bool,
    /// `node_modules`, `.next`, `dist`.
    pub artifacts: bool,
}

/// The `backup.json` document; field order is the file's key order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupManifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The backup id: the run timestamp, also the folder's name.
    pub id: String,
    /// Who the backup is of.
    pub customer: Customer,
    /// When the run started, ISO 8601 UTC.
    pub timestamp: String,
    /// `fast` or `custom`.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// What was included.
    pub include: Include,
    /// Service versions; absent without `customer_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Versions>,
    /// Where uploads live; absent without `customer_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Paths>,
    /// Tool versions.
    pub engine: Engine,
    /// The backup's files.
    pub artifacts: Vec<ManifestArtifact>,
    /// Totals.
    pub stats: Stats,
    /// The run that made it.
    pub run: Run,
}

/// `customer` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    /// The customer's domain.
    pub domain: String,
    /// installer-api's id.
    pub id: String,
}

/// `engine` section; `null` where unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Engine {
    /// `node --version`, e.g. `v20.20.2`.
    pub node: Option<String>,
    /// `packageManager` of the backend, or `npm <version>`.
    pub package_manager: Option<String>,
    /// The database server's version, e.g. `15.20`.
    pub postgres: Option<String>,
    /// pg_dump's version.
    pub pg_dump: Option<String>,
}

/// One file of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestArtifact {
    /// Its label, e.g. `db`.
    pub name: String,
    /// Path relative to the backup folder.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// For an archive: the regular files in it, as the step that wrote it counted them (its
    /// output `files`); what a restore drill compares the unpacked archive with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// For an archive: those files' bytes (its step's output `bytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The fingerprint of the source an `archive` step made it from: a later backup of an
    /// unchanged source reuses the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The backup whose file this one is (a hard link), when it was reused rather than written.
    #[serde(rename = "reusedFrom", skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
}

/// `stats` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Sum of the artifacts' sizes.
    pub total_bytes: u64,
    /// The same in MiB, two decimals.
    #[serde(rename = "totalMB")]
    pub total_mb: f64,
    /// Seconds from the run's start to this manifest, one decimal.
    pub duration_seconds: f64,
}

/// `run` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The run's id.
    pub id: String,
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Normalised guest path of `backup.json`.
    pub output: String,
    /// Its folder: the backup folder.
    pub dir: String,
    /// The run start.
    pub started: Stamp,
    /// The backup id (`YYYYMMDD-HHMMSS`).
    pub id: String,
    /// `type`.
    pub backup_type: BackupType,
    /// `include`.
    pub include: Include,
    /// Normalised guest path of the customer folder.
    pub customer_dir: Option<String>,
    /// `paths.uploadsPath` when the host gave it.
    pub uploads_path: Option<String>,
}

impl Plan {
    /// Validates `config`; `run_timestamp` is the run's (pure).
    pub fn new(config: Config, run_timestamp: &str) -> Result<Plan, Error> {
        let output = normalize(&config.output).ok_or_else(|| {
            Error::invalid_config(format!(
                "output `{}` must be an absolute guest path like /out/backup.json",
                config.output
            ))
        })?;
        let dir = match output.rsplit_once('/') {
            Some((dir, name)) if !dir.is_empty() && !name.is_empty() => dir.to_string(),
            _ => {
                return Err(Error::invalid_config(format!(
                    "output `{}` must be a file in a mounted folder, e.g. /out/backup.json",
                    config.output
                )));
            }
        };
        let id = config.started.unwrap_or_else(|| run_timestamp.to_string());
        let started = Stamp::parse(&id).ok_or_else(|| {
            Error::invalid_config(format!(
                "started `{id}` is not a YYYYMMDD-HHMMSS timestamp; pass {{{{run.timestamp}}}}"
            ))
        })?;
        let customer_dir = match config.customer_dir {
            None => None,
            Some(raw) => Some(normalize(&raw).ok_or_else(|| {
                Error::invalid_config(format!(
                    "customer_dir `{raw}` must be an absolute guest path like /customer"
                ))
            })?),
        };
        Ok(Plan {
            output,
            dir,
            started,
            id,
            backup_type: config.backup_type,
            include: config.include,
            customer_dir,
            uploads_path: config.uploads_path.filter(|p| !p.is_empty()),
        })
    }
}

impl BackupManifest {
    /// Builds the document (pure). `layout` is `None` without a customer folder; `now` is Unix
    /// seconds when the manifest is written.
    pub fn build(
        ctx: &Context,
        plan: &Plan,
        layout: Option<&Facts>,
        mut engine: Engine,
        now: f64,
    ) -> BackupManifest {
        engine.postgres = previous_value(ctx, "pg-server-version");
        engine.pg_dump = previous_value(ctx, "pg-dump-version");
        let artifacts = artifacts_in(ctx, &plan.dir, &plan.output);
        let total_bytes = artifacts.iter().map(|a| a.size).sum();
        let elapsed = (now - plan.started.unix_seconds() as f64).max(0.0);
        BackupManifest {
            format_version: FORMAT_VERSION,
            id: plan.id.clone(),
            customer: Customer {
                domain: ctx.customer_domain().to_string(),
                id: ctx.customer_id().to_string(),
            },
            timestamp: plan.started.iso8601(),
            backup_type: plan.backup_type,
            include: plan.include,
            versions: layout.map(layout::versions),
            paths: layout.map(|facts| match &plan.uploads_path {
                Some(given) => Paths {
                    uploads_path: given.clone(),
                },
                None => layout::paths(facts),
            }),
            engine,
            artifacts,
            stats: Stats {
                total_bytes,
                total_mb: round_to(total_bytes as f64 / 1048576.0, 100.0),
                duration_seconds: round_to(elapsed, 10.0),
            },
            run: Run {
                id: ctx.run_id().to_string(),
            },
        }
    }
}

/// The last earlier step's output `key`.
fn previous_value(ctx: &Context, key: &str) -> Option<String> {
    ctx.previous()
        .iter()
        .rev()
        .find_map(|s| s.value(key))
        .map(str::to_string)
}

/// Earlier steps' artifacts inside folder `dir` (not `output` itself), relative to it, sorted;
/// a file produced twice is listed once, as last produced.
fn artifacts_in(ctx: &Context, dir: &str, output: &str) -> Vec<ManifestArtifact> {
    let mut by_file = std::collections::BTreeMap::new();
    for (step, artifact) in ctx
        .previous()
        .iter()
        .flat_map(|s| s.artifacts.iter().map(move |a| (s, a)))
    {
        // A step's `fingerprint` and `reused-from` describe its artifact when it has just one.
        let own = |key: &str| {
            (step.artifacts.len() == 1)
                .then(|| step.value(key))
                .flatten()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        // A step's `files`/`bytes` describe its artifact only when it made just the one.
        let counted = |key: &str| {
            (step.artifacts.len() == 1)
                .then(|| step.value(key)?.parse::<u64>().ok())
                .flatten()
        };
        let Some(path) = normalize(&artifact.path) else {
            continue;
        };
        if path == output {
            continue;
        }
        if let Some(file) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
            by_file.insert(
                file.to_string(),
                ManifestArtifact {
                    name: artifact.name.clone(),
                    file: file.to_string(),
                    size: artifact.size,
                    sha256: artifact.sha256.clone(),
                    files: counted("files"),
                    bytes: counted("bytes"),
                    fingerprint: own("fingerprint"),
                    reused_from: own("reused-from"),
                },
            );
        }
    }
    by_file.into_values().collect()
}

fn round_to(value: f64, per_unit: f64) -> f64 {
    (value * per_unit).round() / per_unit
}

/// Lexical normalisation of an absolute guest path; `None` when relative or above `/`.
fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// First line of a `--version` answer, e.g. `v20.20.2`.
pub fn version_line(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

struct ManifestStep;

impl Step for ManifestStep {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config, ctx.run_timestamp())?;
        let facts = match &plan.customer_dir {
            Some(dir) => Some(gather_facts(ctx, dir)?),
            None => {
                ctx.warn(
                    "customer_dir is not set: versions and paths are left out of backup.json; \
                     mount the customer folder read-only and set customer_dir",
                );
                None
            }
        };
        let mut engine = Engine {
            node: tool_version(ctx, "node"),
            ..Engine::default()
        };
        engine.package_manager = facts
            .as_ref()
            .and_then(layout::declared_package_manager)
            .or_else(|| tool_version(ctx, "npm").map(|v| format!("npm {v}")));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let manifest = BackupManifest::build(ctx, &plan, facts.as_ref(), engine, now);
        if plan.include.db && manifest.engine.postgres.is_none() {
            ctx.warn("include.db is set but no earlier step reported pg-server-version");
        }
        let (size, sha256) = write_atomically(&plan, &manifest)?;
        ctx.info(format!(
            "backup.json lists {} artifacts, {} MiB, {} s",
            manifest.artifacts.len(),
            manifest.stats.total_mb,
            manifest.stats.duration_seconds
        ));
        Ok(Output::new().artifact("manifest", &plan.output, size, sha256))
    }
}

export_step!(ManifestStep);

/// Reads what the customer folder says about versions and uploads.
fn gather_facts(ctx: &Context, customer: &str) -> Result<Facts, Error> {
    let meta = fs::stat(customer).map_err(|e| e.context("reading customer_dir"))?;
    if !meta.is_dir() {
        return Err(Error::invalid_config(format!(
            "customer_dir {customer} is not a folder"
        )));
    }
    let mut facts = Facts::default();
    match fs::stat(format!("{customer}/current")) {
        Ok(m) if m.is_symlink() => facts.current_link = m.symlink_target,
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for (slot, service) in facts.packages.iter_mut().zip(SERVICES) {
        *slot = read_small(&format!("{customer}/{service}/package.json"));
    }
    facts.backend_package = facts.packages[0].clone();
    facts.uploads_is_symlink = is_symlink(&format!("{customer}/backend/uploads"))?;
    if let Some(link) = &facts.current_link {
        match layout::release_dir(customer, link) {
            Some(release) => {
                ctx.debug(format!("blue/green layout: current -> {link}"));
                facts.backend_package = read_small(&format!("{release}/backend/package.json"));
                facts.uploads_is_symlink =
                    facts.uploads_is_symlink || is_symlink(&format!("{release}/backend/uploads"))?;
            }
            None => ctx.warn(format!(
                "current points outside the customer folder ({link}); its release is not read"
            )),
        }
    }
    Ok(facts)
}

fn is_symlink(path: &str) -> Result<bool, Error> {
    match fs::stat(path) {
        Ok(m) => Ok(m.is_symlink()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A small text file, or `None` when missing, unreadable or too big.
fn read_small(path: &str) -> Option<String> {
    use std::io::Read as _;
    let file = File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_PACKAGE_JSON).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `<program> --version`, or `None` with a warning when it is not granted or fails.
fn tool_version(ctx: &Context, program: &str) -> Option<String> {
    let result = Command::new(program)
        .arg("--version")
        .capture_stdout()
        .timeout(VERSION_TIMEOUT)
        .run()
        .and_then(CommandOutput::check);
    match result {
        Ok(out) => version_line(&out.stdout_text()).or_else(|| {
            ctx.warn(format!("{program} --version printed nothing"));
            None
        }),
        Err(e) => {
            ctx.warn(format!("{program} version left null: {e}"));
            None
        }
    }
}

/// Writes the manifest to a temporary file and renames it into place, so a crash never leaves a
/// half-written `backup.json`. Returns its size and sha256.
fn write_atomically(plan: &Plan, manifest: &BackupManifest) -> Result<(u64, String), Error> {
    let mut json = serde_json::to_vec_pretty(manifest)?;
    json.push(b'\n');
    let name = plan.output.rsplit('/').next().unwrap_or("backup.json");
    let temp = format!("{}/.{name}.tmp", plan.dir);
    let written = (|| {
        let file = File::create(&temp).with_context(|| format!("creating {temp}"))?;
        let mut out = HashingWriter::new(file);
        out.write_all(&json)
            .with_context(|| format!("writing {temp}"))?;
        let (file, size, sha256) = out.finish();
        file.sync_all().with_context(|| format!("syncing {temp}"))?;
        std::fs::rename(&temp, &plan.output)
            .with_context(|| format!("moving {temp} to {}", plan.output))?;
        Ok((size, sha256))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use qodify_plugin_sdk::{Artifact, StepOutputs};

    fn artifact(name: &str, path: &str, size: u64) -> Artifact {
        Artifact {
            name: name.into(),
            path: path.into(),
            size,
            sha256: format!("{name}-sha"),
        }
    }

    fn ctx() -> Context {
        Context::builder()
            .customer("42", "shop.example.com")
            .run("run-7", "20261126-101500")
            .step_id("manifest")
            .previous(StepOutputs {
                step: "preflight".into(),
                artifacts: vec![],
                values: vec![("estimate-bytes".into(), "1".into())],
            })
            .previous(StepOutputs {
                step: "db".into(),
                artifacts: vec![artifact("db", "/out/db.dump", 1_048_576)],
                values: vec![
                    ("pg-server-version".into(), "15.20".into()),
                    ("pg-dump-version".into(), "15.21".into()),
                    ("database".into(), "shop".into()),
                ],
            })
            .previous(StepOutputs {
                step: "archive-backend".into(),
                artifacts: vec![
                    artifact("backend", "/out/./backend.tar.gz", 524_288),
                    artifact("elsewhere", "/work/tmp/x.bin", 3),
                    artifact("sneaky", "/outside/y", 3),
                ],
                // Three artifacts: whose fingerprint this is cannot be told.
                values: vec![("fingerprint".into(), "fp-backend".into())],
            })
            .previous(StepOutputs {
                step: "archive-uploads".into(),
                artifacts: vec![artifact("uploads", "/out/sub/uploads.tar.gz", 10)],
                values: vec![
                    ("fingerprint".into(), "fp-uploads".into()),
                    ("reused-from".into(), "20261125-101500".into()),
                ],
            })
            .build()
    }

    fn plan(json: &str) -> Result<Plan, Error> {
        let config: Config =
            serde_json::from_str(json).map_err(|e| Error::invalid_config(e.to_string()))?;
        Plan::new(config, "20261126-101500")
    }

    const CONFIG: &str = r#"{"output":"/out/backup.json","type":"fast","customer_dir":"/customer",
        "include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#;

    #[test]
    fn backup_json_has_the_plan_layout_and_key_order() {
        let plan = plan(CONFIG).unwrap();
        let facts = Facts {
            packages: [
                Some(r#"{"version":"1.4.2","packageManager":"npm@10.8.2"}"#.into()),
                Some(r#"{"version":"1.4.0"}"#.into()),
                None,
            ],
            backend_package: Some(r#"{"packageManager":"npm@10.8.2"}"#.into()),
            ..Facts::default()
        };
        let engine = Engine {
            node: Some("v20.20.2".into()),
            package_manager: layout::declared_package_manager(&facts),
            ..Engine::default()
        };
        let now = 1_795_688_100.0 + 83.46;
        let m = BackupManifest::build(&ctx(), &plan, Some(&facts), engine, now);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"formatVersion":1,"id":"20261126-101500","#,
                r#""customer":{"domain":"shop.example.com","id":"42"},"#,
                r#""timestamp":"2026-11-26T10:15:00Z","type":"fast","#,
                r#""include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false},"#,
                r#""versions":{"backend":"1.4.2","admin":"1.4.0","store":null},"#,
                r#""paths":{"uploadsPath":"backend/uploads"},"#,
                r#""engine":{"node":"v20.20.2","packageManager":"npm@10.8.2","postgres":"15.20","pgDump":"15.21"},"#,
                r#""artifacts":["#,
                r#"{"name":"backend","file":"backend.tar.gz","size":524288,"sha256":"backend-sha"},"#,
                r#"{"name":"db","file":"db.dump","size":1048576,"sha256":"db-sha"},"#,
                r#"{"name":"uploads","file":"sub/uploads.tar.gz","size":10,"sha256":"uploads-sha","#,
                r#""fingerprint":"fp-uploads","reusedFrom":"20261125-101500"}],"#,
                r#""stats":{"totalBytes":1572874,"totalMB":1.5,"durationSeconds":83.5},"#,
                r#""run":{"id":"run-7"}}"#
            )
        );
    }

    #[test]
    fn without_customer_dir_versions_and_paths_are_left_out() {
        let plan = plan(
            r#"{"output":"/out/backup.json","type":"custom","started":"20261126-101459",
            "include":{"db":false,"uploads":false,"envPm2":true,"logs":true,"artifacts":false}}"#,
        )
        .unwrap();
        assert_eq!(plan.customer_dir, None);
        let ctx = Context::builder().run("r", "20261126-101500").build();
        let m = BackupManifest::build(&ctx, &plan, None, Engine::default(), 0.0);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["id"], "20261126-101459");
        assert_eq!(json["type"], "custom");
        assert!(json.get("versions").is_none() && json.get("paths").is_none());
        assert_eq!(
            json["engine"],
            serde_json::json!({"node":null,"packageManager":null,"postgres":null,"pgDump":null})
        );
        assert_eq!(json["artifacts"], serde_json::json!([]));
        // A clock behind the run start gives 0, not a negative duration.
        assert_eq!(
            json["stats"],
            serde_json::json!({"totalBytes":0,"totalMB":0.0,"durationSeconds":0.0})
        );
    }

    #[test]
    fn the_manifest_itself_and_duplicates_are_listed_once_or_not_at_all() {
        let ctx = Context::builder()
            .previous(StepOutputs {
                step: "a".into(),
                artifacts: vec![
                    artifact("old", "/out/x.tar.gz", 1),
                    artifact("manifest", "/out/backup.json", 5),
                ],
                values: vec![],
            })
            .previous(StepOutputs {
                step: "b".into(),
                artifacts: vec![artifact("new", "/out//x.tar.gz", 2)],
                values: vec![],
            })
            .build();
        let a = artifacts_in(&ctx, "/out", "/out/backup.json");
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].name.as_str(), a[0].size), ("new", 2));
    }

    #[test]
    fn an_archive_step_s_file_count_and_bytes_go_with_its_artifact() {
        let ctx = Context::builder()
            .previous(StepOutputs {
                step: "archive-uploads".into(),
                artifacts: vec![artifact("uploads", "/out/uploads.tar.gz", 9)],
                values: vec![("files".into(), "4".into()), ("bytes".into(), "70".into())],
            })
            .previous(StepOutputs {
                step: "two".into(),
                artifacts: vec![
                    artifact("a", "/out/a.tar.gz", 1),
                    artifact("b", "/out/b.tar.gz", 1),
                ],
                values: vec![("files".into(), "4".into())],
            })
            .build();
        let a = artifacts_in(&ctx, "/out", "/out/backup.json");
        let uploads = a.iter().find(|a| a.name == "uploads").unwrap();
        assert_eq!((uploads.files, uploads.bytes), (Some(4), Some(70)));
        let json = serde_json::to_value(uploads).unwrap();
        assert_eq!(
            (json["files"].clone(), json["bytes"].clone()),
            (4.into(), 70.into())
        );
        // A step with two artifacts: its counts are not either one's.
        assert!(
            a.iter()
                .filter(|a| a.name != "uploads")
                .all(|a| a.files.is_none())
        );
        assert!(serde_json::to_value(&a[0]).unwrap().get("files").is_none());
    }

    #[test]
    fn config_errors() {
        for bad in [
            r#"{"output":"backup.json","type":"fast","include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#,
            r#"{"output":"/backup.json","type":"fast","include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#,
            r#"{"output":"/out/backup.json","type":"slow","include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#,
            r#"{"output":"/out/backup.json","type":"fast","include":{"db":true,"uploads":true,"env_pm2":true,"logs":false,"artifacts":false}}"#,
            r#"{"output":"/out/backup.json","type":"fast","include":{"db":true}}"#,
            r#"{"output":"/out/backup.json","type":"fast","started":"yesterday","include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#,
            r#"{"output":"/out/backup.json","type":"fast","customer_dir":"customer","include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#,
            r#"{"output":"/out/backup.json","type":"fast","steps":[],"include":{"db":true,"uploads":true,"envPm2":true,"logs":false,"artifacts":false}}"#,
        ] {
            assert_eq!(
                plan(bad).unwrap_err().kind(),
                ErrorKind::InvalidConfig,
                "{bad}"
            );
        }
    }

    #[test]
    fn rounding_and_version_lines() {
        assert_eq!(round_to(1.005 * 1.0, 100.0), 1.0);
        assert_eq!(round_to(2.345_678, 100.0), 2.35);
        assert_eq!(round_to(12.25, 10.0), 12.3);
        assert_eq!(version_line("\nv20.20.2\n").as_deref(), Some("v20.20.2"));
        assert_eq!(version_line("  \n"), None);
    }

    #[test]
    fn writes_pretty_json_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap();
        let mut plan = plan(CONFIG).unwrap();
        plan.output = format!("{dir}/backup.json");
        plan.dir = dir.to_string();
        let m = BackupManifest::build(&ctx(), &plan, None, Engine::default(), 0.0);
        let (size, sha) = write_atomically(&plan, &m).unwrap();
        let bytes = std::fs::read(&plan.output).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(sha.len(), 64);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\n  \"formatVersion\": 1,\n  \"id\": \"20261126-101500\""));
        assert!(text.ends_with("}\n"));
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
