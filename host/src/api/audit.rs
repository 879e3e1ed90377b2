//! `GET /api/audit?customer=<id>&limit=<n>`: the audit log, newest first; and the helper the
//! other handlers write it with.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::error::ApiError;
use super::extract::{self, ApiQuery};
use super::{blocking, customers};
use crate::service::{AppState, now};
use crate::store::{AuditEntry, Store};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditView {
    at: String,
    actor: Option<String>,
    action: String,
    customer_id: Option<String>,
    run_id: Option<String>,
    detail: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct AuditList {
    entries: Vec<AuditView>,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<extract::ListQuery>,
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

/// Appends to the audit log; a failure is logged and does not fail the request (what it records
/// has already happened).
pub(super) fn record(
    store: &dyn Store,
    actor: Option<&str>,
    action: &str,
    customer_id: Option<&str>,
    run_id: Option<&str>,
    detail: serde_json::Value,
) {
    let entry = AuditEntry {
        at: now(),
        actor: actor.map(str::to_owned),
        action: action.to_owned(),
        customer_id: customer_id.map(str::to_owned),
        run_id: run_id.map(str::to_owned),
        detail,
    };
    if let Err(e) = store.audit(&entry) {
        tracing::warn!("cannot write audit entry {action}: {e}");
    }
}
