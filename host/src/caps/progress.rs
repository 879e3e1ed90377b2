//! `progress`: percent/message reports and run-log lines, rate-limited and capped so that a
//! chatty or hostile plugin cannot flood the host.

use std::time::{Duration, Instant};

use super::StepHost;
use crate::bindings::progress::{Host, Level};
use crate::events::{Event, LogLevel};

/// Longest message kept; the rest is cut.
const MAX_MESSAGE: usize = 4096;
/// Progress reports closer together than this are dropped (the next one carries the news).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

fn clip(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}

impl Host for StepHost {
    fn report(&mut self, percent: f32, message: String) {
        let now = Instant::now();
        let percent = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        if percent < 100.0
            && self
                .last_progress
                .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_progress = Some(now);
        let message = self.redact(&clip(&message));
        self.emit(Event::StepProgress {
            step: self.step_id.clone(),
            percent,
            message,
        });
    }

    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > self.max_log_lines {
            if self.log_lines == self.max_log_lines + 1 {
                self.emit(Event::StepLog {
                    step: self.step_id.clone(),
                    level: LogLevel::Warn,
                    message: format!(
                        "log limit of {} lines reached; further lines of this step are dropped",
                        self.max_log_lines
                    ),
                });
            }
            return;
        }
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let message = self.redact(&clip(&message));
        self.emit(Event::StepLog {
            step: self.step_id.clone(),
            level,
            message,
        });
    }
}
