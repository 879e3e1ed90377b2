//! A customer's backups: `POST /api/customers/{id}/backups` queues the shipped `backup`
//! pipeline, `GET` lists the history the store keeps (never scanning folders),
//! `GET /api/customers/{id}/backups/{backupId}` shows one complete backup from its folder,
//! `POST …/{backupId}/verify` queues the shipped `verify` pipeline for it, and
//! `DELETE …/{backupId}` removes one backup folder.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiPath, ApiQuery, BackupPath, CustomerPath, JsonOrDefault};
use super::runs::Submitted;
use super::{blocking, customers, runs};
use crate::ops::AppState;
use crate::ops::backups::DeleteError;
use crate::store::{BackupRecord, CustomerRecord};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history, create))
        .routes(routes!(show, remove))
        .routes(routes!(verify))
        .routes(routes!(drill))
}

/// `fast`: the plan's recommended set; `custom`: chosen with the include flags.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum BackupType {
    /// The recommended set: database, uploads, `.env` files and PM2 config; no logs or build
    /// artifacts.
    #[default]
    Fast,
    /// What the include flags choose.
    Custom,
}

/// Include flags of a backup; the ones left out keep the pipeline's defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BackupInclude {
    /// Dump the database (default true).
    db: Option<bool>,
    /// Archive the uploads (default true).
    uploads: Option<bool>,
    /// Archive every `.env*` file and the PM2 ecosystem file(s) (default true).
    env_pm2: Option<bool>,
    /// Keep `logs/` folders in the service archives (default false).
    logs: Option<bool>,
    /// Keep `node_modules/`, `.next/` and `dist/` in the service archives (default false).
    artifacts: Option<bool>,
}

/// Body of `POST /api/customers/{id}/backups` (may be empty: a fast backup).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBackup {
    /// `fast` (default) or `custom`.
    #[serde(rename = "type", default)]
    kind: BackupType,
    /// With `custom`: what to include.
    #[serde(default)]
    include: BackupInclude,
    /// Who asked (a user name or id), for the history and the audit log.
    triggered_by: Option<extract::Actor>,
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

/// Queues a backup of the customer (the shipped `backup` pipeline).
#[utoipa::path(
    post,
    path = "/customers/{id}/backups",
    tag = "backups",
    operation_id = "createBackup",
    params(CustomerPath),
    request_body(content = Option<CreateBackup>, description = "May be left out: a fast backup."),
    responses(
        (status = 202, description = "Queued; follow it at `runUrl` and `eventsUrl`.", body = Submitted,
         headers(("Location" = String, description = "The run's URL."))),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer has an active run (named in `activeRunId`) and `queue` was not set.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
    JsonOrDefault(body): JsonOrDefault<CreateBackup>,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let actor = Some(caller.actor(body.triggered_by.clone())?);
    let params = backup_params(&body);
    runs::submit(state, id, "backup", params, actor, body.queue).await
}

/// One line of backup history as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = BackupHistoryEntry)]
struct HistoryView {
    /// When the run was created (RFC 3339 UTC).
    #[schema(format = DateTime)]
    date: String,
    /// `fast`, `custom` or `pre-upgrade` (taken by an upgrade before it changed anything).
    #[serde(rename = "type")]
    kind: String,
    /// Bytes, when it completed.
    #[schema(required = true)]
    size: Option<u64>,
    /// Wall time in milliseconds.
    #[schema(required = true)]
    duration_ms: Option<u64>,
    /// `succeeded`, `failed`, `cancelled`, `interrupted` or `deleted` (by retention, by a
    /// person, or found missing: see `note`).
    result: String,
    /// Who asked for it.
    #[schema(required = true)]
    triggered_by: Option<String>,
    /// The run that made (or tried to make) it.
    run_id: String,
    /// The backup id, once it completed.
    #[schema(required = true)]
    backup_id: Option<String>,
    /// Why the line has its result when the result alone does not say: `retention`,
    /// `deleted by <who>`, `missing on disk`, `found on disk by reconcile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Why the backup is pinned (kept by retention, refused by delete), while it is: e.g. a
    /// pre-upgrade backup while its upgrade can roll back. `null` when it is not.
    #[schema(required = true)]
    pinned: Option<String>,
    /// The newest restore drill's verdict on this backup (the `drill` pipeline): `true` when it
    /// restored into a scratch database and folder and matched its dump and backup.json.
    /// `null` when it was never drilled.
    #[schema(required = true)]
    restorable: Option<bool>,
    /// When that drill ended (RFC 3339 UTC); `null` when never drilled.
    #[schema(required = true, format = DateTime)]
    drilled_at: Option<String>,
    /// Why that drill found the backup not restorable (e.g. pg_restore's own error); `null`
    /// otherwise.
    #[schema(required = true)]
    drill_reason: Option<String>,
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
            note: b.note,
            pinned: None,
            restorable: None,
            drilled_at: None,
            drill_reason: None,
        }
    }
}

/// A customer's backup history, newest first, one page.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = BackupHistory)]
#[serde(rename_all = "camelCase")]
struct History {
    /// The customer id.
    customer: String,
    /// Backup runs, failed ones too, newest first (at most `limit`).
    backups: Vec<HistoryView>,
    /// When more lines follow: pass it as `?before=` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

/// `?limit=&before=` of the history.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// At most this many lines (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Start after this run's line: the `nextBefore` of the previous page.
    #[param(pattern = "^[A-Za-z0-9-]{1,64}$")]
    before: Option<String>,
}

/// The customer's backup history, newest first, as the store keeps it (failed runs too).
#[utoipa::path(
    get,
    path = "/customers/{id}/backups",
    tag = "backups",
    operation_id = "listBackups",
    params(CustomerPath, HistoryQuery),
    responses(
        (status = 200, description = "The history.", body = History),
        (status = 400, description = "The id is not a customer id.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn history(
    State(state): State<AppState>,
    ApiPath(CustomerPath { id }): ApiPath<CustomerPath>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let limit = extract::limit(q.limit)?;
    let before = q.before.as_deref().map(extract::run_id).transpose()?;
    blocking(move || {
        let store = state.store.as_ref();
        let customer = customers::require(store, &id)?;
        // Newest first, as the store keeps it; one more line tells whether a next page exists.
        let mut backups = store.backups(&id, limit + 1, before.as_deref())?;
        let next_before = (backups.len() > limit).then(|| {
            backups.truncate(limit);
            backups.last().map(|b| b.run_id.clone())
        });
        // Pins live on disk, with the backups: read them for the lines that have a backup.
        let pins: std::collections::BTreeMap<String, String> =
            crate::engine::sandbox::open_customer(&state.settings.customers_root, &customer.domain)
                .ok()
                .and_then(|dir| crate::backups::list(&dir).ok())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|b| Some((b.id, b.pinned?)))
                .collect();
        // Drill verdicts live in the store, beside the history: one query for the page.
        let ids: Vec<String> = backups.iter().filter_map(|b| b.backup_id.clone()).collect();
        let drills: std::collections::BTreeMap<String, crate::store::DrillRecord> = store
            .drills(&id, &ids)?
            .into_iter()
            .map(|d| (d.backup_id.clone(), d))
            .collect();
        let backups = backups
            .into_iter()
            .map(|b| {
                let pinned = b
                    .backup_id
                    .as_deref()
                    .filter(|_| b.result == "succeeded")
                    .and_then(|id| pins.get(id).cloned());
                let drill = b.backup_id.as_deref().and_then(|id| drills.get(id));
                HistoryView {
                    pinned,
                    restorable: drill.map(|d| d.restorable),
                    drilled_at: drill.map(|d| d.drilled_at.clone()),
                    drill_reason: drill.and_then(|d| d.reason.clone()),
                    ..HistoryView::from(b)
                }
            })
            .collect();
        Ok(Json(History {
            customer: id,
            backups,
            next_before: next_before.flatten(),
        }))
    })
    .await
}

/// `?triggeredBy=` of a delete.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeleteQuery {
    /// Who asked (a user name or id), for the audit log.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    triggered_by: Option<String>,
}

/// Opens the customer's folder; a missing folder holds no backups (404).
pub(super) fn open_customer_dir(
    state: &AppState,
    customer: &CustomerRecord,
) -> Result<cap_std::fs::Dir, ApiError> {
    crate::engine::sandbox::open_customer(&state.settings.customers_root, &customer.domain).map_err(
        |e| {
            tracing::info!("customer {}: {e}", customer.id);
            ApiError::not_found(format!(
                "customer {} has no folder on this host, so no backups",
                customer.id
            ))
        },
    )
}

/// Deletes one backup folder (refused while the backup is pinned or the customer busy).
#[utoipa::path(
    delete,
    path = "/customers/{id}/backups/{backupId}",
    tag = "backups",
    operation_id = "deleteBackup",
    params(BackupPath, DeleteQuery),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "A bad id or query.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer or backup.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The backup is pinned (`pinned` says why), or the customer has an active run.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(BackupPath { id, backup_id }): ApiPath<BackupPath>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Response, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let backup_id = extract::backup_id(&backup_id)?.to_owned();
    let actor = Some(caller.actor(q.triggered_by.map(extract::Actor))?);
    blocking(move || {
        let customer = customers::require(state.store.as_ref(), &id)?;
        match crate::ops::backups::delete(&state, &customer, &backup_id, actor.as_deref()) {
            Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(e) => Err(match e {
                DeleteError::NotFound { .. } => ApiError::not_found(e.to_string()),
                DeleteError::Pinned { ref reason, .. } => {
                    let reason = reason.clone();
                    ApiError::conflict(e.to_string()).with_pinned(reason)
                }
                DeleteError::Busy(run) => ApiError::busy_with(&run),
                DeleteError::Locked(_) => ApiError::conflict(e.to_string()),
                DeleteError::Other(e) => ApiError::internal("deleting a backup", format!("{e:#}")),
            }),
        }
    })
    .await
}

/// One artifact of a backup.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ArtifactView {
    /// File name inside the backup folder, e.g. `db.dump`.
    file: String,
    /// Bytes.
    size: u64,
    /// sha256, lowercase hex.
    sha256: String,
}

/// One complete backup, from its folder and `backup.json`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = BackupDetail)]
struct Detail {
    /// The backup id (`YYYYMMDD-HHMMSS`, UTC).
    id: String,
    /// Sum of the artifacts' sizes, in bytes.
    size: u64,
    /// Why it is pinned (kept by retention, refused by delete), when it is.
    #[schema(required = true)]
    pinned: Option<String>,
    /// `fast`, `custom` or `pre-upgrade`, as backup.json says.
    #[serde(rename = "type")]
    #[schema(required = true)]
    kind: Option<String>,
    /// When the backup started (RFC 3339), as backup.json says.
    #[schema(required = true)]
    timestamp: Option<String>,
    /// backup.json's `include` flags (`null` when backup.json has none).
    #[schema(value_type = Option<Object>, required = true)]
    include: serde_json::Value,
    /// backup.json's service `versions` (`null` when backup.json has none).
    #[schema(value_type = Option<Object>, required = true)]
    versions: serde_json::Value,
    /// backup.json's `paths` (`uploadsPath`) (`null` when backup.json has none).
    #[schema(value_type = Option<Object>, required = true)]
    paths: serde_json::Value,
    /// The artifacts and their checksums.
    artifacts: Vec<ArtifactView>,
    /// When a `verify` run last found every artifact intact (RFC 3339), if one did.
    #[schema(required = true, format = DateTime)]
    verified_at: Option<String>,
    /// That run.
    #[schema(required = true)]
    verified_by_run: Option<String>,
}

/// One of the customer's complete backups: its manifest summary, pin and last verification.
#[utoipa::path(
    get,
    path = "/customers/{id}/backups/{backupId}",
    tag = "backups",
    operation_id = "getBackup",
    params(BackupPath),
    responses(
        (status = 200, description = "The backup.", body = Detail),
        (status = 400, description = "A bad id.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer, or no such complete backup (a partial or deleted one is none).", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn show(
    State(state): State<AppState>,
    ApiPath(BackupPath { id, backup_id }): ApiPath<BackupPath>,
) -> Result<Json<Detail>, ApiError> {
    let id = extract::customer_id(&id)?.to_owned();
    let backup_id = extract::backup_id(&backup_id)?.to_owned();
    blocking(move || {
        let store = state.store.as_ref();
        let customer = customers::require(store, &id)?;
        let backup = find_complete(&state, &customer, &backup_id)?;
        // The newest verify run of this backup that succeeded.
        let verified = store
            .runs(&crate::store::RunFilter {
                customer_id: Some(id.clone()),
                limit: Some(1000),
            })?
            .into_iter()
            .filter(|r| {
                r.pipeline == "verify"
                    && r.state == crate::store::RunState::Succeeded
                    && r.params.get("backup") == Some(&backup_id)
            })
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at));
        let field = |name: &str| backup.manifest.rest.get(name).cloned().unwrap_or_default();
        Ok(Json(Detail {
            id: backup.id,
            size: backup.size,
            pinned: backup.pinned,
            kind: field("type").as_str().map(str::to_owned),
            timestamp: field("timestamp").as_str().map(str::to_owned),
            include: field("include"),
            versions: field("versions"),
            paths: field("paths"),
            artifacts: backup
                .manifest
                .artifacts
                .into_iter()
                .map(|a| ArtifactView {
                    file: a.file,
                    size: a.size,
                    sha256: a.sha256,
                })
                .collect(),
            verified_at: verified.as_ref().and_then(|r| r.finished_at.clone()),
            verified_by_run: verified.map(|r| r.id),
        }))
    })
    .await
}

/// The customer's complete backup `backup_id`, or 404.
pub(super) fn find_complete(
    state: &AppState,
    customer: &CustomerRecord,
    backup_id: &str,
) -> Result<crate::backups::Backup, ApiError> {
    let dir = open_customer_dir(state, customer)?;
    crate::backups::list(&dir)
        .map_err(|e| ApiError::internal("listing backups", format!("{e:#}")))?
        .into_iter()
        .find(|b| b.id == backup_id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "customer {} has no complete backup {backup_id}",
                customer.id
            ))
        })
}

/// Body of `POST /api/customers/{id}/backups/{backupId}/verify` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VerifyBackup {
    /// Who asked (a user name or id), for the audit log.
    triggered_by: Option<extract::Actor>,
    /// Queue behind the customer's active run instead of answering 409.
    #[serde(default)]
    queue: bool,
}

/// Queues a verification of one complete backup (the shipped `verify` pipeline): every
/// artifact's sha256 and size against its `backup.json`, as a run with live events; `GET` of
/// the backup then shows `verifiedAt`.
#[utoipa::path(
    post,
    path = "/customers/{id}/backups/{backupId}/verify",
    tag = "backups",
    operation_id = "verifyBackup",
    params(BackupPath),
    request_body(content = Option<VerifyBackup>, description = "May be left out."),
    responses(
        (status = 202, description = "Queued; follow it at `runUrl` and `eventsUrl` (`run-progress`, then `run-completed` or `run-failed` naming the damaged file).", body = Submitted,
         headers(("Location" = String, description = "The run's URL."))),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer, or no such complete backup.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer has an active run (named in `activeRunId`) and `queue` was not set.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(BackupPath { id, backup_id }): ApiPath<BackupPath>,
    JsonOrDefault(body): JsonOrDefault<VerifyBackup>,
) -> Result<Response, ApiError> {
    let on = (
        extract::customer_id(&id)?.to_owned(),
        extract::backup_id(&backup_id)?.to_owned(),
    );
    let actor = Some(caller.actor(body.triggered_by)?);
    submit_on_backup(state, on, "verify", BTreeMap::new(), actor, body.queue).await
}

/// Queues `pipeline` with `backup=<backup_id>` and `params` for customer `id` (both checked
/// already), once both the customer and that complete backup are found.
async fn submit_on_backup(
    state: AppState,
    (id, backup_id): (String, String),
    pipeline: &str,
    mut params: BTreeMap<String, String>,
    actor: Option<String>,
    queue: bool,
) -> Result<Response, ApiError> {
    {
        let (state, id, backup_id) = (state.clone(), id.clone(), backup_id.clone());
        blocking(move || {
            let customer = customers::require(state.store.as_ref(), &id)?;
            find_complete(&state, &customer, &backup_id).map(|_| ())
        })
        .await?;
    }
    params.insert("backup".to_owned(), backup_id);
    runs::submit(state, id, pipeline, params, actor, queue).await
}

/// Body of `POST /api/customers/{id}/backups/{backupId}/drill` (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DrillBackup {
    /// Who asked (a user name or id), for the audit log.
    triggered_by: Option<extract::Actor>,
    /// Queue behind the customer's active run instead of answering 409.
    #[serde(default)]
    queue: bool,
    /// SQL that must succeed and return a row in the restored database, e.g.
    /// `SELECT 1 FROM orders LIMIT 1`; left out: the pipeline's default (none).
    #[schema(max_length = 4000)]
    probe: Option<String>,
}

/// Queues a restore drill of one complete backup (the shipped `drill` pipeline): its database
/// restored into a scratch database and its archives into a scratch folder, checked against the
/// dump and `backup.json`, then dropped. The history then shows `restorable`, `drilledAt` and,
/// when it is not, `drillReason`.
#[utoipa::path(
    post,
    path = "/customers/{id}/backups/{backupId}/drill",
    tag = "backups",
    operation_id = "drillBackup",
    params(BackupPath),
    request_body(content = Option<DrillBackup>, description = "May be left out."),
    responses(
        (status = 202, description = "Queued; follow it at `runUrl` and `eventsUrl` (`run-completed`, or `run-failed` with the reason when the backup is not restorable).", body = Submitted,
         headers(("Location" = String, description = "The run's URL."))),
        (status = 400, description = "A bad id or body.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such customer, or no such complete backup.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 409, description = "The customer has an active run (named in `activeRunId`) and `queue` was not set.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is too large.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not JSON.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn drill(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(BackupPath { id, backup_id }): ApiPath<BackupPath>,
    JsonOrDefault(body): JsonOrDefault<DrillBackup>,
) -> Result<Response, ApiError> {
    let on = (
        extract::customer_id(&id)?.to_owned(),
        extract::backup_id(&backup_id)?.to_owned(),
    );
    let actor = Some(caller.actor(body.triggered_by)?);
    if body.probe.as_ref().is_some_and(|p| p.len() > 4000) {
        return Err(ApiError::bad_request("probe is longer than 4000 bytes"));
    }
    let params = body
        .probe
        .map(|p| ("probe".to_owned(), p))
        .into_iter()
        .collect();
    submit_on_backup(state, on, "drill", params, actor, body.queue).await
}
