//! Running a pipeline now, in this process (the CLI's `run`): recorded in the data dir's store
//! like a queued run of `serve` when installer-api registered the customer (history, events,
//! audit, actor `cli:<user>`); for a domain nobody registered, run under its lock with nothing to
//! record it under (the customer id is installer-api's to give).

use std::sync::Arc;

use crate::customer::Customer;
use crate::engine::caps::CancelToken;
use crate::events::EventSink;
use crate::ops::plan::RunSpec;
use crate::ops::{AppState, recover, worker};

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

/// Runs `req` to its end; an interrupted run of the customer is finished first.
pub fn run_now(state: &AppState, req: RunNow<'_>) -> anyhow::Result<worker::Recorded> {
    let RunNow {
        customer,
        explicit_id,
        spec,
        actor,
        events,
        cancel,
    } = req;
    match state.registered(customer, explicit_id)? {
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
                },
            )?;
            Ok(worker::Recorded {
                outcome: ran.outcome,
                recovered: ran.recovered,
            })
        }
    }
}
