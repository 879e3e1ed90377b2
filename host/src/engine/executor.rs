//! Runs a resolved [`Plan`] for one customer: stages in order (the steps of a group at once),
//! then `on_failure` stages when something failed, then `finally` stages always. Every artifact a
//! step returns is re-hashed by the host before anything records it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::backups;
use crate::customer::Customer;
use crate::engine::bindings::{StepPre, types};
use crate::engine::caps::{CancelToken, StepHost};
use crate::engine::plugins::Catalog;
use crate::engine::runtime::{Runtime, StepCall, StepFailure, StepState};
use crate::engine::sandbox::{MountTable, Roots};
use crate::events::{Event, EventSink, RunStatus, VerifiedArtifact};
use crate::files::{HashBounds, hash_file_at, private_dir_all};
use crate::pipeline::units::{human_bytes, human_duration};
use crate::pipeline::{MountRoot, OutputKind, ParamValue, Plan, PlannedStep, Stage};
use crate::settings::Settings;

/// One run to execute.
pub struct RunRequest<'a> {
    /// The resolved pipeline.
    pub plan: &'a Plan,
    /// Whose run it is.
    pub customer: &'a Customer,
    /// The run's id.
    pub run_id: String,
    /// `YYYYMMDD-HHMMSS` (UTC) of the run's start.
    pub timestamp: String,
    /// Where plugins come from.
    pub catalog: &'a Catalog,
    /// Folders and ceilings.
    pub settings: &'a Settings,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
    /// The run's cancellation flag.
    pub cancel: CancelToken,
    /// `Some(why)`: the run was interrupted by a host crash; run only its `on_failure` and
    /// `finally` steps now (the pipeline's `recover = "on_failure"`), with `why` as its error.
    pub recovery: Option<String>,
    /// Where its steps' approval requests are kept; `None`: files in the data folder.
    pub approvals: Option<Arc<dyn crate::engine::caps::approvals::ApprovalBook>>,
}

/// What happened to one step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    /// Step id.
    pub id: String,
    /// Plugin id.
    pub plugin: String,
    /// `succeeded`, `failed` or `skipped`.
    pub status: &'static str,
    /// Checked artifacts.
    pub artifacts: Vec<VerifiedArtifact>,
    /// Key/value outputs.
    pub outputs: Vec<(String, String)>,
    /// The failure, when it failed; the reason, when skipped.
    pub error: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
    /// The host programs and HTTP origins it called, allowed or refused.
    #[serde(skip_serializing_if = "crate::engine::caps::Usage::is_empty")]
    pub used: crate::engine::caps::Usage,
}

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    /// Run id.
    pub run_id: String,
    /// Final status.
    pub status: RunStatus,
    /// Every step that ran or was skipped, in order.
    pub steps: Vec<StepRecord>,
    /// The first error.
    pub error: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
    /// The id of the backup the run completed, if it made one.
    pub backup: Option<String>,
    /// The main step that failed first, when one did.
    pub failed_step: Option<String>,
    /// What the `on_failure` steps undid: their `rolled-back` outputs (e.g. `code: current back
    /// to releases/v1.0.0`), in order.
    pub rolled_back: Vec<String>,
}

/// Current UTC time as `YYYYMMDD-HHMMSS`.
pub fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(time::macros::format_description!(
        "[year][month][day]-[hour][minute][second]"
    ))
    .unwrap_or_else(|_| "19700101-000000".into())
}

/// A fresh run id.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Checks every step's limits against the host ceilings and returns (memory, timeout) per step.
fn effective_limits(
    plan: &Plan,
    settings: &Settings,
) -> anyhow::Result<HashMap<String, (u64, Duration)>> {
    let c = &settings.ceilings;
    let mut out = HashMap::new();
    for s in plan.all_steps() {
        let mem = s.limits.memory_bytes.unwrap_or(c.default_memory_bytes);
        let time = s.limits.timeout.unwrap_or(c.default_timeout);
        anyhow::ensure!(
            mem <= c.max_memory_bytes,
            "step {} asks for {} of memory, above the host ceiling of {} (lower limits.memory, or raise limits.max_memory in qodify-host.toml)",
            s.id,
            human_bytes(mem),
            human_bytes(c.max_memory_bytes)
        );
        anyhow::ensure!(
            time <= c.max_timeout,
            "step {} asks for a {} timeout, above the host ceiling of {} (lower limits.timeout, or raise limits.max_timeout in qodify-host.toml)",
            s.id,
            human_duration(time),
            human_duration(c.max_timeout)
        );
        out.insert(s.id.clone(), (mem, time));
    }
    Ok(out)
}

struct Prepared {
    pres: HashMap<String, StepPre<StepState>>,
    limits: HashMap<String, (u64, Duration)>,
}

/// Loads, checks and compiles every plugin the plan uses, before any step runs: a missing plugin,
/// a pin mismatch or a limit above the ceiling refuses the whole run.
fn prepare(runtime: &Runtime, req: &RunRequest<'_>) -> anyhow::Result<Prepared> {
    let limits = effective_limits(req.plan, req.settings)?;
    let mut pres = HashMap::new();
    // Steps sharing a plugin and pin share one read, hash and compile.
    let mut by_plugin: HashMap<(&str, Option<&str>), StepPre<StepState>> = HashMap::new();
    for s in req.plan.all_steps() {
        let key = (s.plugin.as_str(), s.sha256.as_deref());
        let pre = match by_plugin.get(&key) {
            Some(pre) => pre.clone(),
            None => {
                let (_, bytes) = req.catalog.read(&s.plugin, s.sha256.as_deref())?;
                let pre = runtime
                    .prepare(&bytes)
                    .with_context(|| format!("loading plugin `{}` for step {}", s.plugin, s.id))?;
                by_plugin.insert(key, pre.clone());
                pre
            }
        };
        pres.insert(s.id.clone(), pre);
    }
    Ok(Prepared { pres, limits })
}

/// Runs a plan to the end. Errors are reported in the outcome; `Err` only when the run could not
/// start at all (then nothing ran).
pub fn execute(runtime: &Runtime, req: RunRequest<'_>) -> anyhow::Result<RunOutcome> {
    // Held until the run ends; the kernel drops it if this process dies.
    let lock = crate::engine::lock::acquire(
        &req.settings.customers_root,
        req.customer.domain.as_str(),
        &req.run_id,
        &req.plan.pipeline,
    )?;
    execute_locked(runtime, req, &lock)
}

/// [`execute`] for a caller that already holds the customer's lock (the use cases in `ops::recover`
/// finish an interrupted run under the same lock first).
pub fn execute_locked(
    runtime: &Runtime,
    req: RunRequest<'_>,
    _lock: &crate::engine::lock::CustomerLock,
) -> anyhow::Result<RunOutcome> {
    with_work_folder(runtime, &req, None)
}

/// Runs a plan against `folder` as the customer's folder instead of
/// `<customers_root>/<domain>`, with no customer lock: `qodify-host step` on a plugin author's
/// fixture. Grants, limits and confinement are those of any run.
pub fn execute_on_folder(
    runtime: &Runtime,
    req: RunRequest<'_>,
    folder: &Path,
) -> anyhow::Result<RunOutcome> {
    with_work_folder(runtime, &req, Some(folder))
}

/// Runs the plan with the run's private work folder (`<data_dir>/runs/<run-id>/work`), removed
/// with its run folder afterwards whatever happened.
fn with_work_folder(
    runtime: &Runtime,
    req: &RunRequest<'_>,
    folder: Option<&Path>,
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let work = req
        .settings
        .data_dir
        .join("runs")
        .join(&req.run_id)
        .join("work");
    private_dir_all(&work)
        .with_context(|| format!("creating the run's work folder {}", work.display()))?;
    let outcome = execute_in(runtime, req, &work, folder, started);
    if let Some(run_dir) = work.parent() {
        let _ = std::fs::remove_dir_all(run_dir);
    }
    outcome
}

fn execute_in(
    runtime: &Runtime,
    req: &RunRequest<'_>,
    work: &Path,
    folder: Option<&Path>,
    started: Instant,
) -> anyhow::Result<RunOutcome> {
    let prepared = prepare(runtime, req)?;
    let mut roots = match folder {
        Some(folder) => Roots::open_folder(folder, work)?,
        None => Roots::open(
            &req.settings.customers_root,
            req.customer.domain.as_str(),
            work,
        )?,
    };
    if let Ok(dir) =
        cap_std::fs::Dir::open_ambient_dir(&req.settings.releases_dir, cap_std::ambient_authority())
    {
        roots.releases = Some((dir, req.settings.releases_dir.clone()));
    }
    // A recovery runs only the undo steps of a run whose backup, if it made one, is complete
    // already (its id taken): no new backup folder.
    let partial = match req.plan.output {
        Some(OutputKind::Backup) if req.recovery.is_none() => {
            let p = backups::begin(&roots.customer, &req.run_id, &req.timestamp)
                .context("starting the backup folder")?;
            let path = roots.customer_path.join(backups::BACKUPS).join(format!(
                "{}{}",
                backups::PARTIAL_PREFIX,
                req.run_id
            ));
            roots.backup = Some((p.dir.try_clone()?, path));
            roots.links = Some(p.links());
            Some(p)
        }
        _ => None,
    };
    req.events.emit(Event::RunStarted {
        run_id: req.run_id.clone(),
        pipeline: req.plan.pipeline.clone(),
        customer: req.customer.domain.to_string(),
        steps: req
            .plan
            .stages
            .iter()
            .flat_map(|s| s.steps.iter().map(|s| s.id.clone()))
            .collect(),
    });
    for skipped in &req.plan.skipped {
        req.events.emit(Event::StepSkipped {
            step: skipped.id.clone(),
            reason: skipped.reason.clone(),
        });
    }

    let mut records = Vec::new();
    let mut previous: Vec<types::StepOutputs> = Vec::new();
    let mut first_error: Option<String> = None;
    let mut status = RunStatus::Succeeded;

    let run_stages = |stages: &[Stage],
                      records: &mut Vec<StepRecord>,
                      previous: &mut Vec<types::StepOutputs>,
                      stop_on_failure: bool|
     -> Option<(RunStatus, String)> {
        let mut failure = None;
        for stage in stages {
            if stop_on_failure && failure.is_some() {
                break;
            }
            if stop_on_failure && req.cancel.is_cancelled() {
                failure = Some((RunStatus::Cancelled, "the run was cancelled".to_owned()));
                break;
            }
            let results: Vec<StepRecord> = if stage.steps.len() == 1 {
                vec![run_step(
                    runtime,
                    req,
                    &prepared,
                    &roots,
                    &stage.steps[0],
                    previous,
                )]
            } else {
                // The run's span goes along, so the steps' lines still name their run.
                let span = tracing::Span::current();
                std::thread::scope(|scope| {
                    let handles: Vec<_> = stage
                        .steps
                        .iter()
                        .map(|s| {
                            let previous = previous.clone();
                            let prepared = &prepared;
                            let roots = &roots;
                            let span = &span;
                            scope.spawn(move || {
                                span.in_scope(|| {
                                    run_step(runtime, req, prepared, roots, s, &previous)
                                })
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("step thread panicked"))
                        .collect()
                })
            };
            for r in results {
                if r.status == "failed" && failure.is_none() {
                    let st = if req.cancel.is_cancelled() {
                        RunStatus::Cancelled
                    } else {
                        RunStatus::Failed
                    };
                    failure = Some((st, r.error.clone().unwrap_or_default()));
                }
                if r.status == "succeeded" {
                    previous.push(types::StepOutputs {
                        step: r.id.clone(),
                        artifacts: r
                            .artifacts
                            .iter()
                            .map(|a| types::Artifact {
                                name: a.name.clone(),
                                path: a.guest_path.clone(),
                                size: a.size,
                                sha256: a.sha256.clone(),
                            })
                            .collect(),
                        outputs: r
                            .outputs
                            .iter()
                            .map(|(k, v)| types::Output {
                                key: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                    });
                }
                records.push(r);
            }
        }
        failure
    };

    let mut backup_id = None;
    // The backup completes after the stage holding `backup_complete_after`, or after the last.
    let split = req
        .plan
        .backup_complete_after
        .as_ref()
        .and_then(|id| {
            req.plan
                .stages
                .iter()
                .position(|st| st.steps.iter().any(|s| &s.id == id))
        })
        .map_or(req.plan.stages.len(), |i| i + 1);
    let (before, after) = req.plan.stages.split_at(split);
    let mut failure = match &req.recovery {
        Some(reason) => Some((RunStatus::Failed, reason.clone())),
        None => run_stages(before, &mut records, &mut previous, true),
    };
    if failure.is_none()
        && let Some(p) = &partial
    {
        // Every artifact written into the backup folder was already re-hashed by the host.
        let verified: Vec<VerifiedArtifact> = records
            .iter()
            .flat_map(|r| r.artifacts.iter().filter(|a| a.root == "backup").cloned())
            .collect();
        match p.finalize(&verified) {
            Ok(_) => {
                backup_id = Some(p.id.clone());
                if let Some(reason) = &req.plan.backup_pin
                    && let Err(e) = backups::pin(&roots.customer, &p.id, reason)
                {
                    failure = Some((
                        RunStatus::Failed,
                        format!("pinning backup {} ({reason}): {e:#}", p.id),
                    ));
                }
                req.events.emit(Event::BackupCompleted {
                    backup: p.id.clone(),
                    pinned: req.plan.backup_pin.clone(),
                });
            }
            Err(e) => {
                failure = Some((
                    RunStatus::Failed,
                    format!("completing backup {}: {e:#}", p.id),
                ))
            }
        }
    }
    if failure.is_none() && !after.is_empty() {
        failure = run_stages(after, &mut records, &mut previous, true);
    }
    if let Some((st, err)) = failure {
        status = st;
        first_error = Some(err);
        run_stages(&req.plan.on_failure, &mut records, &mut previous, false);
    } else if let Some((st, err)) =
        run_stages(&req.plan.on_success, &mut records, &mut previous, true)
    {
        status = st;
        first_error = Some(match &backup_id {
            Some(id) => format!("backup {id} is complete, but {err}"),
            None => err,
        });
    }
    // A backup folder that did not complete is never left behind to be mistaken for one.
    if backup_id.is_none()
        && let Some(p) = partial
    {
        p.abort();
    }
    if let Some((st, err)) = run_stages(&req.plan.finally, &mut records, &mut previous, false)
        && first_error.is_none()
    {
        status = st;
        first_error = Some(err);
    }
    let main_ids: std::collections::HashSet<&str> = req
        .plan
        .stages
        .iter()
        .flat_map(|st| st.steps.iter().map(|s| s.id.as_str()))
        .collect();
    let failed_step = records
        .iter()
        .find(|r| r.status == "failed" && main_ids.contains(r.id.as_str()))
        .map(|r| r.id.clone());
    let on_failure_ids: std::collections::HashSet<&str> = req
        .plan
        .on_failure
        .iter()
        .flat_map(|st| st.steps.iter().map(|s| s.id.as_str()))
        .collect();
    let rolled_back: Vec<String> = records
        .iter()
        .filter(|r| on_failure_ids.contains(r.id.as_str()))
        .flat_map(|r| r.outputs.iter())
        .filter(|(k, _)| k == "rolled-back")
        .map(|(_, v)| v.clone())
        .collect();
    if status != RunStatus::Succeeded && !rolled_back.is_empty() {
        first_error = Some(format!(
            "{}; rolled back: {}",
            first_error.unwrap_or_default(),
            rolled_back.join("; ")
        ));
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    req.events.emit(Event::RunFinished {
        run_id: req.run_id.clone(),
        status,
        duration_ms,
        error: first_error.clone(),
        backup: backup_id.clone(),
    });
    Ok(RunOutcome {
        run_id: req.run_id.clone(),
        status,
        steps: records,
        error: first_error,
        duration_ms,
        backup: backup_id,
        failed_step,
        rolled_back,
    })
}

fn param_value(v: &ParamValue) -> types::ParamValue {
    match v {
        ParamValue::Bool(b) => types::ParamValue::Boolean(*b),
        ParamValue::Int(i) => types::ParamValue::Integer(*i),
        ParamValue::String(s) => types::ParamValue::Text(s.clone()),
    }
}

fn run_step(
    runtime: &Runtime,
    req: &RunRequest<'_>,
    prepared: &Prepared,
    roots: &Roots,
    step: &PlannedStep,
    previous: &[types::StepOutputs],
) -> StepRecord {
    let _in_step = crate::logs::step_span(&step.id).entered();
    let started = Instant::now();
    let mut record = StepRecord {
        id: step.id.clone(),
        plugin: step.plugin.clone(),
        status: "failed",
        artifacts: Vec::new(),
        outputs: Vec::new(),
        error: None,
        duration_ms: 0,
        used: Default::default(),
    };
    let ledger = crate::engine::caps::UsageLedger::default();
    let used = || ledger.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let fail = |mut record: StepRecord, err: String| {
        record.duration_ms = started.elapsed().as_millis() as u64;
        record.used = used();
        req.events.emit(Event::StepFailed {
            step: record.id.clone(),
            duration_ms: record.duration_ms,
            error: err.clone(),
        });
        record.error = Some(err);
        record
    };
    if req.cancel.is_cancelled() {
        return fail(
            record,
            StepFailure::Cancelled {
                step: step.id.clone(),
            }
            .to_string(),
        );
    }
    let mounts = match MountTable::resolve(&step.mounts, roots) {
        Ok(Some(m)) => m,
        Ok(None) => {
            let reason = "an optional mount's folder is missing".to_owned();
            req.events.emit(Event::StepSkipped {
                step: step.id.clone(),
                reason: reason.clone(),
            });
            record.status = "skipped";
            record.error = Some(reason);
            return record;
        }
        Err(e) => return fail(record, format!("step {}: {e}", step.id)),
    };
    let confinement = crate::engine::confine::Confinement::new(req.settings.commands.confinement);
    if !step.commands.is_empty()
        && let Err(e) = confinement.check()
    {
        return fail(record, format!("step {}: {e}", step.id));
    }
    req.events.emit(Event::StepStarted {
        step: step.id.clone(),
        plugin: step.plugin.clone(),
    });

    let (memory_bytes, timeout) = prepared.limits[&step.id];
    let context = types::StepContext {
        customer: types::Customer {
            id: req.customer.id.clone(),
            domain: req.customer.domain.to_string(),
        },
        run_id: req.run_id.clone(),
        run_timestamp: req.timestamp.clone(),
        step_id: step.id.clone(),
        params: req
            .plan
            .params
            .iter()
            .map(|(k, v)| types::Param {
                name: k.clone(),
                value: param_value(v),
            })
            .collect(),
        config: step.config.to_string(),
        mounts: mounts
            .iter()
            .map(|m| types::Mount {
                guest_path: m.guest.clone(),
                writable: m.writable,
            })
            .collect(),
        previous: previous.to_vec(),
    };
    let mut host = StepHost::new(
        step.id.clone(),
        mounts,
        req.events.clone(),
        req.cancel.clone(),
        Instant::now() + timeout,
    )
    .with_commands(
        step.commands.clone(),
        confinement,
        req.settings.commands.host_paths.clone(),
    )
    .with_secrets_dir(req.settings.secrets_dir.clone())
    .with_http(step.http.clone())
    .with_approvals(crate::engine::caps::approvals::ApprovalDesk {
        book: req.approvals.clone().unwrap_or_else(|| {
            Arc::new(crate::engine::caps::approvals::FileBook {
                data_dir: req.settings.data_dir.clone(),
            })
        }),
        run_id: req.run_id.clone(),
    })
    .with_max_log_lines(req.settings.ceilings.max_log_lines)
    .with_usage(ledger.clone());
    if let Some(links) = &roots.links {
        host = host.with_links(links.clone());
    }
    if let Ok(work) = roots.work.try_clone() {
        host = host.with_work(work, roots.work_path.clone());
    }
    let call = StepCall {
        context,
        host,
        memory_bytes,
        timeout,
    };
    let (result, host) = match runtime.call(&prepared.pres[&step.id], call) {
        Ok(r) => r,
        Err(e) => return fail(record, e.to_string()),
    };
    match check_result(&result, &host, req.settings.ceilings.max_outputs) {
        Ok(artifacts) => record.artifacts = artifacts,
        Err(message) => {
            return fail(
                record,
                StepFailure::InvalidResult {
                    step: step.id.clone(),
                    message,
                }
                .to_string(),
            );
        }
    }
    record.outputs = result
        .outputs
        .iter()
        .map(|o| (o.key.clone(), host.redact(&o.value)))
        .collect();
    record.status = "succeeded";
    record.duration_ms = started.elapsed().as_millis() as u64;
    record.used = used();
    req.events.emit(Event::StepSucceeded {
        step: step.id.clone(),
        duration_ms: record.duration_ms,
        artifacts: record.artifacts.clone(),
        outputs: record.outputs.clone(),
    });
    record
}

/// Checks what a plugin returned: counts, and every artifact's size and sha256 against the file,
/// which must be a regular file inside the step's mounts (never reached through a symlink).
fn check_result(
    result: &types::StepResult,
    host: &StepHost,
    max_outputs: usize,
) -> Result<Vec<VerifiedArtifact>, String> {
    let n = result.artifacts.len() + result.outputs.len();
    if n > max_outputs {
        return Err(format!(
            "{n} artifacts and outputs, more than the limit of {max_outputs}"
        ));
    }
    for o in &result.outputs {
        if o.key.len() > 256 || o.value.len() > 64 * 1024 {
            return Err(format!(
                "output `{}` is too large (keys up to 256 bytes, values up to 64 KiB)",
                o.key.chars().take(64).collect::<String>()
            ));
        }
    }
    let mut out = Vec::with_capacity(result.artifacts.len());
    for a in &result.artifacts {
        let loc = host
            .mounts
            .locate(&a.path)
            .map_err(|e| format!("artifact `{}`: {e}", a.name))?;
        let (dir, name) = loc
            .parent()
            .map_err(|e| format!("artifact `{}` at {}: {e}", a.name, a.path))?;
        let bounds = HashBounds {
            expect_size: Some(a.size),
            deadline: Some(host.deadline),
        };
        let rel: PathBuf = loc.mount.rel.join(&loc.rel);
        // A file of an earlier backup to be linked here when the backup completes: hash that.
        let linked = match (&host.links, loc.mount.root, rel.to_str()) {
            (Some(links), MountRoot::Backup, Some(file)) if links.contains(file) => {
                if dir.symlink_metadata(&name).is_ok() {
                    return Err(format!(
                        "artifact `{}` at {}: the step both wrote this file and asked to link it \
                         from an earlier backup; a backup holds one or the other",
                        a.name, a.path
                    ));
                }
                links.hash(file, bounds)
            }
            _ => None,
        };
        let (size, sha) = linked
            .unwrap_or_else(|| hash_file_at(&dir, &name, bounds))
            .map_err(|e| {
                format!(
                    "artifact `{}` at {}: {e}{}",
                    a.name,
                    a.path,
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        " (raise the step's limits.timeout)"
                    } else {
                        ""
                    }
                )
            })?;
        if size != a.size {
            return Err(format!(
                "artifact `{}` at {}: the plugin says {} bytes but the file has {size}",
                a.name, a.path, a.size
            ));
        }
        if !sha.eq_ignore_ascii_case(&a.sha256) {
            return Err(format!(
                "artifact `{}` at {}: the plugin says sha256 {} but the file hashes to {sha}",
                a.name, a.path, a.sha256
            ));
        }
        out.push(VerifiedArtifact {
            name: a.name.clone(),
            guest_path: a.path.clone(),
            path: rel.display().to_string(),
            root: crate::engine::sandbox::root_name(loc.mount.root),
            size,
            sha256: sha,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{RunInputs, parse_pipeline, resolve};

    fn plan(limits: &str) -> Plan {
        let src = format!(
            "name = \"t\"\n[[steps]]\nid = \"a\"\nplugin = \"noop\"\n[steps.limits]\n{limits}\n"
        );
        let p = parse_pipeline(Path::new("t.toml"), &src).unwrap();
        let inputs = RunInputs {
            customer_id: "1".into(),
            customer_domain: "a.example.com".into(),
            run_id: "r".into(),
            timestamp: "20260101-000000".into(),
            params: Default::default(),
            database: Default::default(),
            paths: Default::default(),
        };
        resolve(&p, &inputs).unwrap()
    }

    fn settings() -> Settings {
        Settings::for_tests(std::path::Path::new("/nonexistent"))
    }

    #[test]
    fn limits_above_the_ceilings_refuse_the_run_and_defaults_fill_in() {
        let s = settings();
        let err = effective_limits(&plan("memory = \"64GiB\""), &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("step a asks for 64 GiB of memory, above the host ceiling of 4 GiB"),
            "{err}"
        );
        let err = effective_limits(&plan("timeout = \"48h\""), &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("above the host ceiling of 12h"), "{err}");
        let ok = effective_limits(&plan("timeout = \"5m\""), &s).unwrap();
        assert_eq!(
            ok["a"],
            (s.ceilings.default_memory_bytes, Duration::from_secs(300))
        );
    }
}
