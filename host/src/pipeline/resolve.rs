//! Resolving a checked pipeline for one run: param values from the caller, `when` conditions
//! evaluated, templates substituted (typed where a config string is one template, see
//! [`super::template`]), mount paths checked again, steps grouped into stages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::check::{self, CompiledStep};
use super::diag::{Diagnostics, list};
use super::expr;
use super::paths;
use super::spec::{Access, ConfigTable, ConfigValue, MountRoot, OutputKind, ParamType, StepSpec};
use super::template::{self, DbField, PathField, Piece, Ref};
use super::units::format_duration;
use super::{Pipeline, Section};

/// What the caller gives for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInputs {
    /// installer-api's customer id.
    pub customer_id: String,
    /// The customer's domain (already checked to be a DNS name).
    pub customer_domain: String,
    /// The run's id.
    pub run_id: String,
    /// The run's timestamp, `YYYYMMDD-HHMMSS`.
    pub timestamp: String,
    /// Param values as raw strings from the CLI or API (`"true"`, `"12"`, `"fast"`).
    pub params: BTreeMap<String, String>,
    /// The customer's database as the host read it (for `{{customer.db.*}}` in command
    /// patterns); only needed when an active step uses it.
    pub database: CustomerDb,
    /// Where the customer's services are (for `{{customer.path.*}}`); only needed when an
    /// active step uses them.
    pub paths: CustomerPaths,
}

/// Where the customer's services are, as the host found them on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerPaths {
    /// Found: each folder relative to the customer folder.
    Known(ServicePaths),
    /// Not usable (e.g. `current` leads out of the customer folder); the text says why and
    /// what to do.
    Unavailable(String),
}

impl Default for CustomerPaths {
    /// The current layout's names, for callers that never look at the disk.
    fn default() -> Self {
        CustomerPaths::Known(ServicePaths::default())
    }
}

/// The folders of a customer's services, relative to the customer folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePaths {
    /// The backend service, e.g. `backend` or `releases/1.4.0/backend`.
    pub backend: String,
    /// The admin app.
    pub admin: String,
    /// The store app.
    pub store: String,
    /// The uploads: `backend/uploads` in the current layout, `shared/uploads` in blue/green.
    pub uploads: String,
}

impl Default for ServicePaths {
    fn default() -> Self {
        ServicePaths::under("")
    }
}

impl ServicePaths {
    /// The three services under `root` (`""` for the customer folder itself), uploads in the
    /// backend.
    pub fn under(root: &str) -> Self {
        let join = |name: &str| {
            if root.is_empty() {
                name.to_owned()
            } else {
                format!("{root}/{name}")
            }
        };
        ServicePaths {
            backend: join("backend"),
            admin: join("admin"),
            store: join("store"),
            uploads: join("backend/uploads"),
        }
    }
}

/// The customer's database, as the host derived it from the customer's `.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CustomerDb {
    /// Not looked up (a caller that never needs it).
    #[default]
    NotRead,
    /// Read and parsed.
    Known(DbFacts),
    /// Looked up, but not usable; the text says why (never the URL or the password).
    Unavailable(String),
}

/// What a command pattern may fix about the customer's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFacts {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub name: String,
    /// User name.
    pub user: String,
}

/// A param value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A bool param.
    Bool(bool),
    /// An int param.
    Int(i64),
    /// A string or enum param.
    String(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(n) => write!(f, "{n}"),
            ParamValue::String(s) => f.write_str(s),
        }
    }
}

impl ParamValue {
    /// The value of a TOML default, when it has a param type.
    pub(crate) fn from_toml(value: &toml::Value) -> Option<Self> {
        match value {
            toml::Value::Boolean(b) => Some(ParamValue::Bool(*b)),
            toml::Value::Integer(n) => Some(ParamValue::Int(*n)),
            toml::Value::String(s) => Some(ParamValue::String(s.clone())),
            _ => None,
        }
    }
}

/// A pipeline resolved for one run: what `qodify-host plan` shows and the runtime executes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The pipeline's name.
    pub pipeline: String,
    /// Every param's value for this run.
    pub params: BTreeMap<String, ParamValue>,
    /// What the run produces: `"backup"` for a new backup folder (created hidden, renamed into
    /// place when every step succeeded); omitted when the run produces none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputKind>,
    /// The main stages, in order.
    pub stages: Vec<Stage>,
    /// Stages run when every main step succeeded, after the backup folder was finalised and
    /// before `finally`; omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<Stage>,
    /// Stages run when a step failed.
    pub on_failure: Vec<Stage>,
    /// Stages always run at the end.
    pub finally: Vec<Stage>,
    /// Steps left out because their `when` is false.
    pub skipped: Vec<SkippedStep>,
    /// With `output = "backup"`: complete the backup once the stage holding this step succeeded
    /// (instead of at the end); omitted when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_complete_after: Option<String>,
    /// With `output = "backup"`: pin the completed backup with this reason; omitted when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_pin: Option<String>,
    /// A host crash during the run is followed by its `on_failure` and `finally` steps at the
    /// next start of `serve`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recover_on_failure: bool,
}

impl Plan {
    /// Every step: the main stages, then `on_success`, `on_failure` and `finally`.
    pub fn all_steps(&self) -> impl Iterator<Item = &PlannedStep> {
        self.stages
            .iter()
            .chain(&self.on_success)
            .chain(&self.on_failure)
            .chain(&self.finally)
            .flat_map(|s| s.steps.iter())
    }
}

/// Steps that run together: one step, or a contiguous group run concurrently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// The group's name, for a group.
    pub group: Option<String>,
    /// The steps.
    pub steps: Vec<PlannedStep>,
}

/// A step left out of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedStep {
    /// The step's id.
    pub id: String,
    /// Why, e.g. "when `include.logs` is false".
    pub reason: String,
}

/// One step, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    /// The step's id.
    pub id: String,
    /// The plugin to run.
    pub plugin: String,
    /// The pinned sha256 of the plugin's `.wasm`, if any.
    pub sha256: Option<String>,
    /// What the step does.
    pub description: Option<String>,
    /// The config handed to the plugin, templated; `{}` when absent.
    pub config: serde_json::Value,
    /// File-system grants.
    pub mounts: Vec<PlannedMount>,
    /// Host programs the step may have the host run.
    pub commands: Vec<CommandGrant>,
    /// HTTP origins the step may reach.
    pub http: Vec<HttpGrant>,
    /// Memory and time limits.
    pub limits: Limits,
}

/// A resolved mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMount {
    /// Absolute guest path.
    pub guest: String,
    /// The host folder `path` is relative to.
    pub from: MountRoot,
    /// Relative path with only normal components; empty means the folder itself.
    pub path: PathBuf,
    /// Read-write.
    pub writable: bool,
    /// Create the folder when it is missing.
    pub create: bool,
    /// Skip the step when the folder is missing.
    pub optional: bool,
    /// Why the step needs it.
    pub reason: Option<String>,
}

/// A host program a step may have the host run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandGrant {
    /// Bare program name.
    pub program: String,
    /// Glob patterns; every argument of a call must match one.
    pub args: Vec<String>,
    /// Environment variables the step may set for it.
    pub env: Vec<String>,
    /// Host environment variables passed through unchanged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inherit: Vec<String>,
    /// Host secrets set in the program's environment: variable name → secret name (a file in
    /// the host's `secrets_dir`). Names only: the host reads the value when the program starts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// TCP destinations the program may connect to (Landlock filters the port only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetGrant>,
    /// TCP ports the program may bind (listen on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bind: Vec<NetGrant>,
    /// Why the step needs it.
    pub reason: Option<String>,
}

/// A TCP endpoint a granted program may reach (`net`) or listen on (`bind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetGrant {
    /// Host name or address as written (lowercase); informative for `bind`.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl NetGrant {
    /// The param a `net` grant written exactly `{{params.NAME}}` stands for.
    pub fn param_ref(grant: &str) -> Option<&str> {
        let inner = grant.strip_prefix("{{")?.strip_suffix("}}")?.trim();
        let name = inner.strip_prefix("params.")?;
        (!name.is_empty() && !name.contains(['{', '}', ' '])).then_some(name)
    }

    /// Parses `HOST:PORT`: HOST a DNS name, an IPv4 address or `[IPv6]` (kept as written,
    /// lowercase), PORT a number from 1 to 65535; `Err` says what is wrong.
    pub fn parse(grant: &str) -> Result<NetGrant, String> {
        if grant.contains("{{") {
            return Err(
                "`net` takes no templates but a whole `{{params.NAME}}`, and `bind` none".into(),
            );
        }
        let (host, port) = grant.rsplit_once(':').ok_or("a grant ends with `:PORT`")?;
        if port == "*" {
            return Err("Landlock grants single ports, so `*` is not allowed".into());
        }
        let port = Some(port)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0)
            .ok_or("the port is a number from 1 to 65535")?;
        let host = host.to_ascii_lowercase();
        check_net_host(&host, port)?;
        Ok(NetGrant { host, port })
    }
}

impl fmt::Display for NetGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A DNS name, an IPv4 address, or an IPv6 address in brackets (already lowercase).
fn check_net_host(host: &str, port: u16) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(address) = inner.strip_suffix(']') else {
            return Err(format!("the `[` is not closed: `{host}]:{port}`"));
        };
        return address
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| {
                format!(
                    "`{address}` is not an IPv6 address (a name or IPv4 address takes no `[…]`)"
                )
            });
    }
    if host.contains(':') {
        return Err(match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("an IPv6 address goes in brackets: `[{host}]:{port}`"),
            Err(_) => "an IPv6 address goes in brackets, then `:PORT`, e.g. `[::1]:5432`".into(),
        });
    }
    if host.is_empty() {
        return Err("the host is missing before `:PORT`".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    // A name whose last label is all digits is meant as an IPv4 address (no top-level domain is
    // numeric).
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return host
            .parse::<std::net::Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("`{host}` is not an IPv4 address"));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.len() > 253 || !labels.iter().all(|l| label_ok(l)) {
        return Err(format!(
            "`{host}` is not a DNS name (labels of letters, digits and `-`, joined by `.`)"
        ));
    }
    Ok(())
}

/// An HTTP origin a step may reach: `http`, a host, and a port (`None`: any port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpGrant {
    /// The origin as written, e.g. `http://127.0.0.1:*`.
    pub origin: String,
    /// Host name or address, lowercase.
    pub host: String,
    /// The port; `None` when any port is granted.
    pub port: Option<u16>,
    /// Why the step needs it.
    pub reason: Option<String>,
}

impl HttpGrant {
    /// Parses `http://HOST:PORT` (PORT may be `*`); `Err` says what is wrong.
    pub fn parse(origin: &str) -> Result<(String, Option<u16>), String> {
        let rest = origin
            .strip_prefix("http://")
            .ok_or("an origin starts with `http://` (https is not supported for health checks)")?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or("an origin ends with `:PORT` or `:*`")?;
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return Err("an origin is `http://HOST:PORT` with no path or user info".into());
        }
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or("the port is a number from 1 to 65535, or `*`")?,
            ),
        };
        Ok((host.to_ascii_lowercase(), port))
    }
}

/// Per-step limits; `None` means the host's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Wall-clock time, serialized like `"1h30m"`.
    #[serde(serialize_with = "serialize_timeout")]
    pub timeout: Option<Duration>,
}

fn serialize_timeout<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// Why a pipeline cannot be resolved for a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    /// The caller set a param the pipeline does not have.
    #[error("unknown param `{name}` (known: {known})")]
    UnknownParam {
        /// The param as given.
        name: String,
        /// The pipeline's params, comma-separated.
        known: String,
    },
    /// A param value does not parse as the param's type.
    #[error("`{name}` expects {expected}, got `{got}`")]
    InvalidParam {
        /// The param.
        name: String,
        /// What it takes, e.g. "true or false".
        expected: String,
        /// The value given.
        got: String,
    },
    /// A param without default was not set.
    #[error("missing required param `{name}` ({kind}, no default): set it for this run")]
    MissingParam {
        /// The param.
        name: String,
        /// Its type.
        kind: ParamType,
    },
    /// A templated mount path does not stay inside its folder.
    #[error("mount {guest} of step {step}: path `{path}` {problem}")]
    MountPath {
        /// The step's id.
        step: String,
        /// The mount's guest path.
        guest: String,
        /// The path after templating.
        path: String,
        /// What is wrong, e.g. "leaves the customer folder".
        problem: String,
    },
    /// A command pattern of an active step needs the customer's database, which is not known.
    #[error(
        "step {step}: `{{{{{reference}}}}}` in a `{program}` grant needs the customer's database: {problem}"
    )]
    CustomerDb {
        /// The step's id.
        step: String,
        /// The program whose grant uses it.
        program: String,
        /// The reference, e.g. `customer.db.host`.
        reference: String,
        /// Why it is not known, and what to do.
        problem: String,
    },
    /// An active step names a folder of the customer's services, which could not be found.
    #[error("step {step}: `{{{{{reference}}}}}` needs the customer's layout: {problem}")]
    CustomerPath {
        /// The step's id.
        step: String,
        /// The reference, e.g. `customer.path.backend`.
        reference: String,
        /// Why it is not known, and what to do.
        problem: String,
    },
    /// A param granted as a `net` destination does not hold `HOST:PORT`.
    #[error(
        "step {step}: param `{param}` = `{value}` is granted to `{program}` as `net`, but {problem}; set it to `HOST:PORT` (e.g. 10.0.0.5:8000) or empty"
    )]
    NetParam {
        /// The step's id.
        step: String,
        /// The program whose grant uses it.
        program: String,
        /// The param.
        param: String,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// The pipeline does not pass validation.
    #[error("pipeline `{pipeline}` is invalid; fix it first:\n{diagnostics}")]
    Invalid {
        /// The pipeline's name.
        pipeline: String,
        /// What is wrong with it.
        diagnostics: Diagnostics,
    },
}

/// Resolves a pipeline for one run.
pub fn resolve(p: &Pipeline, inputs: &RunInputs) -> Result<Plan, ResolveError> {
    let compiled = check::check(p, None).map_err(|diagnostics| ResolveError::Invalid {
        pipeline: p.name().to_owned(),
        diagnostics,
    })?;
    let params = resolve_params(p, &inputs.params)?;
    let mut plan = Plan {
        pipeline: p.name().to_owned(),
        params,
        output: p.output(),
        stages: Vec::new(),
        on_success: Vec::new(),
        on_failure: Vec::new(),
        finally: Vec::new(),
        skipped: Vec::new(),
        backup_complete_after: None,
        backup_pin: None,
        recover_on_failure: p.spec.recover.is_some(),
    };
    let cx = Context {
        inputs,
        params: &plan.params,
        missing_path: Default::default(),
    };
    if let Some(backup) = &p.spec.backup {
        plan.backup_complete_after = backup.complete_after.as_ref().map(|s| s.get().clone());
        plan.backup_pin = backup.pin.as_ref().map(|s| cx.render(s.get()));
    }
    let mut sections: [Vec<Stage>; Section::ALL.len()] = Default::default();
    let mut skipped = Vec::new();
    for ((section, compiled), stages) in Section::ALL
        .into_iter()
        .zip(&compiled.sections)
        .zip(&mut sections)
    {
        for (step, compiled) in p.section(section).iter().zip(compiled) {
            if let Some(when) = &compiled.when
                && !expr::eval(when, cx.params)
            {
                skipped.push(SkippedStep {
                    id: step.id.get().clone(),
                    reason: format!(
                        "when `{}` is false",
                        step.when.as_deref().map_or("", String::as_str)
                    ),
                });
                continue;
            }
            let planned = cx.step(step, compiled)?;
            let group = step.group.as_ref().map(|g| g.get().clone());
            match stages.last_mut() {
                Some(last) if group.is_some() && last.group == group => last.steps.push(planned),
                _ => stages.push(Stage {
                    group,
                    steps: vec![planned],
                }),
            }
        }
    }
    let [stages, on_success, on_failure, finally] = sections;
    plan.stages = stages;
    plan.on_success = on_success;
    plan.on_failure = on_failure;
    plan.finally = finally;
    plan.skipped = skipped;
    Ok(plan)
}

/// Checks param values given for a run of `p` (names, types, required ones) without resolving
/// anything else: what a caller checks before it records a run.
pub fn check_params(p: &Pipeline, raw: &BTreeMap<String, String>) -> Result<(), ResolveError> {
    resolve_params(p, raw).map(|_| ())
}

fn resolve_params(
    p: &Pipeline,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, ParamValue>, ResolveError> {
    if let Some(name) = given.keys().find(|name| p.param(name).is_none()) {
        return Err(ResolveError::UnknownParam {
            name: name.clone(),
            known: match p.params().count() {
                0 => "this pipeline takes no params".to_owned(),
                _ => list(p.params().map(|(name, _)| name)),
            },
        });
    }
    let mut values = BTreeMap::new();
    for (name, spec) in p.params() {
        let value = match given.get(name) {
            Some(raw) => parse_param(name, spec, raw)?,
            None => match spec.default.as_ref().and_then(|d| ParamValue::from_toml(d)) {
                Some(value) => value,
                None => {
                    return Err(ResolveError::MissingParam {
                        name: name.to_owned(),
                        kind: *spec.kind.get(),
                    });
                }
            },
        };
        values.insert(name.to_owned(), value);
    }
    Ok(values)
}

fn parse_param(
    name: &str,
    spec: &super::spec::ParamSpec,
    raw: &str,
) -> Result<ParamValue, ResolveError> {
    let invalid = |expected: String| ResolveError::InvalidParam {
        name: name.to_owned(),
        expected,
        got: raw.to_owned(),
    };
    match spec.kind.get() {
        ParamType::Bool => match raw {
            "true" => Ok(ParamValue::Bool(true)),
            "false" => Ok(ParamValue::Bool(false)),
            _ => Err(invalid("true or false".to_owned())),
        },
        ParamType::Int => raw
            .parse()
            .map(ParamValue::Int)
            .map_err(|_| invalid("an integer".to_owned())),
        ParamType::String => Ok(ParamValue::String(raw.to_owned())),
        ParamType::Enum => {
            let values: Vec<&str> = spec
                .values
                .iter()
                .flat_map(|v| v.get().iter().map(|v| v.as_str()))
                .collect();
            if values.contains(&raw) {
                Ok(ParamValue::String(raw.to_owned()))
            } else {
                Err(invalid(format!("one of {}", list(values))))
            }
        }
    }
}

struct Context<'a> {
    inputs: &'a RunInputs,
    params: &'a BTreeMap<String, ParamValue>,
    /// The first `customer.path.*` reference rendered while the layout is unknown, and why.
    missing_path: std::cell::RefCell<Option<(PathField, String)>>,
}

impl Context<'_> {
    fn value(&self, r: Ref<'_>) -> String {
        match r {
            Ref::CustomerId => self.inputs.customer_id.clone(),
            Ref::CustomerDomain => self.inputs.customer_domain.clone(),
            Ref::RunId => self.inputs.run_id.clone(),
            Ref::RunTimestamp => self.inputs.timestamp.clone(),
            Ref::Param(name) => self
                .params
                .get(name)
                .map(ToString::to_string)
                .unwrap_or_default(),
            // Checked: only in command patterns, which go through `arg_pattern`.
            Ref::CustomerDb(_) => String::new(),
            Ref::CustomerPath(field) => match &self.inputs.paths {
                CustomerPaths::Known(paths) => match field {
                    PathField::Backend => paths.backend.clone(),
                    PathField::Admin => paths.admin.clone(),
                    PathField::Store => paths.store.clone(),
                    PathField::Uploads => paths.uploads.clone(),
                },
                CustomerPaths::Unavailable(why) => {
                    self.missing_path
                        .borrow_mut()
                        .get_or_insert_with(|| (field, why.clone()));
                    String::new()
                }
            },
        }
    }

    /// A command argument pattern with its references filled in. A reference stands for a fixed
    /// text, never a glob: glob characters in its value are escaped.
    fn arg_pattern(&self, step: &str, program: &str, s: &str) -> Result<String, ResolveError> {
        let Ok(pieces) = template::parse(s) else {
            return Ok(s.to_owned());
        };
        let missing = std::cell::RefCell::new(None);
        let text = template::render(
            &pieces,
            &|r| match r {
                Ref::CustomerDb(field) => match &self.inputs.database {
                    CustomerDb::Known(db) => globset::escape(&match field {
                        DbField::Host => db.host.clone(),
                        DbField::Port => db.port.to_string(),
                        DbField::Name => db.name.clone(),
                        DbField::User => db.user.clone(),
                    }),
                    CustomerDb::NotRead => {
                        missing.borrow_mut().get_or_insert_with(|| {
                            (
                                field,
                                "the caller did not read the customer's settings".to_owned(),
                            )
                        });
                        String::new()
                    }
                    CustomerDb::Unavailable(why) => {
                        missing
                            .borrow_mut()
                            .get_or_insert_with(|| (field, why.clone()));
                        String::new()
                    }
                },
                other => globset::escape(&self.value(other)),
            },
            &|e| self.test(e),
        );
        match missing.into_inner() {
            None => Ok(text),
            Some((field, problem)) => Err(ResolveError::CustomerDb {
                step: step.to_owned(),
                program: program.to_owned(),
                reference: field.reference().to_owned(),
                problem,
            }),
        }
    }

    /// Evaluates an expression template that passed the checks.
    fn test(&self, text: &str) -> bool {
        expr::parse(text).is_ok_and(|e| expr::eval(&e, self.params))
    }

    /// Substitutes the templates of a string that passed the checks.
    fn render(&self, s: &str) -> String {
        match template::parse(s) {
            Ok(pieces) => template::render(&pieces, &|r| self.value(r), &|e| self.test(e)),
            Err(_) => s.to_owned(),
        }
    }

    /// A config string: typed when it is exactly one `{{…}}` (an expression gives a bool,
    /// `{{params.NAME}}` the param's value), else the rendered text.
    fn string_json(&self, s: &str) -> serde_json::Value {
        use serde_json::Value as J;
        let Ok(pieces) = template::parse(s) else {
            return J::String(s.to_owned());
        };
        match template::whole(&pieces) {
            Some(Piece::Expr { text, .. }) => J::Bool(self.test(text)),
            Some(Piece::Ref(name, _)) => match Ref::parse(name) {
                Some(Ref::Param(param)) => match self.params.get(param) {
                    Some(ParamValue::Bool(b)) => J::Bool(*b),
                    Some(ParamValue::Int(n)) => J::from(*n),
                    Some(ParamValue::String(v)) => J::String(v.clone()),
                    None => J::String(String::new()),
                },
                Some(other) => J::String(self.value(other)),
                None => J::String(String::new()),
            },
            _ => J::String(template::render(&pieces, &|r| self.value(r), &|e| {
                self.test(e)
            })),
        }
    }

    fn step(&self, step: &StepSpec, compiled: &CompiledStep) -> Result<PlannedStep, ResolveError> {
        let planned = self.step_unchecked(step, compiled);
        if let Some((field, problem)) = self.missing_path.take() {
            return Err(ResolveError::CustomerPath {
                step: step.id.get().clone(),
                reference: field.reference().to_owned(),
                problem,
            });
        }
        planned
    }

    fn step_unchecked(
        &self,
        step: &StepSpec,
        compiled: &CompiledStep,
    ) -> Result<PlannedStep, ResolveError> {
        let mut mounts = Vec::new();
        for mount in &step.mounts {
            let written = mount.path.get();
            let path = self.render(written);
            let checked = paths::check_relative(&path, paths::is_literal_root(written)).map_err(
                |problem| ResolveError::MountPath {
                    step: step.id.get().clone(),
                    guest: mount.guest.get().clone(),
                    path: paths::show(&path),
                    problem: problem.describe(mount.from.folder_name()),
                },
            )?;
            mounts.push(PlannedMount {
                guest: mount.guest.get().clone(),
                from: *mount.from.get(),
                path: checked,
                writable: mount.access == Access::Rw,
                create: mount.create.as_ref().is_some_and(|c| *c.get()),
                optional: mount.optional,
                reason: mount.reason.clone(),
            });
        }
        Ok(PlannedStep {
            id: step.id.get().clone(),
            plugin: step.plugin.get().clone(),
            sha256: step.sha256.as_ref().map(|s| s.get().clone()),
            description: step.description.clone(),
            config: match &step.config {
                Some(table) => self.table_json(table),
                None => serde_json::Value::Object(Default::default()),
            },
            mounts,
            commands: step
                .commands
                .iter()
                .map(|c| -> Result<CommandGrant, ResolveError> {
                    Ok(CommandGrant {
                        program: c.program.get().clone(),
                        args: c
                            .args
                            .iter()
                            .map(|a| self.arg_pattern(step.id.get(), c.program.get(), a.get()))
                            .collect::<Result<_, _>>()?,
                        env: c.env.iter().map(|e| e.get().clone()).collect(),
                        inherit: c.inherit.iter().map(|e| e.get().clone()).collect(),
                        secrets: c
                            .secrets
                            .iter()
                            .map(|(k, v)| (k.get().clone(), v.get().clone()))
                            .collect(),
                        net: self.net(step.id.get(), c.program.get(), &c.net)?,
                        bind: c
                            .bind
                            .iter()
                            .filter_map(|b| NetGrant::parse(b).ok())
                            .collect(),
                        reason: c.reason.clone(),
                    })
                })
                .collect::<Result<_, _>>()?,
            http: step
                .http
                .iter()
                .filter_map(|h| {
                    let (host, port) = HttpGrant::parse(h.origin.get()).ok()?;
                    Some(HttpGrant {
                        origin: h.origin.get().clone(),
                        host,
                        port,
                        reason: h.reason.clone(),
                    })
                })
                .collect(),
            limits: compiled.limits,
        })
    }

    /// `net` grants: literal ones were checked before resolving; `{{params.NAME}}` ones are
    /// the param's value, none when it is empty.
    fn net(
        &self,
        step: &str,
        program: &str,
        grants: &[super::spec::Located<String>],
    ) -> Result<Vec<NetGrant>, ResolveError> {
        let mut out = Vec::new();
        for grant in grants {
            let Some(param) = NetGrant::param_ref(grant) else {
                out.extend(NetGrant::parse(grant).ok());
                continue;
            };
            let value = self
                .params
                .get(param)
                .map(ToString::to_string)
                .unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            out.push(
                NetGrant::parse(&value).map_err(|problem| ResolveError::NetParam {
                    step: step.to_owned(),
                    program: program.to_owned(),
                    param: param.to_owned(),
                    value: value.clone(),
                    problem,
                })?,
            );
        }
        Ok(out)
    }

    fn table_json(&self, table: &ConfigTable) -> serde_json::Value {
        serde_json::Value::Object(
            table
                .0
                .iter()
                .map(|(k, v)| (k.clone(), self.value_json(v.get())))
                .collect(),
        )
    }

    fn value_json(&self, value: &ConfigValue) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            ConfigValue::String(s) => self.string_json(s),
            ConfigValue::Integer(n) => J::from(*n),
            // Non-finite floats were rejected by the checks.
            ConfigValue::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            ConfigValue::Boolean(b) => J::Bool(*b),
            ConfigValue::Datetime(d) => J::String(d.clone()),
            ConfigValue::Array(items) => {
                J::Array(items.iter().map(|v| self.value_json(v.get())).collect())
            }
            ConfigValue::Table(table) => self.table_json(table),
        }
    }
}
