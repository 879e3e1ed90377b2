//! Runs that survive the host that ran them: the **run journal**, and recovery driven by it.
//!
//! A run of a pipeline with `recover = "on_failure"` (an upgrade, a restore, the layout
//! migration) changes a customer in ways only its own `on_failure` steps can undo. Before its
//! first step, the host writes `<customers_root>/.qodify-locks/<domain>.run.json` (run id,
//! pipeline, tier, params, timestamp), under the customer's lock, and removes it when the run
//! ended and its `on_failure` steps (if they ran) succeeded. A journal found while holding the
//! lock therefore belongs to a run whose host died (`kill -9`, power loss) or whose rollback
//! failed. Whoever takes the customer's lock next — `serve` at start, a worker, a CLI `run`, or
//! `qodify-host recover` — re-plans that run with its recorded inputs and runs its `on_failure`
//! and `finally` steps first. The plugins' own journals (`releases/.upgrade.json`, the restore
//! journals) say what exactly to undo; this one says which run to undo.
//!
//! The journal lives beside the lock, outside the customer folder, so the customer's own apps
//! cannot forge one.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::plan::{RunSpec, plan_run};
use crate::customer::Customer;
use crate::engine::caps::CancelToken;
use crate::engine::executor::{self, RunOutcome, RunRequest};
use crate::engine::lock::CustomerLock;
use crate::engine::plugins::Catalog;
use crate::engine::runtime::Runtime;
use crate::events::{EventSink, RunStatus};
use crate::settings::Settings;

/// What the host needs to finish an interrupted run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunJournal {
    /// The run's id.
    pub run_id: String,
    /// installer-api's id for the customer.
    pub customer_id: String,
    /// Pipeline, tier and params, as the run was started with.
    pub spec: RunSpec,
    /// The run's timestamp.
    pub timestamp: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The process that ran it.
    pub pid: u32,
}

/// Largest journal read (a few hundred bytes in practice).
const MAX_JOURNAL: u64 = 1 << 20;

fn journal_path(settings: &Settings, domain: &str) -> PathBuf {
    settings
        .customers_root
        .join(crate::engine::lock::LOCKS_DIR)
        .join(format!("{domain}.run.json"))
}

/// The customer's run journal, if a run left one.
pub fn read_journal(settings: &Settings, domain: &str) -> Result<Option<RunJournal>> {
    use std::io::Read as _;
    let path = journal_path(settings, domain);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_JOURNAL)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let journal = serde_json::from_str(&text).with_context(|| {
        format!(
            "the run journal {} is damaged; look at the customer (see docs/upgrades.md, \
             \"When a rollback fails\"), then remove it with `qodify-host recover --customer \
             {domain} --discard`",
            path.display()
        )
    })?;
    Ok(Some(journal))
}

fn write_journal(settings: &Settings, domain: &str, journal: &RunJournal) -> Result<()> {
    use std::io::Write as _;
    let path = journal_path(settings, domain);
    let tmp = path.with_extension("json.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(journal)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes the customer's run journal (nothing when there is none).
pub fn remove_journal(settings: &Settings, domain: &str) -> Result<()> {
    let path = journal_path(settings, domain);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// What the host uses to run anything.
#[derive(Clone, Copy)]
pub struct Engine<'a> {
    /// The wasmtime runtime.
    pub runtime: &'a Runtime,
    /// Settings.
    pub settings: &'a Settings,
    /// Plugins.
    pub catalog: &'a Catalog,
}

/// An interrupted run, finished by its `on_failure` steps.
#[derive(Debug)]
pub struct Recovered {
    /// The journal that named it.
    pub journal: RunJournal,
    /// What its `on_failure` and `finally` steps did.
    pub outcome: RunOutcome,
    /// The steps undid everything (the journal is gone).
    pub complete: bool,
}

impl Recovered {
    /// One line for people: which run, and what its `on_failure` steps did.
    pub fn describe(&self) -> String {
        format!(
            "run {} ({}) had been interrupted; its on_failure steps {}{}",
            self.journal.run_id,
            self.journal.spec.pipeline,
            if self.complete {
                "put the customer back"
            } else {
                "FAILED"
            },
            if self.outcome.rolled_back.is_empty() {
                String::new()
            } else {
                format!(": {}", self.outcome.rolled_back.join("; "))
            }
        )
    }
}

/// True when every `on_failure` and `finally` step of `plan` that ran succeeded.
fn undo_succeeded(plan: &crate::pipeline::Plan, outcome: &RunOutcome) -> bool {
    let undo: std::collections::BTreeSet<&str> = plan
        .on_failure
        .iter()
        .chain(&plan.finally)
        .flat_map(|s| s.steps.iter().map(|s| s.id.as_str()))
        .collect();
    outcome
        .steps
        .iter()
        .filter(|s| undo.contains(s.id.as_str()))
        .all(|s| s.status != "failed")
}

/// With the customer's lock held: finishes the run its journal names, if any. `Ok(None)`: no
/// run was interrupted. `Err`: the journal could not be read or its run could not be
/// re-planned; the journal stays.
pub fn recover_locked(
    engine: Engine<'_>,
    customer: &Customer,
    lock: &CustomerLock,
    events: Arc<dyn EventSink>,
) -> Result<Option<Recovered>> {
    let domain = customer.domain.as_str();
    let Some(journal) = read_journal(engine.settings, domain)? else {
        return Ok(None);
    };
    // Its lines are the interrupted run's, also inside the span of the run that found it.
    let span = crate::logs::run_span(
        &journal.run_id,
        &journal.customer_id,
        Some(domain),
        &journal.spec.pipeline,
    );
    let _in_run = span.enter();
    let events = crate::logs::RunLog::wrap(events, span.clone());
    tracing::warn!(
        "customer {domain}: run {} ({}) did not finish (pid {}, started {}); running its on_failure steps",
        journal.run_id,
        journal.spec.pipeline,
        journal.pid,
        journal.started_at
    );
    // A customer nobody registered runs with its domain as its id (not a valid stored id).
    let id = (journal.customer_id != domain).then_some(journal.customer_id.as_str());
    let owner = Customer::new(domain, id)?;
    let planned = plan_run(
        engine.settings,
        engine.catalog,
        &owner,
        &journal.spec,
        &journal.run_id,
        Some(journal.timestamp.clone()),
    )
    .with_context(|| {
        format!(
            "re-planning interrupted run {} ({}) to roll it back",
            journal.run_id, journal.spec.pipeline
        )
    })?;
    let reason = format!(
        "the host stopped during the run (pid {}, started {})",
        journal.pid, journal.started_at
    );
    let outcome = executor::execute_locked(
        engine.runtime,
        RunRequest {
            plan: &planned.plan,
            customer: &owner,
            run_id: journal.run_id.clone(),
            timestamp: journal.timestamp.clone(),
            catalog: engine.catalog,
            settings: engine.settings,
            events,
            cancel: CancelToken::default(),
            recovery: Some(reason),
            approvals: None,
        },
        lock,
    )?;
    let complete = undo_succeeded(&planned.plan, &outcome);
    if complete {
        remove_journal(engine.settings, domain)?;
    }
    Ok(Some(Recovered {
        journal,
        outcome,
        complete,
    }))
}

/// Takes the customer's lock and finishes an interrupted run, if any (`qodify-host recover`,
/// `serve` at start).
pub fn recover(
    engine: Engine<'_>,
    customer: &Customer,
    events: Arc<dyn EventSink>,
) -> Result<Option<Recovered>> {
    let lock = crate::engine::lock::acquire(
        &engine.settings.customers_root,
        customer.domain.as_str(),
        "recovery",
        "recover",
    )?;
    recover_locked(engine, customer, &lock, events)
}

/// The domains that have a run journal (for `serve`'s start).
pub fn journaled_domains(settings: &Settings) -> Vec<String> {
    let dir = settings.customers_root.join(crate::engine::lock::LOCKS_DIR);
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".run.json")
                .map(str::to_owned)
        })
        .filter(|d| crate::customer::Domain::parse(d).is_ok())
        .collect();
    out.sort();
    out
}

/// A run that is about to start.
pub struct NewRun<'a> {
    /// Whose.
    pub customer: &'a Customer,
    /// What.
    pub spec: &'a RunSpec,
    /// Its id.
    pub run_id: String,
    /// Where its events go.
    pub events: Arc<dyn EventSink>,
    /// Where the events of an interrupted run finished first go.
    pub recovery_events: Arc<dyn EventSink>,
    /// Its cancellation flag.
    pub cancel: CancelToken,
    /// Where its steps' approval requests are kept (`None`: files in the data folder).
    pub approvals: Option<Arc<dyn crate::engine::caps::approvals::ApprovalBook>>,
    /// Called once the run is planned, before any step runs (a recorded run audits its
    /// capabilities here).
    pub on_planned: Option<&'a (dyn Fn(&crate::pipeline::Plan) + Sync)>,
}

/// How a run went, and what had to be finished before it.
pub struct Ran {
    /// An interrupted run finished first.
    pub recovered: Option<Recovered>,
    /// The run's plan.
    pub plan: crate::pipeline::Plan,
    /// The run.
    pub outcome: RunOutcome,
}

/// Runs `new` the way every surface does: takes the customer's lock, finishes an interrupted
/// run first (refusing to go on when that fails), plans the run against the customer as it is
/// now, journals it when its pipeline can be recovered, executes it, and ends the journal.
/// Everything it logs carries the run's fields, its events among them ([`crate::logs`]).
pub fn run(engine: Engine<'_>, new: NewRun<'_>) -> Result<Ran> {
    let span = crate::logs::run_span(
        &new.run_id,
        &new.customer.id,
        Some(new.customer.domain.as_str()),
        &new.spec.pipeline,
    );
    let _in_run = span.enter();
    let events = crate::logs::RunLog::wrap(new.events, span.clone());
    let ran = run_logged(engine, NewRun { events, ..new });
    if let Err(e) = &ran {
        // A run that ends without its steps has no `run failed` event to log.
        tracing::error!(target: crate::logs::RUN_EVENTS, result = "failed", "run failed: {e:#}");
    }
    ran
}

fn run_logged(engine: Engine<'_>, new: NewRun<'_>) -> Result<Ran> {
    let domain = new.customer.domain.as_str();
    let spec_name = &new.spec.pipeline;
    let lock = crate::engine::lock::acquire(
        &engine.settings.customers_root,
        domain,
        &new.run_id,
        spec_name,
    )?;
    let recovered = recover_locked(engine, new.customer, &lock, new.recovery_events.clone())
        .context("finishing an interrupted run of this customer first")?;
    if let Some(r) = &recovered
        && !r.complete
    {
        anyhow::bail!(
            "customer {domain}: the interrupted run {} ({}) could not be rolled back: {}; \
             nothing else runs for this customer until it is: see docs/upgrades.md, \"When a \
             rollback fails\", then `qodify-host recover --customer {domain}` (again, or with \
             --discard once it is fixed by hand)",
            r.journal.run_id,
            r.journal.spec.pipeline,
            r.outcome
                .error
                .as_deref()
                .unwrap_or("a rollback step failed")
        );
    }
    let planned = plan_run(
        engine.settings,
        engine.catalog,
        new.customer,
        new.spec,
        &new.run_id,
        None,
    )?;
    if let Some(on_planned) = new.on_planned {
        on_planned(&planned.plan);
    }
    let journaled = planned.plan.recover_on_failure;
    if journaled {
        write_journal(
            engine.settings,
            domain,
            &RunJournal {
                run_id: new.run_id.clone(),
                customer_id: new.customer.id.clone(),
                spec: new.spec.clone(),
                timestamp: planned.timestamp.clone(),
                started_at: now_rfc3339(),
                pid: std::process::id(),
            },
        )
        .context("writing the run journal")?;
    }
    let outcome = executor::execute_locked(
        engine.runtime,
        RunRequest {
            plan: &planned.plan,
            customer: new.customer,
            run_id: new.run_id.clone(),
            timestamp: planned.timestamp.clone(),
            catalog: engine.catalog,
            settings: engine.settings,
            events: new.events,
            cancel: new.cancel,
            recovery: None,
            approvals: new.approvals,
        },
        &lock,
    );
    if journaled {
        // Kept only when the run changed something its rollback could not undo: the next one
        // to take the lock tries again.
        let keep = match &outcome {
            Ok(o) => o.status != RunStatus::Succeeded && !undo_succeeded(&planned.plan, o),
            Err(_) => false,
        };
        if !keep {
            remove_journal(engine.settings, domain)?;
        }
    }
    Ok(Ran {
        recovered,
        plan: planned.plan,
        outcome: outcome?,
    })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
