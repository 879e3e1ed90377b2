//! Scheduled runs: what each customer has scheduled (its own schedule of a pipeline over its
//! tier's `[schedule]`), when each is due next, and the scheduler `serve` ticks: a due slot
//! becomes a run with the actor `schedule`, through the same queue and customer lock as any
//! other run; a customer with an active run is skipped with the reason recorded, never queued
//! twice; at most `[schedule] max_concurrent` scheduled runs are active on this host at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::{self, TierSchedule};
use crate::schedule::{Due, Schedule};
use crate::settings::Settings;
use crate::store::{CustomerRecord, NewRun, RunQuery, RunState, ScheduleSlot, StoreError};

use super::AppState;

/// Who scheduled runs are triggered by (the history's and the audit log's actor).
pub const ACTOR: &str = "schedule";

/// A customer's own schedule of one pipeline, as the API and the CLI take it and the store keeps
/// it: the same fields as a tier's `[schedule.<pipeline>]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleBody {
    /// `"daily 03:00"`, `"weekly sun 04:30 +03:00"`, `"every 6h"`, or `"off"` (none, even if the
    /// tier has one).
    pub at: String,
    /// How long after its time a slot still starts on time (default `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Upper bound of the customer's fixed start offset (default a quarter of the window, at most
    /// `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// Whether a slot that passed unhandled runs once later (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    /// Params of the scheduled runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// Where a customer's schedule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Origin {
    /// Its tier's overlay (`pipelines/tiers/<tier>.toml`).
    Tier(String),
    /// Its own (`PUT /api/customers/{id}/schedules/{pipeline}`).
    Customer,
}

/// One customer's schedule of one pipeline, resolved.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The customer.
    pub customer: CustomerRecord,
    /// The pipeline.
    pub pipeline: String,
    /// Where it comes from.
    pub origin: Origin,
    /// When; `None`: off.
    pub schedule: Option<Schedule>,
    /// Params of its runs.
    pub params: BTreeMap<String, String>,
    /// Why it cannot run (a broken overlay, a pipeline that no longer takes its params).
    pub error: Option<String>,
}

impl Effective {
    /// The jitter key: a customer's pipeline keeps its offset whatever else changes.
    fn key(&self) -> String {
        format!("{}/{}", self.customer.id, self.pipeline)
    }
}

/// Checks a customer's own schedule against the pipeline (with the customer's tier): the cadence
/// and options parse, the params are the pipeline's. `Ok(None)`: `at = "off"`.
pub fn check_body(
    state: &AppState,
    tier: Option<&str>,
    pipeline: &str,
    body: &ScheduleBody,
) -> anyhow::Result<Option<Schedule>> {
    let settings = &state.settings;
    let path = super::plan::pipeline_path(settings, pipeline)?;
    let mut p = pipeline::load_pipeline(&path).map_err(|d| anyhow::anyhow!("{d}"))?;
    // The tier's param defaults count: a param the tier gives a default need not be set.
    let overlay = tier.map(|t| {
        settings
            .pipelines_dir
            .join("tiers")
            .join(format!("{t}.toml"))
    });
    if let Some(o) = overlay
        .filter(|o| o.is_file())
        .and_then(|o| pipeline::load_overlay(&o).ok())
    {
        p = o.apply(&p).unwrap_or(p);
    }
    pipeline::check_params(&p, &body.params)
        .map_err(|e| anyhow::anyhow!("params of the schedule: {e}"))?;
    parse_body(body)
}

fn parse_body(body: &ScheduleBody) -> anyhow::Result<Option<Schedule>> {
    if body.at == "off" {
        return Ok(None);
    }
    let span = |what: &str, v: &Option<String>| {
        v.as_deref()
            .map(crate::schedule::parse_span)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))
    };
    let (window, jitter) = (span("window", &body.window)?, span("jitter", &body.jitter)?);
    Schedule::new(&body.at, window, jitter, body.catch_up)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}; {}", e.message, e.hint))
}

/// The `[schedule]` of each tier, read once per use.
struct Tiers<'a> {
    settings: &'a Settings,
    read: HashMap<String, Result<Vec<TierSchedule>, String>>,
}

impl<'a> Tiers<'a> {
    fn new(settings: &'a Settings) -> Self {
        Tiers {
            settings,
            read: HashMap::new(),
        }
    }

    fn get(&mut self, tier: &str) -> &Result<Vec<TierSchedule>, String> {
        let settings = self.settings;
        self.read
            .entry(tier.to_owned())
            .or_insert_with(|| tier_schedules(settings, tier))
    }
}

/// A tier's checked `[schedule]` (see [`pipeline::Overlay::schedules`]).
pub fn tier_schedules(settings: &Settings, tier: &str) -> Result<Vec<TierSchedule>, String> {
    let file = settings
        .pipelines_dir
        .join("tiers")
        .join(format!("{tier}.toml"));
    if !file.is_file() {
        return Err(format!(
            "no tier overlay {} for tier `{tier}`",
            file.display()
        ));
    }
    let overlay = pipeline::load_overlay(&file).map_err(|d| d.to_string())?;
    let load = |name: &str| {
        super::plan::pipeline_path(settings, name)
            .ok()
            .and_then(|path| pipeline::load_pipeline(&path).ok())
    };
    overlay
        .schedules(
            &load,
            "schedule pipelines that exist in the pipelines folder",
        )
        .map_err(|d| d.to_string())
}

/// Every schedule of `customers`: each customer's own ones, then its tier's for the other
/// pipelines. A pipeline set `off` is listed (with no schedule) so that a listing says why.
pub fn effective(state: &AppState, customers: &[CustomerRecord]) -> anyhow::Result<Vec<Effective>> {
    let mut own: HashMap<String, Vec<crate::store::CustomerSchedule>> = HashMap::new();
    let only = (customers.len() == 1).then(|| customers[0].id.as_str());
    for s in state.store.customer_schedules(only)? {
        own.entry(s.customer_id.clone()).or_default().push(s);
    }
    let mut tiers = Tiers::new(&state.settings);
    let mut out = Vec::new();
    for c in customers {
        let mut seen = HashSet::new();
        for s in own.get(&c.id).into_iter().flatten() {
            seen.insert(s.pipeline.clone());
            let (schedule, params, error) =
                match serde_json::from_value::<ScheduleBody>(s.spec.clone()) {
                    Ok(body) => match parse_body(&body) {
                        Ok(schedule) => (schedule, body.params, None),
                        Err(e) => (None, body.params, Some(e.to_string())),
                    },
                    Err(e) => (None, BTreeMap::new(), Some(format!("stored schedule: {e}"))),
                };
            out.push(Effective {
                customer: c.clone(),
                pipeline: s.pipeline.clone(),
                origin: Origin::Customer,
                schedule,
                params,
                error,
            });
        }
        let Some(tier) = c.tier.as_deref() else {
            continue;
        };
        match tiers.get(tier) {
            Ok(list) => {
                for t in list.iter().filter(|t| !seen.contains(&t.pipeline)) {
                    out.push(Effective {
                        customer: c.clone(),
                        pipeline: t.pipeline.clone(),
                        origin: Origin::Tier(tier.to_owned()),
                        schedule: t.schedule.clone(),
                        params: t.params.clone(),
                        error: None,
                    });
                }
            }
            Err(e) => out.push(Effective {
                customer: c.clone(),
                pipeline: "*".into(),
                origin: Origin::Tier(tier.to_owned()),
                schedule: None,
                params: BTreeMap::new(),
                error: Some(e.clone()),
            }),
        }
    }
    Ok(out)
}

/// The customers whose runs this host runs (and so schedules): its node's, and with one node
/// (SQLite) the customers of no node too.
fn ours(state: &AppState) -> anyhow::Result<Vec<CustomerRecord>> {
    let single = state.single_node();
    Ok(state
        .store
        .all_customers()?
        .into_iter()
        .filter(|c| match &c.node {
            Some(node) => *node == state.settings.node,
            None => single,
        })
        .collect())
}

/// What one tick did with one due slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Customer id.
    pub customer_id: String,
    /// Pipeline.
    pub pipeline: String,
    /// The slot, Unix ms.
    pub slot_ms: i64,
    /// `queued`, `skipped` or `missed`.
    pub outcome: &'static str,
    /// The run queued.
    pub run_id: Option<String>,
    /// Why (skipped, missed, or a catch-up).
    pub reason: Option<String>,
}

/// Errors already logged, so a broken overlay is reported once, not every tick.
static REPORTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn report_once(message: String) {
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    if reported
        .get_or_insert_with(HashSet::new)
        .insert(message.clone())
    {
        tracing::warn!("schedule: {message}");
    }
}

/// Unix ms as RFC 3339 UTC (`2026-12-07T03:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One look at the schedules of this host's customers at `now_ms` (Unix ms; the scheduler passes
/// the clock, tests a time of their choosing): queues each due slot's run, or records why not.
/// Blocking (store and disk).
pub fn tick(state: &AppState, now_ms: i64) -> anyhow::Result<Vec<Handled>> {
    let customers = ours(state)?;
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    state.reap_dead_cli_runs();
    let mut active: HashMap<String, crate::store::RunRecord> = HashMap::new();
    let mut scheduled_active = 0usize;
    let our_ids: HashSet<&str> = customers.iter().map(|c| c.id.as_str()).collect();
    for r in state.store.runs_page(&RunQuery {
        customer_id: None,
        states: vec![RunState::Queued, RunState::Running],
        before: None,
        limit: 1000,
    })? {
        if r.triggered_by.as_deref() == Some(ACTOR) && our_ids.contains(r.customer_id.as_str()) {
            scheduled_active += 1;
        }
        // Oldest first wins: the list is newest first.
        active.insert(r.customer_id.clone(), r);
    }
    let mut known: HashMap<(String, String), ScheduleSlot> = state
        .store
        .schedule_slots(None)?
        .into_iter()
        .map(|s| ((s.customer_id.clone(), s.pipeline.clone()), s))
        .collect();
    let mut due = Vec::new();
    for e in effective(state, &customers)? {
        if let Some(err) = &e.error {
            report_once(format!(
                "customer {} ({}): {err}",
                e.customer.id, e.pipeline
            ));
            continue;
        }
        let Some(schedule) = &e.schedule else {
            continue;
        };
        let slot = match known.remove(&(e.customer.id.clone(), e.pipeline.clone())) {
            Some(slot) => slot,
            None => state
                .store
                .schedule_seen(&e.customer.id, &e.pipeline, now_ms)?,
        };
        let verdict = schedule.evaluate(&e.key(), now_ms, slot.last_slot_ms, slot.since_ms);
        if !matches!(verdict, Due::No { .. }) {
            due.push((verdict, e, slot));
        }
    }
    // The longest-waiting first, so a busy host's places go to the slots that fired earliest.
    due.sort_by_key(|(d, e, _)| (fires(d), e.customer.id.clone()));
    let mut handled = Vec::new();
    let now_text = rfc3339(now_ms);
    for (verdict, e, seen) in due {
        let (slot_ms, catch_up, missed) = match verdict {
            Due::No { .. } => continue,
            Due::OnTime { slot, missed, .. } => (slot, false, missed),
            Due::CatchUp { slot, missed, .. } => (slot, true, missed),
            Due::Missed { slot, missed, .. } => {
                let reason = format!(
                    "its window ({}) passed before this host could start it, and the schedule does not catch up{}",
                    crate::pipeline::units::format_duration(
                        e.schedule.as_ref().map(|s| s.window).unwrap_or_default()
                    ),
                    older(missed)
                );
                let record =
                    slot_record(&seen, slot, "missed", None, Some(reason.clone()), &now_text);
                if state.store.record_slot(&record, true)? {
                    audit(state, &e, "schedule.missed", slot, None, &reason);
                    handled.push(handled_of(&e, slot, "missed", None, Some(reason)));
                }
                continue;
            }
        };
        if let Some(run) = active.get(&e.customer.id) {
            let reason = format!(
                "customer busy: run {} ({}, {}) is active",
                run.id, run.pipeline, run.state
            );
            let record = slot_record(
                &seen,
                slot_ms,
                "skipped",
                None,
                Some(reason.clone()),
                &now_text,
            );
            if state.store.record_slot(&record, true)? {
                audit(state, &e, "schedule.skipped", slot_ms, None, &reason);
                handled.push(handled_of(&e, slot_ms, "skipped", None, Some(reason)));
            }
            continue;
        }
        if scheduled_active >= state.settings.schedule.max_concurrent {
            // The rest wait for a free place; they stay due (and later become catch-ups).
            break;
        }
        let reason = catch_up.then(|| {
            format!(
                "catch-up: the slot of {} passed while this host was down or busy{}",
                rfc3339(slot_ms),
                older(missed)
            )
        });
        let run_id = uuid::Uuid::now_v7().to_string();
        let record = slot_record(
            &seen,
            slot_ms,
            "queued",
            Some(run_id.clone()),
            reason.clone(),
            &now_text,
        );
        if !state.store.record_slot(&record, true)? {
            continue; // another host or tick took it
        }
        let run = NewRun {
            id: run_id.clone(),
            customer_id: e.customer.id.clone(),
            pipeline: e.pipeline.clone(),
            params: e.params.clone(),
            triggered_by: Some(ACTOR.to_owned()),
        };
        match state.submit(&run, false) {
            Ok(r) => {
                scheduled_active += 1;
                tracing::info!(customer = %e.customer.id, pipeline = %e.pipeline, run = %run_id, catch_up, "scheduled run queued");
                active.insert(e.customer.id.clone(), r);
                audit(
                    state,
                    &e,
                    "schedule.queued",
                    slot_ms,
                    Some(&run_id),
                    reason.as_deref().unwrap_or("on time"),
                );
                handled.push(handled_of(&e, slot_ms, "queued", Some(run_id), reason));
            }
            Err(err) => {
                let reason = match &err {
                    StoreError::Busy {
                        run_id,
                        pipeline,
                        state,
                        ..
                    } => format!("customer busy: run {run_id} ({pipeline}, {state}) is active"),
                    other => format!("could not queue the run: {other}"),
                };
                let record = slot_record(
                    &seen,
                    slot_ms,
                    "skipped",
                    None,
                    Some(reason.clone()),
                    &now_text,
                );
                state.store.record_slot(&record, false)?;
                audit(state, &e, "schedule.skipped", slot_ms, None, &reason);
                handled.push(handled_of(&e, slot_ms, "skipped", None, Some(reason)));
            }
        }
    }
    Ok(handled)
}

fn fires(d: &Due) -> i64 {
    match *d {
        Due::No { next } => next,
        Due::OnTime { fires, .. } | Due::CatchUp { fires, .. } | Due::Missed { fires, .. } => fires,
    }
}

fn older(missed: u64) -> String {
    match missed {
        0 => String::new(),
        1 => "; 1 older slot passed too and is not run".into(),
        n => format!("; {n} older slots passed too and are not run"),
    }
}

fn slot_record(
    seen: &ScheduleSlot,
    slot_ms: i64,
    outcome: &str,
    run_id: Option<String>,
    reason: Option<String>,
    now: &str,
) -> ScheduleSlot {
    ScheduleSlot {
        customer_id: seen.customer_id.clone(),
        pipeline: seen.pipeline.clone(),
        since_ms: seen.since_ms,
        last_slot_ms: Some(slot_ms),
        outcome: Some(outcome.to_owned()),
        run_id,
        reason,
        at: Some(now.to_owned()),
    }
}

fn handled_of(
    e: &Effective,
    slot_ms: i64,
    outcome: &'static str,
    run_id: Option<String>,
    reason: Option<String>,
) -> Handled {
    Handled {
        customer_id: e.customer.id.clone(),
        pipeline: e.pipeline.clone(),
        slot_ms,
        outcome,
        run_id,
        reason,
    }
}

fn audit(
    state: &AppState,
    e: &Effective,
    action: &str,
    slot_ms: i64,
    run_id: Option<&str>,
    reason: &str,
) {
    state.audit(
        Some(ACTOR),
        action,
        Some(&e.customer.id),
        run_id,
        serde_json::json!({ "pipeline": e.pipeline, "slot": rfc3339(slot_ms), "reason": reason }),
    );
}

/// One customer's schedule of one pipeline as `GET /api/schedules` and `qodify-host schedules`
/// show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    /// Customer id.
    pub customer_id: String,
    /// Its domain.
    pub domain: String,
    /// The pipeline (`*` for a tier whose overlay cannot be read).
    pub pipeline: String,
    /// `tier:<name>` or `customer`.
    pub origin: String,
    /// The cadence (`daily 03:00`), or `off`.
    pub at: String,
    /// Window, jitter (as durations) and catch-up, when scheduled.
    pub window: Option<String>,
    /// The upper bound of the jitter.
    pub jitter: Option<String>,
    /// Whether missed slots run once later.
    pub catch_up: Option<bool>,
    /// Params of its runs.
    pub params: BTreeMap<String, String>,
    /// When its next run starts (RFC 3339 UTC): the customer's jittered time; `now` when due.
    pub next_run_at: Option<String>,
    /// Whether it is due now (waiting for a free place or the next tick).
    pub due: bool,
    /// The newest slot handled and how.
    pub last: Option<ScheduleSlot>,
    /// Why it cannot run.
    pub error: Option<String>,
}

/// The schedules of one customer (by id) or of every customer of this host, with the next run
/// time of each at `now_ms`.
pub fn list(
    state: &AppState,
    customer_id: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<Vec<Listed>> {
    let customers = match customer_id {
        Some(id) => vec![
            state
                .store
                .customer(id)?
                .ok_or_else(|| StoreError::UnknownCustomer(id.to_owned()))?,
        ],
        None => state.store.all_customers()?,
    };
    let slots: HashMap<(String, String), ScheduleSlot> = state
        .store
        .schedule_slots(customer_id)?
        .into_iter()
        .map(|s| ((s.customer_id.clone(), s.pipeline.clone()), s))
        .collect();
    let mut out = Vec::new();
    for e in effective(state, &customers)? {
        let last = slots
            .get(&(e.customer.id.clone(), e.pipeline.clone()))
            .cloned();
        let (next_run_at, due) = match &e.schedule {
            Some(s) if e.error.is_none() => {
                let (last_slot, since) = last
                    .as_ref()
                    .map_or((None, now_ms), |l| (l.last_slot_ms, l.since_ms));
                match s.evaluate(&e.key(), now_ms, last_slot, since) {
                    Due::No { next } => (Some(rfc3339(next)), false),
                    _ => (Some(rfc3339(now_ms)), true),
                }
            }
            _ => (None, false),
        };
        let fmt = |d: Duration| crate::pipeline::units::format_duration(d);
        out.push(Listed {
            customer_id: e.customer.id.clone(),
            domain: e.customer.domain.clone(),
            pipeline: e.pipeline.clone(),
            origin: match &e.origin {
                Origin::Tier(t) => format!("tier:{t}"),
                Origin::Customer => "customer".into(),
            },
            at: e
                .schedule
                .as_ref()
                .map_or_else(|| "off".to_owned(), ToString::to_string),
            window: e.schedule.as_ref().map(|s| fmt(s.window)),
            jitter: e.schedule.as_ref().map(|s| fmt(s.jitter)),
            catch_up: e.schedule.as_ref().map(|s| s.catch_up),
            params: e.params.clone(),
            next_run_at,
            due,
            last,
            error: e.error.clone(),
        });
    }
    Ok(out)
}

/// Sets (or with `None` removes) a customer's own schedule of a pipeline, checked first;
/// audited.
pub fn set(
    state: &AppState,
    actor: Option<&str>,
    customer_id: &str,
    pipeline: &str,
    body: Option<&ScheduleBody>,
) -> anyhow::Result<()> {
    let customer = state
        .store
        .customer(customer_id)?
        .ok_or_else(|| StoreError::UnknownCustomer(customer_id.to_owned()))?;
    if let Some(body) = body {
        check_body(state, customer.tier.as_deref(), pipeline, body)?;
    }
    let spec = body.map(serde_json::to_value).transpose()?;
    state
        .store
        .set_customer_schedule(customer_id, pipeline, spec.as_ref())?;
    state.audit(
        actor,
        if body.is_some() {
            "schedule.set"
        } else {
            "schedule.removed"
        },
        Some(customer_id),
        None,
        serde_json::json!({ "pipeline": pipeline, "schedule": spec }),
    );
    Ok(())
}

/// Now, Unix ms.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The scheduler `serve` runs: a tick every `[schedule] tick` until the process ends.
pub async fn run(state: AppState) {
    if !state.settings.schedule.enabled {
        tracing::info!("scheduler off ([schedule] enabled = false)");
        return;
    }
    let mut ticks = tokio::time::interval(state.settings.schedule.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let state = state.clone();
        match tokio::task::spawn_blocking(move || tick(&state, now_ms())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("schedule: {e:#}"),
            Err(e) => tracing::warn!("schedule: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunFilter;

    /// Unix ms of an RFC 3339 time.
    fn t(s: &str) -> i64 {
        let dt =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        (dt.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// A host with a `nap` pipeline (one step, one optional param) and a `nightly` tier that
    /// schedules it at 03:00 UTC with no jitter, and `customers` registered with that tier.
    fn host(max_concurrent: usize, customers: &[&str]) -> (tempfile::TempDir, AppState) {
        let tmp = tempfile::tempdir().unwrap();
        let pipelines = tmp.path().join("pipelines");
        std::fs::create_dir_all(pipelines.join("tiers")).unwrap();
        std::fs::write(
            pipelines.join("nap.toml"),
            "name = \"nap\"\n[params.depth]\ntype = \"int\"\ndefault = 1\n\
             [[steps]]\nid = \"only\"\nplugin = \"noop\"\n",
        )
        .unwrap();
        std::fs::write(
            pipelines.join("tiers/nightly.toml"),
            "[schedule.nap]\nat = \"daily 03:00\"\nwindow = \"2h\"\njitter = \"0s\"\n\
             params = { depth = 2 }\n",
        )
        .unwrap();
        let mut settings = Settings::for_tests(tmp.path());
        settings.schedule.max_concurrent = max_concurrent;
        let state = AppState::open(settings, "test-host".into()).unwrap();
        for c in customers {
            state
                .store
                .upsert_customer(c, &format!("{c}.example.com"), Some("nightly"))
                .unwrap();
        }
        (tmp, state)
    }

    fn active(state: &AppState, customer: &str) -> Vec<crate::store::RunRecord> {
        state
            .store
            .runs(&RunFilter {
                customer_id: Some(customer.into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .filter(|r| r.state.is_active())
            .collect()
    }

    fn end(state: &AppState, run_id: &str) {
        state.store.request_cancel(run_id).unwrap();
    }

    #[test]
    fn runs_at_the_slot_once_with_the_actor_schedule_and_its_params() {
        let (_tmp, state) = host(2, &["c1"]);
        // First seen at 01:00: nothing yet; the next run is 03:00.
        assert!(tick(&state, t("2026-12-07T01:00:00Z")).unwrap().is_empty());
        let listed = list(&state, None, t("2026-12-07T01:00:00Z")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].origin, "tier:nightly");
        assert_eq!(
            listed[0].next_run_at.as_deref(),
            Some("2026-12-07T03:00:00Z")
        );
        assert!(tick(&state, t("2026-12-07T02:59:59Z")).unwrap().is_empty());

        let done = tick(&state, t("2026-12-07T03:00:05Z")).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].outcome, done[0].reason.as_deref()),
            ("queued", None)
        );
        let runs = active(&state, "c1");
        assert_eq!(runs.len(), 1);
        assert_eq!(Some(&runs[0].id), done[0].run_id.as_ref());
        assert_eq!(runs[0].triggered_by.as_deref(), Some(ACTOR));
        assert_eq!(runs[0].pipeline, "nap");
        assert_eq!(runs[0].params.get("depth").map(String::as_str), Some("2"));
        // Later ticks of the same slot do nothing, also once the run ended.
        assert!(tick(&state, t("2026-12-07T03:00:35Z")).unwrap().is_empty());
        end(&state, &runs[0].id);
        assert!(tick(&state, t("2026-12-07T04:59:00Z")).unwrap().is_empty());
        let listed = list(&state, Some("c1"), t("2026-12-07T05:00:00Z")).unwrap();
        assert_eq!(
            listed[0].next_run_at.as_deref(),
            Some("2026-12-08T03:00:00Z")
        );
        assert_eq!(
            listed[0].last.as_ref().unwrap().outcome.as_deref(),
            Some("queued")
        );
        // The audit log says the schedule queued it.
        let audit = state.store.audit_log(Some("c1"), 10).unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.action == "schedule.queued" && a.actor.as_deref() == Some(ACTOR))
        );
        assert!(
            audit
                .iter()
                .any(|a| a.action == "nap.requested" && a.actor.as_deref() == Some(ACTOR))
        );
    }

    #[test]
    fn catches_up_once_after_downtime() {
        let (_tmp, state) = host(2, &["c1"]);
        tick(&state, t("2026-12-01T12:00:00Z")).unwrap();
        let first = tick(&state, t("2026-12-02T03:00:00Z")).unwrap();
        end(&state, first[0].run_id.as_deref().unwrap());
        // The host is down from the 2nd until the 5th at noon: three slots passed.
        let done = tick(&state, t("2026-12-05T12:00:00Z")).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0].outcome, "queued");
        let reason = done[0].reason.as_deref().unwrap();
        assert!(
            reason.starts_with("catch-up: the slot of 2026-12-05T03:00:00Z passed"),
            "{reason}"
        );
        assert!(
            reason.ends_with("2 older slots passed too and are not run"),
            "{reason}"
        );
        assert_eq!(active(&state, "c1").len(), 1);
        // Not once per missed slot: the next ticks add nothing until the 6th.
        for now in [
            "2026-12-05T12:00:30Z",
            "2026-12-05T18:00:00Z",
            "2026-12-06T02:59:00Z",
        ] {
            assert!(tick(&state, t(now)).unwrap().is_empty(), "{now}");
        }
        let runs = state.store.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 2);
    }

    #[test]
    fn a_busy_customer_is_skipped_with_the_reason_and_never_queued_twice() {
        let (_tmp, state) = host(2, &["c1"]);
        tick(&state, t("2026-12-07T01:00:00Z")).unwrap();
        // Someone's restore is running when the slot comes.
        let manual = NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            customer_id: "c1".into(),
            pipeline: "nap".into(),
            params: BTreeMap::new(),
            triggered_by: Some("ops-anna".into()),
        };
        state.submit(&manual, false).unwrap();
        let done = tick(&state, t("2026-12-07T03:00:00Z")).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].outcome, "skipped");
        assert_eq!(
            done[0].reason.as_deref(),
            Some(format!("customer busy: run {} (nap, queued) is active", manual.id).as_str())
        );
        // The slot is handled: not retried at the next tick, even once the customer is free.
        end(&state, &manual.id);
        assert!(tick(&state, t("2026-12-07T03:01:00Z")).unwrap().is_empty());
        assert!(active(&state, "c1").is_empty());
        let last = list(&state, Some("c1"), t("2026-12-07T03:02:00Z")).unwrap()[0]
            .last
            .clone()
            .unwrap();
        assert_eq!(last.outcome.as_deref(), Some("skipped"));
        let audit = state.store.audit_log(Some("c1"), 10).unwrap();
        assert!(audit.iter().any(|a| a.action == "schedule.skipped"));
    }

    #[test]
    fn at_most_max_concurrent_scheduled_runs_the_rest_wait_then_catch_up() {
        let (_tmp, state) = host(2, &["c1", "c2", "c3"]);
        tick(&state, t("2026-12-07T01:00:00Z")).unwrap();
        let done = tick(&state, t("2026-12-07T03:00:00Z")).unwrap();
        assert_eq!(
            done.iter().filter(|h| h.outcome == "queued").count(),
            2,
            "{done:?}"
        );
        let waiting: Vec<_> = ["c1", "c2", "c3"]
            .into_iter()
            .filter(|c| active(&state, c).is_empty())
            .collect();
        assert_eq!(waiting.len(), 1);
        // Still due, shown as such; nothing more while both places are taken.
        assert!(list(&state, Some(waiting[0]), t("2026-12-07T03:10:00Z")).unwrap()[0].due);
        assert!(tick(&state, t("2026-12-07T03:10:00Z")).unwrap().is_empty());
        // A place frees up after the window: the waiting one runs once, as a catch-up.
        let first = done[0].run_id.clone().unwrap();
        end(&state, &first);
        let done = tick(&state, t("2026-12-07T05:30:00Z")).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].customer_id, waiting[0]);
        assert!(done[0].reason.as_deref().unwrap().starts_with("catch-up"));
    }

    #[test]
    fn a_customer_s_own_schedule_replaces_its_tier_s_and_off_turns_it_off() {
        let (_tmp, state) = host(2, &["c1", "c2"]);
        let own = ScheduleBody {
            at: "daily 01:30 +03:00".into(),
            window: Some("1h".into()),
            jitter: Some("0s".into()),
            catch_up: None,
            params: BTreeMap::new(),
        };
        set(&state, Some("ops"), "c1", "nap", Some(&own)).unwrap();
        let off = ScheduleBody {
            at: "off".into(),
            window: None,
            jitter: None,
            catch_up: None,
            params: BTreeMap::new(),
        };
        set(&state, Some("ops"), "c2", "nap", Some(&off)).unwrap();
        let listed = list(&state, None, t("2026-12-06T12:00:00Z")).unwrap();
        let by: BTreeMap<_, _> = listed.iter().map(|l| (l.customer_id.as_str(), l)).collect();
        assert_eq!(by["c1"].origin, "customer");
        assert_eq!(by["c1"].at, "daily 01:30 +03:00");
        assert_eq!(
            by["c1"].next_run_at.as_deref(),
            Some("2026-12-06T22:30:00Z")
        );
        assert_eq!(
            (by["c2"].at.as_str(), by["c2"].next_run_at.as_deref()),
            ("off", None)
        );
        tick(&state, t("2026-12-06T12:00:00Z")).unwrap();
        let done = tick(&state, t("2026-12-06T22:30:00Z")).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].customer_id, "c1");
        assert!(tick(&state, t("2026-12-07T03:00:00Z")).unwrap().is_empty());
        // Bad schedules and params are refused before they are stored.
        let bad = ScheduleBody {
            at: "daily 3am".into(),
            ..own.clone()
        };
        let err = set(&state, None, "c1", "nap", Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`3am` is not a time of day"), "{err}");
        let bad = ScheduleBody {
            params: [("depth".to_owned(), "deep".to_owned())].into(),
            ..own.clone()
        };
        let err = set(&state, None, "c1", "nap", Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`depth` expects"), "{err}");
        let err = set(&state, None, "c1", "nope", Some(&own))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        // Removing it brings the tier's back.
        set(&state, None, "c1", "nap", None).unwrap();
        let listed = list(&state, Some("c1"), t("2026-12-07T12:00:00Z")).unwrap();
        assert_eq!(listed[0].origin, "tier:nightly");
    }
}
