//! Terminal rendering of run events: progress bars on a terminal, plain lines otherwise, JSON
//! lines with `--json`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use qodify_host::events::{Event, EventSink, LogLevel, RunStatus};
use qodify_host::runtime::human_bytes;

/// How the CLI shows a run.
pub enum Mode {
    /// Progress bars (stderr is a terminal).
    Bars,
    /// One line per event on stderr.
    Plain,
    /// One JSON object per event on stdout.
    Json,
}

/// Renders events for a person or a program.
pub struct Ui {
    mode: Mode,
    verbose: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Ui {
    /// A renderer in `mode`; `verbose` shows debug logs too.
    pub fn new(mode: Mode, verbose: bool) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            _ => ProgressDrawTarget::hidden(),
        });
        Self {
            mode,
            verbose,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: String) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(s);
            }
            _ => {
                let _ = writeln!(std::io::stderr(), "{s}");
            }
        }
    }
}

impl EventSink for Ui {
    fn emit(&self, event: Event) {
        if let Mode::Json = self.mode {
            if let Ok(s) = serde_json::to_string(&event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{s}");
                let _ = out.flush();
            }
            return;
        }
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::RunStarted {
                run_id,
                pipeline,
                customer,
                steps,
            } => {
                self.line(format!(
                    "▶ {pipeline} for {customer} (run {run_id}, {} steps)",
                    steps.len()
                ));
            }
            Event::StepStarted { step, plugin } => {
                if let Mode::Bars = self.mode {
                    let bar = self.multi.add(ProgressBar::new(1000));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {spinner} {prefix:<22} [{bar:30}] {percent:>3}% {wide_msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(step.clone());
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bars.insert(step, bar);
                } else {
                    self.line(format!("  … {step} ({plugin}) started"));
                }
            }
            Event::StepProgress {
                step,
                percent,
                message,
            } => {
                if let Some(bar) = bars.get(&step) {
                    bar.set_position((percent * 10.0) as u64);
                    bar.set_message(message);
                } else if let Mode::Plain = self.mode {
                    self.line(format!("    {step}: {percent:.0}% {message}"));
                }
            }
            Event::StepLog {
                step,
                level,
                message,
            } => {
                if level >= LogLevel::Info || self.verbose {
                    let tag = match level {
                        LogLevel::Warn => "warn",
                        LogLevel::Error => "error",
                        LogLevel::Info => "info",
                        _ => "debug",
                    };
                    self.line(format!("    {step} {tag}: {message}"));
                }
            }
            Event::StepSkipped { step, reason } => {
                self.line(format!("  - {step} skipped: {reason}"))
            }
            Event::StepSucceeded {
                step,
                duration_ms,
                artifacts,
                ..
            } => {
                if let Some(bar) = bars.remove(&step) {
                    bar.finish_and_clear();
                }
                let arts: Vec<String> = artifacts
                    .iter()
                    .map(|a| format!("{} ({})", a.path, human_bytes(a.size)))
                    .collect();
                let tail = if arts.is_empty() {
                    String::new()
                } else {
                    format!(" → {}", arts.join(", "))
                };
                self.line(format!(
                    "  ✓ {step} in {:.1}s{tail}",
                    duration_ms as f64 / 1000.0
                ));
            }
            Event::StepFailed {
                step,
                duration_ms,
                error,
            } => {
                if let Some(bar) = bars.remove(&step) {
                    bar.finish_and_clear();
                }
                self.line(format!(
                    "  ✗ {step} failed after {:.1}s: {error}",
                    duration_ms as f64 / 1000.0
                ));
            }
            Event::ApprovalRequested {
                step,
                summary,
                expires_at,
                ..
            } => self.line(format!(
                "  ? {step} waits for approval until {expires_at}: {summary}\n    decide with `qodify-host approve <run-id>` (or --reject)"
            )),
            Event::ApprovalDecided { step, approved, by } => self.line(format!(
                "  {} {step}: {} by {}",
                if approved { "✓" } else { "✗" },
                if approved { "approved" } else { "rejected" },
                by.as_deref().unwrap_or("someone")
            )),
            Event::BackupCompleted { backup, pinned } => self.line(match pinned {
                Some(reason) => format!("  ✓ backup {backup} complete, pinned ({reason})"),
                None => format!("  ✓ backup {backup} complete"),
            }),
            Event::RunFinished {
                status,
                duration_ms,
                error,
                backup,
                ..
            } => {
                let secs = duration_ms as f64 / 1000.0;
                let made = backup
                    .map(|id| format!(": backup {id}"))
                    .unwrap_or_default();
                match status {
                    RunStatus::Succeeded => self.line(format!("✓ succeeded in {secs:.1}s{made}")),
                    RunStatus::Failed => {
                        self.line(format!(
                            "✗ failed after {secs:.1}s: {}",
                            error.unwrap_or_default()
                        ));
                    }
                    RunStatus::Cancelled => self.line(format!("✗ cancelled after {secs:.1}s")),
                }
            }
        }
    }
}
