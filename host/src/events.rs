//! Run events: what a run reports while it goes (start, progress, logs, artifacts, end). The CLI
//! renders them as progress bars or JSON lines; the service (later) stores and streams them.

use serde::Serialize;

/// Log levels of step and host messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal.
    Info,
    /// Odd but not fatal.
    Warn,
    /// Failed.
    Error,
}

/// An artifact after the host checked its size and sha256 against the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedArtifact {
    /// The plugin's label.
    pub name: String,
    /// The guest path the plugin returned.
    pub guest_path: String,
    /// The file's path relative to its root (`customer` or `work`), e.g. `backups/x/backend.tar.gz`.
    pub path: String,
    /// `customer` or `work`.
    pub root: &'static str,
    /// Size in bytes (checked).
    pub size: u64,
    /// Lowercase hex sha256 (checked).
    pub sha256: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every step succeeded.
    Succeeded,
    /// A step failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Pipeline name.
        pipeline: String,
        /// Customer domain.
        customer: String,
        /// Steps that will run (after `when`).
        steps: Vec<String>,
    },
    /// A step began.
    StepStarted {
        /// Step id.
        step: String,
        /// Plugin id.
        plugin: String,
    },
    /// A step reported progress.
    StepProgress {
        /// Step id.
        step: String,
        /// 0..=100.
        percent: f32,
        /// What it is doing.
        message: String,
    },
    /// A log line from a step (or the host about a step).
    StepLog {
        /// Step id.
        step: String,
        /// Level.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// A step was left out.
    StepSkipped {
        /// Step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// A step succeeded.
    StepSucceeded {
        /// Step id.
        step: String,
        /// Wall time.
        duration_ms: u64,
        /// Checked artifacts.
        artifacts: Vec<VerifiedArtifact>,
        /// Key/value outputs.
        outputs: Vec<(String, String)>,
    },
    /// A step failed.
    StepFailed {
        /// Step id.
        step: String,
        /// Wall time.
        duration_ms: u64,
        /// What went wrong, naming the cause.
        error: String,
    },
    /// A step waits for people to approve something (`POST /api/runs/:runId/approval`,
    /// `qodify-host approve`).
    ApprovalRequested {
        /// Step id.
        step: String,
        /// One line for people.
        summary: String,
        /// Structured details (never secret values).
        details: serde_json::Value,
        /// When the step gives up waiting (RFC 3339).
        expires_at: String,
    },
    /// Somebody decided on an approval request.
    ApprovalDecided {
        /// Step id.
        step: String,
        /// Approved or rejected.
        approved: bool,
        /// Who decided.
        by: Option<String>,
    },
    /// The run's backup is complete (emitted before the run ends when the pipeline completes
    /// its backup early, e.g. an upgrade's pre-upgrade backup).
    BackupCompleted {
        /// The backup's id.
        backup: String,
        /// The pin reason, when it was pinned.
        pinned: Option<String>,
    },
    /// The run ended.
    RunFinished {
        /// Run id.
        run_id: String,
        /// How it ended.
        status: RunStatus,
        /// Wall time.
        duration_ms: u64,
        /// The first error, when it failed.
        error: Option<String>,
        /// The id of the backup the run completed, if it made one.
        backup: Option<String>,
    },
}

/// Receives a run's events. Implementations must be cheap and must not block for long: steps call
/// them from their threads.
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: Event);
}

/// Discards everything.
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _: Event) {}
}

/// Keeps every event in memory (tests, and the CLI's final summary).
#[derive(Default)]
pub struct MemorySink(pub std::sync::Mutex<Vec<Event>>);

impl EventSink for MemorySink {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}
