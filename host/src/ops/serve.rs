//! `qodify-host serve` from start to stop, less the HTTP listener: take the data dir's serve
//! lock, open the state, finish the runs the last stop interrupted (the store's and the
//! journals on disk), reconcile, start the workers, the heartbeat and the sweep that expires
//! leases, and the scheduler; at the end, let running runs finish within
//! a grace period and cancel the rest.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::engine::lock::ServeLock;
use crate::ops::{AppState, worker};
use crate::settings::Settings;
use crate::store::RunRecord;

/// A started service: its state and the lock that keeps a second `serve` off the data dir.
pub struct Started {
    /// What the API and the workers share.
    pub state: AppState,
    /// Runs of this host that the last stop interrupted, now ended as `interrupted`.
    pub recovered: Vec<RunRecord>,
    _serve_lock: ServeLock,
}

/// Starts the service on `settings` with `workers` run slots: everything before the listener.
pub async fn start(settings: Settings, workers: usize) -> anyhow::Result<Started> {
    crate::files::private_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    // Before the store is opened or anything recovered: a second serve on this data dir would
    // otherwise take the first one's runs for interrupted and remove their output.
    let serve_lock = crate::engine::lock::serve(&settings.data_dir)?;
    let host_id = worker::host_id(&settings);
    let state = AppState::open(settings, host_id)?;
    // Live events of every host sharing the store (PostgreSQL), this one's included, reach
    // this host's SSE and Socket.IO clients; with SQLite the hub broadcasts its own.
    state.hub.listen();
    // Recovery may run steps (an upgrade's rollback): blocking work, off the async threads.
    let recovered = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || worker::recover(&state))
            .await
            .context("recovering interrupted runs")??
    };
    // This node's wake-ups from other hosts (PostgreSQL): a run queued or cancelled through any
    // host wakes the workers at once; without a listener (SQLite, one node) requests through
    // this host wake them directly and the workers look again every second.
    let listening = state.store.listen(&state.settings.node, {
        let state = state.clone();
        std::sync::Arc::new(move |payload: &str| {
            if let Some(run_id) = payload.strip_prefix("cancel:")
                && let Some(token) = state
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(run_id)
            {
                token.cancel();
            }
            state.wake.notify_waiters();
        })
    });
    let recheck = if listening {
        worker::RECHECK_LISTENING
    } else {
        worker::RECHECK
    };
    tokio::spawn(heartbeat(state.clone()));
    tokio::spawn(expire_leases(state.clone()));
    tokio::spawn(worker::run_workers(state.clone(), workers, recheck));
    tokio::spawn(crate::ops::schedule::run(state.clone()));
    Ok(Started {
        state,
        recovered,
        _serve_lock: serve_lock,
    })
}

/// How often a node tells the store it is alive (`GET /api/nodes` shows the age).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Beats for this node every [`HEARTBEAT`] until the process ends (the first at once).
async fn heartbeat(state: AppState) {
    let beat = crate::store::NodeBeat {
        name: state.settings.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: crate::store::now().0,
        advertise_url: state.settings.advertise_url.clone(),
    };
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (state, beat) = (state.clone(), beat.clone());
        match tokio::task::spawn_blocking(move || state.store.heartbeat(&beat)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("node heartbeat: {e}"),
            Err(e) => tracing::warn!("node heartbeat: {e}"),
        }
    }
}

/// Every third of a lease, marks the runs whose lease expired (any node's: a node that died or
/// was paused cannot do it itself) as interrupted, so that they show as such within about a
/// lease and a third, and their customers can run again.
async fn expire_leases(state: AppState) {
    let every = (state.settings.runs.lease / 3).max(Duration::from_millis(500));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let state = state.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || worker::expire_leases(&state)).await {
            tracing::warn!("expiring leases: {e}");
        }
    }
}

/// Stops the service's runs: waits up to `grace` for the running ones to end, then cancels
/// them and gives them 10 s to record `cancelled` and remove their partial output.
pub async fn drain(state: &AppState, grace: Duration, mut report: impl FnMut(&str)) {
    let running = || state.running.lock().map(|m| m.len()).unwrap_or(0);
    let until = Instant::now() + grace;
    while running() > 0 {
        if Instant::now() >= until {
            report(&format!("cancelling {} running run(s)", running()));
            let tokens: Vec<_> = state
                .running
                .lock()
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            for token in tokens {
                token.cancel();
            }
            for _ in 0..100 {
                if running() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
