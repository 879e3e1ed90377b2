//! `GET /api/audit?customer=<id>&limit=<n>`: the audit log, newest first; and the helper the
//! other handlers write it with.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{ApiQuery, ListQuery};
use super::{blocking, customers};
use crate::ops::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AuditEntry)]
struct AuditView {
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

/// Audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct AuditList {
    /// The entries.
    entries: Vec<AuditView>,
}

/// Reads the audit log, newest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    operation_id = "listAudit",
    params(ListQuery),
    responses(
        (status = 200, description = "The entries.", body = AuditList),
        (status = 400, description = "A bad query.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let (customer, limit) = q.checked()?;
    blocking(move || {
        let store = state.store.as_ref();
        if let Some(c) = &customer {
            customers::require(store, c)?;
        }
        let entries = store
            .audit_log(customer.as_deref(), limit)?
            .into_iter()
            .map(|e| AuditView {
                at: e.at,
                actor: e.actor,
                action: e.action,
                customer_id: e.customer_id,
                run_id: e.run_id,
                detail: e.detail,
            })
            .collect();
        Ok(Json(AuditList { entries }))
    })
    .await
}
