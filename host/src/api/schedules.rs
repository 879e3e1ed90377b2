//! Schedules: `GET /api/schedules` lists what each customer has scheduled (its own schedules
//! over its tier's `[schedule]`), when each next runs and how its last slot was handled;
//! `PUT`/`DELETE /api/customers/{id}/schedules/{pipeline}` set or remove a customer's own.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::blocking;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiJson, ApiPath, ApiQuery};
use crate::ops::AppState;
use crate::ops::schedule::{self, ScheduleBody};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(set, remove))
}

/// `?customer=`: one customer's schedules.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this customer's (installer-api's id).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    customer: Option<String>,
}

/// `{id}` and `{pipeline}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SchedulePath {
    /// installer-api's customer id.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "42")]
    id: String,
    /// The scheduled pipeline, e.g. `backup` or `drill`.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", example = "backup")]
    pipeline: String,
}

/// A customer's own schedule of a pipeline; it replaces the tier's for that pipeline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScheduleRequest)]
struct ScheduleRequest {
    /// `daily HH:MM`, `weekly mon…sun HH:MM`, `every <duration>` (at least `1m`), each optionally
    /// followed by a UTC offset (`+03:00`; UTC otherwise), or `off`: not scheduled, even when the
    /// tier schedules it.
    #[schema(example = "daily 03:00 +03:00")]
    at: String,
    /// How long after its time a slot still starts on time (default `2h`); later it is a
    /// catch-up.
    #[schema(example = "2h")]
    window: Option<String>,
    /// The customer's start is offset by a fixed amount below this (default a quarter of the
    /// window, at most `30m`; `0s` for none).
    #[schema(example = "30m")]
    jitter: Option<String>,
    /// Whether a slot that passed unhandled (host down) runs once later (default true).
    catch_up: Option<bool>,
    /// Params of the scheduled runs (`--param` values).
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// How a slot was last handled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScheduleLastSlot)]
struct LastSlot {
    /// The slot's nominal time (RFC 3339 UTC).
    #[schema(format = DateTime)]
    slot: String,
    /// `queued`, `skipped` or `missed`.
    outcome: String,
    /// The run it queued.
    #[schema(format = Uuid, required = true)]
    run_id: Option<String>,
    /// Why it was skipped or missed, or that it was a catch-up.
    #[schema(required = true)]
    reason: Option<String>,
    /// When it was handled (RFC 3339 UTC).
    #[schema(format = DateTime, required = true)]
    at: Option<String>,
}

/// One customer's schedule of one pipeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Schedule)]
struct ScheduleView {
    /// installer-api's customer id.
    customer_id: String,
    /// Its domain.
    domain: String,
    /// The pipeline (`*` when the tier's overlay cannot be read; see `error`).
    pipeline: String,
    /// `tier:<name>` or `customer`.
    origin: String,
    /// The cadence, or `off`.
    at: String,
    /// Window, when scheduled.
    #[schema(required = true)]
    window: Option<String>,
    /// Upper bound of the jitter, when scheduled.
    #[schema(required = true)]
    jitter: Option<String>,
    /// Whether a missed slot runs once later, when scheduled.
    #[schema(required = true)]
    catch_up: Option<bool>,
    /// Params of the scheduled runs.
    params: BTreeMap<String, String>,
    /// When the next run starts (this customer's jittered time; now when due).
    #[schema(format = DateTime, required = true)]
    next_run_at: Option<String>,
    /// Due now: waiting for the scheduler's next look or a free place (`max_concurrent`).
    due: bool,
    /// The newest slot handled.
    #[schema(required = true)]
    last: Option<LastSlot>,
    /// Why it cannot run.
    #[schema(required = true)]
    error: Option<String>,
}

/// The schedules.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScheduleList)]
struct ScheduleList {
    /// By customer, then pipeline.
    schedules: Vec<ScheduleView>,
}

fn view(l: schedule::Listed) -> ScheduleView {
    ScheduleView {
        customer_id: l.customer_id,
        domain: l.domain,
        pipeline: l.pipeline,
        origin: l.origin,
        at: l.at,
        window: l.window,
        jitter: l.jitter,
        catch_up: l.catch_up,
        params: l.params,
        next_run_at: l.next_run_at,
        due: l.due,
        last: l.last.and_then(|s| {
            Some(LastSlot {
                slot: schedule::rfc3339(s.last_slot_ms?),
                outcome: s.outcome?,
                run_id: s.run_id,
                reason: s.reason,
                at: s.at,
            })
        }),
        error: l.error,
    }
}

/// Lists the customers' schedules: each customer's own, then its tier's, with the next run time
/// and how the last slot went.
#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    operation_id = "listSchedules",
    params(ListQuery),
    responses(
        (status = 200, description = "The schedules.", body = ScheduleList),
        (status = 400, description = "A bad customer id.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ScheduleList>, ApiError> {
    let customer = q
        .customer
        .as_deref()
        .map(extract::customer_id)
        .transpose()?
        .map(str::to_owned);
    blocking(move || {
        let listed =
            schedule::list(&state, customer.as_deref(), schedule::now_ms()).map_err(error)?;
        Ok(Json(ScheduleList {
            schedules: listed.into_iter().map(view).collect(),
        }))
    })
    .await
}

fn error(e: anyhow::Error) -> ApiError {
    match e.downcast::<crate::store::StoreError>() {
        Ok(e) => e.into(),
        Err(e) => ApiError::unprocessable(format!("{e:#}")),
    }
}

/// Sets a customer's own schedule of a pipeline (checked against the pipeline with the
/// customer's tier); it replaces the tier's schedule of that pipeline. `at = "off"` turns it off.
#[utoipa::path(
    put,
    path = "/customers/{id}/schedules/{pipeline}",
    tag = "schedules",
    operation_id = "setSchedule",
    params(SchedulePath),
    request_body = ScheduleRequest,
    responses(
        (status = 200, description = "The customer's schedules now.", body = ScheduleList),
        (status = 400, description = "A bad id, pipeline or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 422, description = "The schedule does not parse, the pipeline does not exist, or its params do not fit.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<SchedulePath>,
    ApiJson(body): ApiJson<ScheduleRequest>,
) -> Result<Json<ScheduleList>, ApiError> {
    let id = extract::customer_id(&path.id)?.to_owned();
    let pipeline = pipeline_name(&path.pipeline)?;
    let actor = caller.actor(None)?;
    let body = ScheduleBody {
        at: body.at,
        window: body.window,
        jitter: body.jitter,
        catch_up: body.catch_up,
        params: body.params,
    };
    blocking(move || {
        schedule::set(&state, Some(&actor), &id, &pipeline, Some(&body)).map_err(error)?;
        let listed = schedule::list(&state, Some(&id), schedule::now_ms()).map_err(error)?;
        Ok(Json(ScheduleList {
            schedules: listed.into_iter().map(view).collect(),
        }))
    })
    .await
}

/// Removes a customer's own schedule of a pipeline: its tier's applies again.
#[utoipa::path(
    delete,
    path = "/customers/{id}/schedules/{pipeline}",
    tag = "schedules",
    operation_id = "removeSchedule",
    params(SchedulePath),
    responses(
        (status = 204, description = "Removed (or there was none)."),
        (status = 400, description = "A bad id or pipeline.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<SchedulePath>,
) -> Result<StatusCode, ApiError> {
    let id = extract::customer_id(&path.id)?.to_owned();
    let pipeline = pipeline_name(&path.pipeline)?;
    let actor = caller.actor(None)?;
    blocking(move || {
        schedule::set(&state, Some(&actor), &id, &pipeline, None).map_err(error)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

fn pipeline_name(name: &str) -> Result<String, ApiError> {
    if crate::engine::plugins::valid_id(name) {
        Ok(name.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "`{name}` is not a pipeline name (1-63 characters from a-z, 0-9 and `-`)"
        )))
    }
}
