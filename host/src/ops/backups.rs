//! Backups as ops and installer-api act on them, the same from the CLI and the API: delete one
//! (never a pinned one, never during a run, recorded in the history and the audit log), and
//! reconcile the history with the folders on disk.

use crate::ops::{AppState, now, worker};
use crate::store::{AuditEntry, BackupRecord, CustomerRecord, RunRecord, RunState};

/// Why a backup was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No such complete backup.
    #[error("customer {customer} has no backup {backup}")]
    NotFound {
        /// Customer id.
        customer: String,
        /// Backup id.
        backup: String,
    },
    /// The backup is pinned.
    #[error("backup {backup} is pinned ({reason}) and cannot be deleted")]
    Pinned {
        /// Backup id.
        backup: String,
        /// Why.
        reason: String,
    },
    /// The customer has an active run in the store.
    #[error("customer {} has an active run ({} {}); delete the backup when it has ended", .0.customer_id, .0.pipeline, .0.id)]
    Busy(Box<RunRecord>),
    /// A run of the customer holds its lock (another process or data dir).
    #[error("customer {0} has a run in progress on this host; delete the backup when it has ended")]
    Locked(String),
    /// Anything else (I/O, the store).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The customer's active (queued or running) run, the running one first.
pub fn active_run(
    store: &dyn crate::store::Store,
    customer: &str,
) -> crate::store::StoreResult<Option<RunRecord>> {
    let runs = store.runs(&crate::store::RunFilter {
        customer_id: Some(customer.to_owned()),
        limit: Some(1000),
    })?;
    Ok(runs
        .iter()
        .find(|r| r.state == RunState::Running)
        .or_else(|| runs.iter().find(|r| r.state.is_active()))
        .cloned())
}

/// Deletes one complete backup of `customer` as `actor`: refused while it is pinned or the
/// customer has a run; takes the customer's lock like a run; marks its history lines
/// `deleted` (note `deleted by <actor>`) and audits it. Returns its size.
pub fn delete(
    state: &AppState,
    customer: &CustomerRecord,
    backup_id: &str,
    actor: Option<&str>,
) -> Result<u64, DeleteError> {
    if let Some(run) =
        active_run(state.store.as_ref(), &customer.id).map_err(anyhow::Error::from)?
    {
        return Err(DeleteError::Busy(Box::new(run)));
    }
    let dir =
        crate::engine::sandbox::open_customer(&state.settings.customers_root, &customer.domain)
            .map_err(|_| DeleteError::NotFound {
                customer: customer.id.clone(),
                backup: backup_id.to_owned(),
            })?;
    let _lock = crate::engine::lock::acquire(
        &state.settings.customers_root,
        &customer.domain,
        &crate::engine::executor::new_run_id(),
        "backups delete",
    )
    .map_err(|e| match e.downcast_ref::<crate::engine::lock::Busy>() {
        Some(_) => DeleteError::Locked(customer.id.clone()),
        None => DeleteError::Other(e),
    })?;
    let backup = crate::backups::list(&dir)?
        .into_iter()
        .find(|b| b.id == backup_id)
        .ok_or_else(|| DeleteError::NotFound {
            customer: customer.id.clone(),
            backup: backup_id.to_owned(),
        })?;
    if let Some(reason) = backup.pinned {
        return Err(DeleteError::Pinned {
            backup: backup_id.to_owned(),
            reason,
        });
    }
    crate::backups::delete(&dir, backup_id)?;
    worker::mark_deleted(
        state,
        &customer.id,
        &[backup_id.to_owned()],
        &format!("deleted by {}", actor.unwrap_or("someone")),
    );
    let _ = state.store.audit(&AuditEntry {
        at: now(),
        actor: actor.map(str::to_owned),
        action: "backup.deleted".into(),
        customer_id: Some(customer.id.clone()),
        run_id: None,
        detail: serde_json::json!({ "backupId": backup_id, "size": backup.size }),
    });
    Ok(backup.size)
}

/// What a reconcile pass changed in one customer's history.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciled {
    /// History lines that said `succeeded` for a folder that is gone: now `deleted`.
    pub marked_deleted: Vec<String>,
    /// Complete backups on disk the history did not have: now listed.
    pub added: Vec<String>,
}

/// Makes the customer's backup history match its backup folders: a `succeeded` line whose
/// folder is gone becomes `deleted` (note `missing on disk`); a complete backup with no line
/// gets one (its run from backup.json when it names one, `triggeredBy` `unknown`).
pub fn reconcile(state: &AppState, customer: &CustomerRecord) -> anyhow::Result<Reconciled> {
    let on_disk: Vec<crate::backups::Backup> = match crate::engine::sandbox::open_customer(
        &state.settings.customers_root,
        &customer.domain,
    ) {
        Ok(dir) => crate::backups::list(&dir)?,
        Err(_) => Vec::new(),
    };
    let history = state.store.backups(&customer.id, usize::MAX, None)?;
    let mut out = Reconciled::default();
    let listed: std::collections::BTreeSet<&str> = on_disk.iter().map(|b| b.id.as_str()).collect();
    let gone: Vec<String> = history
        .iter()
        .filter(|r| r.result == "succeeded")
        .filter_map(|r| r.backup_id.clone())
        .filter(|id| !listed.contains(id.as_str()))
        .collect();
    worker::mark_deleted(state, &customer.id, &gone, "missing on disk");
    out.marked_deleted = gone;
    let known: std::collections::BTreeSet<&str> = history
        .iter()
        .filter_map(|r| r.backup_id.as_deref())
        .collect();
    for b in on_disk.iter().filter(|b| !known.contains(b.id.as_str())) {
        let field = |name: &str| b.manifest.rest.get(name);
        let run_id = field("run")
            .and_then(|r| r.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("disk-{}-{}", customer.id, b.id));
        state.store.record_backup(&BackupRecord {
            customer_id: customer.id.clone(),
            run_id,
            backup_id: Some(b.id.clone()),
            kind: field("type")
                .and_then(|v| v.as_str())
                .unwrap_or("fast")
                .to_owned(),
            size: Some(b.size),
            duration_ms: None,
            result: "succeeded".into(),
            triggered_by: None,
            created_at: field("timestamp")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(now),
            note: Some("found on disk by reconcile".into()),
        })?;
        out.added.push(b.id.clone());
    }
    if !out.marked_deleted.is_empty() || !out.added.is_empty() {
        let _ = state.store.audit(&AuditEntry {
            at: now(),
            actor: Some("system".into()),
            action: "backups.reconciled".into(),
            customer_id: Some(customer.id.clone()),
            run_id: None,
            detail: serde_json::to_value(&out).unwrap_or_default(),
        });
    }
    Ok(out)
}
