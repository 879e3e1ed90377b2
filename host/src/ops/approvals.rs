//! Deciding what a waiting run asks people (an upgrade's `.env` changes): the same for the API
//! and the CLI, on any host sharing the store. A recorded run's question and answer are kept in
//! the state store ([`StoreBook`]); a run nothing records keeps them as files in the data folder
//! (`engine::caps::approvals::FileBook`). Decisions are audited.

use std::sync::Arc;

use crate::engine::caps::approvals::{self, ApprovalBook, DecideError, Decision, PendingApproval};
use crate::ops::AppState;
use crate::store::{Decided, Store};

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

/// A recorded run's questions and answers, in the state store: its step asks only while the run
/// is still its node's at `epoch` (fenced like its events).
pub struct StoreBook {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The run's epoch.
    pub epoch: i64,
}

impl ApprovalBook for StoreBook {
    fn ask(&self, request: &PendingApproval) -> Result<(), String> {
        let value = serde_json::to_value(request).map_err(|e| e.to_string())?;
        match self.store.ask_approval(&request.run_id, self.epoch, &value) {
            Ok(true) => Ok(()),
            Ok(false) => Err("the run is no longer running on this node".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn answer(&self, run_id: &str) -> Option<Decision> {
        match self.store.approval(run_id) {
            Ok(Some(record)) => serde_json::from_value(record.decision?).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("reading the approval of run {run_id}: {e}");
                None
            }
        }
    }

    fn clear(&self, run_id: &str) {
        if let Err(e) = self.store.clear_approval(run_id) {
            tracing::warn!("forgetting the approval of run {run_id}: {e}");
        }
    }
}

/// What run `run_id` waits for, if anything: from the store, else from the data folder's files.
pub fn pending(state: &AppState, run_id: &str) -> Option<PendingApproval> {
    match state.store.approval(run_id) {
        Ok(Some(record)) if record.decision.is_none() => {
            serde_json::from_value(record.request).ok()
        }
        Ok(Some(_)) => None,
        Ok(None) | Err(_) => approvals::pending(&state.settings.data_dir, run_id),
    }
}

/// Approves (`approve`) or rejects what run `run_id` waits for, as `by`; the run goes on at once
/// (rejected, its step fails and the pipeline rolls back), on whichever host runs it. Audited
/// as `run.approved` or `run.rejected` with the step and what it asked.
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
    let decision = Decision {
        approved: approve,
        by: by.map(str::to_owned),
        at: crate::ops::state::now(),
    };
    let value = serde_json::to_value(&decision).map_err(|e| DecideError::Io {
        run: run_id.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let request = match state.store.decide_approval(run_id, &value)? {
        Decided::Recorded(request) => {
            serde_json::from_value(request).map_err(|e| DecideError::Io {
                run: run_id.to_owned(),
                source: std::io::Error::other(e),
            })?
        }
        Decided::AlreadyDecided => {
            return Err(DecideError::AlreadyDecided(run_id.to_owned()).into());
        }
        // A run recorded before its questions were kept in the store (a host of an earlier
        // version still running it) asks through the data folder.
        Decided::NotWaiting => approvals::decide(&state.settings.data_dir, run_id, approve, by)?,
    };
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
