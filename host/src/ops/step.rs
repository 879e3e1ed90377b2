//! One plugin, once, against a folder: `qodify-host step`, the plugin author's test harness.
//!
//! The folder stands in for a customer's folder. The step gets exactly the grants it is given
//! here (mounts inside the folder, programs, origins, limits) and runs through the same engine as
//! a pipeline's step: the same sandbox, the same confinement of programs, the same checks of what
//! it returns. Nothing is recorded and no customer lock is taken.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::customer::Customer;
use crate::engine::caps::{CancelToken, Usage};
use crate::engine::executor::{self, RunRequest};
use crate::engine::plugins::Catalog;
use crate::engine::runtime::Runtime;
use crate::events::{Event, EventSink, RunStatus, VerifiedArtifact};
use crate::pipeline::{
    CommandGrant, HttpGrant, Limits, MountRoot, ParamValue, Plan, PlannedMount, PlannedStep, Stage,
};
use crate::settings::Settings;

/// Why a grant given on the command line is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    /// A mount grant is not `[ro|rw:]PATH=GUEST`.
    #[error(
        "mount grant `{0}`: write [ro:|rw:]PATH=GUEST, PATH relative to the fixture (`.` for all of it), GUEST an absolute path, e.g. rw:backups=/backups"
    )]
    Shape(String),
    /// The path leaves the fixture or is not plain.
    #[error(
        "mount grant `{grant}`: `{path}` must be a plain relative path inside the fixture (no `..`, no leading `/`)"
    )]
    Path {
        /// The grant as given.
        grant: String,
        /// Its path part.
        path: String,
    },
    /// The guest path is not absolute.
    #[error("mount grant `{grant}`: the guest path `{guest}` must be absolute, e.g. /customer")]
    Guest {
        /// The grant as given.
        grant: String,
        /// Its guest part.
        guest: String,
    },
    /// A program grant is not `NAME[:GLOB,…]`.
    #[error(
        "program grant `{0}`: write NAME or NAME:GLOB,GLOB (every argument must match a GLOB; NAME alone allows any argument)"
    )]
    Program(String),
    /// An origin is not `http://HOST:PORT`.
    #[error("origin grant `{grant}`: {why}")]
    Origin {
        /// The grant as given.
        grant: String,
        /// What is wrong.
        why: String,
    },
}

/// Parses a mount grant `[ro:|rw:]PATH=GUEST` (read-only when no prefix is given).
pub fn parse_mount(grant: &str) -> Result<PlannedMount, GrantError> {
    let (writable, rest) = match grant.split_once(':') {
        Some(("rw", rest)) => (true, rest),
        Some(("ro", rest)) => (false, rest),
        _ => (false, grant),
    };
    let (path, guest) = rest
        .split_once('=')
        .ok_or_else(|| GrantError::Shape(grant.to_owned()))?;
    let rel = Path::new(path);
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(GrantError::Path {
            grant: grant.to_owned(),
            path: path.to_owned(),
        });
    }
    if !guest.starts_with('/') || guest.split('/').any(|c| c == ".." || c == ".") {
        return Err(GrantError::Guest {
            grant: grant.to_owned(),
            guest: guest.to_owned(),
        });
    }
    let rel: PathBuf = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Ok(PlannedMount {
        guest: match guest.trim_end_matches('/') {
            "" => "/".to_owned(),
            g => g.to_owned(),
        },
        from: MountRoot::Customer,
        path: rel,
        writable,
        // A writable mount of a folder the fixture lacks is made, like an output folder.
        create: writable,
        optional: false,
        reason: Some(format!("--grant {grant}")),
    })
}

/// Parses a program grant `NAME` (any argument) or `NAME:GLOB,GLOB`.
pub fn parse_program(grant: &str) -> Result<CommandGrant, GrantError> {
    let (program, args) = match grant.split_once(':') {
        Some((p, globs)) => (p, globs.split(',').map(str::to_owned).collect()),
        None => (grant, vec!["*".to_owned()]),
    };
    if program.is_empty() || program.contains('/') {
        return Err(GrantError::Program(grant.to_owned()));
    }
    Ok(CommandGrant {
        program: program.to_owned(),
        args,
        env: Vec::new(),
        inherit: Vec::new(),
        secrets: Default::default(),
        net: Vec::new(),
        bind: Vec::new(),
        reason: Some(format!("--program {grant}")),
    })
}

/// Parses an origin grant `http://HOST:PORT` (PORT may be `*`).
pub fn parse_origin(grant: &str) -> Result<HttpGrant, GrantError> {
    let (host, port) = HttpGrant::parse(grant).map_err(|why| GrantError::Origin {
        grant: grant.to_owned(),
        why,
    })?;
    Ok(HttpGrant {
        origin: grant.to_owned(),
        host,
        port,
        reason: Some(format!("--origin {grant}")),
    })
}

/// Parses a step timeout such as `30s` or `5m`.
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    crate::pipeline::units::parse_duration(text).map_err(|p| format!("{}; {}", p.message, p.hint))
}

/// A param's value from `KEY=VALUE` text: `true`/`false` a bool, digits an int, else text.
pub fn param_value(text: &str) -> ParamValue {
    match text {
        "true" => ParamValue::Bool(true),
        "false" => ParamValue::Bool(false),
        t => t
            .parse::<i64>()
            .map(ParamValue::Int)
            .unwrap_or_else(|_| ParamValue::String(t.to_owned())),
    }
}

/// Reads a step's config from a `.toml` or `.json` file: a table or object.
pub fn read_config(path: &Path) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?
    } else {
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        serde_json::to_value(table)?
    };
    anyhow::ensure!(
        value.is_object(),
        "{}: the config must be a table (TOML) or an object (JSON)",
        path.display()
    );
    Ok(value)
}

/// One step to run.
pub struct StepRun {
    /// The plugin id.
    pub plugin: String,
    /// Pin the plugin's sha256.
    pub sha256: Option<String>,
    /// The folder that stands in for the customer's.
    pub fixture: PathBuf,
    /// The customer the step is told it runs for.
    pub customer: Customer,
    /// The step's config (an object).
    pub config: serde_json::Value,
    /// The run's params.
    pub params: BTreeMap<String, ParamValue>,
    /// Mounts inside the fixture.
    pub mounts: Vec<PlannedMount>,
    /// Host programs.
    pub commands: Vec<CommandGrant>,
    /// HTTP origins.
    pub http: Vec<HttpGrant>,
    /// Memory and time.
    pub limits: Limits,
}

/// Sees every event of the step as it happens.
pub type LiveEvents = Box<dyn Fn(&Event) + Send + Sync>;

/// A log line of the step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogLine {
    /// `trace` … `error`.
    pub level: crate::events::LogLevel,
    /// The line.
    pub message: String,
}

/// A progress report of the step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgressLine {
    /// 0..=100.
    pub percent: f32,
    /// What it said.
    pub message: String,
}

/// What the step was granted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Granted {
    /// Mounts.
    pub mounts: Vec<GrantedMount>,
    /// Program grants.
    pub programs: Vec<GrantedProgram>,
    /// HTTP origins.
    pub origins: Vec<String>,
}

/// A mount as granted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantedMount {
    /// Guest path.
    pub guest: String,
    /// Path inside the fixture (`.` for the fixture itself).
    pub path: String,
    /// Read-write.
    pub writable: bool,
}

/// A program grant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantedProgram {
    /// Program name.
    pub program: String,
    /// Argument patterns.
    pub args: Vec<String>,
}

/// An artifact the step returned, checked by the host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArtifactOut {
    /// Its label.
    pub name: String,
    /// Its guest path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256.
    pub sha256: String,
}

impl From<&VerifiedArtifact> for ArtifactOut {
    fn from(a: &VerifiedArtifact) -> Self {
        Self {
            name: a.name.clone(),
            path: a.guest_path.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Plugin id.
    pub plugin: String,
    /// sha256 of the plugin file that ran.
    pub sha256: String,
    /// `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// The failure (the host's message, with the plugin's kind and text inside).
    pub error: Option<String>,
    /// Key/value outputs, in the order returned.
    pub outputs: Vec<(String, String)>,
    /// Checked artifacts.
    pub artifacts: Vec<ArtifactOut>,
    /// Log lines, in order.
    pub logs: Vec<LogLine>,
    /// Progress reports, in order.
    pub progress: Vec<ProgressLine>,
    /// What it was granted.
    pub granted: Granted,
    /// What it called.
    pub used: Usage,
    /// Wall time of the step.
    pub duration_ms: u64,
}

/// Collects the step's events.
#[derive(Default)]
struct Collect {
    logs: std::sync::Mutex<(Vec<LogLine>, Vec<ProgressLine>)>,
    live: Option<LiveEvents>,
}

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        if let Some(live) = &self.live {
            live(&event);
        }
        let mut got = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::StepLog { level, message, .. } => got.0.push(LogLine { level, message }),
            Event::StepProgress {
                percent, message, ..
            } => got.1.push(ProgressLine { percent, message }),
            _ => {}
        }
    }
}

/// Runs `step` once. `live` sees every event as it happens (the CLI prints log lines as they
/// come). `Err` when the step could not start: an unknown plugin, a pin mismatch, a component
/// that is not a step plugin, a missing fixture.
pub fn run_step(
    runtime: &Runtime,
    settings: &Settings,
    catalog: &Catalog,
    step: StepRun,
    live: Option<LiveEvents>,
) -> anyhow::Result<StepReport> {
    use anyhow::Context as _;
    let fixture = step
        .fixture
        .canonicalize()
        .with_context(|| format!("the fixture folder {}", step.fixture.display()))?;
    anyhow::ensure!(
        fixture.is_dir(),
        "the fixture {} is not a folder",
        fixture.display()
    );
    let (_, bytes) = catalog.read(&step.plugin, step.sha256.as_deref())?;
    let mounts = if step.mounts.is_empty() {
        vec![parse_mount("ro:.=/customer").expect("a valid default")]
    } else {
        step.mounts
    };
    let granted = Granted {
        mounts: mounts
            .iter()
            .map(|m| GrantedMount {
                guest: m.guest.clone(),
                path: if m.path.as_os_str().is_empty() {
                    ".".into()
                } else {
                    m.path.display().to_string()
                },
                writable: m.writable,
            })
            .collect(),
        programs: step
            .commands
            .iter()
            .map(|c| GrantedProgram {
                program: c.program.clone(),
                args: c.args.clone(),
            })
            .collect(),
        origins: step.http.iter().map(|h| h.origin.clone()).collect(),
    };
    let plan = Plan {
        pipeline: format!("step:{}", step.plugin),
        params: step.params,
        output: None,
        stages: vec![Stage {
            group: None,
            steps: vec![PlannedStep {
                id: step.plugin.clone(),
                plugin: step.plugin.clone(),
                sha256: Some(bytes.sha256.clone()),
                description: None,
                config: step.config,
                mounts,
                commands: step.commands,
                http: step.http,
                limits: step.limits,
            }],
        }],
        on_success: Vec::new(),
        on_failure: Vec::new(),
        finally: Vec::new(),
        skipped: Vec::new(),
        backup_complete_after: None,
        backup_pin: None,
        recover_on_failure: false,
    };
    let sink = Arc::new(Collect {
        live,
        ..Default::default()
    });
    let cancel = CancelToken::default();
    let outcome = executor::execute_on_folder(
        runtime,
        RunRequest {
            plan: &plan,
            customer: &step.customer,
            run_id: executor::new_run_id(),
            timestamp: executor::timestamp_now(),
            catalog,
            settings,
            events: sink.clone(),
            cancel,
            recovery: None,
            approvals: None,
        },
        &fixture,
    )?;
    let record = outcome.steps.into_iter().next();
    let (logs, progress) =
        std::mem::take(&mut *sink.logs.lock().unwrap_or_else(|e| e.into_inner()));
    let status = match (outcome.status, &record) {
        (RunStatus::Cancelled, _) => "cancelled".to_owned(),
        (_, Some(r)) => r.status.to_owned(),
        (_, None) => "failed".to_owned(),
    };
    Ok(StepReport {
        plugin: step.plugin,
        sha256: bytes.sha256,
        status,
        error: record
            .as_ref()
            .and_then(|r| r.error.clone())
            .or(outcome.error),
        outputs: record
            .as_ref()
            .map(|r| r.outputs.clone())
            .unwrap_or_default(),
        artifacts: record
            .as_ref()
            .map(|r| r.artifacts.iter().map(ArtifactOut::from).collect())
            .unwrap_or_default(),
        logs,
        progress,
        granted,
        used: record.as_ref().map(|r| r.used.clone()).unwrap_or_default(),
        duration_ms: record.as_ref().map_or(0, |r| r.duration_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_grants_are_plain_paths_inside_the_fixture() {
        let m = parse_mount("rw:backups=/backups").unwrap();
        assert!(m.writable && m.create);
        assert_eq!(
            (m.guest.as_str(), m.path.as_path()),
            ("/backups", Path::new("backups"))
        );
        let m = parse_mount(".=/customer").unwrap();
        assert!(!m.writable);
        assert_eq!(m.path, PathBuf::new());
        let m = parse_mount("ro:backend/./src=/src/").unwrap();
        assert_eq!(
            (m.guest.as_str(), m.path.as_path()),
            ("/src", Path::new("backend/src"))
        );
        for bad in [
            "../x=/x",
            "/etc=/etc",
            "a/../../b=/b",
            "x=relative",
            "x",
            "rw:x=/a/../b",
        ] {
            let err = parse_mount(bad).unwrap_err().to_string();
            assert!(err.contains(bad) || err.contains("write"), "{bad}: {err}");
        }
    }

    #[test]
    fn program_and_origin_grants_say_what_is_wrong() {
        let g = parse_program("pg_dump").unwrap();
        assert_eq!(g.args, ["*"]);
        let g = parse_program("tar:-czf,*.tar.gz").unwrap();
        assert_eq!(g.args, ["-czf", "*.tar.gz"]);
        assert!(parse_program("/bin/sh").is_err());
        assert!(parse_origin("http://127.0.0.1:*").is_ok());
        let err = parse_origin("https://x:1").unwrap_err().to_string();
        assert!(
            err.contains("https://x:1") && err.contains("http://"),
            "{err}"
        );
    }

    #[test]
    fn params_are_typed_like_toml_scalars() {
        assert_eq!(param_value("true"), ParamValue::Bool(true));
        assert_eq!(param_value("42"), ParamValue::Int(42));
        assert_eq!(param_value("fast"), ParamValue::String("fast".into()));
    }
}
