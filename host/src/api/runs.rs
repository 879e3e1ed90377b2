//! Runs: `GET /api/runs/{runId}`, `GET /api/runs?customer=&limit=`,
//! `POST /api/runs/{runId}/cancel`; and the submission every pipeline route (backups, restores,
//! later upgrades) goes through.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{self, ApiPath, ApiQuery, JsonOrDefault};
use super::{blocking, customers};
use crate::service::{AppState, hub};
use crate::store::{NewRun, RunFilter, RunRecord, RunState, Store, StoreResult};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", get(list))
        .route("/runs/{run_id}", get(get_run))
        .route("/runs/{run_id}/cancel", post(cancel))
}

/// A run as the API shows it (no lease or fencing internals).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RunView {
    id: String,
    customer_id: String,
    pipeline: String,
    params: BTreeMap<String, String>,
    state: RunState,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    error: Option<String>,
    backup_id: Option<String>,
    progress: Option<f32>,
    message: Option<String>,
    triggered_by: Option<String>,
    cancel_requested: bool,
    events_url: String,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        Self {
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
        }
    }
}

fn events_url(run_id: &str) -> String {
    format!("/api/runs/{run_id}/events")
}

/// The answer to a submitted run.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Submitted {
    run_id: String,
    customer: String,
    pipeline: String,
    state: RunState,
    run_url: String,
    events_url: String,
}

/// The customer's active (queued or running) run, the running one first.
pub(super) fn active_run(store: &dyn Store, customer: &str) -> StoreResult<Option<RunRecord>> {
    let runs = store.runs(&RunFilter {
        customer_id: Some(customer.to_owned()),
        limit: Some(1000),
    })?;
    Ok(runs
        .iter()
        .find(|r| r.state == RunState::Running)
        .or_else(|| runs.iter().find(|r| r.state.is_active()))
        .cloned())
}

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

async fn get_run(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = extract::run_id(&id)?;
    blocking(move || match state.store.run(&id)? {
        Some(r) => Ok(Json(r.into())),
        None => Err(unknown_run(&id)),
    })
    .await
}

#[derive(Debug, Serialize)]
struct RunList {
    runs: Vec<RunView>,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<extract::ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let (customer, limit) = q.checked()?;
    blocking(move || {
        let store = state.store.as_ref();
        if let Some(c) = &customer {
            customers::require(store, c)?;
        }
        let runs = store.runs(&RunFilter {
            customer_id: customer,
            limit: Some(limit),
        })?;
        Ok(Json(RunList {
            runs: runs.into_iter().map(RunView::from).collect(),
        }))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CancelBody {
    triggered_by: Option<String>,
}

async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    JsonOrDefault(body): JsonOrDefault<CancelBody>,
) -> Result<Response, ApiError> {
    let id = extract::run_id(&id)?;
    let actor = extract::actor(body.triggered_by)?;
    blocking(move || {
        let before = state.store.run(&id)?.ok_or_else(|| unknown_run(&id))?;
        if !before.state.is_active() {
            return Err(ApiError::conflict(format!(
                "run {id} already {}; only queued or running runs can be cancelled",
                before.state
            ))
            .with("state", before.state.to_string()));
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
