//! The state every use case runs against: the store on the data dir, the event hub, the plugins
//! and the wasm runtime. `serve` and every CLI command on one data dir open the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::engine::caps::CancelToken;

use crate::engine::plugins::Catalog;
use crate::engine::runtime::Runtime;
use crate::settings::{Settings, StoreSetting};
use crate::store::{AuditEntry, NewRun, RunRecord, Store, StoreResult};

use super::hub::{self, EventHub};

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
    /// The state of a host process on `settings`' data dir: the store (`store`: the data dir's
    /// `state.sqlite`, or a PostgreSQL database; shared by `serve` and every CLI command with the
    /// same settings), the event hub, the plugins and the runtime. `host_id` owns the leases of
    /// the runs this process executes.
    pub fn open(settings: Settings, host_id: String) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        crate::files::private_dir_all(&settings.data_dir)
            .with_context(|| format!("creating {}", settings.data_dir.display()))?;
        let store: Arc<dyn Store> = match &settings.store {
            StoreSetting::Sqlite => Arc::new(crate::store::sqlite::SqliteStore::open(
                &settings.data_dir.join("state.sqlite"),
            )?),
            StoreSetting::Postgres(url) => {
                tracing::info!(store = %url, "state store: PostgreSQL");
                Arc::new(crate::store::postgres::PgStore::open(url.expose())?)
            }
        };
        let runtime = Arc::new(Runtime::new(&settings.data_dir)?);
        let catalog = Arc::new(Catalog::scan(&settings.plugin_dirs));
        Ok(AppState {
            hub: EventHub::new(store.clone()),
            store,
            wake: Arc::new(Notify::new()),
            settings: Arc::new(settings),
            catalog,
            runtime,
            host_id,
            running: Default::default(),
        })
    }

    /// Appends to the audit log; a failure is logged and fails nothing (what it records has
    /// already happened).
    pub fn audit(
        &self,
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
        if let Err(e) = self.store.audit(&entry) {
            tracing::warn!("cannot write audit entry {action}: {e}");
        }
    }

    /// The record the service keeps for `customer`'s domain, if installer-api registered it:
    /// what a CLI command records its work under. An explicit id that differs from the
    /// registered one is refused. A domain nobody registered has no record (the CLI registers
    /// nothing: the id is installer-api's to give).
    pub fn registered(
        &self,
        customer: &crate::customer::Customer,
        explicit_id: bool,
    ) -> anyhow::Result<Option<crate::store::CustomerRecord>> {
        let domain = customer.domain.as_str();
        let found = self.store.customer_by_domain(domain)?;
        if let Some(found) = &found {
            anyhow::ensure!(
                !explicit_id || found.id == customer.id,
                "{domain} is registered as customer {}, not {}; pass --customer-id {} or leave it out",
                found.id,
                customer.id,
                found.id
            );
        }
        Ok(found)
    }

    /// Ends the runs of CLI processes on this machine that died (`kill -9`) while their lease
    /// still runs: `interrupted` at once, so they block neither the customer's next run nor the
    /// queue for the rest of the lease. A CLI process owns its runs as `cli:<host>:<pid>`.
    pub fn reap_dead_cli_runs(&self) {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let prefix = format!("cli:{host}:");
        // Only the running runs, by the state index: this runs before every claim and every
        // POST, and must not read the history to find the few runs running now.
        let Ok(runs) = self.store.runs_page(&crate::store::RunQuery {
            customer_id: None,
            states: vec![crate::store::RunState::Running],
            before: None,
            limit: 1000,
        }) else {
            return;
        };
        let dead: std::collections::BTreeSet<String> = runs
            .iter()
            .filter_map(|r| r.lease_owner.clone())
            .filter(|owner| {
                owner
                    .strip_prefix(&prefix)
                    .and_then(|pid| pid.parse::<i32>().ok())
                    .and_then(rustix::process::Pid::from_raw)
                    .is_some_and(|pid| {
                        // ESRCH: no such process. EPERM would mean it lives.
                        rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
                    })
            })
            .collect();
        for owner in dead {
            match self.store.recover_interrupted(&owner) {
                Ok(ended) => {
                    for run in ended {
                        tracing::warn!(
                            "run {} ({}) of customer {} was interrupted: its process ({owner}) is gone",
                            run.id,
                            run.pipeline,
                            run.customer_id
                        );
                        self.hub.publish(
                            &run.id,
                            &run.customer_id,
                            &format!("{}-failed", hub::family(&run.pipeline)),
                            serde_json::json!({ "runId": run.id, "state": "interrupted", "error": run.error }),
                        );
                    }
                }
                Err(e) => tracing::warn!("ending the runs of {owner}: {e}"),
            }
        }
    }

    /// Whether this host looks after `customer`'s folder: the customer is this node's, or of
    /// no node (with one node, all are its).
    pub fn owns(&self, customer: &crate::store::CustomerRecord) -> bool {
        customer
            .node
            .as_deref()
            .is_none_or(|node| node == self.settings.node)
    }

    /// Whether this host is the only node (SQLite): it runs the runs of customers of no node
    /// too. With PostgreSQL, a customer's runs wait until a node claims it.
    pub fn single_node(&self) -> bool {
        matches!(self.settings.store, StoreSetting::Sqlite)
    }

    /// Gives this node the customers of no node whose folder is in its customers root (a
    /// customer belongs to the node that has its folder), and says so in the audit log.
    pub fn adopt_local_customers(&self) {
        let Ok(customers) = self.store.unassigned_customers() else {
            return;
        };
        for c in customers {
            let here = std::fs::symlink_metadata(self.settings.customers_root.join(&c.domain))
                .is_ok_and(|m| m.is_dir());
            if here
                && matches!(
                    self.store.adopt_customer(&c.id, &self.settings.node),
                    Ok(true)
                )
            {
                tracing::info!(customer = %c.id, node = %self.settings.node, "customer claimed by this node: its folder is here");
                self.audit(
                    Some("system"),
                    "customer.claimed",
                    Some(&c.id),
                    None,
                    serde_json::json!({ "node": self.settings.node, "domain": c.domain }),
                );
            }
        }
    }

    /// Starts a run in this process now (a CLI `run`), recorded like a queued one: refused when
    /// the customer has an active run anywhere on this data dir; audited; its first event
    /// published. Execute it with [`worker::execute_recorded`].
    pub fn start(&self, run: &NewRun) -> StoreResult<RunRecord> {
        self.reap_dead_cli_runs();
        let record = self
            .store
            .start_run(run, &self.host_id, self.settings.runs.lease)?;
        let _ = self.store.audit(&AuditEntry {
            at: now(),
            actor: run.triggered_by.clone(),
            action: format!("{}.requested", run.pipeline),
            customer_id: Some(run.customer_id.clone()),
            run_id: Some(run.id.clone()),
            detail: serde_json::json!({ "params": run.params }),
        });
        Ok(record)
    }

    /// Queues a run (see [`Store::enqueue_run`]), audits it, publishes its first event and
    /// wakes a worker.
    pub fn submit(&self, run: &NewRun, queue_if_busy: bool) -> StoreResult<RunRecord> {
        self.reap_dead_cli_runs();
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
