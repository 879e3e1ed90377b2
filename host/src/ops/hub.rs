//! The event hub: every live event of every run is stored (so late or reconnecting clients get
//! what they missed) and broadcast to the connected SSE and Socket.IO clients.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::Store;

/// A live event as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    /// The run.
    pub run_id: String,
    /// The customer.
    pub customer_id: String,
    /// Per-run sequence number (SSE `id`, for `Last-Event-ID`).
    pub seq: u64,
    /// `backup-progress`, `backup-completed`, `backup-failed`, …
    pub name: String,
    /// Payload.
    pub data: serde_json::Value,
}

/// Stores and broadcasts live events.
#[derive(Clone)]
pub struct EventHub {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<LiveEvent>,
}

impl EventHub {
    /// A hub over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { store, tx }
    }

    /// Stores the event, then broadcasts it. A store failure is logged, never fatal to the run.
    pub fn publish(&self, run_id: &str, customer_id: &str, name: &str, data: serde_json::Value) {
        let seq = match self.store.append_event(run_id, name, &data) {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!("cannot store event {name} of run {run_id}: {e}");
                0
            }
        };
        let _ = self.tx.send(LiveEvent {
            run_id: run_id.to_owned(),
            customer_id: customer_id.to_owned(),
            seq,
            name: name.to_owned(),
            data,
        });
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// The store behind it (for replay).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The live-event family of a pipeline: `backup`, `restore`, `upgrade`; other pipelines use `run`.
pub fn family(pipeline: &str) -> &'static str {
    match pipeline {
        "backup" => "backup",
        "restore" => "restore",
        "upgrade" => "upgrade",
        _ => "run",
    }
}
