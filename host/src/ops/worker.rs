//! Run workers: claim queued runs from the store (one per customer at a time, up to the global
//! limit), execute them on blocking threads, keep their leases alive, honour cancels, and turn
//! executor events into the plan's live events. At startup, runs this host left running are
//! marked interrupted and their partial backup folders removed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::customer::Customer;
use crate::engine::caps::CancelToken;
use crate::engine::executor;
use crate::events::{Event, EventSink, LogLevel, NullSink, RunStatus};
use crate::ops;
use crate::store::{AuditEntry, BackupRecord, RunFinish, RunRecord, RunState};

use super::hub::family;
use super::{AppState, now};

/// How long an idle worker waits before it looks for work unasked, when the store wakes it
/// (PostgreSQL's `LISTEN`): only a safety net, for a wake-up lost while the listener
/// reconnected. Every queued, cancelled or ended run of this node wakes it at once.
pub const RECHECK_LISTENING: Duration = Duration::from_secs(30);
/// The same with SQLite, whose other writers (CLI runs on the data dir) wake nobody when a run
/// ends that another waits behind.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Stored progress events per run per second, at most (the last one always goes out).
const PROGRESS_PER_SECOND: u32 = 4;
/// Stored events per run, at most: past this one marker event says so and further progress and
/// approval requests are no longer stored (the run's own progress still is); step and run ends,
/// decisions and the completed backup always are.
pub const MAX_RUN_EVENTS: u64 = 100_000;

/// Marks this host's runs that were running when it died as interrupted (and any other node's
/// whose lease expired), removes the partial backup folders of this node's customers that no
/// run is writing any more, finishes every interrupted run found on disk (a run journal beside a
/// customer's lock, whoever started the run: this serve before it died, or a CLI `run`), and
/// tells the clients.
pub fn recover(state: &AppState) -> anyhow::Result<Vec<RunRecord>> {
    let runs = state.store.recover_interrupted(&state.host_id)?;
    remove_stale_partials(state);
    let mut recovered = finish_journaled(state);
    for run in &runs {
        announce_interrupted(state, run, recovered.remove(&run.id));
    }
    // Runs this store never had (a CLI `run` that died), or that another node marked
    // interrupted while this one was down: recorded in the audit log.
    for r in recovered.into_values() {
        audit_recovered(state, &r);
        let note = r
            .outcome
            .error
            .as_deref()
            .unwrap_or("interrupted; recovered");
        let _ = state.store.annotate_run(&r.journal.run_id, note);
    }
    // The history matches the folders again (backups deleted by hand, or made while the
    // store was elsewhere).
    for customer in state.store.all_customers().unwrap_or_default() {
        if !state.owns(&customer) {
            continue;
        }
        match ops::backups::reconcile(state, &customer) {
            Ok(r) if !r.marked_deleted.is_empty() || !r.added.is_empty() => tracing::info!(
                "customer {}: backup history reconciled with the disk: {} marked deleted, {} added",
                customer.id,
                r.marked_deleted.len(),
                r.added.len()
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("reconciling the backup history of {}: {e:#}", customer.id),
        }
    }
    Ok(runs)
}

/// Marks the runs whose lease expired, on any node, as interrupted and says so (each once,
/// whichever host's sweep found it). Their node cleans its disk when it runs again: it alone
/// has the folders.
pub fn expire_leases(state: &AppState) {
    match state.store.expire_leases() {
        Ok(runs) => {
            for run in &runs {
                tracing::warn!(
                    "run {} of customer {} on node {}: its lease expired; marked interrupted",
                    run.id,
                    run.customer_id,
                    run.node.as_deref().unwrap_or("?")
                );
                announce_interrupted(state, run, None);
            }
        }
        Err(e) => tracing::warn!("looking for runs whose lease expired: {e}"),
    }
}

/// Tells the clients, the history and the audit log that `run` was interrupted (and how its
/// recovery ended, when it was finished here).
fn announce_interrupted(
    state: &AppState,
    run: &RunRecord,
    recovered: Option<ops::recover::Recovered>,
) {
    let f = family(&run.pipeline);
    let mut payload = serde_json::json!({
        "runId": run.id, "state": "interrupted", "error": run.error, "node": run.node,
    });
    if let Some(r) = recovered {
        let outcome = &r.outcome;
        payload["error"] = outcome.error.clone().into();
        payload["failedStep"] = outcome.failed_step.clone().into();
        payload["rolledBack"] = outcome.rolled_back.clone().into();
        payload["recovery"] = serde_json::json!(outcome.status);
        let _ = state.store.annotate_run(
            &run.id,
            outcome.error.as_deref().unwrap_or("interrupted; recovered"),
        );
    }
    state
        .hub
        .publish(&run.id, &run.customer_id, &format!("{f}-failed"), payload);
    if run.pipeline == "backup" {
        let _ = state
            .store
            .record_backup(&backup_record(run, None, None, None, "interrupted"));
    }
    let _ = state.store.audit(&AuditEntry {
        at: now(),
        actor: Some("system".into()),
        action: "run.interrupted".into(),
        customer_id: Some(run.customer_id.clone()),
        run_id: Some(run.id.clone()),
        detail: serde_json::json!({
            "pipeline": run.pipeline, "node": run.node, "error": run.error,
            "markedBy": state.settings.node,
        }),
    });
}

/// Removes `backups/.partial-<run>` folders of this node's customers whose run is no longer
/// active (it died with this host, or another node marked it interrupted while this one was
/// down or paused), each under the customer's lock, so that a run writing one now is never
/// disturbed.
fn remove_stale_partials(state: &AppState) {
    for customer in state.store.all_customers().unwrap_or_default() {
        if !state.owns(&customer) {
            continue;
        }
        let Ok(dir) =
            crate::engine::sandbox::open_customer(&state.settings.customers_root, &customer.domain)
        else {
            continue;
        };
        let Ok(backups) = dir.open_dir(crate::backups::BACKUPS) else {
            continue;
        };
        let partials: Vec<String> = backups
            .entries()
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with(crate::backups::PARTIAL_PREFIX))
            .collect();
        for name in partials {
            let run_id = &name[crate::backups::PARTIAL_PREFIX.len()..];
            if matches!(state.store.run(run_id), Ok(Some(r)) if r.state.is_active()) {
                continue;
            }
            let Ok(_lock) = crate::engine::lock::acquire(
                &state.settings.customers_root,
                &customer.domain,
                run_id,
                "recovery",
            ) else {
                continue;
            };
            match backups.remove_dir_all(&name) {
                Ok(()) => tracing::info!(
                    "customer {}: removed {name}, left by run {run_id}, which no longer runs",
                    customer.domain
                ),
                Err(e) => tracing::warn!("customer {}: removing {name}: {e}", customer.domain),
            }
        }
    }
}

/// Finishes the interrupted run of every customer that has a run journal; by run id.
fn finish_journaled(state: &AppState) -> HashMap<String, ops::recover::Recovered> {
    let mut done = HashMap::new();
    for domain in ops::recover::journaled_domains(&state.settings) {
        let Ok(customer) = Customer::new(&domain, None) else {
            continue;
        };
        match ops::recover::recover(engine(state), &customer, Arc::new(NullSink)) {
            Ok(Some(r)) => {
                tracing::info!("customer {domain}: {}", r.describe());
                done.insert(r.journal.run_id.clone(), r);
            }
            Ok(None) => {}
            // Its run is still going, in another process: that one ends its journal.
            Err(e) if e.downcast_ref::<crate::engine::lock::Busy>().is_some() => {
                tracing::info!("customer {domain} has a run in progress elsewhere: {e}");
            }
            Err(e) => tracing::error!(
                "customer {domain}: an interrupted run could not be finished: {e:#}; \
                 see `qodify-host recover --customer {domain}`"
            ),
        }
    }
    done
}

/// Audits the finishing of an interrupted run (actor `system`).
fn audit_recovered(state: &AppState, r: &ops::recover::Recovered) {
    let _ = state.store.audit(&AuditEntry {
        at: now(),
        actor: Some("system".into()),
        action: "run.recovered".into(),
        customer_id: Some(r.journal.customer_id.clone()),
        run_id: Some(r.journal.run_id.clone()),
        detail: serde_json::json!({
            "pipeline": r.journal.spec.pipeline,
            "complete": r.complete,
            "error": r.outcome.error,
            "rolledBack": r.outcome.rolled_back,
        }),
    });
}

fn engine(state: &AppState) -> ops::recover::Engine<'_> {
    ops::recover::Engine {
        runtime: &state.runtime,
        settings: &state.settings,
        catalog: &state.catalog,
    }
}

/// Runs `slots` workers until the process ends. Each claims the runs of this node's customers
/// (SQLite: also of customers of no node), after giving this node the customers of no node whose
/// folder it has; an idle one sleeps until woken (a run queued through this host, or the store's
/// listener) or `recheck` passed.
pub async fn run_workers(state: AppState, slots: usize, recheck: Duration) {
    let mut handles = Vec::new();
    for _ in 0..slots.max(1) {
        let state = state.clone();
        handles.push(tokio::spawn(async move {
            loop {
                // Registered before looking, so a run queued between the look and the wait
                // still wakes this worker (`notify_waiters` keeps no permit).
                let wake = state.wake.clone();
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let s = state.clone();
                let claimed = tokio::task::spawn_blocking(move || {
                    // A dead CLI run must not hold its customer's queue for its whole lease.
                    s.reap_dead_cli_runs();
                    s.adopt_local_customers();
                    s.store.claim_next(
                        &crate::store::Claimant {
                            node: &s.settings.node,
                            owner: &s.host_id,
                            unassigned: s.single_node(),
                        },
                        s.settings.runs.lease,
                    )
                })
                .await;
                match claimed {
                    Ok(Ok(Some(run))) => {
                        let s = state.clone();
                        let _ = tokio::task::spawn_blocking(move || execute_claimed(&s, run)).await;
                        // Another run may be waiting for this customer: look again at once.
                        state.wake.notify_waiters();
                    }
                    Ok(Ok(None)) => {
                        let _ = tokio::time::timeout(recheck, notified).await;
                    }
                    Ok(Err(e)) => {
                        tracing::error!("claiming a run: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => tracing::error!("worker task: {e}"),
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

fn backup_record(
    run: &RunRecord,
    backup_id: Option<String>,
    size: Option<u64>,
    duration_ms: Option<u64>,
    result: &str,
) -> BackupRecord {
    BackupRecord {
        customer_id: run.customer_id.clone(),
        run_id: run.id.clone(),
        backup_id,
        kind: if run.pipeline == "upgrade" {
            "pre-upgrade".into()
        } else {
            run.params
                .get("type")
                .cloned()
                .unwrap_or_else(|| "fast".into())
        },
        size,
        duration_ms,
        result: result.to_owned(),
        triggered_by: run.triggered_by.clone(),
        created_at: run.created_at.clone(),
        note: None,
    }
}

/// Marks the history lines of `backup_ids` deleted, with `note` as the reason.
pub fn mark_deleted(state: &AppState, customer_id: &str, backup_ids: &[String], note: &str) {
    if backup_ids.is_empty() {
        return;
    }
    match state.store.backups(customer_id, usize::MAX, None) {
        Ok(rows) => {
            for row in rows.into_iter().filter(|r| {
                r.result != "deleted"
                    && r.backup_id.as_ref().is_some_and(|b| backup_ids.contains(b))
            }) {
                let row = BackupRecord {
                    result: "deleted".into(),
                    note: Some(note.to_owned()),
                    ..row
                };
                if let Err(e) = state.store.record_backup(&row) {
                    tracing::warn!(
                        "marking backup {:?} deleted in the history: {e}",
                        row.backup_id
                    );
                }
            }
        }
        Err(e) => tracing::warn!("reading the backup history of {customer_id}: {e}"),
    }
}

/// Sends every event to both sinks (the store's hub and a CLI's progress display).
struct Tee(Arc<dyn EventSink>, Arc<dyn EventSink>);

impl EventSink for Tee {
    fn emit(&self, event: Event) {
        self.0.emit(event.clone());
        self.1.emit(event);
    }
}

/// A recorded run's end.
pub struct Recorded {
    /// How it went.
    pub outcome: executor::RunOutcome,
    /// An interrupted run of the customer finished before it.
    pub recovered: Option<ops::recover::Recovered>,
}

/// How a recorded run is executed besides what its record says.
#[derive(Default)]
pub struct Extra {
    /// The tier overlay to use instead of the customer's registered tier.
    pub tier: Option<String>,
    /// Also send the run's events here (a CLI's progress display).
    pub events: Option<Arc<dyn EventSink>>,
    /// The run's cancel flag (a CLI's Ctrl-C).
    pub cancel: Option<CancelToken>,
}

/// Turns executor events into live events, with an overall percent across the run's steps.
struct HubSink {
    state: AppState,
    run: RunRecord,
    family: &'static str,
    inner: Mutex<SinkState>,
    /// Held from computing a progress event's percent to publishing it: steps report from
    /// several threads, and percents must go out in the order they were computed.
    publishing: Mutex<()>,
}

struct SinkState {
    /// The run's percent, time left and warnings.
    progress: super::progress::Progress,
    last_progress: Option<Instant>,
    sent_this_second: u32,
    /// Events published for this run so far.
    published: u64,
    /// Events this run may publish before only the forced ones pass ([`MAX_RUN_EVENTS`]).
    max_events: u64,
    /// The marker went out.
    capped: bool,
}

/// Whether an event of a run may still be published: forced ones always, others until the
/// run's cap. `Err(true)` when this one is the first refused, so the caller sends the marker.
fn admit(st: &mut SinkState, force: bool) -> Result<(), bool> {
    if !force && st.published >= st.max_events {
        let first = !st.capped;
        st.capped = true;
        return Err(first);
    }
    st.published += 1;
    Ok(())
}

impl HubSink {
    fn progress(&self, step: Option<&str>, message: &str, force: bool) {
        self.progress_with(step, message, force, serde_json::Map::new());
    }

    /// Publishes a progress event with the run's percent, time left and warnings so far, plus
    /// `extra` fields.
    fn progress_with(
        &self,
        step: Option<&str>,
        message: &str,
        force: bool,
        extra: serde_json::Map<String, serde_json::Value>,
    ) {
        let _order = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let percent = st.progress.percent();
        let eta = st.progress.eta_seconds(Instant::now());
        let warnings = st.progress.insight().warnings.clone();
        let now_i = Instant::now();
        match st.last_progress {
            Some(t) if now_i.duration_since(t) < Duration::from_secs(1) => {
                if st.sent_this_second >= PROGRESS_PER_SECOND && !force {
                    return;
                }
                st.sent_this_second += 1;
            }
            _ => {
                st.last_progress = Some(now_i);
                st.sent_this_second = 1;
            }
        }
        let admitted = admit(&mut st, force);
        drop(st);
        let _ = self
            .state
            .store
            .set_progress(&self.run.id, self.run.epoch, percent, message);
        match admitted {
            Ok(()) => {}
            Err(true) => return self.publish_cap_marker(Some(percent)),
            Err(false) => return,
        }
        let mut data = serde_json::json!({ "runId": self.run.id, "percent": (percent * 10.0).round() / 10.0, "step": step, "message": message });
        if let Some(eta) = eta {
            data["etaSeconds"] = eta.into();
        }
        if !warnings.is_empty() {
            data["warnings"] = warnings.into();
        }
        if let Some(map) = data.as_object_mut() {
            map.extend(extra);
        }
        self.state.hub.publish_fenced(
            &self.run.id,
            &self.run.customer_id,
            self.run.epoch,
            &format!("{}-progress", self.family),
            data,
        );
    }

    /// Stores what the run learnt (fenced like its progress).
    fn store_insight(&self, insight: &super::progress::Insight) {
        if let Ok(value) = serde_json::to_value(insight) {
            let _ = self
                .state
                .store
                .set_insight(&self.run.id, self.run.epoch, &value);
        }
    }
}

impl HubSink {
    /// The one event that says the run's events were capped.
    fn publish_cap_marker(&self, percent: Option<f32>) {
        let max = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max_events;
        tracing::warn!(
            "run {} reached {max} events; further progress is not stored",
            self.run.id
        );
        let mut data = serde_json::json!({
                "runId": self.run.id,
                "message": format!("events capped: this run sent {max} events; further progress and approval requests are not recorded (step and run ends still are)"),
                "eventsCapped": true,
        });
        if let Some(p) = percent {
            data["percent"] = ((p * 10.0).round() / 10.0).into();
        }
        self.state.hub.publish_fenced(
            &self.run.id,
            &self.run.customer_id,
            self.run.epoch,
            &format!("{}-progress", self.family),
            data,
        );
    }
}

impl EventSink for HubSink {
    fn emit(&self, event: Event) {
        match event {
            Event::RunStarted { steps, .. } => {
                self.inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .progress
                    .planned(steps);
                self.progress(None, "started", true);
            }
            Event::StepStarted { step, .. } => {
                self.inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .progress
                    .step_started(&step);
                self.progress(Some(&step), "started", true);
            }
            Event::StepProgress {
                step,
                percent,
                message,
            } => {
                self.inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .progress
                    .step_progress(&step, percent);
                self.progress(Some(&step), &message, false);
            }
            Event::StepSucceeded { step, outputs, .. } => {
                let learnt = {
                    let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                    st.progress.step_ended(&step, true);
                    st.progress
                        .outputs(&step, &outputs, Instant::now())
                        .then(|| st.progress.insight().clone())
                };
                let mut extra = serde_json::Map::new();
                if let Some(insight) = learnt {
                    self.store_insight(&insight);
                    if let Some(p) = insight.preflight.and_then(|p| serde_json::to_value(p).ok()) {
                        extra.insert("preflight".into(), p);
                    }
                }
                self.progress_with(Some(&step), "done", true, extra);
            }
            Event::StepFailed { step, error, .. } => {
                self.inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .progress
                    .step_ended(&step, false);
                self.progress(Some(&step), &format!("failed: {error}"), true);
            }
            Event::StepLog {
                step,
                level: LogLevel::Warn,
                message,
            } => {
                let kept = {
                    let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                    st.progress
                        .warn(format!("{step}: {message}"))
                        .then(|| st.progress.insight().clone())
                };
                if let Some(insight) = kept {
                    self.store_insight(&insight);
                    let mut extra = serde_json::Map::new();
                    extra.insert("warning".into(), format!("{step}: {message}").into());
                    self.progress_with(Some(&step), &format!("warning: {message}"), true, extra);
                }
            }
            Event::ApprovalRequested {
                step,
                summary,
                details,
                expires_at,
            } => {
                let admitted = admit(
                    &mut self.inner.lock().unwrap_or_else(|e| e.into_inner()),
                    false,
                );
                match admitted {
                    Ok(()) => {}
                    Err(true) => return self.publish_cap_marker(None),
                    Err(false) => return,
                }
                self.state.hub.publish_fenced(
                    &self.run.id,
                    &self.run.customer_id,
                    self.run.epoch,
                    &format!("{}-progress", self.family),
                    serde_json::json!({
                        "runId": self.run.id,
                        "step": step,
                        "message": format!("waiting for approval: {summary}"),
                        "approval": { "summary": summary, "details": details, "expiresAt": expires_at },
                    }),
                );
            }
            Event::ApprovalDecided { step, approved, by } => {
                let what = if approved { "approved" } else { "rejected" };
                let by = by.unwrap_or_else(|| "someone".into());
                self.progress(Some(&step), &format!("{what} by {by}"), true);
            }
            Event::BackupCompleted { backup, pinned } => {
                let _ = self
                    .state
                    .store
                    .set_backup_id(&self.run.id, self.run.epoch, &backup);
                let msg = match pinned {
                    Some(reason) => format!("backup {backup} complete, pinned ({reason})"),
                    None => format!("backup {backup} complete"),
                };
                self.progress(None, &msg, true);
            }
            Event::StepSkipped { .. } | Event::StepLog { .. } | Event::RunFinished { .. } => {}
        }
    }
}

/// Executes one claimed run to its end and records the result (fenced by the run's epoch).
/// Runs `f`, turning a panic of the host's own code into an error, so the run is failed with its
/// cause and its customer unblocked (the customer lock is released while unwinding) without a
/// restart; the worker goes on with the next run.
fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            tracing::error!("the host panicked while running a run: {what}");
            Err(anyhow::anyhow!(
                "the host failed while running this run (panic: {what}); nothing else was affected and the customer can run again; please report it with the host's log"
            ))
        }
    }
}

fn execute_claimed(state: &AppState, run: RunRecord) {
    let _ = execute_recorded(state, run, Extra::default());
}

/// Executes a run the store has as running (claimed by a worker, or started by a CLI `run` with
/// [`crate::store::Store::start_run`]) and records all of it the same way: the lease kept alive,
/// persisted cancels honoured, events stored and published, the end, the backup history (a
/// backup, an upgrade's pre-upgrade backup, what retention deleted) and the audit log.
/// `Err`: the run could not start (recorded as failed, with this text).
pub fn execute_recorded(
    state: &AppState,
    run: RunRecord,
    extra: Extra,
) -> Result<Recorded, String> {
    let span = crate::logs::run_span(&run.id, &run.customer_id, None, &run.pipeline);
    let _in_run = span.enter();
    let cancel = extra.cancel.clone().unwrap_or_default();
    if run.cancel_requested {
        cancel.cancel();
    }
    state
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(run.id.clone(), cancel.clone());

    // Keep the lease alive; losing it (fenced) stops the run here. The end of the run wakes the
    // renewer at once (dropping `done`), so a short run does not wait out a renewal period.
    let (done, ended) = std::sync::mpsc::channel::<()>();
    let renewer = {
        let (state, run, cancel, span) = (state.clone(), run.clone(), cancel.clone(), span.clone());
        std::thread::spawn(move || {
            let _in_run = span.entered();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                ended.recv_timeout(Duration::from_millis(500))
            {
                match state.store.renew_lease(
                    &run.id,
                    &state.host_id,
                    run.epoch,
                    state.settings.runs.lease,
                ) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("run {} lost its lease; stopping it", run.id);
                        cancel.cancel();
                        break;
                    }
                    Err(e) => tracing::warn!("renewing the lease of run {}: {e}", run.id),
                }
                if matches!(state.store.run(&run.id), Ok(Some(r)) if r.cancel_requested) {
                    cancel.cancel();
                }
            }
        })
    };

    let started = Instant::now();
    let result = guarded(|| execute(state, &run, cancel.clone(), &extra));
    drop(done);
    let _ = renewer.join();
    state
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&run.id);

    let duration_ms = started.elapsed().as_millis() as u64;
    let f = family(&run.pipeline);
    let mut failed_step = None;
    let mut rolled_back = Vec::new();
    let (finish, size) = match &result {
        Ok(Recorded { outcome, .. }) => {
            failed_step = outcome.failed_step.clone();
            rolled_back = outcome.rolled_back.clone();
            let st = match outcome.status {
                RunStatus::Succeeded => RunState::Succeeded,
                RunStatus::Failed => RunState::Failed,
                RunStatus::Cancelled => RunState::Cancelled,
            };
            let size = outcome.backup.as_ref().map(|_| {
                outcome
                    .steps
                    .iter()
                    .flat_map(|s| s.artifacts.iter())
                    .filter(|a| a.root == "backup")
                    .map(|a| a.size)
                    .sum::<u64>()
            });
            (
                RunFinish {
                    state: st,
                    error: outcome.error.clone(),
                    backup_id: outcome.backup.clone(),
                },
                size,
            )
        }
        Err(e) => (
            RunFinish {
                state: RunState::Failed,
                error: Some(format!("{e:#}")),
                backup_id: None,
            },
            None,
        ),
    };
    let finish = if cancel.is_cancelled() && finish.state == RunState::Failed {
        RunFinish {
            state: RunState::Cancelled,
            ..finish
        }
    } else {
        finish
    };
    match state.store.finish_run(&run.id, run.epoch, &finish) {
        Ok(true) => {}
        Ok(false) => {
            // Fenced: the run is no longer this node's (its lease expired and another host
            // marked it interrupted, or it was taken over). Nothing more is written for it but
            // this note; what it left on this node's disk its own steps undid, or the next run
            // of the customer removes.
            tracing::warn!(
                "run {} lost its lease; its result ({}) is not recorded",
                run.id,
                finish.state
            );
            let _ = state.store.audit(&AuditEntry {
                at: now(),
                actor: Some("system".into()),
                action: "run.fenced".into(),
                customer_id: Some(run.customer_id.clone()),
                run_id: Some(run.id.clone()),
                detail: serde_json::json!({
                    "pipeline": run.pipeline, "node": state.settings.node,
                    "result": finish.state, "error": finish.error,
                }),
            });
            return result.map_err(|e| format!("{e:#}"));
        }
        Err(e) => tracing::error!("recording the end of run {}: {e}", run.id),
    }
    // Every backup a run made is in the history: a backup run's, failed ones too; an upgrade's
    // pre-upgrade backup once it is complete.
    if run.pipeline == "backup" || (run.pipeline == "upgrade" && finish.backup_id.is_some()) {
        let _ = state.store.record_backup(&backup_record(
            &run,
            finish.backup_id.clone(),
            size,
            Some(duration_ms),
            &finish.state.to_string(),
        ));
    }
    // A restore drill stamps the backup it drilled, restorable or not, whatever the run's end
    // (its `verdict` step fails the run of a backup that is not).
    if let Ok(Recorded { outcome, .. }) = &result {
        for drill in drill_verdicts(&run.customer_id, &run.id, &outcome.steps) {
            if let Err(e) = state.store.record_drill(&drill) {
                tracing::warn!("stamping backup {} with its drill: {e}", drill.backup_id);
            }
        }
    }
    // What retention deleted is no longer a backup anyone can download.
    if let Ok(Recorded { outcome, .. }) = &result {
        let deleted: Vec<String> = outcome
            .steps
            .iter()
            .filter(|s| s.plugin == "retention")
            .flat_map(|s| s.outputs.iter())
            .filter(|(k, _)| k == "deleted")
            .flat_map(|(_, v)| v.split(',').filter(|id| !id.is_empty()).map(str::to_owned))
            .collect();
        mark_deleted(state, &run.customer_id, &deleted, "retention");
        if !deleted.is_empty() {
            let _ = state.store.audit(&AuditEntry {
                at: now(),
                actor: Some("system".into()),
                action: "backup.deleted".into(),
                customer_id: Some(run.customer_id.clone()),
                run_id: Some(run.id.clone()),
                detail: serde_json::json!({ "backupIds": deleted, "reason": "retention" }),
            });
        }
    }
    let _ = state.store.audit(&AuditEntry {
        at: now(),
        actor: run.triggered_by.clone(),
        action: "run.finished".into(),
        customer_id: Some(run.customer_id.clone()),
        run_id: Some(run.id.clone()),
        detail: serde_json::json!({
            "pipeline": run.pipeline, "result": finish.state, "backupId": finish.backup_id,
            "size": size, "durationMs": duration_ms, "error": finish.error,
        }),
    });
    let (name, data) = if finish.state == RunState::Succeeded {
        (
            format!("{f}-completed"),
            serde_json::json!({ "runId": run.id, "backupId": finish.backup_id, "size": size, "durationMs": duration_ms }),
        )
    } else {
        (
            format!("{f}-failed"),
            serde_json::json!({
                "runId": run.id, "state": finish.state, "error": finish.error,
                "durationMs": duration_ms, "failedStep": failed_step, "rolledBack": rolled_back,
                "backupId": finish.backup_id,
            }),
        )
    };
    state.hub.publish(&run.id, &run.customer_id, &name, data);
    result.map_err(|e| format!("{e:#}"))
}

/// The verdicts of a run's `drill` steps that checked a backup (outputs `backup` and
/// `restorable`, `reason` when it is not).
fn drill_verdicts(
    customer_id: &str,
    run_id: &str,
    steps: &[crate::engine::executor::StepRecord],
) -> Vec<crate::store::DrillRecord> {
    steps
        .iter()
        .filter(|s| s.plugin == "drill" && s.status == "succeeded")
        .filter_map(|s| {
            let value = |k: &str| {
                s.outputs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            let restorable = value("restorable")? == "true";
            Some(crate::store::DrillRecord {
                customer_id: customer_id.to_owned(),
                backup_id: value("backup")?,
                run_id: run_id.to_owned(),
                restorable,
                reason: value("reason").filter(|r| !restorable && !r.is_empty()),
                drilled_at: now(),
            })
        })
        .collect()
}

/// Runs a claimed run through the same use case as the CLI ([`ops::recover::run`]): the
/// customer's registered tier picks the overlay; an interrupted run of the customer is
/// finished first.
fn execute(
    state: &AppState,
    run: &RunRecord,
    cancel: CancelToken,
    extra: &Extra,
) -> anyhow::Result<Recorded> {
    let c = state
        .store
        .customer(&run.customer_id)?
        .ok_or_else(|| anyhow::anyhow!("customer {} is no longer registered", run.customer_id))?;
    let customer = Customer::new(&c.domain, Some(&c.id))?;
    let spec = ops::plan::RunSpec {
        pipeline: run.pipeline.clone(),
        tier: extra.tier.clone().or(c.tier),
        params: run.params.clone(),
    };
    let sink = Arc::new(HubSink {
        state: state.clone(),
        run: run.clone(),
        family: family(&run.pipeline),
        inner: Mutex::new(SinkState {
            progress: super::progress::Progress::new(
                Instant::now(),
                state.settings.runs.long_eta_warning,
            ),
            last_progress: None,
            sent_this_second: 0,
            published: 0,
            max_events: MAX_RUN_EVENTS,
            capped: false,
        }),
        publishing: Mutex::new(()),
    });
    let (events, recovery_events): (Arc<dyn EventSink>, Arc<dyn EventSink>) = match &extra.events {
        Some(tee) => (Arc::new(Tee(sink, tee.clone())), tee.clone()),
        None => (sink, Arc::new(NullSink)),
    };
    // What the run may do, against the customer's last run of this pipeline: a change (a new
    // plugin build, a wider grant) goes into the audit log before any step runs.
    let audit_capabilities = |plan: &crate::pipeline::Plan| {
        let snapshot = ops::capabilities::snapshot(plan, &state.catalog);
        match ops::capabilities::record(
            state.store.as_ref(),
            &run.customer_id,
            &run.id,
            &run.pipeline,
            run.triggered_by.as_deref(),
            &snapshot,
        ) {
            Ok(changes) => {
                for c in changes {
                    tracing::warn!(
                        "capabilities changed since the last {} run: {c}",
                        run.pipeline
                    );
                }
            }
            Err(e) => tracing::warn!("recording the run's capabilities: {e}"),
        }
    };
    let ran = ops::recover::run(
        engine(state),
        ops::recover::NewRun {
            customer: &customer,
            spec: &spec,
            run_id: run.id.clone(),
            events,
            recovery_events,
            cancel,
            approvals: Some(Arc::new(ops::approvals::StoreBook {
                store: state.store.clone(),
                epoch: run.epoch,
            })),
            on_planned: Some(&audit_capabilities),
        },
    )?;
    if let Some(r) = &ran.recovered {
        let note = format!(
            "interrupted; finished by its on_failure steps before run {}: {}",
            run.id,
            r.outcome.error.as_deref().unwrap_or("rolled back")
        );
        let _ = state.store.annotate_run(&r.journal.run_id, &note);
        audit_recovered(state, r);
    }
    Ok(Recorded {
        outcome: ran.outcome,
        recovered: ran.recovered,
    })
}

/// A stable id for this host: its node name (by default the hostname) and data folder.
pub fn host_id(settings: &crate::settings::Settings) -> String {
    format!("{}:{}", settings.node, settings.data_dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRun, Store, sqlite::SqliteStore};

    #[test]
    fn a_panic_in_the_host_fails_the_run_with_its_cause_and_unblocks_the_customer() {
        let tmp = tempfile::tempdir().unwrap();
        let result: anyhow::Result<()> = guarded(|| {
            let _lock =
                crate::engine::lock::acquire(tmp.path(), "shop.example.com", "run-1", "backup")?;
            panic!("index out of bounds: the len is 0 but the index is 3");
        });
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("panic: index out of bounds: the len is 0 but the index is 3"),
            "{err}"
        );
        assert!(err.contains("the customer can run again"), "{err}");
        // The lock went with the unwinding: the customer's next run can start at once.
        crate::engine::lock::acquire(tmp.path(), "shop.example.com", "run-2", "backup").unwrap();
        // A formatted panic message comes through too, and errors pass unchanged.
        let n = 7;
        let err = guarded::<()>(|| panic!("step {n} broke")).unwrap_err();
        assert!(err.to_string().contains("panic: step 7 broke"), "{err}");
        let err = guarded::<()>(|| Err(anyhow::anyhow!("plain failure"))).unwrap_err();
        assert_eq!(err.to_string(), "plain failure");
    }

    #[test]
    fn a_run_s_events_are_capped_with_one_marker_and_its_ends_still_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&tmp.path().join("state.sqlite")).unwrap());
        store
            .upsert_customer("42", "shop.example.com", None)
            .unwrap();
        store
            .enqueue_run(
                &NewRun {
                    id: "run-1".into(),
                    customer_id: "42".into(),
                    pipeline: "upgrade".into(),
                    params: Default::default(),
                    triggered_by: None,
                },
                false,
            )
            .unwrap();
        let run = store
            .claim_next(
                &crate::store::Claimant {
                    node: "test",
                    owner: "test",
                    unassigned: true,
                },
                crate::settings::RunSettings::default().lease,
            )
            .unwrap()
            .unwrap();
        let settings = crate::settings::Settings::for_tests(tmp.path());
        let state = AppState {
            hub: super::super::EventHub::new(store.clone()),
            store: store.clone(),
            wake: Default::default(),
            runtime: Arc::new(crate::engine::runtime::Runtime::new(&settings.data_dir).unwrap()),
            settings: Arc::new(settings),
            catalog: Default::default(),
            host_id: "test".into(),
            running: Default::default(),
        };
        let before = store.events("run-1", 0).unwrap().len();
        let sink = HubSink {
            state,
            run,
            family: "upgrade",
            inner: Mutex::new(SinkState {
                progress: crate::ops::progress::Progress::new(Instant::now(), None),
                last_progress: None,
                sent_this_second: 0,
                published: 0,
                max_events: 20,
                capped: false,
            }),
            publishing: Mutex::new(()),
        };
        sink.emit(Event::RunStarted {
            run_id: "run-1".into(),
            pipeline: "upgrade".into(),
            customer: "shop.example.com".into(),
            steps: (0..30).map(|i| format!("s{i}")).collect(),
        });
        for i in 0..30 {
            sink.emit(Event::StepStarted {
                step: format!("s{i}"),
                plugin: "noop".into(),
            });
        }
        // Past the cap: a flood of approval requests and progress is not stored, one marker is.
        for _ in 0..500 {
            sink.emit(Event::ApprovalRequested {
                step: "s1".into(),
                summary: "again".into(),
                details: serde_json::Value::Null,
                expires_at: "x".into(),
            });
            sink.emit(Event::StepProgress {
                step: "s1".into(),
                percent: 50.0,
                message: "working".into(),
            });
        }
        sink.emit(Event::StepSucceeded {
            step: "s0".into(),
            duration_ms: 1,
            artifacts: vec![],
            outputs: vec![],
        });
        let events = store.events("run-1", 0).unwrap();
        let data: Vec<&serde_json::Value> = events[before..].iter().map(|e| &e.data).collect();
        assert_eq!(data.len(), 1 + 30 + 1 + 1, "{data:#?}");
        let markers: Vec<_> = data.iter().filter(|d| d["eventsCapped"] == true).collect();
        assert_eq!(markers.len(), 1);
        assert!(
            markers[0]["message"]
                .as_str()
                .unwrap()
                .starts_with("events capped: this run sent 20 events")
        );
        assert_eq!(data.last().unwrap()["message"], "done");
        // The run itself still shows where it is.
        assert_eq!(
            store.run("run-1").unwrap().unwrap().message.as_deref(),
            Some("done")
        );
    }
}
