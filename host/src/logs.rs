//! The host's own log on stderr: `text` for people (the default), or `json` for a log pipeline
//! (Loki, jq), one flat object per line in which every line logged while a run executes carries
//! the run's `run`, `customer`, `domain` and `pipeline`, and while a step executes its `step`.
//! Here too: the spans that carry those fields ([`run_span`], [`step_span`]) and [`RunLog`], the
//! event sink that writes a run's events (step logs included) into the log.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Level, Span, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::events::{Event, EventSink, LogLevel, RunStatus};

/// The target of the lines [`RunLog`] writes: a run's events and its steps' logs. The text log
/// leaves them out, since `run` shows them itself (progress bars or plain lines).
pub const RUN_EVENTS: &str = "qodify_host::run_events";

/// The variable that picks the format when `--log-format` is not given.
pub const FORMAT_ENV: &str = "QODIFY_LOG_FORMAT";

/// The variable holding a log filter (`qodify_host=debug`, …) that replaces the default.
pub const FILTER_ENV: &str = "QODIFY_LOG";

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people; unchanged from before JSON existed.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A log format that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log format: use `text` or `json` (in --log-format or {FORMAT_ENV})")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for LogFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format [`init`] installed ([`LogFormat::Text`] before it ran).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// The filter used when [`FILTER_ENV`] is not set: the text log shows warnings (and the host's
/// debug lines with `-v`), the JSON log also the host's `info` lines, which include every run's
/// events, so a log pipeline sees each run start, its steps, their logs and its end.
pub fn default_filter(format: LogFormat, verbose: bool) -> &'static str {
    match (format, verbose) {
        (_, true) => "qodify_host=debug,info",
        (LogFormat::Text, false) => "warn",
        (LogFormat::Json, false) => "qodify_host=info,warn",
    }
}

/// Installs the process's log on stderr. In the JSON format, a panic is logged as an `error`
/// line too, so that stderr holds nothing but JSON.
pub fn init(format: LogFormat, verbose: bool) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_env(FILTER_ENV)
        .unwrap_or_else(|_| EnvFilter::new(default_filter(format, verbose)));
    tracing_subscriber::registry()
        .with(layer(format, filter, std::io::stderr))
        .init();
    if format == LogFormat::Json {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            // As the default hook would print it: only with RUST_BACKTRACE.
            let backtrace = std::backtrace::Backtrace::capture();
            let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured)
                .then(|| backtrace.to_string());
            tracing::error!(
                thread = thread.name().unwrap_or("unnamed"),
                backtrace = backtrace.as_deref(),
                "the host panicked: {info}"
            );
        }));
    }
}

/// The log layer of `format`, writing to `writer`, with `filter` deciding which lines go out.
pub fn layer<S, W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        // Spans left out: text lines look as they always did, without a span prefix.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter_fn(|m| m.is_event() && m.target() != RUN_EVENTS).and(filter))
            .boxed(),
        // The host's spans whatever the filter says: a filter of `warn` must not take the run's
        // fields off the warnings.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonLine)
            .fmt_fields(JsonFields::new())
            .with_writer(writer)
            .with_filter(
                filter_fn(|m| m.is_span() && m.target().starts_with("qodify_host")).or(filter),
            )
            .boxed(),
    }
}

/// The span of one run: every line logged inside it carries these fields. `domain` is `None`
/// where the caller does not have it at hand (a nested span adds it).
pub fn run_span(run_id: &str, customer_id: &str, domain: Option<&str>, pipeline: &str) -> Span {
    tracing::info_span!(
        "run",
        run = run_id,
        customer = customer_id,
        domain = domain,
        pipeline = pipeline
    )
}

/// The span of one step, inside its run's span.
pub fn step_span(step_id: &str) -> Span {
    tracing::info_span!("step", step = step_id)
}

/// One JSON object per line: `timestamp` (RFC 3339 UTC, milliseconds), `level` (lowercase),
/// `message`, the event's other fields, then the fields of every span the line was logged in
/// (outermost first; an inner span's value wins, an event's own field wins over both), then
/// `target`. Flat, so `jq 'select(.run == "…")'` and Loki's `| json | run="…"` need no nesting.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Fields::default();
        line.put("timestamp", now_rfc3339().into());
        line.put("level", meta.level().as_str().to_ascii_lowercase().into());
        if let Some(m) = fields.take("message") {
            line.put("message", m);
        }
        for (k, v) in fields.0 {
            line.put(&k, v);
        }
        let mut from_spans = Fields::default();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(text) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(map)) =
                    serde_json::from_str::<serde_json::Value>(&text.fields)
                {
                    for (k, v) in map {
                        from_spans.put(&k, v);
                    }
                }
            }
        }
        for (k, v) in from_spans.0 {
            if !line.has(&k) {
                line.put(&k, v);
            }
        }
        line.put("target", meta.target().into());
        let mut out = String::with_capacity(256);
        out.push('{');
        for (i, (k, v)) in line.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}:{}", serde_json::Value::from(k.as_str()), v);
        }
        out.push('}');
        writeln!(writer, "{out}")
    }
}

/// Fields in the order they came, each name once (a later value replaces an earlier one).
#[derive(Default)]
struct Fields(Vec<(String, serde_json::Value)>);

impl Fields {
    fn put(&mut self, name: &str, value: serde_json::Value) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    fn take(&mut self, name: &str) -> Option<serde_json::Value> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field.name(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `format_args!` messages arrive here; their Debug is their text.
        self.put(field.name(), format!("{value:?}").into());
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

/// Writes a run's events into the log inside the run's span, then passes them on: each step's
/// start and end, its log lines at their own level (with the step's id), the completed backup
/// and the run's end (`error` when it failed, `warn` when cancelled).
pub struct RunLog {
    inner: Arc<dyn EventSink>,
    span: Span,
}

impl RunLog {
    /// Logs the events of the run of `span` and sends them on to `inner`.
    pub fn wrap(inner: Arc<dyn EventSink>, span: Span) -> Arc<dyn EventSink> {
        Arc::new(Self { inner, span })
    }
}

impl EventSink for RunLog {
    fn emit(&self, event: Event) {
        self.span.in_scope(|| log_event(&event));
        self.inner.emit(event);
    }
}

/// `event!` needs its level as a constant: one call per level.
macro_rules! at_level {
    ($level:expr, $($rest:tt)+) => {
        match $level {
            LogLevel::Trace => tracing::event!(target: RUN_EVENTS, Level::TRACE, $($rest)+),
            LogLevel::Debug => tracing::event!(target: RUN_EVENTS, Level::DEBUG, $($rest)+),
            LogLevel::Info => tracing::event!(target: RUN_EVENTS, Level::INFO, $($rest)+),
            LogLevel::Warn => tracing::event!(target: RUN_EVENTS, Level::WARN, $($rest)+),
            LogLevel::Error => tracing::event!(target: RUN_EVENTS, Level::ERROR, $($rest)+),
        }
    };
}

fn log_event(event: &Event) {
    match event {
        Event::RunStarted { steps, .. } => {
            at_level!(LogLevel::Info, steps = steps.len(), "run started");
        }
        Event::StepStarted { step, plugin } => {
            at_level!(
                LogLevel::Info,
                step = step.as_str(),
                plugin = plugin.as_str(),
                "step started"
            );
        }
        Event::StepProgress {
            step,
            percent,
            message,
        } => {
            at_level!(
                LogLevel::Debug,
                step = step.as_str(),
                percent = f64::from(*percent),
                "{message}"
            );
        }
        Event::StepLog {
            step,
            level,
            message,
        } => {
            at_level!(*level, step = step.as_str(), "{message}");
        }
        Event::StepSkipped { step, reason } => {
            at_level!(
                LogLevel::Info,
                step = step.as_str(),
                reason = reason.as_str(),
                "step skipped"
            );
        }
        Event::StepSucceeded {
            step,
            duration_ms,
            artifacts,
            ..
        } => {
            at_level!(
                LogLevel::Info,
                step = step.as_str(),
                duration_ms = *duration_ms,
                artifacts = artifacts.len(),
                "step succeeded"
            );
        }
        Event::StepFailed {
            step,
            duration_ms,
            error,
        } => {
            at_level!(
                LogLevel::Warn,
                step = step.as_str(),
                duration_ms = *duration_ms,
                error = error.as_str(),
                "step failed"
            );
        }
        Event::ApprovalRequested {
            step,
            summary,
            expires_at,
            ..
        } => {
            at_level!(
                LogLevel::Warn,
                step = step.as_str(),
                expires_at = expires_at.as_str(),
                "waiting for approval: {summary}"
            );
        }
        Event::ApprovalDecided { step, approved, by } => {
            at_level!(
                LogLevel::Info,
                step = step.as_str(),
                approved = *approved,
                by = by.as_deref(),
                "approval decided"
            );
        }
        Event::BackupCompleted { backup, pinned } => {
            at_level!(
                LogLevel::Info,
                backup = backup.as_str(),
                pinned = pinned.as_deref(),
                "backup complete"
            );
        }
        Event::RunFinished {
            status,
            duration_ms,
            error,
            backup,
            ..
        } => {
            let level = match status {
                RunStatus::Succeeded => LogLevel::Info,
                RunStatus::Cancelled => LogLevel::Warn,
                RunStatus::Failed => LogLevel::Error,
            };
            let result = match status {
                RunStatus::Succeeded => "succeeded",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
            };
            at_level!(
                level,
                result = result,
                duration_ms = *duration_ms,
                error = error.as_deref(),
                backup = backup.as_deref(),
                "run {result}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::events::NullSink;

    /// Everything written, shared with the test.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs `f` under a log of `format` with `filter`; returns what it wrote.
    fn logged(format: LogFormat, filter: &str, f: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber =
            tracing_subscriber::registry().with(layer(format, EnvFilter::new(filter), move || {
                writer.clone()
            }));
        tracing::subscriber::with_default(subscriber, f);
        buf.text()
    }

    fn json_lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// What a run does, logging the way the host does: a line in the run, a step's line on
    /// another thread that carried the span there, a step log through [`RunLog`] from a thread
    /// that did not (a granted program's output reader), and a line after the run.
    fn a_run() {
        // The host's log is global; a test's is this thread's, so its threads are given it.
        let log = tracing::dispatcher::get_default(Clone::clone);
        let run = run_span("run-1", "42", Some("shop.example.com"), "backup");
        let in_run = run.enter();
        tracing::warn!("before any step");
        let sink = RunLog::wrap(Arc::new(NullSink), run.clone());
        let carried = Span::current();
        std::thread::scope(|s| {
            s.spawn(|| {
                tracing::dispatcher::with_default(&log, || {
                    let _in_run = carried.enter();
                    let _in_step = step_span("db-dump").entered();
                    tracing::warn!(bytes = 12u64, "a step's host line");
                })
            });
            s.spawn(|| {
                tracing::dispatcher::with_default(&log, || {
                    sink.emit(Event::StepLog {
                        step: "archive".into(),
                        level: LogLevel::Warn,
                        message: "a plugin's line".into(),
                    })
                })
            });
        });
        drop(in_run);
        tracing::warn!("outside any run");
    }

    #[test]
    fn json_lines_carry_the_run_and_step_fields_on_every_thread() {
        let lines = json_lines(&logged(LogFormat::Json, "warn", a_run));
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let by_message = |m: &str| {
            lines
                .iter()
                .find(|l| l["message"] == m)
                .unwrap_or_else(|| panic!("no line {m:?} in {lines:#?}"))
        };
        for m in ["before any step", "a step's host line", "a plugin's line"] {
            let l = by_message(m);
            assert_eq!(l["run"], "run-1", "{l}");
            assert_eq!(l["customer"], "42", "{l}");
            assert_eq!(l["domain"], "shop.example.com", "{l}");
            assert_eq!(l["pipeline"], "backup", "{l}");
            assert_eq!(l["level"], "warn", "{l}");
            assert!(l["timestamp"].as_str().unwrap().ends_with('Z'), "{l}");
        }
        assert_eq!(by_message("before any step").get("step"), None);
        assert_eq!(by_message("a step's host line")["step"], "db-dump");
        assert_eq!(by_message("a step's host line")["bytes"], 12);
        assert_eq!(by_message("a plugin's line")["step"], "archive");
        assert_eq!(by_message("a plugin's line")["target"], RUN_EVENTS);
        let outside = by_message("outside any run");
        assert_eq!(outside.get("run"), None, "{outside}");
    }

    #[test]
    fn the_filter_picks_lines_but_never_drops_the_run_fields() {
        // `info` lets the plugin's info line through; `error` lets nothing of the run through.
        let info = logged(LogFormat::Json, "info", || {
            let run = run_span("run-2", "7", None, "restore");
            RunLog::wrap(Arc::new(NullSink), run).emit(Event::StepLog {
                step: "db-restore".into(),
                level: LogLevel::Info,
                message: "restoring".into(),
            });
        });
        let lines = json_lines(&info);
        assert_eq!(lines.len(), 1, "{info}");
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["run"], "run-2");
        assert_eq!(lines[0]["step"], "db-restore");
        assert_eq!(lines[0].get("domain"), None, "{info}");
        assert_eq!(logged(LogFormat::Json, "error", a_run), "");
    }

    #[test]
    fn the_text_log_looks_as_before_without_spans_or_run_events() {
        let text = logged(LogFormat::Text, "warn", a_run);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for l in &lines {
            assert!(l.contains("WARN"), "{l}");
            assert!(!l.contains("run{") && !l.contains("step{"), "{l}");
            assert!(!l.trim_start().starts_with('{'), "{l}");
        }
        assert!(lines[0].ends_with("before any step"), "{text}");
        // The plugin's line is `run`'s to show (progress bars or plain lines), not the log's.
        assert!(!text.contains("a plugin's line"), "{text}");
    }

    #[test]
    fn a_run_s_end_is_logged_at_the_level_of_its_result() {
        let text = logged(LogFormat::Json, "info", || {
            let sink = RunLog::wrap(Arc::new(NullSink), run_span("r", "c", None, "backup"));
            for (status, error) in [
                (RunStatus::Succeeded, None),
                (RunStatus::Failed, Some("step db-dump failed")),
                (RunStatus::Cancelled, Some("the run was cancelled")),
            ] {
                sink.emit(Event::RunFinished {
                    run_id: "r".into(),
                    status,
                    duration_ms: 1500,
                    error: error.map(str::to_owned),
                    backup: None,
                });
            }
        });
        let lines = json_lines(&text);
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l["level"].as_str().unwrap(), l["result"].as_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("info", "succeeded"),
                ("error", "failed"),
                ("warn", "cancelled")
            ]
        );
        assert_eq!(lines[1]["error"], "step db-dump failed");
        assert_eq!(lines[1]["duration_ms"], 1500);
        assert_eq!(lines[1]["message"], "run failed");
    }

    #[test]
    fn log_formats_parse_and_a_bad_one_names_the_flag_the_variable_and_the_choices() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        let err = "xml".parse::<LogFormat>().unwrap_err().to_string();
        for part in ["`xml`", "`text`", "`json`", "--log-format", FORMAT_ENV] {
            assert!(err.contains(part), "{err} lacks {part}");
        }
        assert!("JSON".parse::<LogFormat>().is_err());
    }
}
