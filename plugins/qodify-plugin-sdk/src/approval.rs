//! Asking people to approve a decision (e.g. an `.env` merge that would change existing keys).
//! The run shows the request to its watchers and waits for `POST /api/runs/:runId/approval` or
//! `qodify-host approve <run-id>`.

use std::time::Duration;

use crate::__private::bindings::qodify::pipeline::approvals as wit;
use crate::Error;

/// Asks for approval and blocks until someone decides: `Ok(true)` approved, `Ok(false)` rejected,
/// an error when nobody decided within `timeout` or the run was cancelled. `details` is shown
/// as structured data: never put secret values in it.
pub fn request(
    summary: &str,
    details: &serde_json::Value,
    timeout: Duration,
) -> Result<bool, Error> {
    wit::request(
        summary,
        &details.to_string(),
        timeout.as_millis().min(u128::from(u64::MAX)) as u64,
    )
    .map_err(|e| match e {
        wit::ApprovalError::TimedOut => Error::command_failed(format!(
            "nobody approved `{summary}` within {}s; the step gave up",
            timeout.as_secs()
        )),
        wit::ApprovalError::Cancelled => Error::cancelled(),
    })
}
