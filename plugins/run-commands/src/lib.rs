//! `run-commands` step plugin: runs granted host programs in order (upgrade step 4 of plan §8:
//! `npm ci`, migrations, builds) and stops at the first that fails.
//!
//! Each command runs through the host's command grants, in its `cwd` (a guest path inside a
//! mount), with its `env` and `timeout`. Its stdout goes to the run log as it comes; its stderr is
//! captured and then written to the run log too, so that a failure (a non-zero exit, a timeout)
//! can quote the end of it: the step fails with `<label> failed: <program> exited with code N:`
//! and the last stderr lines. Env values are never logged, and are masked in the stderr the step
//! logs or quotes.
//!
//! With `journal`, the upgrade journal (`<releases>/.upgrade.json`, see
//! [`upgrade_kit::journal`]) gets `migrate = "started"` before the first command and
//! `migrate = "done"` after the last: the rollback reads it to know whether the database may
//! have changed (a failed migration leaves it `started`).
//!
//! Config (see [`Config`]):
//! - `commands`: a list of `{program, args, cwd, env, timeout, label}`; `program` is a bare name
//!   (granted under `[[steps.commands]]`), `args` a list of strings (each must match a granted
//!   pattern), `cwd` an absolute guest path (default: the step's first mount), `env` a table of
//!   names (granted) to values, `timeout` like `"10m"` (default: the step's own limit), `label`
//!   a name for progress and errors (default: the program and its arguments). Args and env
//!   values may be numbers or bools (a lone template keeps its param's type); an env value of
//!   `false` leaves the variable unset, so `SKIP_TYPE_CHECK = "{{params.skipTypeCheck}}"` sets
//!   it (to `true`) only when the param is true.
//! - `journal`: optional `{releases, key}`: `releases` is the guest path of the releases folder
//!   (default `/customer/releases`, a read-write mount), `key` is `"migrate"`.
//!
//! Outputs: `commands` (how many ran) and, per command `N` (from 1), `N.label` and `N.seconds`.

use upgrade_kit::duration;

use std::collections::BTreeMap;
use std::time::Duration;

use qodify_plugin_sdk::command::{Command, Stdio};
use qodify_plugin_sdk::path::normalize;
use qodify_plugin_sdk::prelude::*;
use upgrade_kit::journal::{Journal, Migrate};

/// Longest label shown.
const MAX_LABEL: usize = 120;

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The commands, run in order.
    pub commands: Vec<CommandConfig>,
    /// Mark the upgrade journal's `migrate` around the commands.
    #[serde(default)]
    pub journal: Option<JournalConfig>,
}

/// One command of the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Bare program name, e.g. `npm`.
    pub program: String,
    /// Arguments (strings, or numbers and bools from a lone template).
    #[serde(default)]
    pub args: Vec<Scalar>,
    /// Working folder, a guest path inside a mount; default the step's first mount.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment variables to set (names must be granted); `false` leaves one unset.
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// Timeout, e.g. `"10m"`; default the step's limit.
    #[serde(default)]
    pub timeout: Option<String>,
    /// A name for progress and errors, e.g. `npm ci (backend)`.
    #[serde(default)]
    pub label: Option<String>,
}

/// A config value: a string, or a number or bool (a config string that is exactly one template,
/// such as `"{{params.heapMB}}"`, keeps the param's type).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// A bool.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Another number.
    Float(f64),
}

impl Scalar {
    /// The value as text: `true`/`false`, numbers in decimal.
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
        }
    }
}

/// Which journal field the commands move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalKey {
    /// `migrate`: `started` before the first command, `done` after the last.
    Migrate,
}

/// The `journal` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Guest path of the customer's `releases` folder (holding `.upgrade.json`).
    #[serde(default = "default_releases")]
    pub releases: String,
    /// The journal field to set.
    pub key: JournalKey,
}

fn default_releases() -> String {
    "/customer/releases".into()
}

/// A checked command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// For progress and errors.
    pub label: String,
    /// Bare program name.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Normalised working folder.
    pub cwd: Option<String>,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// Timeout.
    pub timeout: Option<Duration>,
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The commands in order.
    pub commands: Vec<Planned>,
    /// The releases folder whose journal to mark, if any.
    pub journal: Option<String>,
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Plan {
    /// Validates `config` (pure).
    pub fn new(config: Config) -> Result<Plan, Error> {
        if config.commands.is_empty() {
            return Err(Error::invalid_config(
                "`commands` is empty; list at least one {program, args, cwd}",
            ));
        }
        let mut commands = Vec::new();
        for (i, c) in config.commands.into_iter().enumerate() {
            let at = format!("commands[{i}]");
            let plain = !c.program.is_empty()
                && c.program
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
            if !plain {
                return Err(Error::invalid_config(format!(
                    "{at}.program `{}` is not a bare program name such as `npm`; the host looks \
                     granted programs up itself",
                    c.program
                )));
            }
            let cwd = match &c.cwd {
                Some(cwd) => Some(normalize(cwd).map_err(|e| e.context(format!("{at}.cwd")))?),
                None => None,
            };
            for name in c.env.keys() {
                if !is_env_name(name) {
                    return Err(Error::invalid_config(format!(
                        "{at}.env: `{name}` is not an environment variable name"
                    )));
                }
            }
            let args: Vec<String> = c.args.iter().map(Scalar::text).collect();
            // `false` means "not set": tools such as the fixture's build test a flag's presence,
            // and `SKIP_TYPE_CHECK = "{{params.skipTypeCheck}}"` must not set it when false.
            let env: Vec<(String, String)> = c
                .env
                .into_iter()
                .filter(|(_, v)| *v != Scalar::Bool(false))
                .map(|(k, v)| (k, v.text()))
                .collect();
            let timeout = match &c.timeout {
                Some(t) => Some(
                    duration::parse(t)
                        .map_err(|e| Error::invalid_config(format!("{at}.timeout: {e}")))?,
                ),
                None => None,
            };
            let label = match c.label {
                Some(l) if !l.trim().is_empty() => l,
                Some(_) => {
                    return Err(Error::invalid_config(format!(
                        "{at}.label is empty; leave it out or name the command"
                    )));
                }
                None => std::iter::once(c.program.as_str())
                    .chain(args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            commands.push(Planned {
                label: clip(&label, MAX_LABEL),
                program: c.program,
                args,
                cwd,
                env,
                timeout,
            });
        }
        let journal = match config.journal {
            Some(j) => {
                let JournalKey::Migrate = j.key;
                Some(normalize(&j.releases).map_err(|e| e.context("journal.releases"))?)
            }
            None => None,
        };
        Ok(Plan { commands, journal })
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Masks every env value (3 characters or more, like the host) in `text`.
pub fn mask(text: &str, env: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (_, value) in env {
        if value.len() >= 3 && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), "***");
        }
    }
    out
}

/// Runs one command: stdout to the log, stderr captured, logged, and quoted on failure.
fn run_one(ctx: &Context, c: &Planned) -> Result<(), Error> {
    let mut cmd = Command::new(&c.program)
        .args(c.args.iter().cloned())
        .stdout(Stdio::Log)
        .stderr(Stdio::Capture);
    if let Some(cwd) = &c.cwd {
        cmd = cmd.cwd(cwd.clone());
    }
    for (name, value) in &c.env {
        cmd = cmd.env(name.clone(), value.clone());
    }
    if let Some(t) = c.timeout {
        cmd = cmd.timeout(t);
    }
    let fail = |e: Error| {
        let mut message = mask(e.message(), &c.env);
        if let (Some(t), true) = (c.timeout, message.ends_with("timed out")) {
            message.push_str(&format!(
                " after {}s; raise the command's `timeout` (and the step's limit) if it needs longer",
                t.as_secs()
            ));
        }
        Error::new(e.kind(), format!("{} failed: {message}", c.label))
    };
    let out = cmd.run().map_err(fail)?;
    for line in out.stderr_text().lines().filter(|l| !l.trim().is_empty()) {
        ctx.info(mask(line, &c.env));
    }
    out.check().map(drop).map_err(fail)
}

struct RunCommands;

impl Step for RunCommands {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config)?;
        if let Some(releases) = &plan.journal {
            Journal::update(&fs::HostFs, releases, |j| j.migrate = Migrate::Started)?;
            ctx.info("upgrade journal: migrate = started");
        }
        let n = plan.commands.len();
        let mut out = Output::new().value("commands", n);
        for (i, c) in plan.commands.iter().enumerate() {
            ctx.check_cancelled()?;
            ctx.progress(
                i as f32 / n as f32 * 100.0,
                format!("{} ({}/{n})", c.label, i + 1),
            );
            let env_names: Vec<&str> = c.env.iter().map(|(k, _)| k.as_str()).collect();
            ctx.info(format!(
                "running {}: {} {}{}{}",
                c.label,
                c.program,
                c.args.join(" "),
                c.cwd
                    .as_ref()
                    .map(|d| format!(" in {d}"))
                    .unwrap_or_default(),
                if env_names.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", env_names.join(", "))
                }
            ));
            let started = std::time::Instant::now();
            run_one(ctx, c)?;
            let seconds = started.elapsed().as_secs_f64();
            ctx.info(format!("{} done in {seconds:.1}s", c.label));
            out.push_value(format!("{}.label", i + 1), &c.label);
            out.push_value(format!("{}.seconds", i + 1), format!("{seconds:.1}"));
        }
        if let Some(releases) = &plan.journal {
            Journal::update(&fs::HostFs, releases, |j| j.migrate = Migrate::Done)?;
            ctx.info("upgrade journal: migrate = done");
        }
        ctx.progress(100.0, format!("{n} commands done"));
        Ok(out)
    }
}

export_step!(RunCommands);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> Result<Plan, Error> {
        let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
        Plan::new(config)
    }

    #[test]
    fn commands_are_checked_and_defaults_filled() {
        let p = plan(serde_json::json!({
            "commands": [
                {"program": "npm", "args": ["ci", "--no-audit"], "cwd": "/customer/releases/v2/backend/",
                 "env": {"NODE_OPTIONS": "--max-old-space-size=2048", "CI": "1"},
                 "timeout": "10m", "label": "npm ci (backend)"},
                {"program": "node", "args": ["migrate.js"]}
            ],
            "journal": {"key": "migrate"}
        }))
        .unwrap();
        let a = &p.commands[0];
        assert_eq!(a.label, "npm ci (backend)");
        assert_eq!(a.cwd.as_deref(), Some("/customer/releases/v2/backend"));
        assert_eq!(
            a.env,
            [
                ("CI".to_string(), "1".to_string()),
                (
                    "NODE_OPTIONS".to_string(),
                    "--max-old-space-size=2048".to_string()
                )
            ]
        );
        assert_eq!(a.timeout, Some(Duration::from_secs(600)));
        let b = &p.commands[1];
        assert_eq!(b.label, "node migrate.js");
        assert_eq!((b.cwd.as_ref(), b.timeout), (None, None));
        assert_eq!(p.journal.as_deref(), Some("/customer/releases"));
        let p = plan(serde_json::json!({"commands": [{"program": "npm"}]})).unwrap();
        assert_eq!(p.journal, None);
    }

    #[test]
    fn bad_configs_are_refused() {
        for (json, needle) in [
            (serde_json::json!({"commands": []}), "empty"),
            (
                serde_json::json!({"commands": [{"program": "/usr/bin/npm"}]}),
                "commands[0].program",
            ),
            (
                serde_json::json!({"commands": [{"program": "npm"}, {"program": "npm", "cwd": "rel"}]}),
                "commands[1].cwd",
            ),
            (
                serde_json::json!({"commands": [{"program": "npm", "env": {"A-B": "1"}}]}),
                "commands[0].env",
            ),
            (
                serde_json::json!({"commands": [{"program": "npm", "timeout": "10"}]}),
                "commands[0].timeout",
            ),
            (
                serde_json::json!({"commands": [{"program": "npm", "label": " "}]}),
                "label is empty",
            ),
            (
                serde_json::json!({"commands": [{"program": "npm"}], "journal": {"key": "swapped"}}),
                "journal.key",
            ),
            (
                serde_json::json!({"commands": [{"program": "npm", "argz": []}]}),
                "argz",
            ),
        ] {
            let err = plan(json.clone()).expect_err(&json.to_string());
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(err.message().contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn typed_template_values_become_text_and_false_unsets() {
        let p = plan(serde_json::json!({
            "commands": [{"program": "node", "args": ["--max-old-space-size", 2048, true],
                          "env": {"NODE_OPTIONS": "--max-old-space-size=2048", "HEAP": 2048,
                                  "RATIO": 0.5, "SKIP_TYPE_CHECK": true, "OFF": false}}]
        }))
        .unwrap();
        let c = &p.commands[0];
        assert_eq!(c.args, ["--max-old-space-size", "2048", "true"]);
        assert_eq!(c.label, "node --max-old-space-size 2048 true");
        let env: Vec<(&str, &str)> = c
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("HEAP", "2048"),
                ("NODE_OPTIONS", "--max-old-space-size=2048"),
                ("RATIO", "0.5"),
                ("SKIP_TYPE_CHECK", "true")
            ]
        );
        let err = plan(serde_json::json!({"commands": [{"program": "x", "env": {"A": [1]}}]}))
            .unwrap_err();
        assert!(err.message().contains("commands[0].env.A"), "{err}");
    }

    #[test]
    fn env_values_are_masked() {
        let env = vec![
            (
                "DATABASE_URL".to_string(),
                "postgres://u:pw@h/db".to_string(),
            ),
            ("X".to_string(), "1".to_string()),
        ];
        assert_eq!(
            mask("connect postgres://u:pw@h/db failed (1 try)", &env),
            "connect *** failed (1 try)"
        );
    }
}
