//! A customer's backups: `POST /api/customers/{id}/backups` queues the shipped `backup`
//! pipeline, `GET` lists the history the store keeps (never scanning folders), and
//! `DELETE /api/customers/{id}/backups/{backupId}` removes one backup folder.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{self, ApiPath, ApiQuery, JsonOrDefault};
use super::{audit, blocking, customers, runs};
use crate::service::AppState;
use crate::store::{BackupRecord, CustomerRecord};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/customers/{id}/backups", get(history).post(create))
        .route("/customers/{id}/backups/{backup_id}", delete(remove))
}

/// `fast`: the plan's recommended set; `custom`: chosen with the include flags.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackupType {
    #[default]
    Fast,
    Custom,
}

/// Include flags of a backup; the ones left out keep the pipeline's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackupInclude {
    db: Option<bool>,
    uploads: Option<bool>,
    env_pm2: Option<bool>,
    logs: Option<bool>,
    artifacts: Option<bool>,
}

/// Body of `POST /api/customers/{id}/backups` (may be empty: a fast backup).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBackup {
    #[serde(rename = "type", default)]
    kind: BackupType,
    #[serde(default)]
    include: BackupInclude,
    triggered_by: Option<String>,
    /// Queue behind the customer's active run instead of answering 409.
    #[serde(default)]
    queue: bool,
}

/// The `backup` pipeline's params for a request.
fn backup_params(req: &CreateBackup) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let kind = match req.kind {
        BackupType::Fast => "fast",
        BackupType::Custom => "custom",
    };
    params.insert("type".to_owned(), kind.to_owned());
    let i = &req.include;
    for (name, flag) in [
        ("include.db", i.db),
        ("include.uploads", i.uploads),
        ("include.envPm2", i.env_pm2),
        ("include.logs", i.logs),
        ("include.artifacts", i.artifacts),
    ] {
        if let Some(flag) = flag {
            params.insert(name.to_owned(), flag.to_string());
        }
    }
    params
}

async fn create(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    JsonOrDefault(body): JsonOrDefault<CreateBackup>,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let actor = extract::actor(body.triggered_by.clone())?;
    let params = backup_params(&body);
    runs::submit(state, id, "backup", params, actor, body.queue).await
}

/// One line of backup history as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryView {
    /// When the run was created (RFC 3339 UTC).
    date: String,
    /// `fast` or `custom`.
    #[serde(rename = "type")]
    kind: String,
    /// Bytes, when it completed.
    size: Option<u64>,
    /// Wall time in milliseconds.
    duration_ms: Option<u64>,
    /// `succeeded`, `failed`, `cancelled`, `interrupted` or `deleted`.
    result: String,
    triggered_by: Option<String>,
    run_id: String,
    backup_id: Option<String>,
}

impl From<BackupRecord> for HistoryView {
    fn from(b: BackupRecord) -> Self {
        Self {
            date: b.created_at,
            kind: b.kind,
            size: b.size,
            duration_ms: b.duration_ms,
            result: b.result,
            triggered_by: b.triggered_by,
            run_id: b.run_id,
            backup_id: b.backup_id,
        }
    }
}

#[derive(Debug, Serialize)]
struct History {
    customer: String,
    backups: Vec<HistoryView>,
}

async fn history(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<History>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    blocking(move || {
        let store = state.store.as_ref();
        customers::require(store, &id)?;
        // Newest first, as the store keeps it.
        let backups = store.backups(&id)?;
        Ok(Json(History {
            customer: id,
            backups: backups.into_iter().map(HistoryView::from).collect(),
        }))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteQuery {
    triggered_by: Option<String>,
}

/// Opens the customer's folder; a missing folder holds no backups (404).
pub(super) fn open_customer_dir(
    state: &AppState,
    customer: &CustomerRecord,
) -> Result<cap_std::fs::Dir, ApiError> {
    crate::sandbox::open_customer(&state.settings.customers_root, &customer.domain).map_err(|e| {
        tracing::info!("customer {}: {e}", customer.id);
        ApiError::not_found(format!(
            "customer {} has no folder on this host, so no backups",
            customer.id
        ))
    })
}

async fn remove(
    State(state): State<AppState>,
    ApiPath((id, backup_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let backup_id = extract::backup_id(&backup_id)?.to_owned();
    let actor = extract::actor(q.triggered_by)?;
    blocking(move || {
        let store = state.store.as_ref();
        let customer = customers::require(store, &id)?;
        if let Some(run) = runs::active_run(store, &id)? {
            return Err(ApiError::busy_with(&run));
        }
        let dir = open_customer_dir(&state, &customer)?;
        // Like a run, deleting takes the customer's lock, so no run starts half-way through.
        let lock_id = uuid::Uuid::now_v7().to_string();
        let _lock = crate::lock::acquire(
            &state.settings.data_dir,
            &customer.domain,
            &lock_id,
            "backups delete",
        )
        .map_err(|e| match e.downcast_ref::<crate::lock::Busy>() {
            Some(_) => ApiError::conflict(format!(
                "customer {id} has a run in progress on this host; delete the backup when it has ended"
            )),
            None => ApiError::internal("taking the customer lock", format!("{e:#}")),
        })?;
        let listed = crate::backups::list(&dir)
            .map_err(|e| ApiError::internal("listing backups", format!("{e:#}")))?;
        let backup = listed
            .into_iter()
            .find(|b| b.id == backup_id)
            .ok_or_else(|| ApiError::not_found(format!("customer {id} has no backup {backup_id}")))?;
        if let Some(reason) = backup.pinned {
            return Err(ApiError::conflict(format!(
                "backup {backup_id} is pinned ({reason}) and cannot be deleted"
            ))
            .with("pinned", reason));
        }
        crate::backups::delete(&dir, &backup_id)
            .map_err(|e| ApiError::internal("deleting a backup", format!("{e:#}")))?;
        match store.backups(&id) {
            Ok(rows) => {
                for row in rows
                    .into_iter()
                    .filter(|r| r.backup_id.as_deref() == Some(backup_id.as_str()))
                {
                    let row = BackupRecord {
                        result: "deleted".into(),
                        ..row
                    };
                    if let Err(e) = store.record_backup(&row) {
                        tracing::warn!("marking backup {backup_id} deleted in the history: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("reading the backup history of {id}: {e}"),
        }
        audit::record(
            store,
            actor.as_deref(),
            "backup.deleted",
            Some(&id),
            None,
            serde_json::json!({ "backupId": backup_id, "size": backup.size }),
        );
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
