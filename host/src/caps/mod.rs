//! Host capabilities a step can use, each a small module: progress and log reporting,
//! cancellation, file metadata inside mounts, granted host commands, granted HTTP origins and
//! human approvals. All of them work on one
//! [`StepHost`], built per step from its grants; a capability the step was not granted answers
//! `not-permitted`/`not-granted`, it never falls back to something wider.

pub mod approvals;
pub mod cancellation;
pub mod commands;
pub mod files;
pub mod http;
pub mod progress;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::events::{Event, EventSink};
use crate::pipeline::{CommandGrant, HttpGrant};
use crate::sandbox::MountTable;

/// A cancellation flag shared by a run, its steps and their child processes.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Per-step state behind every host capability.
pub struct StepHost {
    /// The step's id, for events and messages.
    pub step_id: String,
    /// The granted folders.
    pub mounts: MountTable,
    /// Granted host programs.
    pub commands: Vec<CommandGrant>,
    /// Granted HTTP origins.
    pub http: Vec<HttpGrant>,
    /// Where approval requests go; `None` when the run cannot wait for people.
    pub approvals: Option<approvals::ApprovalDesk>,
    /// Where progress and logs go.
    pub events: Arc<dyn EventSink>,
    /// The run's cancellation flag.
    pub cancel: CancelToken,
    /// When the step's wall-clock budget ends.
    pub deadline: Instant,
    /// Log lines kept per step.
    pub max_log_lines: u64,
    /// Log lines seen so far.
    pub log_lines: u64,
    /// When progress was last forwarded (rate limit).
    pub last_progress: Option<Instant>,
    /// Strings never to show in logs, events or errors (e.g. env values given to commands).
    pub secrets: Vec<String>,
    /// How granted programs are confined on this host.
    pub confinement: crate::confine::Confinement,
    /// The run's work folder (open, and its path): programs get a private `HOME` and `TMPDIR`
    /// under it.
    pub work: Option<(cap_std::fs::Dir, std::path::PathBuf)>,
    /// Host folders a program may change besides the mounts, by program (host settings).
    pub host_paths: std::collections::BTreeMap<String, Vec<std::path::PathBuf>>,
}

impl StepHost {
    /// True when the run was cancelled or the step ran out of time.
    pub fn should_stop(&self) -> bool {
        self.cancel.is_cancelled() || Instant::now() >= self.deadline
    }

    /// Replaces every known secret in `s` with `***`.
    pub fn redact(&self, s: &str) -> String {
        redact(s, &self.secrets)
    }

    /// Emits an event for this step.
    pub fn emit(&self, ev: Event) {
        self.events.emit(ev);
    }
}

/// Replaces every secret (non-empty, at least 3 characters) in `s` with `***`.
pub fn redact(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

impl crate::bindings::types::Host for StepHost {}
