//! `approvals`: a step asks people to decide (e.g. an `.env` merge that would change or drop
//! existing keys) and waits. Where the question and its answer are kept is an [`ApprovalBook`]
//! the run is given: a recorded run's is the state store (`ops::approvals::StoreBook`), so that
//! any surface of any host sharing the store decides it; a run nothing records (a CLI `run` of an
//! unregistered customer) uses files in the data folder ([`FileBook`]), which
//! `qodify-host approve` in another shell decides the same way:
//!
//! - `<data_dir>/approvals/<run-id>.json`: the pending request (written by the waiting step);
//! - `<data_dir>/approvals/<run-id>.decision.json`: the answer (written by [`decide`]).
//!
//! The waiting step polls for the answer, forgets the question, and reports it as an event.
//!
//! A run asks one question at a time (steps of a concurrent group would otherwise overwrite each
//! other's request), and what a plugin asks is clipped: people read it, the API serves it, and
//! the store keeps it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{StepHost, clip, redact};
use crate::engine::bindings::approvals::{ApprovalError, Host};
use crate::events::Event;

/// How often a waiting step looks for the answer.
const POLL: Duration = Duration::from_millis(200);
/// Longest summary kept.
pub const MAX_SUMMARY: usize = 1024;
/// Longest text kept of one string (or key) inside the details.
pub const MAX_DETAIL_TEXT: usize = 4096;
/// Items kept of one list (or keys of one object) inside the details.
pub const MAX_DETAIL_ITEMS: usize = 1000;
/// Largest details kept, as JSON text; larger ones are replaced by their clipped text.
pub const MAX_DETAILS: usize = 64 << 10;

/// The requests waiting in this process, by run, with the step that asks.
static WAITING: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// A run's place at the desk, given back when its step stops waiting.
struct Waiting(String);

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// What a plugin asks people, clipped and with every secret redacted: strings and keys to
/// [`MAX_DETAIL_TEXT`], lists and objects to [`MAX_DETAIL_ITEMS`] (each cut counted), the whole to
/// [`MAX_DETAILS`].
fn clip_details(details: &str, secrets: &[String]) -> serde_json::Value {
    use serde_json::Value;
    fn walk(v: Value, secrets: &[String]) -> Value {
        let text = |s: &str| clip(&redact(s, secrets), MAX_DETAIL_TEXT);
        match v {
            Value::String(s) => Value::String(text(&s)),
            Value::Array(items) => {
                let n = items.len();
                let mut out: Vec<Value> = items
                    .into_iter()
                    .take(MAX_DETAIL_ITEMS)
                    .map(|v| walk(v, secrets))
                    .collect();
                if n > MAX_DETAIL_ITEMS {
                    out.push(Value::String(format!(
                        "… ({} more items cut)",
                        n - MAX_DETAIL_ITEMS
                    )));
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let n = map.len();
                let mut out: serde_json::Map<String, Value> = map
                    .into_iter()
                    .take(MAX_DETAIL_ITEMS)
                    .map(|(k, v)| (text(&k), walk(v, secrets)))
                    .collect();
                if n > MAX_DETAIL_ITEMS {
                    out.insert(
                        "…".into(),
                        Value::String(format!("{} more keys cut", n - MAX_DETAIL_ITEMS)),
                    );
                }
                Value::Object(out)
            }
            other => other,
        }
    }
    let value = match serde_json::from_str::<Value>(details) {
        Ok(v) => walk(v, secrets),
        Err(_) => Value::String(redact(details, secrets)),
    };
    let text = match &value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if text.len() > MAX_DETAILS {
        Value::String(clip(&text, MAX_DETAILS))
    } else {
        value
    }
}

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

/// Where a run's questions and their answers are kept.
pub trait ApprovalBook: Send + Sync {
    /// Records the question, replacing an earlier one and its answer; `Err(why)` when it cannot
    /// be asked (the step then gets no answer).
    fn ask(&self, request: &PendingApproval) -> Result<(), String>;
    /// The answer to run `run_id`'s question, once someone gave it.
    fn answer(&self, run_id: &str) -> Option<Decision>;
    /// Forgets run `run_id`'s question and answer.
    fn clear(&self, run_id: &str);
}

/// Questions and answers as files in `<data_dir>/approvals/`.
#[derive(Debug, Clone)]
pub struct FileBook {
    /// `<data_dir>`.
    pub data_dir: PathBuf,
}

impl FileBook {
    fn request_path(&self, run_id: &str) -> PathBuf {
        dir(&self.data_dir).join(format!("{run_id}.json"))
    }
    fn decision_path(&self, run_id: &str) -> PathBuf {
        dir(&self.data_dir).join(format!("{run_id}.decision.json"))
    }
}

impl ApprovalBook for FileBook {
    fn ask(&self, request: &PendingApproval) -> Result<(), String> {
        let d = dir(&self.data_dir);
        crate::files::private_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        self.clear(&request.run_id);
        let tmp = d.join(format!(".{}.tmp", request.run_id));
        std::fs::write(&tmp, serde_json::to_vec(request).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, self.request_path(&request.run_id)))
            .map_err(|e| format!("writing {}: {e}", tmp.display()))
    }

    fn answer(&self, run_id: &str) -> Option<Decision> {
        let text = std::fs::read(self.decision_path(run_id)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn clear(&self, run_id: &str) {
        let _ = std::fs::remove_file(self.request_path(run_id));
        let _ = std::fs::remove_file(self.decision_path(run_id));
    }
}

/// Where a run's approval requests go; held by the step host.
#[derive(Clone)]
pub struct ApprovalDesk {
    /// Where they are kept.
    pub book: Arc<dyn ApprovalBook>,
    /// The run.
    pub run_id: String,
}

impl std::fmt::Debug for ApprovalDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalDesk")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
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
        let _waiting = {
            let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(step) = waiting.get(&desk.run_id) {
                self.emit(Event::StepLog {
                    step: self.step_id.clone(),
                    level: crate::events::LogLevel::Error,
                    message: format!(
                        "approval request refused: step {step} of this run is already waiting for a decision, and a run asks one question at a time; run the steps that ask one after another"
                    ),
                });
                return Err(ApprovalError::TimedOut);
            }
            waiting.insert(desk.run_id.clone(), self.step_id.clone());
            Waiting(desk.run_id.clone())
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = Duration::from_millis(timeout_ms).min(left);
        let now = time::OffsetDateTime::now_utc();
        let request = PendingApproval {
            run_id: desk.run_id.clone(),
            step: self.step_id.clone(),
            summary: clip(&self.redact(&summary), MAX_SUMMARY),
            details: clip_details(&details, &self.secrets),
            requested_at: rfc3339(now),
            expires_at: rfc3339(now + wait),
        };
        if let Err(why) = desk.book.ask(&request) {
            tracing::warn!(
                "cannot record the approval request of run {}: {why}",
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
            if let Some(decision) = desk.book.answer(&desk.run_id) {
                desk.book.clear(&desk.run_id);
                self.emit(Event::ApprovalDecided {
                    step: self.step_id.clone(),
                    approved: decision.approved,
                    by: decision.by.clone(),
                });
                return Ok(decision.approved);
            }
            if self.cancel.is_cancelled() {
                desk.book.clear(&desk.run_id);
                return Err(ApprovalError::Cancelled);
            }
            if Instant::now() >= until {
                desk.book.clear(&desk.run_id);
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

    fn events(sink: &crate::events::MemorySink) -> Vec<Event> {
        sink.0.lock().unwrap().clone()
    }

    #[test]
    fn a_run_asks_one_question_at_a_time() {
        let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, _) = crate::engine::caps::test_host(&ta, vec![]);
        let (mut b, b_events) = crate::engine::caps::test_host(&tb, vec![]);
        a.step_id = "merge-backend".into();
        b.step_id = "merge-admin".into();
        b.approvals = a.approvals.clone();
        let data_dir = ta.path().join("data");
        let first = std::thread::spawn(move || a.request("first".into(), "{}".into(), 20_000));
        let until = Instant::now() + Duration::from_secs(10);
        while pending(&data_dir, "run-1").is_none() {
            assert!(Instant::now() < until, "the first request never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A step of the same run asking meanwhile (a concurrent group) is refused at once, and
        // the first request stays as it was.
        let started = Instant::now();
        assert!(matches!(
            b.request("second".into(), "{}".into(), 5_000),
            Err(ApprovalError::TimedOut)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(events(&b_events).iter().any(|e| matches!(e,
            Event::StepLog { message, .. }
                if message.contains("step merge-backend of this run is already waiting for a decision"))));
        assert_eq!(pending(&data_dir, "run-1").unwrap().summary, "first");
        decide(&data_dir, "run-1", true, Some("ops")).unwrap();
        assert!(matches!(first.join().unwrap(), Ok(true)));
        // Once it was answered, the next question may come.
        assert!(matches!(
            b.request("second".into(), "{}".into(), 0),
            Err(ApprovalError::TimedOut)
        ));
        let refusals = events(&b_events)
            .iter()
            .filter(|e| matches!(e, Event::StepLog { message, .. } if message.contains("refused")))
            .count();
        assert_eq!(refusals, 1);
        assert!(
            events(&b_events).iter().any(
                |e| matches!(e, Event::ApprovalRequested { summary, .. } if summary == "second")
            )
        );
    }

    #[test]
    fn approval_texts_are_clipped_counted_and_redacted() {
        let t = tempfile::tempdir().unwrap();
        let (mut host, sink) = crate::engine::caps::test_host(&t, vec![]);
        // A run id of its own: a run asks one question at a time, and the test above keeps
        // `run-1` waiting while it runs in parallel.
        if let Some(desk) = host.approvals.as_mut() {
            desk.run_id = "run-clip".into();
        }
        host.secrets.push("hunter2-password".into());
        let summary = format!(
            "change DB_PASSWORD=hunter2-password {}",
            "s".repeat(100_000)
        );
        let keys: serde_json::Map<String, serde_json::Value> = (0..5000)
            .map(|i| (format!("KEY_{i:05}"), "v".repeat(10_000).into()))
            .collect();
        let details = serde_json::json!({
            "changed": keys,
            "removed": (0..3000).map(|i| format!("OLD_{i}")).collect::<Vec<_>>(),
            "note": "was hunter2-password",
        });
        let _ = host.request(summary, details.to_string(), 0);
        let (summary, details) = events(&sink)
            .into_iter()
            .find_map(|e| match e {
                Event::ApprovalRequested {
                    summary, details, ..
                } => Some((summary, details)),
                _ => None,
            })
            .unwrap();
        assert!(
            summary.starts_with("change DB_PASSWORD=*** sss"),
            "{summary}"
        );
        assert!(summary.len() <= MAX_SUMMARY + 32, "{}", summary.len());
        assert!(summary.ends_with(" bytes cut)"), "{summary}");
        // Over 64 KiB even after each item was clipped: the whole is cut, marked.
        let text = details.as_str().expect("clipped to text");
        assert!(text.len() <= MAX_DETAILS + 32);
        assert!(text.ends_with(" bytes cut)"));
        assert!(!text.contains("hunter2"));

        // Smaller details keep their shape; long lists and texts are cut and counted.
        let details = serde_json::json!({
            "removed": (0..1500).map(|i| format!("K{i}")).collect::<Vec<_>>(),
            "why": "x".repeat(5000),
        });
        let got = clip_details(&details.to_string(), &[]);
        let removed = got["removed"].as_array().unwrap();
        assert_eq!(removed.len(), MAX_DETAIL_ITEMS + 1);
        assert_eq!(removed[MAX_DETAIL_ITEMS], "… (500 more items cut)");
        assert_eq!(
            got["why"],
            format!("{}… (904 bytes cut)", "x".repeat(MAX_DETAIL_TEXT))
        );
    }
}
