//! Off-site copies as ops read them: the customer's snapshots in its restic repository
//! (`qodify-host backups list --offsite`). The listing is the `offsite-list` pipeline run now,
//! under the customer's lock and not recorded (it changes nothing), so restic runs confined
//! with the grants and the host secret that pipeline names, like in every other run.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::customer::Customer;
use crate::engine::caps::CancelToken;
use crate::engine::executor::{self, RunRequest};
use crate::events::{EventSink, RunStatus};
use crate::ops::AppState;
use crate::ops::plan::{RunSpec, plan_run};

/// The pipeline `list` runs.
pub const LIST_PIPELINE: &str = "offsite-list";

/// One off-site snapshot of a customer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffsiteSnapshot {
    /// restic's short snapshot id.
    pub id: String,
    /// The backup it holds (its `backup=<id>` tag).
    pub backup: Option<String>,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Its backup is pinned on the host, so `forget` keeps it.
    pub pinned: bool,
}

/// The customer's off-site snapshots, newest first. `tier`: the overlay naming the repository
/// (the registered customer's tier when `None`); `events` gets the run's events (its logs).
pub fn list(
    state: &AppState,
    customer: &Customer,
    tier: Option<String>,
    params: BTreeMap<String, String>,
    events: Arc<dyn EventSink>,
) -> Result<Vec<OffsiteSnapshot>> {
    let tier = match tier {
        Some(t) => Some(t),
        None => state.registered(customer, false)?.and_then(|r| r.tier),
    };
    let spec = RunSpec {
        pipeline: LIST_PIPELINE.to_owned(),
        tier,
        params,
    };
    let run_id = executor::new_run_id();
    let planned = plan_run(
        &state.settings,
        &state.catalog,
        customer,
        &spec,
        &run_id,
        None,
    )?;
    let outcome = executor::execute(
        &state.runtime,
        RunRequest {
            plan: &planned.plan,
            customer,
            run_id,
            timestamp: planned.timestamp,
            catalog: &state.catalog,
            settings: &state.settings,
            events,
            cancel: CancelToken::default(),
            recovery: None,
            approvals: None,
        },
    )?;
    if outcome.status != RunStatus::Succeeded {
        anyhow::bail!(
            "listing the off-site snapshots failed: {}",
            outcome.error.as_deref().unwrap_or("no reason given")
        );
    }
    let json = outcome
        .steps
        .iter()
        .find(|s| s.id == LIST_PIPELINE)
        .and_then(|s| s.outputs.iter().find(|(k, _)| k == "snapshots"))
        .map(|(_, v)| v.as_str())
        .context("the offsite-list step returned no `snapshots` output")?;
    serde_json::from_str(json).context("reading the offsite-list step's `snapshots` output")
}
