//! `health-check` step plugin (plan §8 step 5, and again after the swap): asks each service of a
//! release over HTTP whether it is healthy, through the step's `http` grants only.
//!
//! Modes:
//! - `candidate`: before the swap. For each service the new release runs as a PM2 **fork-mode**
//!   app `<app_prefix>-<svc>-candidate` (`pm2 start <script> --name … --no-autorestart`, working
//!   folder the release's service folder, env `PORT=<spare>`) on a spare port: the service's
//!   `PORT` from `<release>/<svc>/.env` plus `port_offset`. Fork mode matters: cluster apps share
//!   a port through the PM2 daemon, so a cluster candidate would silently take half of the live
//!   traffic (tests/fixtures/upgrade/PM2-NOTES.md §d). The `PORT` given to `pm2 start` reaches
//!   the app and wins over its `.env`. A spare port that already answers before the candidate
//!   starts is an error (the check would test someone else). Every candidate is deleted at the
//!   end, also when a check fails (a missing one is fine).
//! - `live`: after the swap. The services' ports come from `<release>/<svc>/.env` (`release` is
//!   then the live release, e.g. `/customer/current`); no PM2.
//!
//! Each check is `GET http://127.0.0.1:<port><path>`, retried every `interval` up to `attempts`
//! times while the connection fails, times out or the answer does not match (status `expect`,
//! default 200, and for `json` every given field, objects compared recursively). In candidate
//! mode a candidate that exited stops the waiting early. A failure names the service, the URL,
//! the last status or error and where to look. `pm2` always runs with a working folder outside
//! `current` (`customer`, or the release's service folder for `start`).
//!
//! Config (see [`Config`]):
//! - `mode`: `"candidate"` or `"live"`.
//! - `release`: guest path of the release, e.g. `/customer/releases/{{params.targetVersion}}`
//!   (candidate) or `/customer/current` (live).
//! - `customer`: guest path of the customer folder, pm2's working folder; default `/customer`.
//! - `services`: `[{name, script, checks: [{path, expect, json}]}]`; default backend (`server.js`,
//!   `/health` → 200 with `{"status": "ok"}`), admin and store (`/` and `/static/app.css`).
//! - `port_offset` (default 1000), `app_prefix` (default the customer's domain), `env` (extra
//!   environment for the candidates, e.g. `{NODE_ENV = "production"}`; names must be granted),
//!   `attempts` (30), `interval` (`"500ms"`), `request_timeout` (`"3s"`).
//!
//! Grants: read-only mounts holding `release` and `customer` (candidate mode: the customer folder
//! at `/customer`, `path = ""`; live mode: `current` at `/customer/current` is enough),
//! `[[steps.http]] origin = "http://127.0.0.1:*"`; candidate mode also `pm2` with
//! `inherit = ["PM2_HOME"]`, env `PORT` (and the names of `env`), args `start`, `delete`,
//! `jlist`, `--name`, `--no-autorestart`, the scripts and `*-candidate`.
//!
//! Outputs: `<svc>.port` (the port checked) and `<svc>.<path>` (the last status) per check.

pub mod checks;
use upgrade_kit::duration;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qodify_plugin_sdk::http;
use qodify_plugin_sdk::path::normalize;
use qodify_plugin_sdk::prelude::*;
use serde_json::Value;
use upgrade_kit::pm2;

use crate::checks::{Check, evaluate, parse_port, spare_ports};

/// Largest `.env` read for `PORT`.
const MAX_ENV_BYTES: u64 = 1 << 20;
/// How often a candidate's PM2 status is looked at while its port does not answer.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// Which release is checked, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The new release, started as PM2 candidates on spare ports.
    Candidate,
    /// The live release on its own ports.
    Live,
}

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `candidate` or `live`.
    pub mode: Mode,
    /// Guest path of the release folder (`current` in live mode).
    pub release: String,
    /// Guest path of the customer folder: pm2's working folder.
    #[serde(default = "default_customer")]
    pub customer: String,
    /// Services and their checks.
    #[serde(default = "default_services")]
    pub services: Vec<ServiceConfig>,
    /// Candidate port = the service's PORT + this.
    #[serde(default = "default_port_offset")]
    pub port_offset: u16,
    /// PM2 app names start with this; default the customer's domain.
    #[serde(default)]
    pub app_prefix: Option<String>,
    /// Extra environment for the candidates; `false` leaves a variable unset.
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// Tries per check.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Pause between tries, e.g. `"500ms"`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Timeout of one request, e.g. `"3s"`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

/// An env value: a string, or a number or bool (a lone template keeps its param's type).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// A bool (`false`: leave the variable unset).
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Another number.
    Float(f64),
}

impl Scalar {
    /// The value as text; `None` for `false`.
    pub fn text(&self) -> Option<String> {
        match self {
            Scalar::Text(s) => Some(s.clone()),
            Scalar::Bool(false) => None,
            Scalar::Bool(true) => Some("true".into()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
        }
    }
}

/// A service and its checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service folder's name, e.g. `backend`.
    pub name: String,
    /// The script PM2 starts, relative to the service folder.
    #[serde(default = "default_script")]
    pub script: String,
    /// The checks, in order.
    pub checks: Vec<CheckConfig>,
}

/// One check of the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Request path, e.g. `/health`.
    pub path: String,
    /// Expected status.
    #[serde(default = "default_expect")]
    pub expect: u16,
    /// Fields the JSON body must hold.
    #[serde(default)]
    pub json: Option<serde_json::Map<String, Value>>,
}

fn default_customer() -> String {
    "/customer".into()
}
fn default_port_offset() -> u16 {
    1000
}
fn default_attempts() -> u32 {
    30
}
fn default_interval() -> String {
    "500ms".into()
}
fn default_request_timeout() -> String {
    "3s".into()
}
fn default_script() -> String {
    "server.js".into()
}
fn default_expect() -> u16 {
    200
}

fn default_services() -> Vec<ServiceConfig> {
    let page = |path: &str| CheckConfig {
        path: path.into(),
        expect: 200,
        json: None,
    };
    let mut health = serde_json::Map::new();
    health.insert("status".into(), Value::String("ok".into()));
    vec![
        ServiceConfig {
            name: "backend".into(),
            script: default_script(),
            checks: vec![CheckConfig {
                path: "/health".into(),
                expect: 200,
                json: Some(health),
            }],
        },
        ServiceConfig {
            name: "admin".into(),
            script: default_script(),
            checks: vec![page("/"), page("/static/app.css")],
        },
        ServiceConfig {
            name: "store".into(),
            script: default_script(),
            checks: vec![page("/"), page("/static/app.css")],
        },
    ]
}

/// A checked service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Its folder name.
    pub name: String,
    /// Its script, relative to the folder.
    pub script: String,
    /// Its checks.
    pub checks: Vec<Check>,
}

/// A checked config.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The mode.
    pub mode: Mode,
    /// Normalised guest path of the release.
    pub release: String,
    /// Normalised guest path of the customer folder.
    pub customer: String,
    /// The services.
    pub services: Vec<Service>,
    /// Spare-port offset.
    pub port_offset: u16,
    /// PM2 app name prefix.
    pub app_prefix: String,
    /// Extra candidate environment.
    pub env: Vec<(String, String)>,
    /// Tries per check.
    pub attempts: u32,
    /// Pause between tries.
    pub interval: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

fn plain_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b) || extra.contains(&b))
}

impl Plan {
    /// Validates `config`; `domain` is the customer's domain (the default `app_prefix`). Pure.
    pub fn new(config: Config, domain: &str) -> Result<Plan, Error> {
        let release = normalize(&config.release).map_err(|e| e.context("release"))?;
        let customer = normalize(&config.customer).map_err(|e| e.context("customer"))?;
        if config.mode == Mode::Candidate {
            for (field, path) in [("release", &release), ("customer", &customer)] {
                if path.split('/').any(|c| c == "current") {
                    return Err(Error::invalid_config(format!(
                        "{field} `{path}` is inside `current`: PM2 would store the resolved path \
                         of a live folder; in candidate mode point release at \
                         /customer/releases/<version> and customer at the customer folder"
                    )));
                }
            }
            if config.port_offset == 0 {
                return Err(Error::invalid_config(
                    "port_offset is 0: a candidate would take the live port; use e.g. 1000",
                ));
            }
        }
        if config.services.is_empty() {
            return Err(Error::invalid_config(
                "`services` is empty; list what to check",
            ));
        }
        let mut services: Vec<Service> = Vec::new();
        for (i, s) in config.services.into_iter().enumerate() {
            let at = format!("services[{i}]");
            if !plain_name(&s.name, b"") {
                return Err(Error::invalid_config(format!(
                    "{at}.name `{}` is not a service folder name ([A-Za-z0-9_-])",
                    s.name
                )));
            }
            if services.iter().any(|o| o.name == s.name) {
                return Err(Error::invalid_config(format!(
                    "service `{}` is listed twice",
                    s.name
                )));
            }
            let script_ok = plain_name(&s.script, b"./")
                && !s.script.starts_with(['-', '/'])
                && s.script
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !script_ok {
                return Err(Error::invalid_config(format!(
                    "{at}.script `{}` must be a relative path inside the service folder, e.g. \
                     `server.js` or `dist/main.js`",
                    s.script
                )));
            }
            if s.checks.is_empty() {
                return Err(Error::invalid_config(format!(
                    "{at}.checks is empty; give at least one {{path = \"/…\"}}"
                )));
            }
            let mut checks = Vec::new();
            for (j, c) in s.checks.into_iter().enumerate() {
                let bad_path = !c.path.starts_with('/')
                    || c.path.starts_with("//")
                    || c.path
                        .chars()
                        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '#');
                if bad_path {
                    return Err(Error::invalid_config(format!(
                        "{at}.checks[{j}].path `{}` must be a URL path such as `/health`",
                        c.path
                    )));
                }
                if !(100..=599).contains(&c.expect) {
                    return Err(Error::invalid_config(format!(
                        "{at}.checks[{j}].expect {} is not an HTTP status",
                        c.expect
                    )));
                }
                checks.push(Check {
                    path: c.path,
                    expect: c.expect,
                    json: c.json,
                });
            }
            services.push(Service {
                name: s.name,
                script: s.script,
                checks,
            });
        }
        let app_prefix = config.app_prefix.unwrap_or_else(|| domain.to_string());
        if !plain_name(&app_prefix, b".") {
            return Err(Error::invalid_config(format!(
                "app_prefix `{app_prefix}` must be [A-Za-z0-9._-], e.g. the customer's domain"
            )));
        }
        for name in config.env.keys() {
            let mut chars = name.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok || name == "PORT" {
                return Err(Error::invalid_config(format!(
                    "env: `{name}` is not an environment variable name the step may set (PORT is \
                     set by the step)"
                )));
            }
        }
        if !(1..=10_000).contains(&config.attempts) {
            return Err(Error::invalid_config(format!(
                "attempts {} must be 1-10000",
                config.attempts
            )));
        }
        let duration = |field: &str, text: &str| {
            duration::parse(text).map_err(|e| Error::invalid_config(format!("{field}: {e}")))
        };
        Ok(Plan {
            mode: config.mode,
            release,
            customer,
            services,
            port_offset: config.port_offset,
            app_prefix,
            env: config
                .env
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.text()?)))
                .collect(),
            attempts: config.attempts,
            interval: duration("interval", &config.interval)?,
            request_timeout: duration("request_timeout", &config.request_timeout)?,
        })
    }

    /// The candidate PM2 app of `service`.
    pub fn candidate_name(&self, service: &str) -> String {
        format!("{}-{service}-candidate", self.app_prefix)
    }

    /// The live PM2 app of `service`.
    pub fn live_name(&self, service: &str) -> String {
        format!("{}-{service}", self.app_prefix)
    }
}

/// The URL of a check.
pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// Reads `PORT` from `<dir>/.env`.
fn read_port(dir: &str) -> Result<u16, Error> {
    use std::io::Read as _;
    let path = format!("{dir}/.env");
    let file = std::fs::File::open(&path).map_err(|e| {
        Error::from(e).context(format!(
            "reading {path} for the service's PORT (env-merge writes it for a new release)"
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {path}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let value = pg_conn::dotenv::lookup(&text, "PORT").ok_or_else(|| {
        Error::not_found(format!(
            "{path} sets no PORT; the service cannot be reached"
        ))
    })?;
    parse_port(&value).map_err(|e| Error::invalid_config(format!("{path}: {e}")))
}

/// `(name, exec_mode)` of every app in `pm2 jlist` output.
pub fn exec_modes(stdout: &str) -> Vec<(String, String)> {
    let Some(line) = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("[{") || *l == "[]")
    else {
        return Vec::new();
    };
    let Ok(Value::Array(apps)) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    apps.iter()
        .map(|a| {
            let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
            (
                s(a.get("name")),
                s(a.get("pm2_env").and_then(|e| e.get("exec_mode"))),
            )
        })
        .collect()
}

/// Where a failed check's answer came from.
struct Target {
    service: String,
    port: u16,
    /// The candidate's PM2 app (candidate mode).
    candidate: Option<String>,
}

/// Polls one check until it passes; the error names the URL and the last answer.
fn poll(
    ctx: &Context,
    plan: &Plan,
    target: &Target,
    check: &Check,
    describe: &dyn Fn(&Target, &str) -> String,
) -> Result<u16, Error> {
    let url = url(target.port, &check.path);
    let started = Instant::now();
    let mut last_liveness = Instant::now();
    let mut last = String::from("no answer");
    for attempt in 1..=plan.attempts {
        ctx.check_cancelled()?;
        match http::get(&url, plan.request_timeout) {
            Ok(resp) => match evaluate(check, resp.status, &resp.body) {
                Ok(()) => return Ok(resp.status),
                Err(reason) => last = reason,
            },
            Err(e) if e.kind() == ErrorKind::Io => {
                // The SDK and the HTTP client both name the URL; the message names it once.
                let m = e.message();
                let m = m.strip_prefix(&format!("GET {url}: ")).unwrap_or(m);
                last = m.strip_prefix(&format!("{url}: ")).unwrap_or(m).to_string();
                if let Some(name) = &target.candidate
                    && last_liveness.elapsed() >= LIVENESS_EVERY
                {
                    last_liveness = Instant::now();
                    let status = candidate_status(&plan.customer, name)?;
                    if status != "online" && status != "launching" {
                        return Err(Error::command_failed(describe(
                            target,
                            &format!(
                                "GET {url}: {last}; the candidate's PM2 status is `{}` (it exited)",
                                if status.is_empty() { "gone" } else { &status }
                            ),
                        )));
                    }
                }
            }
            Err(e) => return Err(e),
        }
        if attempt < plan.attempts {
            ctx.debug(format!("{} {url}: {last}; retrying", target.service));
            std::thread::sleep(plan.interval);
        }
    }
    Err(Error::command_failed(describe(
        target,
        &format!(
            "GET {url}: {last} (after {} attempts over {:.1}s)",
            plan.attempts,
            started.elapsed().as_secs_f64()
        ),
    )))
}

/// The PM2 status of app `name` (empty when PM2 does not know it).
fn candidate_status(customer: &str, name: &str) -> Result<String, Error> {
    Ok(pm2::jlist(customer)?
        .into_iter()
        .find(|a| a.name == name)
        .map(|a| a.status)
        .unwrap_or_default())
}

/// Runs every check of every target in order; outputs `<svc>.port` and `<svc>.<path>`.
fn check_all(
    ctx: &Context,
    plan: &Plan,
    targets: &[Target],
    describe: &dyn Fn(&Target, &str) -> String,
) -> Result<Output, Error> {
    let total: usize = plan.services.iter().map(|s| s.checks.len()).sum();
    let mut done = 0;
    let mut out = Output::new();
    for (svc, target) in plan.services.iter().zip(targets) {
        out.push_value(format!("{}.port", svc.name), target.port);
        for check in &svc.checks {
            ctx.progress(
                done as f32 / total as f32 * 100.0,
                format!("{} GET {} (port {})", svc.name, check.path, target.port),
            );
            let status = poll(ctx, plan, target, check, describe)?;
            done += 1;
            ctx.info(format!(
                "{} GET {} on port {}: {status}, healthy",
                svc.name, check.path, target.port
            ));
            out.push_value(format!("{}.{}", svc.name, check.path), status);
        }
    }
    ctx.progress(100.0, format!("{total} checks passed"));
    Ok(out)
}

fn live(ctx: &Context, plan: &Plan) -> Result<Output, Error> {
    let mut targets = Vec::new();
    for svc in &plan.services {
        targets.push(Target {
            service: svc.name.clone(),
            port: read_port(&format!("{}/{}", plan.release, svc.name))?,
            candidate: None,
        });
    }
    let describe = |t: &Target, what: &str| {
        format!(
            "{} (live, port {}) is not healthy: {what}; look at `pm2 status {app}` and \
             `pm2 logs {app}` on the host",
            t.service,
            t.port,
            app = plan.live_name(&t.service)
        )
    };
    check_all(ctx, plan, &targets, &describe)
}

fn candidates(ctx: &Context, plan: &Plan) -> Result<Output, Error> {
    let mut live_ports = Vec::new();
    for svc in &plan.services {
        let port = read_port(&format!("{}/{}", plan.release, svc.name))?;
        live_ports.push((svc.name.clone(), port));
    }
    let spare = spare_ports(&live_ports, plan.port_offset).map_err(Error::invalid_config)?;
    let targets: Vec<Target> = plan
        .services
        .iter()
        .zip(&spare)
        .map(|(svc, port)| Target {
            service: svc.name.clone(),
            port: *port,
            candidate: Some(plan.candidate_name(&svc.name)),
        })
        .collect();

    let result = start_and_check(ctx, plan, &targets);

    // Always clean up, whatever happened above; a cancelled run cannot run pm2 any more.
    if !ctx.is_cancelled() {
        for t in &targets {
            let name = t.candidate.as_deref().unwrap_or_default();
            match pm2::delete_if_present(&plan.customer, name) {
                Ok(()) => ctx.debug(format!("deleted the candidate {name}")),
                Err(e) => ctx.warn(format!(
                    "could not delete the candidate {name} ({e}); remove it with `pm2 delete {name}`"
                )),
            }
        }
    }
    result
}

fn start_and_check(ctx: &Context, plan: &Plan, targets: &[Target]) -> Result<Output, Error> {
    let release_name = plan.release.rsplit('/').next().unwrap_or_default();
    for (svc, t) in plan.services.iter().zip(targets) {
        ctx.check_cancelled()?;
        let name = t.candidate.as_deref().unwrap_or_default();
        // A candidate left by a crashed run would make `pm2 start` refuse the name.
        pm2::delete_if_present(&plan.customer, name)?;
        let probe = url(t.port, "/");
        match http::get(&probe, plan.request_timeout) {
            Ok(resp) => {
                return Err(Error::command_failed(format!(
                    "{}: the spare port {} already answers (GET {probe} gave status {}) before \
                     the candidate started: another process uses it; stop it or change \
                     port_offset",
                    svc.name, t.port, resp.status
                )));
            }
            Err(e) if e.kind() == ErrorKind::Io => {}
            Err(e) => return Err(e),
        }
        let dir = format!("{}/{}", plan.release, svc.name);
        let port = t.port.to_string();
        let mut env: Vec<(&str, &str)> = vec![("PORT", port.as_str())];
        env.extend(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ctx.info(format!(
            "starting {name}: pm2 start {} in {dir}, fork mode, PORT={port}",
            svc.script
        ));
        pm2::run(
            &dir,
            &["start", &svc.script, "--name", name, "--no-autorestart"],
            &env,
        )
        .map_err(|e| e.context(format!("starting the candidate {name}")))?;
    }
    // The whole point of fork mode (see the module docs): refuse to check a cluster candidate.
    let jlist = pm2::run(&plan.customer, &["jlist"], &[])?;
    let modes = exec_modes(&jlist);
    for t in targets {
        let name = t.candidate.as_deref().unwrap_or_default();
        match modes.iter().find(|(n, _)| n == name) {
            Some((_, mode)) if mode == "fork_mode" => {}
            Some((_, mode)) => {
                return Err(Error::command_failed(format!(
                    "the candidate {name} runs in `{mode}`, not fork mode: it could share the \
                     live port; check the PM2 configuration of the host"
                )));
            }
            None => {
                return Err(Error::command_failed(format!(
                    "the candidate {name} is not in `pm2 jlist` right after `pm2 start`"
                )));
            }
        }
    }
    let describe = |t: &Target, what: &str| {
        let name = t.candidate.as_deref().unwrap_or_default();
        format!(
            "{} of {release_name} is not healthy as candidate {name} (port {}): {what}. Its \
             output is in the host's PM2 logs ($PM2_HOME/logs/{name}-out.log and -error.log); \
             the upgrade does not go live",
            t.service, t.port
        )
    };
    check_all(ctx, plan, targets, &describe)
}

struct HealthCheck;

impl Step for HealthCheck {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config, ctx.customer_domain())?;
        match plan.mode {
            Mode::Live => live(ctx, &plan),
            Mode::Candidate => candidates(ctx, &plan),
        }
    }
}

export_step!(HealthCheck);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(json: Value) -> Result<Plan, Error> {
        let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
        Plan::new(config, "shop.example.com")
    }

    #[test]
    fn defaults() {
        let p = plan(json!({"mode": "candidate", "release": "/customer/releases/v1.1.0"})).unwrap();
        assert_eq!(p.customer, "/customer");
        assert_eq!(p.port_offset, 1000);
        assert_eq!(p.app_prefix, "shop.example.com");
        assert_eq!(p.attempts, 30);
        assert_eq!(p.interval, Duration::from_millis(500));
        assert_eq!(p.request_timeout, Duration::from_secs(3));
        let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["backend", "admin", "store"]);
        assert_eq!(p.services[0].checks[0].path, "/health");
        assert_eq!(
            p.services[0].checks[0].json.as_ref().unwrap()["status"],
            "ok"
        );
        assert_eq!(p.services[2].checks[1].path, "/static/app.css");
        assert_eq!(
            p.candidate_name("backend"),
            "shop.example.com-backend-candidate"
        );
        assert_eq!(p.live_name("admin"), "shop.example.com-admin");
        assert_eq!(url(48200, "/health"), "http://127.0.0.1:48200/health");
    }

    #[test]
    fn explicit_services_and_checks() {
        let p = plan(json!({
            "mode": "live", "release": "/customer/current", "app_prefix": "x.test",
            "services": [{"name": "backend", "script": "dist/main.js",
                          "checks": [{"path": "/health", "json": {"db": "ok"}}, {"path": "/missing", "expect": 404}]}],
            "attempts": 3, "interval": "1s", "request_timeout": "250ms",
            "env": {"NODE_ENV": "production", "WORKERS": 2, "DEBUG": false}
        }))
        .unwrap();
        assert_eq!(p.mode, Mode::Live);
        assert_eq!(p.services[0].script, "dist/main.js");
        assert_eq!(p.services[0].checks[0].expect, 200);
        assert_eq!(p.services[0].checks[1].expect, 404);
        assert_eq!((p.attempts, p.interval), (3, Duration::from_secs(1)));
        assert_eq!(p.request_timeout, Duration::from_millis(250));
        assert_eq!(
            p.env,
            [
                ("NODE_ENV".to_string(), "production".to_string()),
                ("WORKERS".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        let svc = |extra: Value| {
            let mut s = json!({"name": "backend", "checks": [{"path": "/health"}]});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"mode": "live", "release": "/customer/current", "services": [s]})
        };
        for (json, needle) in [
            (json!({"mode": "blue", "release": "/r"}), "mode"),
            (json!({"mode": "live"}), "release"),
            (
                json!({"mode": "candidate", "release": "/customer/current"}),
                "inside `current`",
            ),
            (
                json!({"mode": "candidate", "release": "/r/v2", "customer": "/customer/current/backend"}),
                "inside `current`",
            ),
            (
                json!({"mode": "candidate", "release": "/r/v2", "port_offset": 0}),
                "port_offset is 0",
            ),
            (
                json!({"mode": "live", "release": "/r", "services": []}),
                "empty",
            ),
            (svc(json!({"name": "../x"})), "services[0].name"),
            (svc(json!({"script": "../server.js"})), "services[0].script"),
            (svc(json!({"script": "/abs.js"})), "services[0].script"),
            (svc(json!({"script": "-i"})), "services[0].script"),
            (svc(json!({"checks": []})), "checks is empty"),
            (
                svc(json!({"checks": [{"path": "health"}]})),
                "checks[0].path",
            ),
            (
                svc(json!({"checks": [{"path": "//evil/x"}]})),
                "checks[0].path",
            ),
            (svc(json!({"checks": [{"path": "/a b"}]})), "checks[0].path"),
            (
                svc(json!({"checks": [{"path": "/", "expect": 42}]})),
                "not an HTTP status",
            ),
            (
                json!({"mode": "live", "release": "/r", "app_prefix": "a/b"}),
                "app_prefix",
            ),
            (
                json!({"mode": "live", "release": "/r", "env": {"PORT": "1"}}),
                "env: `PORT`",
            ),
            (
                json!({"mode": "live", "release": "/r", "attempts": 0}),
                "attempts",
            ),
            (
                json!({"mode": "live", "release": "/r", "interval": "fast"}),
                "interval",
            ),
            (
                json!({"mode": "live", "release": "/r", "request_timeout": "3"}),
                "request_timeout",
            ),
            (json!({"mode": "live", "release": "/r", "port": 1}), "port"),
        ] {
            let err = plan(json.clone()).expect_err(&json.to_string());
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(err.message().contains(needle), "{json}: {err}");
        }
        let dup = json!({"mode": "live", "release": "/r", "services": [
            {"name": "a", "checks": [{"path": "/"}]}, {"name": "a", "checks": [{"path": "/"}]}]});
        assert!(plan(dup).unwrap_err().message().contains("twice"));
    }

    #[test]
    fn exec_modes_from_jlist() {
        let out = "[PM2] Spawning PM2 daemon\n[{\"name\":\"a-backend-candidate\",\"pm2_env\":{\"exec_mode\":\"fork_mode\"}},{\"name\":\"a-backend\",\"pm2_env\":{\"exec_mode\":\"cluster_mode\"}},{\"name\":\"b\"}]\n";
        assert_eq!(
            exec_modes(out),
            [
                ("a-backend-candidate".to_string(), "fork_mode".to_string()),
                ("a-backend".to_string(), "cluster_mode".to_string()),
                ("b".to_string(), String::new()),
            ]
        );
        assert!(exec_modes("garbage").is_empty());
    }
}
