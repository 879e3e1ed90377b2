//! The event hub: every live event of every run is stored (so late or reconnecting clients get
//! what they missed) and broadcast to the connected SSE and Socket.IO clients, those of every
//! host sharing the store (PostgreSQL's `LISTEN/NOTIFY`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{Store, StoreResult, StoredEvent};

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
///
/// With one host (SQLite) the hub broadcasts what it stores. With a store several hosts share
/// (PostgreSQL), once [`EventHub::listen`] ran, it broadcasts what the store announces instead:
/// every event stored by any host, this one included, in each run's order, without gaps (a gap
/// is filled from the store) and without duplicates.
#[derive(Clone)]
pub struct EventHub {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<LiveEvent>,
    /// Whether broadcasts come from the store's announcements.
    fanned_out: Arc<AtomicBool>,
}

impl EventHub {
    /// A hub over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            store,
            tx,
            fanned_out: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Broadcasts the events every host stores, as the store announces them (a `serve` sharing
    /// its store with other hosts); `false` when the store announces nothing (SQLite), and the
    /// hub goes on broadcasting what it publishes itself.
    pub fn listen(&self) -> bool {
        let (notices, heard) = std::sync::mpsc::channel::<Option<StoredEvent>>();
        let listening = self.store.listen_events(Arc::new(move |event| {
            let _ = notices.send(event);
        }));
        if !listening {
            return false;
        }
        self.fanned_out.store(true, Ordering::SeqCst);
        let mut fan_out = FanOut {
            store: self.store.clone(),
            tx: self.tx.clone(),
            last: HashMap::new(),
        };
        // Its own thread: filling a gap reads the store, which blocks.
        let spawned = std::thread::Builder::new()
            .name("event-fan-out".into())
            .spawn(move || {
                while let Ok(notice) = heard.recv() {
                    match notice {
                        Some(event) => fan_out.heard(event),
                        None => fan_out.catch_up(),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the event fan-out thread: {e}");
            self.fanned_out.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Stores the event, then broadcasts it. A store failure is logged, never fatal to the run.
    pub fn publish(&self, run_id: &str, customer_id: &str, name: &str, data: serde_json::Value) {
        let seq = self.store.append_event(run_id, name, &data);
        self.broadcast(run_id, customer_id, name, data, seq.map(Some));
    }

    /// Stores and broadcasts an event of a run that runs at `epoch`: nothing at all when the run
    /// ended or was taken over (a node that lost its lease writes nothing more); whether it was
    /// published.
    pub fn publish_fenced(
        &self,
        run_id: &str,
        customer_id: &str,
        epoch: i64,
        name: &str,
        data: serde_json::Value,
    ) -> bool {
        let seq = self.store.append_event_fenced(run_id, epoch, name, &data);
        if matches!(seq, Ok(None)) {
            tracing::debug!("event {name} of run {run_id} not stored: the run is no longer ours");
            return false;
        }
        self.broadcast(run_id, customer_id, name, data, seq);
        true
    }

    fn broadcast(
        &self,
        run_id: &str,
        customer_id: &str,
        name: &str,
        data: serde_json::Value,
        stored: StoreResult<Option<u64>>,
    ) {
        let seq = match stored {
            // Stored: the store's announcement broadcasts it, on every host.
            Ok(Some(_)) if self.fanned_out.load(Ordering::SeqCst) => return,
            Ok(Some(seq)) => seq,
            Ok(None) => return,
            // Not stored: live clients of this host still see it (with seq 0, never replayed).
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

/// Runs followed for gaps at most; past this the oldest knowledge is dropped (a gap in a run
/// no longer followed is not filled, and its clients replay from the store when they reconnect).
const FOLLOWED_RUNS: usize = 4096;

/// Turns the store's announcements into broadcasts, in order, without gaps or duplicates.
struct FanOut {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<LiveEvent>,
    /// Per run: its customer and the seq of the last event broadcast.
    last: HashMap<String, (String, u64)>,
}

impl FanOut {
    fn heard(&mut self, event: StoredEvent) {
        let last = self.last.get(&event.run_id).map(|(_, seq)| *seq);
        if last.is_some_and(|last| event.seq <= last) {
            return;
        }
        // A gap: announcements were missed (the listener reconnected). Read them.
        if let Some(last) = last
            && event.seq > last + 1
        {
            self.replay(&event.run_id, &event.customer_id, last, Some(event.seq - 1));
        }
        let data = match event.data {
            Some(data) => Some(data),
            // Too large to be sent along.
            None => self
                .store
                .events(&event.run_id, event.seq - 1)
                .ok()
                .and_then(|events| events.into_iter().find(|e| e.seq == event.seq))
                .map(|e| e.data),
        };
        if let Some(data) = data {
            self.send(
                &event.run_id,
                &event.customer_id,
                event.seq,
                &event.name,
                data,
            );
        }
    }

    /// After a reconnection: what every followed run stored meanwhile.
    fn catch_up(&mut self) {
        let followed: Vec<(String, String, u64)> = self
            .last
            .iter()
            .map(|(run, (customer, seq))| (run.clone(), customer.clone(), *seq))
            .collect();
        for (run, customer, seq) in followed {
            self.replay(&run, &customer, seq, None);
        }
    }

    /// Broadcasts run `run`'s stored events after `after` (up to `until`).
    fn replay(&mut self, run: &str, customer: &str, after: u64, until: Option<u64>) {
        match self.store.events(run, after) {
            Ok(events) => {
                for e in events {
                    if until.is_some_and(|until| e.seq > until) {
                        break;
                    }
                    self.send(run, customer, e.seq, &e.name, e.data);
                }
            }
            Err(e) => tracing::warn!("reading the missed events of run {run}: {e}"),
        }
    }

    fn send(&mut self, run: &str, customer: &str, seq: u64, name: &str, data: serde_json::Value) {
        if self.last.len() >= FOLLOWED_RUNS && !self.last.contains_key(run) {
            self.last.clear();
        }
        self.last.insert(run.to_owned(), (customer.to_owned(), seq));
        let _ = self.tx.send(LiveEvent {
            run_id: run.to_owned(),
            customer_id: customer.to_owned(),
            seq,
            name: name.to_owned(),
            data,
        });
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
