//! Deciding what a waiting run asks people (an upgrade's `.env` changes): the same for the API
//! and any other surface. The decision reaches the run through its approval desk and is audited.

use crate::engine::caps::approvals::{self, DecideError, PendingApproval};
use crate::ops::AppState;

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// No run has this id.
    #[error("no run {0}")]
    NoSuchRun(String),
    /// The run does not wait for a decision, or the id is bad.
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Approves (`approve`) or rejects what run `run_id` waits for, as `by`; the run goes on at once
/// (rejected, its step fails and the pipeline rolls back). Audited as `run.approved` or
/// `run.rejected` with the step and what it asked.
pub fn decide(
    state: &AppState,
    run_id: &str,
    approve: bool,
    by: Option<&str>,
) -> Result<PendingApproval, ApproveError> {
    let run = state
        .store
        .run(run_id)?
        .ok_or_else(|| ApproveError::NoSuchRun(run_id.to_owned()))?;
    let request = approvals::decide(&state.settings.data_dir, run_id, approve, by)?;
    state.audit(
        by,
        if approve {
            "run.approved"
        } else {
            "run.rejected"
        },
        Some(&run.customer_id),
        Some(run_id),
        serde_json::json!({ "step": request.step, "summary": request.summary }),
    );
    Ok(request)
}
