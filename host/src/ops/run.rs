//! Running a pipeline now, in this process (the CLI's `run`): recorded in the data dir's store
//! like a queued run of `serve` when installer-api registered the customer (history, events,
//! audit, actor `cli:<user>`); for a domain nobody registered, run under its lock with nothing to
//! record it under (the customer id is installer-api's to give). A registered customer that
//! belongs to another node (issue 13) is refused: its folder, its lock and its runs are that
//! node's.

use std::sync::Arc;

use crate::customer::Customer;
use crate::engine::caps::CancelToken;
use crate::events::EventSink;
use crate::ops::plan::RunSpec;
use crate::ops::{AppState, recover, worker};
use crate::store::CustomerRecord;

/// A run to do now.
pub struct RunNow<'a> {
    /// Whose.
    pub customer: &'a Customer,
    /// True when the caller named the customer id itself (it must match the registered one).
    pub explicit_id: bool,
    /// What.
    pub spec: &'a RunSpec,
    /// Who asks, for the history and the audit log.
    pub actor: String,
    /// Where its events go (and those of an interrupted run finished first).
    pub events: Arc<dyn EventSink>,
    /// Its cancellation flag.
    pub cancel: CancelToken,
}

/// Why a run cannot be done in this process.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// The customer belongs to another node than this host's `node`.
    #[error(
        "customer {id} ({domain}) belongs to node {node}, not to this host's node {this}: run it \
         on {node}, or move the customer here first with PUT /api/customers/{id} \
         {{\"node\": \"{this}\"}}; if this host is {node} under a new name, set node = \"{node}\" \
         (QODIFY_NODE={node}) instead"
    )]
    OtherNode {
        /// The customer id.
        id: String,
        /// Its domain.
        domain: String,
        /// The node it belongs to.
        node: String,
        /// This host's node.
        this: String,
    },
}

/// Whether this host may run `record`'s runs itself: a customer of this node or of no node.
pub fn check_node(state: &AppState, record: &CustomerRecord) -> Result<(), Refused> {
    match &record.node {
        Some(node) if *node != state.settings.node => Err(Refused::OtherNode {
            id: record.id.clone(),
            domain: record.domain.clone(),
            node: node.clone(),
            this: state.settings.node.clone(),
        }),
        _ => Ok(()),
    }
}

/// The registered record of `customer` when there is one, refused with [`Refused::OtherNode`]
/// when it belongs to another node: what `run` checks before it touches the customer's folder.
pub fn registered_here(
    state: &AppState,
    customer: &Customer,
    explicit_id: bool,
) -> anyhow::Result<Option<CustomerRecord>> {
    let record = state.registered(customer, explicit_id)?;
    if let Some(record) = &record {
        check_node(state, record)?;
    }
    Ok(record)
}

/// Runs `req` to its end; an interrupted run of the customer is finished first. A registered
/// customer of another node is refused ([`Refused::OtherNode`]) before anything is recorded.
pub fn run_now(state: &AppState, req: RunNow<'_>) -> anyhow::Result<worker::Recorded> {
    let RunNow {
        customer,
        explicit_id,
        spec,
        actor,
        events,
        cancel,
    } = req;
    match registered_here(state, customer, explicit_id)? {
        Some(record) => {
            let run = state
                .start(&crate::store::NewRun {
                    id: crate::engine::executor::new_run_id(),
                    customer_id: record.id.clone(),
                    pipeline: spec.pipeline.clone(),
                    params: spec.params.clone(),
                    triggered_by: Some(actor),
                })
                .map_err(|e| match e {
                    crate::store::StoreError::Busy {
                        run_id,
                        pipeline,
                        state,
                        ..
                    } => anyhow::anyhow!(
                        "customer {} already has an active run ({pipeline} {run_id}, {state}); wait for it to finish or cancel it",
                        customer.domain
                    ),
                    other => other.into(),
                })?;
            worker::execute_recorded(
                state,
                run,
                worker::Extra {
                    tier: spec.tier.clone(),
                    events: Some(events),
                    cancel: Some(cancel),
                },
            )
            .map_err(|e| anyhow::anyhow!(e))
        }
        None => {
            let ran = recover::run(
                recover::Engine {
                    runtime: &state.runtime,
                    settings: &state.settings,
                    catalog: &state.catalog,
                },
                recover::NewRun {
                    customer,
                    spec,
                    run_id: crate::engine::executor::new_run_id(),
                    events: events.clone(),
                    recovery_events: events,
                    cancel,
                    approvals: None,
                    on_planned: None,
                },
            )?;
            Ok(worker::Recorded {
                outcome: ran.outcome,
                recovered: ran.recovered,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store as _;
    use crate::store::sqlite::SqliteStore;

    const DOMAIN: &str = "shop.example.com";

    /// A state on node `web-1` whose store has customer 42 (`shop.example.com`) of `node`.
    fn state_with_customer_of(node: Option<&str>) -> (tempfile::TempDir, AppState) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        store.upsert_customer("42", DOMAIN, None).unwrap();
        if let Some(node) = node {
            store.move_customer("42", node).unwrap();
        }
        let settings = crate::settings::Settings {
            node: "web-1".into(),
            ..crate::settings::Settings::for_tests(tmp.path())
        };
        std::fs::create_dir_all(&settings.data_dir).unwrap();
        let state = AppState {
            hub: crate::ops::EventHub::new(store.clone()),
            store,
            wake: Default::default(),
            runtime: Arc::new(crate::engine::runtime::Runtime::new(&settings.data_dir).unwrap()),
            settings: Arc::new(settings),
            catalog: Default::default(),
            host_id: "cli:test:1".into(),
            running: Default::default(),
        };
        (tmp, state)
    }

    fn run_backup(state: &AppState) -> anyhow::Result<worker::Recorded> {
        let customer = Customer::new(DOMAIN, None).unwrap();
        run_now(
            state,
            RunNow {
                customer: &customer,
                explicit_id: false,
                spec: &RunSpec {
                    pipeline: "backup".into(),
                    tier: None,
                    params: Default::default(),
                },
                actor: "cli:test".into(),
                events: Arc::new(crate::events::NullSink),
                cancel: CancelToken::default(),
            },
        )
    }

    #[test]
    fn a_customer_of_another_node_is_refused_naming_the_node_and_nothing_is_recorded() {
        let (_tmp, state) = state_with_customer_of(Some("web-2"));
        let Err(err) = run_backup(&state) else {
            panic!("a customer of web-2 ran on web-1");
        };
        assert_eq!(
            err.downcast_ref::<Refused>(),
            Some(&Refused::OtherNode {
                id: "42".into(),
                domain: DOMAIN.into(),
                node: "web-2".into(),
                this: "web-1".into(),
            })
        );
        let text = format!("{err:#}");
        assert!(text.contains("belongs to node web-2"), "{text}");
        assert!(text.contains("run it on web-2"), "{text}");
        assert!(
            text.contains(r#"PUT /api/customers/42 {"node": "web-1"}"#),
            "{text}"
        );
        let runs = state
            .store
            .runs(&crate::store::RunFilter::default())
            .unwrap();
        assert!(runs.is_empty(), "{runs:?}");
    }

    #[test]
    fn a_customer_of_this_node_or_of_no_node_may_run_here() {
        for node in [Some("web-1"), None] {
            let (_tmp, state) = state_with_customer_of(node);
            let customer = Customer::new(DOMAIN, None).unwrap();
            let record = registered_here(&state, &customer, false).unwrap().unwrap();
            assert_eq!(record.node.as_deref(), node);
        }
    }
}
