//! Runs: `GET /api/runs/{runId}`, `GET /api/runs?customer=&state=&limit=&before=`,
//! `POST /api/runs/{runId}/cancel`; and the submission every pipeline route (backups, restores,
//! later upgrades) goes through.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiPath, ApiQuery, JsonOrDefault, RunPath};
use super::{blocking, customers};
use crate::ops::{AppState, Page, hub};
use crate::store::{NewRun, RunQuery, RunRecord, RunState};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_run))
        .routes(routes!(cancel))
}

/// A run as the API shows it (no lease or fencing internals).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Run)]
pub(super) struct RunView {
    /// The run id (a UUID).
    #[schema(format = Uuid)]
    id: String,
    /// The customer id.
    customer_id: String,
    /// `backup`, `restore` or `upgrade`.
    pipeline: String,
    /// The pipeline params the request turned into.
    params: BTreeMap<String, String>,
    state: RunState,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it started running.
    #[schema(format = DateTime, required = true)]
    started_at: Option<String>,
    /// When it finished.
    #[schema(format = DateTime, required = true)]
    finished_at: Option<String>,
    /// The first error.
    #[schema(required = true)]
    error: Option<String>,
    /// The backup it completed (backups).
    #[schema(required = true)]
    backup_id: Option<String>,
    /// Latest progress, 0-100.
    #[schema(minimum = 0, maximum = 100, required = true)]
    progress: Option<f32>,
    /// Latest progress message.
    #[schema(required = true)]
    message: Option<String>,
    /// Who asked for it.
    #[schema(required = true)]
    triggered_by: Option<String>,
    /// A cancel was asked while it ran.
    cancel_requested: bool,
    /// The node that claimed it and runs (or ran) it; `null` while queued, and for runs a CLI
    /// started.
    #[schema(required = true)]
    node: Option<String>,
    /// Its live events (SSE).
    events_url: String,
    /// What the run waits for people to decide (`POST /api/runs/{runId}/approval`), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalView>,
    /// The preflight's figures, once its step succeeded (backups and upgrades).
    #[schema(required = true)]
    preflight: Option<PreflightView>,
    /// Warnings the run's steps gave (free space low, what retention will delete, a long ETA),
    /// oldest first; at most 50.
    warnings: Vec<String>,
}

/// What a run's preflight found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Preflight)]
pub(super) struct PreflightView {
    /// The step that gave the figures.
    step: String,
    /// Estimated size of what the run writes, in bytes.
    #[schema(required = true)]
    estimate_bytes: Option<u64>,
    /// What must be free for the run, in bytes: the estimate plus what else it needs (an
    /// upgrade's new release), times a margin.
    #[schema(required = true)]
    needed_bytes: Option<u64>,
    /// Free space where it writes, in bytes.
    #[schema(required = true)]
    free_bytes: Option<u64>,
    /// Estimated duration of the whole run, in seconds (from earlier runs' pace); `null` without
    /// history.
    #[schema(required = true)]
    eta_seconds: Option<u64>,
    /// Bytes each step will move, by step id (what the run's percent is weighted by).
    step_bytes: BTreeMap<String, u64>,
}

/// A run's pending approval request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApprovalView {
    /// The step that asks.
    step: String,
    /// One line for people.
    summary: String,
    /// Structured details (key names, never secret values).
    #[schema(value_type = Object)]
    details: serde_json::Value,
    /// When it was asked.
    #[schema(format = DateTime)]
    requested_at: String,
    /// When the step gives up (and the run fails and rolls back).
    #[schema(format = DateTime)]
    expires_at: String,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        let insight: crate::ops::progress::Insight = r
            .insight
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        Self {
            preflight: insight.preflight.map(|p| PreflightView {
                step: p.step,
                estimate_bytes: p.estimate_bytes,
                needed_bytes: p.needed_bytes,
                free_bytes: p.free_bytes,
                eta_seconds: p.eta_seconds,
                step_bytes: p.step_bytes,
            }),
            warnings: insight.warnings,
            events_url: events_url(&r.id),
            id: r.id,
            customer_id: r.customer_id,
            pipeline: r.pipeline,
            params: r.params,
            state: r.state,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error,
            backup_id: r.backup_id,
            progress: r.progress,
            message: r.message,
            triggered_by: r.triggered_by,
            cancel_requested: r.cancel_requested,
            node: r.node,
            approval: None,
        }
    }
}

fn events_url(run_id: &str) -> String {
    format!("/api/runs/{run_id}/events")
}

/// The answer to a submitted run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RunSubmitted)]
pub(super) struct Submitted {
    /// The run id (a UUID).
    #[schema(format = Uuid)]
    run_id: String,
    /// The customer id.
    customer: String,
    /// `backup` or `restore`.
    pipeline: String,
    /// `queued` (or already `running`).
    state: RunState,
    /// `GET` it for the run's state.
    run_url: String,
    /// `GET` it for the run's live events (SSE).
    events_url: String,
}

pub(super) use crate::ops::backups::active_run;

/// Queues `pipeline` for `customer` and answers 202 with the run id and where to follow it;
/// 404 for an unknown customer, 409 (naming the active run) when the customer is busy and the
/// caller did not ask to queue.
pub(super) async fn submit(
    state: AppState,
    customer: String,
    pipeline: &str,
    params: BTreeMap<String, String>,
    triggered_by: Option<String>,
    queue: bool,
) -> Result<Response, ApiError> {
    let run = NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        customer_id: customer,
        pipeline: pipeline.to_owned(),
        params,
        triggered_by,
    };
    let record = blocking(move || Ok(state.submit(&run, queue)?)).await?;
    let run_url = format!("/api/runs/{}", record.id);
    let body = Submitted {
        run_id: record.id.clone(),
        customer: record.customer_id,
        pipeline: record.pipeline,
        state: record.state,
        events_url: events_url(&record.id),
        run_url: run_url.clone(),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&run_url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn unknown_run(id: &str) -> ApiError {
    ApiError::not_found(format!("no run {id}"))
}

/// Reads a run: its state, progress, message, error and backup id.
#[utoipa::path(
    get,
    path = "/runs/{runId}",
    tag = "runs",
    operation_id = "getRun",
    params(RunPath),
    responses(
        (status = 200, description = "The run.", body = RunView),
        (status = 400, description = "The id is not a run id.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such run.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn get_run(
    State(state): State<AppState>,
    ApiPath(RunPath { run_id }): ApiPath<RunPath>,
) -> Result<Json<RunView>, ApiError> {
    let id = extract::run_id(&run_id)?;
    blocking(move || match state.store.run(&id)? {
        Some(r) => {
            let running = r.state == RunState::Running;
            let mut view = RunView::from(r);
            if running {
                view.approval = crate::ops::approvals::pending(&state, &id).map(|p| ApprovalView {
                    step: p.step,
                    summary: p.summary,
                    details: p.details,
                    requested_at: p.requested_at,
                    expires_at: p.expires_at,
                });
            }
            Ok(Json(view))
        }
        None => Err(unknown_run(&id)),
    })
    .await
}

/// Runs, newest first, one page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RunList {
    /// The runs (at most `limit`).
    runs: Vec<RunView>,
    /// When more follow: pass it as `?before=` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    next_before: Option<String>,
}

/// `?customer=&state=&limit=&before=` of the runs list. `state` may be repeated, so the query is
/// read as pairs ([`ListParams::parse`]) rather than by serde, which refuses a repeated field.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only this customer's runs.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "42")]
    customer: Option<String>,
    /// Only runs in these states: repeat it (`state=queued&state=running`) or separate them with
    /// commas (`state=queued,running`).
    #[param(style = Form, explode)]
    state: Option<Vec<RunState>>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Start after this run: the `nextBefore` of the previous page.
    #[param(format = Uuid)]
    before: Option<String>,
}

impl ListParams {
    /// Reads the query's pairs: each parameter at most once but `state`, nothing else.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        fn once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), ApiError> {
            if slot.replace(value).is_some() {
                return Err(ApiError::bad_request(format!(
                    "invalid query: `{name}` is given twice; give it once"
                )));
            }
            Ok(())
        }
        let mut params = Self::default();
        let (mut customer, mut limit, mut before) = (None, None, None);
        for (name, value) in pairs {
            match name.as_str() {
                "customer" => once(&mut customer, "customer", value)?,
                "limit" => once(&mut limit, "limit", value)?,
                "before" => once(&mut before, "before", value)?,
                "state" => {
                    let states = params.state.get_or_insert_with(Vec::new);
                    for part in value.split(',') {
                        let state = run_state(part)?;
                        if !states.contains(&state) {
                            states.push(state);
                        }
                    }
                }
                other => {
                    let shown: String = other.chars().take(40).collect();
                    return Err(ApiError::bad_request(format!(
                        "invalid query: unknown parameter `{}`; use customer, state, limit and \
                         before",
                        shown.escape_debug()
                    )));
                }
            }
        }
        params.customer = customer;
        params.before = before;
        params.limit = limit
            .map(|l| {
                l.parse::<usize>().map_err(|_| {
                    ApiError::bad_request("limit must be a whole number between 1 and 1000")
                })
            })
            .transpose()?;
        Ok(params)
    }
}

/// A run state named in a query.
fn run_state(name: &str) -> Result<RunState, ApiError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
        let shown: String = name.chars().take(40).collect();
        ApiError::bad_request(format!(
            "unknown run state `{}`: use queued, running, succeeded, failed, cancelled or \
             interrupted",
            shown.escape_debug()
        ))
    })
}

/// Lists runs, newest first: all of them or one customer's, in some states, one page.
#[utoipa::path(
    get,
    path = "/runs",
    tag = "runs",
    operation_id = "listRuns",
    params(ListParams),
    responses(
        (status = 200, description = "One page of runs.", body = RunList),
        (status = 400, description = "A bad query (an unknown state, a bad id or limit).", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Json<RunList>, ApiError> {
    let q = ListParams::parse(pairs)?;
    let customer = q
        .customer
        .as_deref()
        .map(extract::customer_id)
        .transpose()?
        .map(str::to_owned);
    let limit = extract::limit(q.limit)?;
    let before = q.before.as_deref().map(extract::run_id).transpose()?;
    blocking(move || {
        let store = state.store.as_ref();
        if let Some(c) = &customer {
            customers::require(store, c)?;
        }
        // One more run than the page tells whether another page follows.
        let rows = store.runs_page(&RunQuery {
            customer_id: customer,
            states: q.state.unwrap_or_default(),
            before,
            limit: limit + 1,
        })?;
        let page = Page::cut(rows, limit, |r| r.id.clone());
        Ok(Json(RunList {
            runs: page.items.into_iter().map(RunView::from).collect(),
            next_before: page.next_before,
        }))
    })
    .await
}

/// Body of `POST /api/runs/{runId}/cancel` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = CancelRun)]
struct CancelBody {
    /// Who asked (a user name or id), for the audit log.
    triggered_by: Option<extract::Actor>,
}

/// Cancels a run: a queued one at once, a running one is stopped.
#[utoipa::path(
    post,
    path = "/runs/{runId}/cancel",
    tag = "runs",
    operation_id = "cancelRun",
    params(RunPath),
    request_body(content = Option<CancelBody>, description = "May be left out."),
    responses(
        (status = 202, description = "Cancelled (a queued run) or being stopped (a running one).", body = RunView),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such run.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The run already finished (`state` says how).", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(RunPath { run_id }): ApiPath<RunPath>,
    JsonOrDefault(body): JsonOrDefault<CancelBody>,
) -> Result<Response, ApiError> {
    let id = extract::run_id(&run_id)?;
    let actor = Some(caller.actor(body.triggered_by)?);
    blocking(move || {
        let before = state.store.run(&id)?.ok_or_else(|| unknown_run(&id))?;
        if !before.state.is_active() {
            return Err(ApiError::conflict(format!(
                "run {id} already {}; only queued or running runs can be cancelled",
                before.state
            ))
            .with_state(before.state));
        }
        let record = state
            .cancel(&id, actor.as_deref())?
            .ok_or_else(|| unknown_run(&id))?;
        if record.state == RunState::Cancelled {
            announce_cancelled(&state, &record);
        }
        Ok((StatusCode::ACCEPTED, Json(RunView::from(record))).into_response())
    })
    .await
}

/// A queued run that is cancelled never reaches a worker, so nothing else would publish its end:
/// publish `<family>-failed` (unless it already was), so live clients see the run end.
fn announce_cancelled(state: &AppState, run: &RunRecord) {
    let already = match state.store.events(&run.id, 0) {
        Ok(events) => events.iter().any(|e| super::events::is_terminal(&e.name)),
        Err(e) => {
            tracing::warn!("reading the events of run {}: {e}", run.id);
            false
        }
    };
    if !already {
        let family = hub::family(&run.pipeline);
        state.hub.publish(
            &run.id,
            &run.customer_id,
            &format!("{family}-failed"),
            serde_json::json!({
                "runId": run.id,
                "state": RunState::Cancelled,
                "error": "cancelled before it started",
                "durationMs": 0,
            }),
        );
    }
}
