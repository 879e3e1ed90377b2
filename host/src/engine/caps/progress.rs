//! `progress`: percent/message reports and run-log lines, rate-limited and capped so that a
//! chatty or hostile plugin cannot flood the host.

use std::time::{Duration, Instant};

use super::StepHost;
use crate::engine::bindings::progress::{Host, Level};
use crate::events::{Event, LogLevel};

/// Longest message kept; the rest is cut.
const MAX_MESSAGE: usize = 4096;
/// Progress reports closer together than this are dropped (the next one carries the news), at
/// every percent: only the first report of 100 after a lower one passes at once, so the end is
/// never lost, while a plugin repeating 100 is limited like any other.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

fn clip(s: &str) -> String {
    super::clip(s, MAX_MESSAGE)
}

impl Host for StepHost {
    fn report(&mut self, percent: f32, message: String) {
        let now = Instant::now();
        let percent = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let due = match self.last_progress {
            None => true,
            Some((at, last)) => {
                now.duration_since(at) >= PROGRESS_INTERVAL || (percent >= 100.0 && last < 100.0)
            }
        };
        if !due {
            return;
        }
        self.last_progress = Some((now, percent));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(sink: &crate::events::MemorySink) -> Vec<f32> {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::StepProgress { percent, .. } => Some(*percent),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn progress_is_rate_limited_at_every_percent_including_100() {
        let t = tempfile::tempdir().unwrap();
        let (mut host, sink) = super::super::test_host(&t, vec![]);
        host.report(50.0, "half".into());
        for i in 0..10_000 {
            host.report(100.0, format!("done {i}"));
        }
        // The first 100 after a lower percent passes at once; its repeats wait their turn.
        assert_eq!(reported(&sink), [50.0, 100.0]);
        std::thread::sleep(PROGRESS_INTERVAL);
        host.report(100.0, "still done".into());
        assert_eq!(reported(&sink), [50.0, 100.0, 100.0]);
        // NaN and values out of range are clamped, and limited like the rest.
        host.report(f32::NAN, "nan".into());
        host.report(1e9, "big".into());
        assert_eq!(reported(&sink).len(), 3);
    }
}
