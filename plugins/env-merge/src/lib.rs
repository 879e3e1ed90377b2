//! `env-merge` step plugin (upgrade step 3 of plan §8): writes each service's `.env` into the
//! new release, merged from the live one.
//!
//! For every service, the live `<current>/<svc>/.env` is merged with the release's
//! `<release>/<svc>/.env.example` and the deliberate changes of the release catalog entry
//! (`env.<svc>`: `set` and `remove`, see [`upgrade_kit::catalog::EnvChanges`]), by the rules of
//! [`merge`]: existing keys keep their values, keys new in the example are added with the
//! example's value, keys the example does not know stay (reported as `extra`), and `set` /
//! `remove` apply. Changing an existing value or dropping a key needs a person's approval: the
//! step asks once for all services (`approval::request`, key names only) and waits up to
//! `approval_timeout`; a rejection or no answer fails the step, so the upgrade rolls back. When
//! nothing needs approval it does not ask.
//!
//! Only after that it writes `<release>/<svc>/.env` (temp file created 0600, synced, renamed,
//! folder synced). The old file's lines, order and comments are kept; new keys are appended
//! under `# added by upgrade to <version>`. Values never appear in logs, outputs, approval
//! details or errors: only key names do.
//!
//! Config (see [`Config`]):
//! - `services`: default `["backend", "admin", "store"]`.
//! - `current`: guest path of the live release, default `/customer/current`.
//! - `version`: the target release, default the `targetVersion` param.
//! - `release`: guest path of the target release folder, default
//!   `/customer/releases/<version>`.
//! - `catalog`: guest path of `releases.json`, default `/releases/releases.json`.
//! - `approval_timeout`: how long to wait for a decision, default `"15m"`.
//!
//! Grants: the customer folder read-write at `/customer` (`path = ""`; the defaults), or narrower
//! `current` read-only at e.g. `/current` and `releases/{{params.targetVersion}}` read-write at
//! e.g. `/release` (guest paths are not templated) with `current`/`release` set to them; the
//! catalog read-only (`from = "releases"`, `path = ""` at `/releases`). No commands.
//!
//! Outputs per service: `<svc>.added`, `<svc>.changed`, `<svc>.removed`, `<svc>.extra` (key
//! names, comma-separated, empty when none); and `approval`: `approved` or `not-needed`.

use upgrade_kit::duration;
pub mod envfile;
pub mod merge;

use std::io::Read as _;
use std::time::Duration;

use qodify_plugin_sdk::approval;
use qodify_plugin_sdk::path::normalize;
use qodify_plugin_sdk::prelude::*;
use upgrade_kit::catalog::{Catalog, EnvChanges};
use upgrade_kit::layout::{SERVICES, is_version_name};

use crate::merge::{Diff, Merged};

/// Largest `.env` / `.env.example` read.
const MAX_ENV_BYTES: u64 = 1 << 20;
/// Name of the temp file next to the `.env` being written.
const TMP_NAME: &str = ".env.env-merge.tmp";

/// The step's config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The services to merge.
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// Guest path of the live release (`current`).
    #[serde(default = "default_current")]
    pub current: String,
    /// Guest path of the target release folder; default `/customer/releases/<version>`.
    #[serde(default)]
    pub release: Option<String>,
    /// Guest path of `releases.json`.
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// The target release; default the `targetVersion` param.
    #[serde(default)]
    pub version: Option<String>,
    /// How long to wait for an approval, e.g. `"15m"`.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout: String,
}

fn default_services() -> Vec<String> {
    SERVICES.iter().map(|s| s.to_string()).collect()
}

fn default_current() -> String {
    "/customer/current".into()
}

fn default_catalog() -> String {
    "/releases/releases.json".into()
}

fn default_approval_timeout() -> String {
    "15m".into()
}

/// A checked config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The services, in order.
    pub services: Vec<String>,
    /// Normalised guest path of the live release.
    pub current: String,
    /// Normalised guest path of the target release folder.
    pub release: String,
    /// Normalised guest path of the catalog.
    pub catalog: String,
    /// The target release's version.
    pub version: String,
    /// How long to wait for an approval.
    pub approval_timeout: Duration,
}

impl Plan {
    /// Validates `config`; `target_version` is the run's `targetVersion` param, if any (pure).
    pub fn new(config: Config, target_version: Option<&str>) -> Result<Plan, Error> {
        let version = match config.version.as_deref().or(target_version) {
            Some(v) => v.to_string(),
            None => {
                return Err(Error::invalid_config(
                    "no target version: set `version` (e.g. \"{{params.targetVersion}}\") or give \
                     the pipeline a `targetVersion` param",
                ));
            }
        };
        if !is_version_name(&version) {
            return Err(Error::invalid_config(format!(
                "version `{version}` is not a release folder name ([A-Za-z0-9._+-], not starting \
                 with `.`); use the version exactly as releases.json names it"
            )));
        }
        if config.services.is_empty() {
            return Err(Error::invalid_config(
                "`services` is empty; list the services to merge, e.g. [\"backend\", \"admin\", \"store\"]",
            ));
        }
        for (i, svc) in config.services.iter().enumerate() {
            let plain = !svc.is_empty()
                && svc
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
            if !plain {
                return Err(Error::invalid_config(format!(
                    "services[{i}] `{svc}` is not a service folder name ([A-Za-z0-9_-])"
                )));
            }
            if config.services[..i].contains(svc) {
                return Err(Error::invalid_config(format!(
                    "service `{svc}` is listed twice in `services`"
                )));
            }
        }
        let release = config
            .release
            .unwrap_or_else(|| format!("/customer/releases/{version}"));
        let approval_timeout = duration::parse(&config.approval_timeout)
            .map_err(|e| Error::invalid_config(format!("approval_timeout: {e}")))?;
        Ok(Plan {
            services: config.services,
            current: normalize(&config.current).map_err(|e| e.context("current"))?,
            release: normalize(&release).map_err(|e| e.context("release"))?,
            catalog: normalize(&config.catalog).map_err(|e| e.context("catalog"))?,
            version,
            approval_timeout,
        })
    }
}

/// One service's merge, ready to write.
#[derive(Debug, Clone)]
pub struct ServiceMerge {
    /// The service.
    pub service: String,
    /// The folder to write `.env` into.
    pub dir: String,
    /// The result.
    pub merged: Merged,
}

/// Key names, comma-separated; `none` when empty (for logs).
fn list_or_none(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

/// One line for the run log: key names only.
pub fn log_line(service: &str, diff: &Diff) -> String {
    format!(
        "{service}: added {}; changed {}; removed {}; extra (kept) {}",
        list_or_none(&diff.added),
        list_or_none(&diff.changed),
        list_or_none(&diff.removed),
        list_or_none(&diff.extra)
    )
}

/// What needs approval, in one line: `backend changes A, B; store removes C` (key names only).
pub fn changes_needing_approval(merges: &[ServiceMerge]) -> String {
    let mut parts = Vec::new();
    for m in merges {
        let d = &m.merged.diff;
        if !d.changed.is_empty() {
            parts.push(format!("{} changes {}", m.service, d.changed.join(", ")));
        }
        if !d.removed.is_empty() {
            parts.push(format!("{} removes {}", m.service, d.removed.join(", ")));
        }
    }
    parts.join("; ")
}

/// The approval request: a one-line summary and JSON details, key names only.
pub fn approval_request(version: &str, merges: &[ServiceMerge]) -> (String, serde_json::Value) {
    let mut services = serde_json::Map::new();
    for m in merges {
        services.insert(
            m.service.clone(),
            serde_json::to_value(&m.merged.diff).unwrap_or(serde_json::Value::Null),
        );
    }
    let summary = format!(
        "the .env merge for {version} changes existing settings: {}",
        changes_needing_approval(merges)
    );
    let details = serde_json::json!({
        "kind": "env-merge",
        "version": version,
        "services": services,
    });
    (summary, details)
}

/// Reads a text file of at most 1 MiB; `None` when it does not exist.
fn read_text(path: &str) -> Result<Option<String>, Error> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::from(e).context(format!("reading {path}"))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {path}"))?;
    if bytes.len() as u64 > MAX_ENV_BYTES {
        return Err(Error::invalid_config(format!(
            "{path} is over 1 MiB, which is no .env file; check it"
        )));
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        Error::invalid_config(format!(
            "{path} is not UTF-8 text (byte {}); fix its encoding, then upgrade again",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Writes `text` as `<dir>/.env`: a 0600 temp file, synced, renamed over, folder synced.
fn write_env(dir: &str, text: &str) -> Result<(), Error> {
    let tmp = format!("{dir}/{TMP_NAME}");
    let path = format!("{dir}/.env");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::from(e).context(format!("removing the stale {tmp}"))),
    }
    // Mode first, content second: the secrets never sit in a world-readable file.
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {tmp}"))?;
    fs::set_mode(&tmp, 0o600)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {tmp}"))?;
    drop(file);
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {tmp} to {path}"))?;
    fs::sync_dir(dir)
}

/// Merges one service (reads only).
fn merge_service(
    ctx: &Context,
    plan: &Plan,
    service: &str,
    changes: &EnvChanges,
) -> Result<ServiceMerge, Error> {
    let old_path = format!("{}/{service}/.env", plan.current);
    let dir = format!("{}/{service}", plan.release);
    let example_path = format!("{dir}/.env.example");
    let old = read_text(&old_path)?.ok_or_else(|| {
        Error::not_found(format!(
            "{old_path} does not exist: the live {service} has no .env to carry over; put it back \
             (e.g. from the pre-upgrade backup), then upgrade again"
        ))
    })?;
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(Error::not_found(format!(
                "the release folder {dir} is missing; release-unpack must run before env-merge"
            )));
        }
    }
    let example = match read_text(&example_path)? {
        Some(text) => text,
        None => {
            ctx.warn(format!(
                "{example_path} does not exist: no new keys for {service}; every key is kept"
            ));
            String::new()
        }
    };
    let merged = merge::merge(&old, &example, changes, &plan.version);
    Ok(ServiceMerge {
        service: service.to_string(),
        dir,
        merged,
    })
}

struct EnvMerge;

impl Step for EnvMerge {
    type Config = Config;

    fn run(ctx: &Context, config: Config) -> Result<Output, Error> {
        let plan = Plan::new(config, ctx.param_str("targetVersion"))?;
        let catalog = Catalog::read(&plan.catalog)?;
        let release = catalog.release(&plan.version)?;
        for svc in release.env.keys() {
            if !plan.services.contains(svc) {
                ctx.warn(format!(
                    "the catalog has .env changes for `{svc}`, which is not in `services`; they are ignored"
                ));
            }
        }
        let none = EnvChanges::default();
        let total = plan.services.len() as f32;
        let mut merges = Vec::new();
        for (i, svc) in plan.services.iter().enumerate() {
            ctx.check_cancelled()?;
            ctx.progress(
                i as f32 / total * 50.0,
                format!("merging {svc}/.env for {}", plan.version),
            );
            let changes = release.env.get(svc).unwrap_or(&none);
            merge::check_changes(
                changes,
                &format!("{} release {} env.{svc}", plan.catalog, plan.version),
            )
            .map_err(Error::invalid_config)?;
            let m = merge_service(ctx, &plan, svc, changes)?;
            ctx.info(log_line(svc, &m.merged.diff));
            merges.push(m);
        }

        let needs_approval = merges.iter().any(|m| m.merged.diff.needs_approval());
        if needs_approval {
            let (summary, details) = approval_request(&plan.version, &merges);
            ctx.progress(50.0, "waiting for approval of the .env changes");
            ctx.info(format!(
                "asking for approval (waiting up to {}s): {summary}",
                plan.approval_timeout.as_secs()
            ));
            let approved = approval::request(&summary, &details, plan.approval_timeout).map_err(
                |e| match e.kind() {
                    ErrorKind::Cancelled => e,
                    _ => e.context(format!(
                        "the .env changes for {} were not approved in time; nothing was written \
                         and the upgrade rolls back (raise approval_timeout if people need longer)",
                        plan.version
                    )),
                },
            )?;
            if !approved {
                return Err(Error::permission_denied(format!(
                    "the .env changes for {} were rejected ({}); nothing was written and the \
                     upgrade rolls back. Change the release catalog's env changes or the live \
                     .env, then upgrade again",
                    plan.version,
                    changes_needing_approval(&merges)
                )));
            }
            ctx.info("the .env changes were approved");
        }

        let mut out = Output::new();
        for (i, m) in merges.iter().enumerate() {
            ctx.check_cancelled()?;
            ctx.progress(
                50.0 + i as f32 / total * 50.0,
                format!("writing {}/.env", m.service),
            );
            write_env(&m.dir, &m.merged.text)?;
            let d = &m.merged.diff;
            for (name, keys) in [
                ("added", &d.added),
                ("changed", &d.changed),
                ("removed", &d.removed),
                ("extra", &d.extra),
            ] {
                out.push_value(format!("{}.{name}", m.service), keys.join(","));
            }
        }
        out.push_value(
            "approval",
            if needs_approval {
                "approved"
            } else {
                "not-needed"
            },
        );
        ctx.progress(100.0, format!("wrote {} .env files", merges.len()));
        Ok(out)
    }
}

export_step!(EnvMerge);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value, param: Option<&str>) -> Result<Plan, Error> {
        let config: Config = qodify_plugin_sdk::__private::parse_config(&json.to_string())?;
        Plan::new(config, param)
    }

    #[test]
    fn defaults_follow_the_target_version_param() {
        let p = plan(serde_json::json!({}), Some("v1.1.0")).unwrap();
        assert_eq!(p.services, ["backend", "admin", "store"]);
        assert_eq!(p.current, "/customer/current");
        assert_eq!(p.release, "/customer/releases/v1.1.0");
        assert_eq!(p.catalog, "/releases/releases.json");
        assert_eq!(p.version, "v1.1.0");
        assert_eq!(p.approval_timeout, Duration::from_secs(900));
        let p = plan(
            serde_json::json!({"version": "v2", "release": "/r/v2/", "services": ["backend"],
                               "approval_timeout": "30s"}),
            Some("v1.1.0"),
        )
        .unwrap();
        assert_eq!((p.version.as_str(), p.release.as_str()), ("v2", "/r/v2"));
        assert_eq!(p.approval_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_configs_are_refused() {
        for (json, param, needle) in [
            (serde_json::json!({}), None, "no target version"),
            (
                serde_json::json!({"version": "../x"}),
                None,
                "release folder name",
            ),
            (serde_json::json!({"services": []}), Some("v1"), "empty"),
            (
                serde_json::json!({"services": ["a/b"]}),
                Some("v1"),
                "services[0]",
            ),
            (
                serde_json::json!({"services": ["a", "a"]}),
                Some("v1"),
                "twice",
            ),
            (
                serde_json::json!({"approval_timeout": "15"}),
                Some("v1"),
                "approval_timeout",
            ),
            (
                serde_json::json!({"current": "customer"}),
                Some("v1"),
                "current",
            ),
            (serde_json::json!({"catalgo": "/x"}), Some("v1"), "catalgo"),
        ] {
            let err = plan(json.clone(), param).expect_err(&json.to_string());
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(err.message().contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn log_lines_and_approval_name_keys_only() {
        let old = "PORT=47200\nPOOL=5\nSECRET=hunter2\nLEGACY=1\n";
        let example = "PORT=\nPOOL=\nSECRET=\nNEW=1\n";
        let changes = EnvChanges {
            set: [("POOL".to_string(), "super-secret-10".to_string())].into(),
            remove: vec!["SECRET".into()],
        };
        let merged = merge::merge(old, example, &changes, "v2");
        assert_eq!(
            log_line("backend", &merged.diff),
            "backend: added NEW; changed POOL; removed SECRET; extra (kept) LEGACY"
        );
        let merges = [
            ServiceMerge {
                service: "backend".into(),
                dir: "/r/backend".into(),
                merged,
            },
            ServiceMerge {
                service: "admin".into(),
                dir: "/r/admin".into(),
                merged: merge::merge("A=1\n", "A=\n", &EnvChanges::default(), "v2"),
            },
        ];
        let (summary, details) = approval_request("v2", &merges);
        assert_eq!(
            summary,
            "the .env merge for v2 changes existing settings: backend changes POOL; backend removes SECRET"
        );
        assert_eq!(
            changes_needing_approval(&merges),
            "backend changes POOL; backend removes SECRET"
        );
        assert_eq!(details["services"]["backend"]["changed"][0], "POOL");
        assert_eq!(details["services"]["admin"]["added"], serde_json::json!([]));
        let all = format!("{summary}{details}");
        for secret in ["hunter2", "super-secret-10", "47200"] {
            assert!(!all.contains(secret), "{all}");
        }
    }
}
