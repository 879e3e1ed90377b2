//! `qodify-host serve`: the shared state of the HTTP API and the run workers, the event hub that
//! turns run events into the plan's live events (`backup-progress`, `backup-completed`,
//! `backup-failed`, and `restore-…`, `upgrade-…` alike), and the workers that claim queued runs
//! and execute them.

pub mod hub;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::caps::CancelToken;

use crate::plugins::Catalog;
use crate::runtime::Runtime;
use crate::settings::Settings;
use crate::store::{AuditEntry, NewRun, RunRecord, Store, StoreResult};

pub use hub::{EventHub, LiveEvent};

/// Everything the API handlers and the workers share.
#[derive(Clone)]
pub struct AppState {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Live events (also written to the store for replay).
    pub hub: EventHub,
    /// Woken when a run is queued or cancelled.
    pub wake: Arc<Notify>,
    /// Host settings.
    pub settings: Arc<Settings>,
    /// Plugins.
    pub catalog: Arc<Catalog>,
    /// The wasm runtime.
    pub runtime: Arc<Runtime>,
    /// This host's id (lease owner); stable across restarts of the same host and data folder,
    /// so a restarted host recognises its own interrupted runs at once.
    pub host_id: String,
    /// Cancel flags of the runs executing on this host.
    pub running: Arc<Mutex<HashMap<String, CancelToken>>>,
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl AppState {
    /// Queues a run (see [`Store::enqueue_run`]), audits it, publishes its first event and
    /// wakes a worker.
    pub fn submit(&self, run: &NewRun, queue_if_busy: bool) -> StoreResult<RunRecord> {
        let record = self.store.enqueue_run(run, queue_if_busy)?;
        let _ = self.store.audit(&AuditEntry {
            at: now(),
            actor: run.triggered_by.clone(),
            action: format!("{}.requested", run.pipeline),
            customer_id: Some(run.customer_id.clone()),
            run_id: Some(run.id.clone()),
            detail: serde_json::json!({ "params": run.params }),
        });
        let family = hub::family(&run.pipeline);
        self.hub.publish(
            &run.id,
            &run.customer_id,
            &format!("{family}-progress"),
            serde_json::json!({ "runId": run.id, "percent": 0.0, "step": null, "message": "queued" }),
        );
        self.wake.notify_waiters();
        Ok(record)
    }

    /// Cancels a run: a queued one ends at once; a running one is stopped (its step's deadline is
    /// triggered, child processes killed, partial output removed). `None`: no such run.
    pub fn cancel(&self, run_id: &str, actor: Option<&str>) -> StoreResult<Option<RunRecord>> {
        let record = self.store.request_cancel(run_id)?;
        if let Some(r) = &record {
            if let Some(token) = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(run_id)
            {
                token.cancel();
            }
            let _ = self.store.audit(&AuditEntry {
                at: now(),
                actor: actor.map(str::to_owned),
                action: "run.cancel-requested".into(),
                customer_id: Some(r.customer_id.clone()),
                run_id: Some(r.id.clone()),
                detail: serde_json::json!({ "state": r.state }),
            });
        }
        Ok(record)
    }
}
