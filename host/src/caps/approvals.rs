//! `approvals`: a step asks people to decide (e.g. an `.env` merge that would change or drop
//! existing keys) and waits. The request is a file in the data folder, so the API of a running
//! `serve` and `qodify-host approve` in another shell decide it the same way, and a decision
//! survives neither being in memory:
//!
//! - `<data_dir>/approvals/<run-id>.json`: the pending request (written by the waiting step);
//! - `<data_dir>/approvals/<run-id>.decision.json`: the answer (written by [`decide`]).
//!
//! The waiting step polls for the answer, removes both files, and reports it as an event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::StepHost;
use crate::bindings::approvals::{ApprovalError, Host};
use crate::events::Event;

/// How often a waiting step looks for the answer.
const POLL: Duration = Duration::from_millis(200);

/// A request waiting for a decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    /// The run.
    pub run_id: String,
    /// The step that asks.
    pub step: String,
    /// One line for people.
    pub summary: String,
    /// Structured details (never secret values).
    pub details: serde_json::Value,
    /// When it was asked (RFC 3339).
    pub requested_at: String,
    /// When the step gives up (RFC 3339).
    pub expires_at: String,
}

/// A decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Approved (`true`) or rejected.
    pub approved: bool,
    /// Who decided.
    pub by: Option<String>,
    /// When (RFC 3339).
    pub at: String,
}

/// Why [`decide`] refused.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// Nothing is waiting for this run.
    #[error(
        "run {0} is not waiting for an approval (it never asked, it was already decided, or it timed out)"
    )]
    NotWaiting(String),
    /// Someone decided already; the run has not picked it up yet.
    #[error("run {0} was already decided; the decision is being applied")]
    AlreadyDecided(String),
    /// The run id is not a run id.
    #[error("`{0}` is not a run id")]
    BadRunId(String),
    /// Reading or writing the request files.
    #[error("approval files of run {run}: {source}")]
    Io {
        /// The run.
        run: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("approvals")
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The request run `run_id` is waiting on, if any.
pub fn pending(data_dir: &Path, run_id: &str) -> Option<PendingApproval> {
    if !valid_run_id(run_id) {
        return None;
    }
    let text = std::fs::read(dir(data_dir).join(format!("{run_id}.json"))).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Answers the request run `run_id` is waiting on. Written atomically (temp file + rename), so the
/// waiting step never reads half an answer.
pub fn decide(
    data_dir: &Path,
    run_id: &str,
    approved: bool,
    by: Option<&str>,
) -> Result<PendingApproval, DecideError> {
    if !valid_run_id(run_id) {
        return Err(DecideError::BadRunId(run_id.to_owned()));
    }
    let request =
        pending(data_dir, run_id).ok_or_else(|| DecideError::NotWaiting(run_id.to_owned()))?;
    let io = |source| DecideError::Io {
        run: run_id.to_owned(),
        source,
    };
    let decision = Decision {
        approved,
        by: by.map(str::to_owned),
        at: rfc3339(time::OffsetDateTime::now_utc()),
    };
    let d = dir(data_dir);
    if d.join(format!("{run_id}.decision.json")).exists() {
        return Err(DecideError::AlreadyDecided(run_id.to_owned()));
    }
    let tmp = d.join(format!(".{run_id}.decision.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(&decision).unwrap_or_default()).map_err(io)?;
    std::fs::rename(&tmp, d.join(format!("{run_id}.decision.json"))).map_err(io)?;
    Ok(request)
}

/// Where a run's approval requests live; held by the step host.
#[derive(Debug, Clone)]
pub struct ApprovalDesk {
    /// `<data_dir>`.
    pub data_dir: PathBuf,
    /// The run.
    pub run_id: String,
}

impl ApprovalDesk {
    fn request_path(&self) -> PathBuf {
        dir(&self.data_dir).join(format!("{}.json", self.run_id))
    }
    fn decision_path(&self) -> PathBuf {
        dir(&self.data_dir).join(format!("{}.decision.json", self.run_id))
    }
    fn clear(&self) {
        let _ = std::fs::remove_file(self.request_path());
        let _ = std::fs::remove_file(self.decision_path());
    }
}

impl Host for StepHost {
    fn request(
        &mut self,
        summary: String,
        details: String,
        timeout_ms: u64,
    ) -> Result<bool, ApprovalError> {
        let Some(desk) = self.approvals.clone() else {
            // Runs without a desk (none today) cannot wait for anyone: treat as no answer.
            return Err(ApprovalError::TimedOut);
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = Duration::from_millis(timeout_ms).min(left);
        let now = time::OffsetDateTime::now_utc();
        let details: serde_json::Value =
            serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details));
        let request = PendingApproval {
            run_id: desk.run_id.clone(),
            step: self.step_id.clone(),
            summary: self.redact(&summary),
            details,
            requested_at: rfc3339(now),
            expires_at: rfc3339(now + wait),
        };
        let d = dir(&desk.data_dir);
        if crate::executor::private_dir_all(&d).is_err() {
            return Err(ApprovalError::TimedOut);
        }
        desk.clear();
        let tmp = d.join(format!(".{}.tmp", desk.run_id));
        let written = std::fs::write(&tmp, serde_json::to_vec(&request).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, desk.request_path()));
        if let Err(e) = written {
            tracing::warn!(
                "cannot write the approval request of run {}: {e}",
                desk.run_id
            );
            return Err(ApprovalError::TimedOut);
        }
        self.emit(Event::ApprovalRequested {
            step: self.step_id.clone(),
            summary: request.summary.clone(),
            details: request.details.clone(),
            expires_at: request.expires_at.clone(),
        });
        let until = Instant::now() + wait;
        loop {
            if let Ok(text) = std::fs::read(desk.decision_path())
                && let Ok(decision) = serde_json::from_slice::<Decision>(&text)
            {
                desk.clear();
                self.emit(Event::ApprovalDecided {
                    step: self.step_id.clone(),
                    approved: decision.approved,
                    by: decision.by.clone(),
                });
                return Ok(decision.approved);
            }
            if self.cancel.is_cancelled() {
                desk.clear();
                return Err(ApprovalError::Cancelled);
            }
            if Instant::now() >= until {
                desk.clear();
                self.emit(Event::StepLog {
                    step: self.step_id.clone(),
                    level: crate::events::LogLevel::Warn,
                    message: format!("nobody decided on `{}` in time", request.summary),
                });
                return Err(ApprovalError::TimedOut);
            }
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_needs_a_waiting_request_and_a_clean_run_id() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            decide(tmp.path(), "r1", true, None),
            Err(DecideError::NotWaiting(_))
        ));
        assert!(matches!(
            decide(tmp.path(), "../x", true, None),
            Err(DecideError::BadRunId(_))
        ));
        let d = dir(tmp.path());
        std::fs::create_dir_all(&d).unwrap();
        let req = PendingApproval {
            run_id: "r1".into(),
            step: "env-merge".into(),
            summary: "change 1 key".into(),
            details: serde_json::json!({"changed": ["A"]}),
            requested_at: "x".into(),
            expires_at: "y".into(),
        };
        std::fs::write(d.join("r1.json"), serde_json::to_vec(&req).unwrap()).unwrap();
        assert_eq!(pending(tmp.path(), "r1").unwrap(), req);
        let got = decide(tmp.path(), "r1", false, Some("ops")).unwrap();
        assert_eq!(got, req);
        let decision: Decision =
            serde_json::from_slice(&std::fs::read(d.join("r1.decision.json")).unwrap()).unwrap();
        assert!(!decision.approved);
        assert_eq!(decision.by.as_deref(), Some("ops"));
    }
}
