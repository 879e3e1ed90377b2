//! `GET /api/audit?customer=&action=&actor=&limit=&before=`: the audit log, newest first, one
//! page.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiQuery};
use super::{blocking, customers};
use crate::ops::{AppState, Page};
use crate::store::{AuditQuery, AuditRow};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AuditEntry)]
struct AuditView {
    /// The entry's place in the log (ascending); `before` of a page.
    #[schema(minimum = 1)]
    id: i64,
    /// RFC 3339 UTC.
    #[schema(format = DateTime)]
    at: String,
    /// Who: the user installer-api named, or `cli` / `system`.
    #[schema(required = true)]
    actor: Option<String>,
    /// What, e.g. `backup.requested`, `run.finished`, `backup.deleted`, `customer.registered`.
    action: String,
    /// The customer it concerns.
    #[schema(required = true)]
    customer_id: Option<String>,
    /// The run it concerns.
    #[schema(required = true)]
    run_id: Option<String>,
    /// Details (result, size, duration, error…), depending on the action.
    detail: serde_json::Value,
}

impl From<AuditRow> for AuditView {
    fn from(row: AuditRow) -> Self {
        let e = row.entry;
        Self {
            id: row.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            customer_id: e.customer_id,
            run_id: e.run_id,
            detail: e.detail,
        }
    }
}

/// Audit entries, newest first, one page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditList {
    /// The entries (at most `limit`).
    entries: Vec<AuditView>,
    /// When more follow: pass it as `?before=` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    next_before: Option<i64>,
}

/// `?customer=&action=&actor=&limit=&before=` of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// Only entries about this customer.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "42")]
    customer: Option<String>,
    /// Only entries of this action.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,99}$", example = "backup.deleted")]
    action: Option<String>,
    /// Only entries by this actor (as written: a user name, `cli:<user>`, `system`).
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "ayse@qodify.com"
    )]
    actor: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Start after this entry: the `nextBefore` of the previous page.
    #[param(minimum = 1)]
    before: Option<i64>,
}

/// An audit action as the log writes them: lowercase words joined by `.`, `_` or `-`.
fn is_action(a: &str) -> bool {
    a.len() <= 100
        && a.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Reads the audit log, newest first, filtered by customer, action and actor, one page.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    operation_id = "listAudit",
    params(ListParams),
    responses(
        (status = 200, description = "One page of entries.", body = AuditList),
        (status = 400, description = "A bad query.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<AuditList>, ApiError> {
    let customer = q
        .customer
        .as_deref()
        .map(extract::customer_id)
        .transpose()?
        .map(str::to_owned);
    let limit = extract::limit(q.limit)?;
    if let Some(action) = &q.action
        && !is_action(action)
    {
        return Err(ApiError::bad_request(
            "action must be an audit action such as backup.deleted: 1-100 characters from a-z, \
             0-9, `.`, `_` and `-`",
        ));
    }
    if let Some(actor) = &q.actor
        && (actor.is_empty() || actor.chars().count() > 200 || actor.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "actor must be 1-200 characters without control characters",
        ));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            "before must be an entry id (1 or more), the nextBefore of the previous page",
        ));
    }
    blocking(move || {
        let store = state.store.as_ref();
        if let Some(c) = &customer {
            customers::require(store, c)?;
        }
        // One more entry than the page tells whether another page follows.
        let rows = store.audit_page(&AuditQuery {
            customer_id: customer,
            action: q.action,
            actor: q.actor,
            before: q.before,
            limit: limit + 1,
        })?;
        let page = Page::cut(rows, limit, |r| r.id);
        Ok(Json(AuditList {
            entries: page.items.into_iter().map(AuditView::from).collect(),
            next_before: page.next_before,
        }))
    })
    .await
}
